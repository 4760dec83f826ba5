"""Orbax checkpoints for any training loop: one pytree of arrays plus JSON metadata per step.

The step is whatever the loop counts (epochs for the AutoEncoder and D-GEX). The pytree
holds everything exact resumption needs (parameters as a pure dict, optimizer state, RNG
key data); per-step JSON metadata (`custom_metadata`) holds what is not an array, such as
the metric history so far, the run identity (landmark.run_identity) and a checksum of the
saved arrays.

A step is trusted only if it restores, its arrays are finite and they match the checksum
saved with them; otherwise `restore` sets it aside (`<directory>.rejected/<step>`) with a
warning and falls back to the next older step, so the retention policy never deletes the
last good step in favour of a damaged one.
"""

import logging as python_logging
import os
import shutil
from typing import Any, Mapping

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from landmark.errors import CheckpointError

CHECKSUM = 'checksum'


def _drop_orbax_info(record):
  """Orbax logs some 40 INFO lines per save; a run's log keeps only its warnings."""
  return record.levelno >= python_logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname


logging.get_absl_logger().addFilter(_drop_orbax_info)


def make_manager(directory: str | os.PathLike, *, save_every: int = 1,
                 keep: int = 2) -> ocp.CheckpointManager:
  """A CheckpointManager that saves every `save_every` steps and keeps the latest `keep`.

  Saves are synchronous, so a step on disk is complete when `save` returns; `save(...,
  force=True)` writes off-interval steps (the last epoch).
  """
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
      preservation_policy=ocp.checkpoint_managers.LatestN(keep),
      enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def checksum(state: Any) -> list[float]:
  """Per-leaf float64 sums of `state`'s arrays (RNG keys as their data): a restore is trusted
  only if it gives the same sums, bit for bit."""
  leaves = jax.tree.leaves(jax.device_get(state))
  return [float(np.sum(np.asarray(leaf, np.float64))) for leaf in leaves]


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         metadata: Mapping[str, Any] | None = None, *, force: bool = False) -> bool:
  """Saves the pytree `state` (and JSON-serialisable `metadata`) at `step` if due.

  The metadata gets the state's `checksum`. Returns whether a checkpoint was written.
  """
  if not (force or manager.should_save(step)):
    return False
  return manager.save(step, args=ocp.args.StandardSave(state),
                      custom_metadata={**(metadata or {}), CHECKSUM: checksum(state)}, force=True)


def abstract(state: Any) -> Any:
  """Shape/dtype skeleton of `state`: the restore target that fixes structure and placement."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def latest_metadata(directory: str) -> dict[str, Any] | None:
  """The custom metadata of the newest step in `directory`; None if it holds none."""
  if not os.path.isdir(directory):
    return None
  manager = make_manager(directory)
  try:
    step = manager.latest_step()
    return None if step is None else dict(manager.metadata(step).custom_metadata or {})
  except Exception:   # a damaged newest step: restore() decides what to do with it
    return {}
  finally:
    manager.close()


def restore(manager: ocp.CheckpointManager,
            abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
  """Restores (step, state, metadata) from the newest trusted step; None if none was saved.

  Steps that fail to restore, hold non-finite values or do not match their checksum are
  set aside with a warning, newest first; raises CheckpointError if no step is trusted.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  for step in steps:
    try:
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
      metadata = dict(manager.metadata(step).custom_metadata or {})
      problem = _problem(state, metadata)
    except Exception as e:   # orbax raises many types for a truncated or emptied step
      problem = f'does not restore ({type(e).__name__}: {str(e).splitlines()[0][:200]})'
    if problem is None:
      return step, state, metadata
    rejected = _set_aside(manager, step)
    logging.warning('Checkpoint step %d in %s %s; moved to %s, falling back to an older step.',
                    step, manager.directory, problem, rejected)
  if steps:
    raise CheckpointError(manager.directory, f'none of the steps {steps} restores intact (set '
                          'aside beside it); remove the directory to train from scratch')
  return None


def _problem(state, metadata):
  if not all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(jax.device_get(state))
             if np.issubdtype(np.asarray(leaf).dtype, np.floating)):
    return 'holds non-finite values'
  if CHECKSUM not in metadata:
    return 'has no checksum'
  if checksum(state) != metadata[CHECKSUM]:
    return 'does not match its checksum'
  return None


def _set_aside(manager, step):
  source = os.path.join(os.fspath(manager.directory), str(step))
  target = os.path.join(os.fspath(manager.directory) + '.rejected', str(step))
  os.makedirs(os.path.dirname(target), exist_ok=True)
  if os.path.exists(target):
    shutil.rmtree(target)
  shutil.move(source, target)
  manager.reload()
  return target
