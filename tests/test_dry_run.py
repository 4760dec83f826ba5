"""The dry run times full-shape steps on random data and extrapolates to the whole run."""

import json

import pytest

from configs import test as test_config
from landmark import pipeline


def test_dry_run_estimates_the_whole_run(tmp_path):
  config = test_config.get_config()
  config.dry_run.features, config.dry_run.samples = 512, 10000
  estimate = pipeline.run(config, str(tmp_path), 'dry_run')
  assert json.loads((tmp_path / 'dry_run.json').read_text()) == estimate
  assert estimate['train_samples'] == 8000
  steps = -(-8000 // config.train.batch_size)
  assert estimate['ae_training_hours'] * 3600 == pytest.approx(
      config.train.epochs * steps * estimate['ae_step_seconds'])
  assert estimate['ae_step_seconds'] > 0 and estimate['deeplift_seconds_per_sample'] > 0
  # AE 512 -> 32 -> 8 -> 32 -> 512 with biases.
  assert estimate['parameters'] == 512 * 32 + 32 + 32 * 8 + 8 + 8 * 32 + 32 + 32 * 512 + 512
