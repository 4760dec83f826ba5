"""Dry run: the full-scale shapes on random data, a few steps each, and what the run will cost.

Builds the config's AutoEncoder at `config.dry_run.features` inputs, times its jitted
training epoch over `config.dry_run.steps` batches and DeepLIFT scoring of one chunk, and
extrapolates to `config.dry_run.samples` profiles (the paper: 111,009 after duplicate
removal, 90% for training). Nothing is read from disk, so it runs before the data arrive.
"""

import json
import os
import resource
import time

from absl import logging
from flax import nnx
import jax
import numpy as np

from landmark import deeplift
from landmark import fileio
from landmark import sharding
from landmark import train


def _seconds(run):
  """Wall seconds of the second call of `run` (the first compiles)."""
  jax.block_until_ready(run())
  started = time.perf_counter()
  jax.block_until_ready(run())
  return time.perf_counter() - started


def _peak_memory_bytes():
  """Peak device memory where the backend reports it, else the process's peak RSS."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return 'device', stats['peak_bytes_in_use']
  return 'host RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(config, workdir):
  """Times the full-shape steps and writes `<workdir>/dry_run.json`; returns the estimate."""
  n_features, batch, steps = config.dry_run.features, config.train.batch_size, config.dry_run.steps
  n_train = int(config.dry_run.samples * (1 - config.preprocess.val_fraction
                                          - config.preprocess.test_fraction))
  mesh = sharding.make_mesh(config)
  sharding.check_divisible(mesh, batch, 'config.train.batch_size')
  key = jax.random.key(config.seed)
  model = train.build_model(config, n_features, key)
  optimizer = train.build_optimizer(config)
  graphdef, params, rest = nnx.split(nnx.view(model, deterministic=False), nnx.Param, ...)
  params = nnx.to_pure_dict(params)
  n_params = sum(p.size for p in jax.tree.leaves(params))
  train_epoch = train.make_train_epoch(
      train.make_train_step(graphdef, rest, optimizer, config.train.l2), batch, mesh)
  data = jax.random.uniform(jax.random.fold_in(key, 1), (steps * batch, n_features))
  state = {'params': params, 'opt_state': optimizer.init(params)}

  def epoch():
    state['params'], state['opt_state'], loss = train_epoch(
        state['params'], state['opt_state'], data, 1, jax.random.fold_in(key, 2),
        jax.random.fold_in(key, 3))
    return loss

  step_seconds = _seconds(epoch) / steps
  encoder = nnx.merge(graphdef, state['params'], rest).encoder_layers()
  chunk = np.asarray(data[:batch])
  reference = chunk.mean(axis=0)
  score_seconds = _seconds(lambda: deeplift.score_inputs(
      encoder, config.model.activation, chunk, reference, mesh=mesh)) / batch
  memory_kind, peak_bytes = _peak_memory_bytes()
  steps_per_epoch = -(-n_train // batch)
  estimate = {
      'devices': [str(d) for d in mesh.devices.flat],
      'features': n_features, 'train_samples': n_train, 'batch_size': batch,
      'parameters': n_params,
      'parameter_and_adam_mb': 3 * n_params * 4 / 2**20,
      f'peak_memory_mb_{memory_kind.replace(" ", "_")}': peak_bytes / 2**20,
      'ae_step_seconds': step_seconds,
      'ae_epoch_seconds': steps_per_epoch * step_seconds,
      'ae_training_hours': config.train.epochs * steps_per_epoch * step_seconds / 3600,
      'deeplift_seconds_per_sample': score_seconds,
      'deeplift_hours': n_train * score_seconds / 3600,
  }
  fileio.write_text(os.path.join(workdir, 'dry_run.json'), json.dumps(estimate, indent=2))
  logging.info('Dry run on %s: AE %.0f epochs x %d steps x %.3f s = %.2f h; DeepLIFT over %d '
               'samples %.2f h; %.0f MB parameters + Adam; peak %s %.0f MB',
               estimate['devices'], config.train.epochs, steps_per_epoch, step_seconds,
               estimate['ae_training_hours'], n_train, estimate['deeplift_hours'],
               estimate['parameter_and_adam_mb'], memory_kind, peak_bytes / 2**20)
  return estimate
