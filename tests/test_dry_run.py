"""The dry run times full-shape steps on random data and extrapolates to the whole run."""

import json

import pytest

from configs import test as test_config
from landmark import pipeline


def _config(compute_dtype):
  config = test_config.get_config()
  config.dry_run.features, config.dry_run.samples = 512, 10000
  config.dry_run.dgex_landmarks, config.dry_run.dgex_targets = 40, 60
  config.model.compute_dtype = config.dgex.compute_dtype = compute_dtype
  return config


@pytest.mark.parametrize('compute_dtype', ['float32', 'bfloat16'])
def test_dry_run_estimates_the_whole_run(tmp_path, compute_dtype):
  config = _config(compute_dtype)
  estimate = pipeline.run(config, str(tmp_path), 'dry_run')
  assert json.loads((tmp_path / 'dry_run.json').read_text()) == estimate
  assert estimate['train_samples'] == 8000
  assert estimate['ae_compute_dtype'] == estimate['dgex_compute_dtype'] == compute_dtype
  steps = -(-8000 // config.train.batch_size)
  assert estimate['ae_training_hours'] * 3600 == pytest.approx(
      config.train.epochs * steps * estimate['ae_step_seconds'])
  assert estimate['ae_step_seconds'] > 0 and estimate['deeplift_seconds_per_sample'] > 0
  # AE 512 -> 32 -> 8 -> 32 -> 512 with biases; float32 parameters and Adam's two moments.
  n_params = 512 * 32 + 32 + 32 * 8 + 8 + 8 * 32 + 32 + 32 * 512 + 512
  assert estimate['parameters'] == n_params
  assert estimate['parameter_and_adam_mb'] == pytest.approx(3 * 4 * n_params / 2**20, rel=1e-3)

  # D-GEX 40 -> 32 -> 60: float32 parameters, SGD momentum and the best epoch's copy.
  n_dgex = 40 * 32 + 32 + 32 * 60 + 60
  assert estimate['dgex_parameters'] == n_dgex
  assert estimate['dgex_state_mb'] == pytest.approx(3 * 4 * n_dgex / 2**20, rel=1e-2)
  dgex_steps = -(-8000 // config.dgex.batch_size)
  assert estimate['dgex_step_seconds'] > 0
  assert estimate['dgex_fit_hours'] * 3600 == pytest.approx(
      config.dgex.epochs * dgex_steps * estimate['dgex_step_seconds'])
  # deeplift, l1000, variance, each seed's deeplift and the random panels: a D-GEX fit each.
  assert config.seeds > 1
  assert estimate['dgex_fits'] == 3 + config.seeds + config.evaluate.random_sets_nonlinear
  assert estimate['dgex_hours'] == pytest.approx(
      estimate['dgex_fits'] * estimate['dgex_fit_hours'])
  assert estimate['seeds'] == config.seeds
  assert estimate['total_hours'] == pytest.approx(
      config.seeds * (estimate['ae_training_hours'] + estimate['deeplift_hours'])
      + estimate['dgex_hours'])
