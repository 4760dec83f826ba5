"""Orbax checkpoints for any training loop: one pytree of arrays plus JSON metadata per step.

The step is whatever the loop counts (epochs for the AutoEncoder and D-GEX). The pytree
holds everything exact resumption needs (parameters as a pure dict, optimizer state, RNG
key data); per-step JSON metadata (`custom_metadata`) holds what is not an array, such as
the metric history so far.
"""

import logging as python_logging
import os

from absl import logging
import jax
import orbax.checkpoint as ocp


def _drop_orbax_info(record):
  """Orbax logs some 40 INFO lines per save; a run's log keeps only its warnings."""
  return record.levelno >= python_logging.WARNING or f'{os.sep}orbax{os.sep}' not in record.pathname


logging.get_absl_logger().addFilter(_drop_orbax_info)


def make_manager(directory, *, save_every=1, keep=2):
  """A CheckpointManager that saves every `save_every` steps and keeps the latest `keep`.

  Saves are synchronous, so a step on disk is complete when `save` returns; `save(...,
  force=True)` writes off-interval steps (the last epoch).
  """
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=ocp.checkpoint_managers.FixedIntervalPolicy(save_every),
      preservation_policy=ocp.checkpoint_managers.LatestN(keep),
      enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def save(manager, step, state, metadata=None, *, force=False):
  """Saves the pytree `state` (and JSON-serialisable `metadata`) at `step` if due.

  Returns whether a checkpoint was written.
  """
  return manager.save(step, args=ocp.args.StandardSave(state), custom_metadata=metadata or {},
                      force=force)


def abstract(state):
  """Shape/dtype skeleton of `state`: the restore target that fixes structure and placement."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def restore(manager, abstract_state, step=None):
  """Restores (step, state, metadata) from `step` (default: the latest); None if none saved."""
  step = manager.latest_step() if step is None else step
  if step is None:
    return None
  state = manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
  metadata = manager.metadata(step).custom_metadata or {}
  return step, state, metadata
