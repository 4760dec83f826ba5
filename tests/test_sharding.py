"""Data parallelism: 8 (forced host) CPU devices give the results of 1 device.

The device count is fixed when jax is imported, so the comparison runs in a subprocess
started with XLA_FLAGS=--xla_force_host_platform_device_count=8; it asserts and prints
one line per check.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import common
from landmark.training import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r'''
import tempfile

from flax import nnx
import jax
import numpy as np
import pandas as pd

from configs import common
from configs import test as test_config
from landmark.attribution import deeplift
from landmark.inference import regression
from landmark.training import core
from landmark.training import sharding
from landmark.training import train

assert jax.device_count() == 8, jax.devices()
TOLERANCE = dict(rtol=1e-5, atol=1e-6)

# 64 real chowdary samples x 64 probes, log2; 60 training rows do not split over 8 devices.
frame = pd.read_csv(common.data_path('hgu133a', 'chowdary.tsv.gz'), sep='\t', index_col='probe',
                    nrows=64).iloc[:, :64]
values = np.log2(np.maximum(frame.T.to_numpy(np.float32), 1.0))
train_x, eval_x = values[:60], values[60:]


def ae_config(devices, batch_size=32):
  config = test_config.get_config('epochs=3')
  config.model.hidden = (16,)
  config.model.bottleneck = 4
  config.train.batch_size = batch_size
  config.mesh.devices = devices
  return config


def train_on(devices):
  with tempfile.TemporaryDirectory() as workdir:
    model, _, history = train.train_autoencoder(ae_config(devices), workdir, train_x, eval_x)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  device_counts = {len(leaf.sharding.device_set) for leaf in jax.tree.leaves(params)}
  return history, jax.tree.map(np.asarray, params), device_counts


history8, params8, counts8 = train_on(8)
history1, params1, counts1 = train_on(1)
assert counts8 == {8} and counts1 == {1}, (counts8, counts1)
np.testing.assert_allclose(history8[core.TRAIN_LOSS], history1[core.TRAIN_LOSS], **TOLERANCE)
np.testing.assert_allclose(history8[train.EVAL_MAE], history1[train.EVAL_MAE], **TOLERANCE)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOLERANCE), params8, params1)
assert not np.allclose(history8[core.TRAIN_LOSS][0], history8[core.TRAIN_LOSS][-1])
print('ae losses', history8[core.TRAIN_LOSS], 'match')
try:
  with tempfile.TemporaryDirectory() as workdir:
    train.train_autoencoder(ae_config(8, batch_size=36), workdir, train_x, eval_x)
  raise AssertionError('batch 36 over 8 devices was accepted')
except ValueError as error:
  print('ae indivisible batch:', error)

rng = np.random.default_rng(0)
layers = [(rng.normal(size=(64, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32)),
          (rng.normal(size=(16, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32))]
scaled = (train_x - train_x.min(0)) / (np.ptp(train_x, axis=0) + 1e-6)
x, reference = scaled[:13], scaled.mean(axis=0)
chunk_mb = 8 * 4 * 64 * 4 / 2**20   # 8 rows a chunk: 13 rows are a full and a padded chunk
for aggregate in ('abs', 'signed'):
  scores = {devices: deeplift.score_inputs(layers, 'sigmoid', x, reference, aggregate,
                                           max_chunk_mb=chunk_mb,
                                           mesh=sharding.device_mesh(devices))
            for devices in (8, 1)}
  np.testing.assert_allclose(scores[8], scores[1], **TOLERANCE)
  assert np.abs(scores[1]).max() > 1e-3
print('deeplift scores match')

config_dgex = test_config.get_config('epochs=3').dgex
config_dgex.hidden = (16,)
config_dgex.optimizer = 'adam'
fits = {devices: regression.fit_dgex(config_dgex, values[:56, :16], values[:56, 16:],
                                     values[56:, :16], values[56:, 16:], seed=1,
                                     mesh=sharding.device_mesh(devices))
        for devices in (8, 1)}
for key in ('train_mae', 'val_mae', 'learning_rate'):
  np.testing.assert_allclose(fits[8].history[key], fits[1].history[key], **TOLERANCE)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOLERANCE),
             fits[8].params, fits[1].params)
np.testing.assert_allclose(fits[8].predict(values[56:, :16]), fits[1].predict(values[56:, :16]),
                           rtol=1e-5, atol=1e-5)
print('dgex val MAE', fits[8].history['val_mae'], 'match')
print('SHARDING OK')
'''


def test_eight_devices_match_one_device():
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=8',
             PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  assert 'SHARDING OK' in result.stdout, result.stdout


def test_mesh_of_the_config():
  config = common.base_config()
  mesh = sharding.make_mesh(config)
  assert mesh.axis_names == (sharding.BATCH_AXIS,)
  assert mesh.size == jax.device_count()
  config.mesh.devices = jax.device_count() + 1
  with pytest.raises(ValueError, match='devices'):
    sharding.make_mesh(config)


def test_put_batch_of_padded_rows():
  mesh = sharding.device_mesh()
  rows = sharding.round_up(4, mesh.size)   # a multiple of the devices, with padding
  array = sharding.put_batch(mesh, sharding.pad_rows([[1.0], [2.0], [3.0]], rows))
  assert array.shape == (rows, 1) and array.sharding == sharding.batch_sharding(mesh)
  np.testing.assert_array_equal(np.asarray(array)[:, 0], [1.0, 2.0, 3.0] + [0.0] * (rows - 3))
