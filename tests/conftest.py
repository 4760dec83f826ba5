"""Shared fixtures: the real HG-U133A compendium, raw and normalised, made once per session."""

import dataclasses
import os

import jax
import numpy as np
import pandas as pd
import pytest

from configs import common
from configs import compendium
from landmark.data import preprocess
from landmark.data import readers


def pytest_configure(config):
  os.environ.setdefault('JAX_PLATFORMS', 'cpu')


# The slowest modules, slowest first. `make test` hands whole modules to its two workers in
# collection order, so these start at once and the quick ones fill in around them.
SLOWEST_MODULES = ('test_multihost.py', 'test_pipeline.py', 'test_greedy_ridge.py',
                   'test_panel_run.py', 'test_streaming.py', 'test_sharding.py',
                   'test_dry_run.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)
  items.sort(key=rank)   # stable: the order inside each module stays


@pytest.fixture(scope='session')
def real_config():
  return common.base_config()


@pytest.fixture(scope='session')
def real_compendium(real_config):
  """The five real studies combined: 314 samples x 22,283 probes, raw values."""
  return readers.load_compendium(real_config.data)


@pytest.fixture(scope='session')
def real_normalised(real_compendium):
  """The real compendium without AFFX controls, log2 and quantile-normalised (all samples)."""
  compendium = preprocess.drop_control_probes(preprocess.to_log2(real_compendium))
  values = preprocess.QuantileNormalizer().fit(compendium.values).transform(compendium.values)
  return dataclasses.replace(compendium, values=values)


@pytest.fixture(scope='session')
def real_compendium17():
  """All 17 real studies (configs/compendium.py) on their shared probes: 580 x 22,215, raw."""
  return readers.load_compendium(compendium.get_config().data)


@pytest.fixture(scope='module')
def real_slice():
  """60 real samples (30 breast/colon, 30 sarcoma) x the first 1,000 probes, log2, split 48/12."""
  frames = [pd.read_csv(common.data_path('hgu133a', f'{study}.tsv.gz'), sep='\t',
                        index_col='probe', nrows=1000).iloc[:, :30]
            for study in ('chowdary', 'nakayama')]
  values = np.log2(np.maximum(pd.concat(frames, axis=1).T.to_numpy(np.float32), 1.0))
  values = values[np.random.default_rng(0).permutation(len(values))]
  return values[:48], values[48:]


@pytest.fixture
def x64():
  """Runs a test with float64 JAX, restoring the previous setting after it."""
  previous = jax.config.jax_enable_x64
  jax.config.update('jax_enable_x64', True)
  yield
  jax.config.update('jax_enable_x64', previous)


@pytest.fixture(scope='session')
def expression():
  """17 real GSE781 profiles, log2 and min-max scaled to [0, 1], 2,000 random probes."""
  table = pd.read_csv(common.data_path('hgu133a', 'GSE781.tsv.gz'), sep='\t', index_col=0)
  probes = np.random.default_rng(0).choice(len(table), 2000, replace=False)
  values = np.log2(np.maximum(table.to_numpy(np.float64)[probes].T, 1.0))
  low, high = values.min(axis=0), values.max(axis=0)
  return (values - low) / np.where(high > low, high - low, 1.0)


def _brute_force_greedy(x, k, penalty):
  """Greedy forward selection by explicit ridge fits: each step tries every remaining gene
  and keeps the one with the lowest ridge loss ||x - x_S B||² + penalty ||B||²."""
  chosen = []
  for _ in range(k):
    losses = {}
    for j in sorted(set(range(x.shape[1])) - set(chosen)):
      panel = x[:, chosen + [j]]
      b = np.linalg.solve(panel.T @ panel + penalty * np.eye(panel.shape[1]), panel.T @ x)
      losses[j] = np.sum((x - panel @ b) ** 2) + penalty * np.sum(b ** 2)
    chosen.append(min(losses, key=losses.get))
  return chosen


@pytest.fixture
def brute_force_greedy():
  """The greedy ridge selection by brute force (x, k, penalty) -> chosen columns: the
  independent implementation both greedy ridge test modules compare with."""
  return _brute_force_greedy


@pytest.fixture
def crash_on_call(monkeypatch):
  """install(module, name, n): `module.name` raises KeyboardInterrupt (a crash in the middle
  of training) on its n-th call; `monkeypatch.undo()` restores it for the resumed run."""

  def install(module, name, n):
    original, calls = getattr(module, name), []

    def crashing(*args):
      calls.append(args)
      if len(calls) == n:
        raise KeyboardInterrupt
      return original(*args)

    monkeypatch.setattr(module, name, crashing)

  return install
