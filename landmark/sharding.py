"""Data parallelism over a 1-D device mesh: batches split along 'batch', parameters replicated.

Steps stay ordinary jitted functions; placing their inputs under these shardings (or
naming them as in/out shardings) lets GSPMD partition the computation and insert the
gradient all-reduce. On one device every sharding is trivial, so the same code runs
unchanged on 1 to N devices and, after `jax.distributed.initialize`, on several hosts.
"""

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXIS = 'batch'


def make_mesh(config):
  """The mesh of `config.mesh`: its first `devices` devices (0 = all), on one axis 'batch'.

  With `config.mesh.distributed` the multi-host runtime is initialised first (once per
  process), so that `jax.devices()` lists the devices of every host.
  """
  if config.mesh.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()
  return device_mesh(config.mesh.devices)


def device_mesh(n_devices=0):
  """A 'batch' mesh over the first `n_devices` of `jax.devices()` (0 = all of them)."""
  devices = jax.devices()
  if not 0 <= n_devices <= len(devices):
    raise ValueError(f'mesh.devices={n_devices}, but only {len(devices)} devices exist')
  return Mesh(np.array(devices[:n_devices or len(devices)]), (BATCH_AXIS,))


def batch_sharding(mesh):
  """Leading (sample) axis split over the mesh; the other axes whole on every device."""
  return NamedSharding(mesh, P(BATCH_AXIS))


def replicated(mesh):
  """A full copy on every device of the mesh (parameters, optimizer state, keys)."""
  return NamedSharding(mesh, P())


def check_divisible(mesh, rows, what):
  """Raises ValueError unless `rows` splits evenly over the mesh's devices."""
  if rows % mesh.size:
    raise ValueError(f'{what} ({rows}) must be a multiple of the number of devices '
                     f'({mesh.size}) to split it over the mesh')


def put_batch(mesh, array):
  """Places a host array, identical on every host, on the mesh split along its first axis.

  Each process copies only the rows of its own devices. The number of rows must be a
  multiple of `mesh.size`: padding (with rows that are masked out or contribute nothing)
  is the caller's concern, since only the caller knows which padding is neutral.
  """
  array = np.asarray(array)
  check_divisible(mesh, len(array), 'The batch size')
  return jax.make_array_from_callback(array.shape, batch_sharding(mesh), lambda index: array[index])


def round_up(rows, multiple):
  """The smallest multiple of `multiple` that is at least `rows`."""
  return -(-rows // multiple) * multiple


def pad_rows(array, multiple):
  """Zero-pads the first axis of a host array to a multiple of `multiple`."""
  array = np.asarray(array)
  padding = round_up(len(array), multiple) - len(array)
  return np.pad(array, ((0, padding),) + ((0, 0),) * (array.ndim - 1)) if padding else array
