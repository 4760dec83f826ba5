"""Dry run: the full-scale shapes on random data, a few steps each, and what the run will cost.

Builds the config's AutoEncoder at `config.dry_run.features` inputs, times its jitted
training epoch over `config.dry_run.steps` batches and DeepLIFT scoring of one chunk; builds
the config's D-GEX at `config.dry_run.dgex_landmarks` -> `dgex_targets` and times as many of
its training steps. Both run in the config's compute dtypes. The timings are extrapolated to
the training split of `config.dry_run.samples` profiles (the paper: 111,009 after duplicate
removal, 80% for training): one AE's epochs and DeepLIFT over the training profiles, run
once per seed (`config.seeds`), and the epochs of every D-GEX fit of the panels stage
(D-GEX's per-epoch validation passes are not counted). Nothing is read from disk, so it runs
before the data arrive.
"""

import json
import os
import resource
import time
from typing import Any

from absl import logging
from flax import nnx
import jax
import ml_collections
import numpy as np

from landmark import fileio
from landmark.attribution import deeplift
from landmark.inference import regression
from landmark.models import dgex
from landmark.training import core
from landmark.training import sharding
from landmark.training import train


def _seconds(run):
  """Wall seconds of the second call of `run` (the first compiles)."""
  jax.block_until_ready(run())
  started = time.perf_counter()
  jax.block_until_ready(run())
  return time.perf_counter() - started


def _megabytes(tree):
  return sum(leaf.nbytes for leaf in jax.tree.leaves(tree)) / 2**20


