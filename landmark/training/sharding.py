"""Data parallelism over a 1-D device mesh: batches split along 'batch', parameters replicated.

Steps stay ordinary jitted functions; placing their inputs under these shardings (or
naming them as in/out shardings) lets GSPMD partition the computation and insert the
gradient all-reduce. On one device every sharding is trivial, so the same code runs
unchanged on 1 to N devices and, after `jax.distributed.initialize`, on several hosts.

Multi-host: every process (one per machine, or one per scheduler task) runs the same
command with `config.mesh.distributed=True`. `initialize` (called by `make_mesh`, and
first thing by main.py) joins them into one runtime whose `jax.devices()` are every
process's devices, so the mesh spans them all. Each process holds the whole host data
and copies only its own devices' rows (`put_batch`) and replicas (`replicate`); results
are replicated, so every process sees the same losses, scores and parameters. The workdir
must be shared: orbax checkpoints are written by all processes together, event files and
the AE tables by process 0 (`is_primary`). On CPU the collectives go over gloo (jax's
default). Two processes on one machine:

  python main.py --config=configs/quick.py --workdir=runs/two --config.mesh.distributed=True \
      --config.mesh.coordinator_address=localhost:12355 --config.mesh.num_processes=2 \
      --config.mesh.process_id=0 &
  python main.py ...the same... --config.mesh.process_id=1

On a cluster, leave the coordinator fields unset and start the processes with the
scheduler, which jax reads: `srun python main.py ... --config.mesh.distributed=True` on
SLURM, `mpirun` on Open MPI; TPU pods and Kubernetes are detected too.
"""

from typing import Any

import jax
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXIS = 'batch'


def initialize(config: ml_collections.ConfigDict) -> None:
  """Joins the multi-host run of `config.mesh` if `config.mesh.distributed` (once per process).

  Must come before anything uses a JAX device (jax.distributed's rule); afterwards
  `jax.devices()` lists the devices of every process. Unset coordinator fields ('' / -1)
  are auto-detected (SLURM, Open MPI, TPU pods).
  """
  if config.mesh.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize(
        coordinator_address=config.mesh.coordinator_address or None,
        num_processes=None if config.mesh.num_processes < 0 else config.mesh.num_processes,
        process_id=None if config.mesh.process_id < 0 else config.mesh.process_id)


def make_mesh(config: ml_collections.ConfigDict) -> Mesh:
  """The mesh of `config.mesh`: its first `devices` devices (0 = all), on one axis 'batch'.

  Joins the multi-host run first if the config asks (`initialize`).
  """
  initialize(config)
  return device_mesh(config.mesh.devices)


def is_primary() -> bool:
  """Whether this process writes the run's files: process 0 (the only one of a one-host run).

  All processes of a multi-host run compute the same replicated results, so one copy of
  each table, figure and event file is written, by process 0, into the shared workdir.
  """
  return jax.process_index() == 0


def device_mesh(n_devices: int = 0) -> Mesh:
  """A 'batch' mesh over the first `n_devices` of `jax.devices()` (0 = all of them)."""
  devices = jax.devices()
  if not 0 <= n_devices <= len(devices):
    raise ValueError(f'mesh.devices={n_devices}, but only {len(devices)} devices exist')
  return Mesh(np.array(devices[:n_devices or len(devices)]), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (sample) axis split over the mesh; the other axes whole on every device."""
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh (parameters, optimizer state, keys)."""
  return NamedSharding(mesh, P())


def replicate(mesh: Mesh, tree: Any) -> Any:
  """Places a pytree of host values, identical on every process, on every device of the mesh.

  Each process copies the values to its own devices, from host memory. (On a mesh spanning
  several processes, `jax.device_put` first all-gathers a host value to check that it is
  the same everywhere, and from a single-device jax.Array it gives arrays whose shards
  cannot be read, nor checkpointed, when a process has one device: jax 0.10.2.)
  """
  return jax.tree.map(lambda leaf: _place(leaf, replicated(mesh)), jax.device_get(tree))


def check_divisible(mesh: Mesh, rows: int, what: str) -> None:
  """Raises ValueError unless `rows` splits evenly over the mesh's devices."""
  if rows % mesh.size:
    raise ValueError(f'{what} ({rows}) must be a multiple of the number of devices '
                     f'({mesh.size}) to split it over the mesh')


def put_batch(mesh: Mesh, array: ArrayLike) -> jax.Array:
  """Places a host array, identical on every host, on the mesh split along its first axis.

  Each process copies only the rows of its own devices. The number of rows must be a
  multiple of `mesh.size`: padding (with rows that are masked out or contribute nothing)
  is the caller's concern, since only the caller knows which padding is neutral.
  """
  array = np.asarray(array)
  check_divisible(mesh, len(array), 'The batch size')
  return _place(array, batch_sharding(mesh))


def _place(array, sharding):
  """A global array from a host array that every process holds whole; each copies its part."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def round_up(rows: int, multiple: int) -> int:
  """The smallest multiple of `multiple` that is at least `rows`."""
  return -(-rows // multiple) * multiple


def pad_rows(array: ArrayLike, multiple: int) -> np.ndarray:
  """Zero-pads the first axis of a host array to a multiple of `multiple`."""
  array = np.asarray(array)
  padding = round_up(len(array), multiple) - len(array)
  return np.pad(array, ((0, padding),) + ((0, 0),) * (array.ndim - 1)) if padding else array