def _peak_memory_bytes():
  """Peak device memory where the backend reports it, else the process's peak RSS."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return 'device', stats['peak_bytes_in_use']
  return 'host RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _autoencoder(config, mesh, key, n_train):
  """AE training step and DeepLIFT timings at the full shapes, extrapolated to `n_train`."""
  n_features, batch, steps = config.dry_run.features, config.train.batch_size, config.dry_run.steps
  sharding.check_divisible(mesh, batch, 'config.train.batch_size')
  model = train.build_model(config, n_features, key)
  optimizer = train.build_optimizer(config)
  state = core.new_state(nnx.view(model, deterministic=False), optimizer, key, mesh)
  objective = train.Reconstruction(config.train.l2, config.train.loss)
  data = core.device_data(
      {'x': jax.random.uniform(jax.random.fold_in(key, 1), (steps * batch, n_features))}, mesh)

  def epoch() -> jax.Array:
    nonlocal state
    state, loss = core.train_epoch(state, objective, optimizer, data, 1, batch, steps * batch,
                                   mesh)
    return loss

  step_seconds = _seconds(epoch) / steps
  encoder = state.model().encoder_layers()
  chunk = np.asarray(data['x'][:batch])
  reference = chunk.mean(axis=0)
  score_seconds = _seconds(lambda: deeplift.score_inputs(
      encoder, config.model.activation, chunk, reference, mesh=mesh)) / batch
  steps_per_epoch = -(-n_train // batch)
  return {
      'features': n_features, 'batch_size': batch,
      'ae_compute_dtype': config.model.compute_dtype,
      'parameters': sum(p.size for p in jax.tree.leaves(state.params)),
      'parameter_and_adam_mb': _megabytes((state.params, state.opt_state)),
      'ae_step_seconds': step_seconds,
      'ae_epoch_seconds': steps_per_epoch * step_seconds,
      'ae_training_hours': config.train.epochs * steps_per_epoch * step_seconds / 3600,
      'deeplift_seconds_per_sample': score_seconds,
      'deeplift_hours': n_train * score_seconds / 3600,
  }


def _dgex(config, mesh, key, n_train):
  """D-GEX training step timing at the full shapes, extrapolated to its fits over `n_train`."""
  n_landmarks, n_targets = config.dry_run.dgex_landmarks, config.dry_run.dgex_targets
  batch, steps = config.dgex.batch_size, config.dry_run.steps
  sharding.check_divisible(mesh, batch, 'config.dgex.batch_size')
  model = dgex.build_dgex(config.dgex, n_landmarks, n_targets, key)
  optimizer = regression.build_optimizer(config.dgex)
  state = core.new_state(nnx.view(model, deterministic=False), optimizer, key, mesh)
  data = core.device_data({name: jax.random.normal(jax.random.fold_in(key, index),
                                                   (steps * batch, width))
                           for name, index, width in (('x', 1, n_landmarks),
                                                      ('y', 2, n_targets))}, mesh)

  def run_steps() -> jax.Array:
    nonlocal state
    state, loss = core.train_epoch(state, regression.SquaredError(), optimizer, data, 1, batch,
                                   steps * batch, mesh)
    return loss

  step_seconds = _seconds(run_steps) / steps
  fit_hours = config.dgex.epochs * -(-n_train // batch) * step_seconds / 3600
  # The panels stage (landmark.pipeline.landmark_panels_stage) fits D-GEX to the deeplift,
  # l1000 and variance panels, to each seed's own DeepLIFT panel when there are several
  # seeds, and to `random_sets_nonlinear` random panels.
  fits = 0
  if 'dgex' in config.evaluate.models:
    fits = (3 + (config.seeds if config.seeds > 1 else 0)
            + config.evaluate.random_sets_nonlinear)
  return {
      'dgex_landmarks': n_landmarks, 'dgex_targets': n_targets, 'dgex_batch_size': batch,
      'dgex_compute_dtype': config.dgex.compute_dtype,
      'dgex_parameters': sum(p.size for p in jax.tree.leaves(state.params)),
      # Parameters, optimizer state and the copy of the best epoch's parameters.
      'dgex_state_mb': _megabytes((state.params, state.opt_state)) + _megabytes(state.params),
      'dgex_step_seconds': step_seconds,
      'dgex_fit_hours': fit_hours,
      'dgex_fits': fits,
      'dgex_hours': fits * fit_hours,
  }


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Times the full-shape steps and writes `<workdir>/dry_run.json`; returns the estimate."""
  n_train = int(config.dry_run.samples * (1 - config.preprocess.val_fraction
                                          - config.preprocess.test_fraction))
  mesh = sharding.make_mesh(config)
  key = jax.random.key(config.seed)
  estimate = {'devices': [str(d) for d in mesh.devices.flat], 'train_samples': n_train,
              'seeds': config.seeds,
              **_autoencoder(config, mesh, jax.random.fold_in(key, 0), n_train),
              **_dgex(config, mesh, jax.random.fold_in(key, 1), n_train)}
  estimate['total_hours'] = (config.seeds * (estimate['ae_training_hours']
                                             + estimate['deeplift_hours'])
                             + estimate['dgex_hours'])
  memory_kind, peak_bytes = _peak_memory_bytes()
  estimate[f'peak_memory_mb_{memory_kind.replace(" ", "_")}'] = peak_bytes / 2**20
  fileio.write_text(os.path.join(workdir, 'dry_run.json'), json.dumps(estimate, indent=2))
  logging.info(
      'Dry run on %s, per seed (%d): AE (%s) %d epochs x %.3f s/step = %.2f h, DeepLIFT over '
      '%d samples %.2f h; D-GEX (%s) %d -> %s -> %d, %d fits x %d epochs x %.3f s/step = '
      '%.2f h; total %.2f h. %.0f MB AE parameters + Adam, %.0f MB D-GEX parameters + '
      'optimizer + best; peak %s %.0f MB', estimate['devices'], config.seeds,
      config.model.compute_dtype, config.train.epochs,
      estimate['ae_step_seconds'], estimate['ae_training_hours'], n_train,
      estimate['deeplift_hours'], config.dgex.compute_dtype, estimate['dgex_landmarks'],
      tuple(config.dgex.hidden), estimate['dgex_targets'], estimate['dgex_fits'],
      config.dgex.epochs, estimate['dgex_step_seconds'], estimate['dgex_hours'],
      estimate['total_hours'], estimate['parameter_and_adam_mb'], estimate['dgex_state_mb'],
      memory_kind, peak_bytes / 2**20)
  return estimate
