"""Greedy ridge in JAX (landmark.selection.greedy_ridge) against independent implementations:
the numpy path it replaced, on the real 17-study training split; a brute-force greedy of
explicit ridge fits; itself in the other space, streamed from a GCTX, and on 8 devices."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from configs import compendium
from configs import panel as panel_config
from experiments import numpy_greedy_ridge
from landmark import pipeline
from landmark.data import readers
from landmark.data import streaming
from landmark.evaluation import panels as panels_lib
from landmark.selection import design
from landmark.selection import greedy_ridge

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALPHAS = (1.0, 10.0, 100.0, 1000.0)


@pytest.fixture(scope='module')
def fold0(tmp_path_factory):
  """The training split of fold 0 of the 17 studies' grouped 5-fold CV, on D-GEX's genes, as
  the selector benchmark chooses from: 361 profiles of 13 studies x 9,403 genes."""
  config = compendium.get_config('folds=5,fold=0')
  workdir = str(tmp_path_factory.mktemp('fold0'))
  splits = pipeline.prepare_data(config, workdir)
  annotation = readers.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  return genes.train, genes.train_studies.astype(str), genes.genes, splits, annotation


def numpy_path(values, studies, k, alpha, standardise):
  """The path of the numpy implementation the JAX one replaced."""
  x = numpy_greedy_ridge._study_centred(values, studies)  # pylint: disable=protected-access
  if standardise:
    x /= numpy_greedy_ridge._gene_scale(x)  # pylint: disable=protected-access
  return numpy_greedy_ridge.ridge_path(
      x, k, alpha * numpy_greedy_ridge._penalty_scale(x))  # pylint: disable=protected-access


def jax_path(values, studies, k, alpha, standardise, space='auto', dtype='float64'):
  moments = greedy_ridge.in_memory(values, studies, 1, space, dtype)
  return greedy_ridge.greedy_paths(moments, [greedy_ridge.ALL_ROWS], [alpha], k,
                                   standardise)[0].order[0]


def test_real_training_split_same_path_as_numpy(fold0):
  """The first 943 genes of the 17-study training split, in the identical order (sample
  space: 361 profiles < 9,403 genes), standardised at the penalty the validation chooses."""
  values, studies, _, _, _ = fold0
  assert greedy_ridge.resolve_space('auto', *values.shape) == 'samples'
  expected = numpy_path(values, studies, 943, 10.0, True)
  np.testing.assert_array_equal(jax_path(values, studies, 943, 10.0, True), expected)


@pytest.mark.parametrize('standardise', [False, True])
def test_real_data_both_spaces_equal_numpy(fold0, standardise):
  """On 300 real genes (361 profiles: gene space by shape) both forms take numpy's path."""
  values, studies, _, _, _ = fold0
  values = values[:, :300]
  assert greedy_ridge.resolve_space('auto', *values.shape) == 'genes'
  expected = numpy_path(values, studies, 150, 1.0, standardise)
  for space in ('genes', 'samples'):
    np.testing.assert_array_equal(jax_path(values, studies, 150, 1.0, standardise, space),
                                  expected)


def test_real_data_validated_selection_equals_numpy(fold0):
  """Penalty validation on held-out groups of training studies (3 groups x 4 penalties, run
  together) chooses numpy's penalty and panel, in both spaces (1,000 real genes, k = 120)."""
  values, studies, _, _, _ = fold0
  values = values[:, :1000]
  expected = numpy_greedy_ridge.selection(values, studies, ALPHAS, 120, 120, 3, True)
  for space in ('samples', 'genes'):
    moments = greedy_ridge.in_memory(values, studies, 3, space, 'float64')
    paths, alpha, errors = greedy_ridge.select(moments, 120, ALPHAS, 120, True)
    np.testing.assert_array_equal(paths.order[0], expected)
    assert alpha == ALPHAS[int(np.argmin(errors))] and len(errors) == len(ALPHAS)


def test_float32_path_agrees_with_float64(fold0):
  """float32 (accelerators) takes nearly float64's path: rounding may swap near-ties late."""
  values, studies, _, _, _ = fold0
  exact = jax_path(values, studies, 300, 10.0, True)
  single = jax_path(values, studies, 300, 10.0, True, dtype='float32')
  np.testing.assert_array_equal(single[:50], exact[:50])
  assert len(set(single) & set(exact)) >= 0.95 * 300


@pytest.mark.parametrize('space', ['samples', 'genes'])
@pytest.mark.parametrize('n_samples, n_genes, k', [(30, 8, 5), (6, 12, 10)])
def test_both_spaces_are_the_brute_force_greedy(space, n_samples, n_genes, k,
                                                brute_force_greedy):
  rng = np.random.default_rng(n_genes)
  values = (rng.normal(size=(n_samples, 3)) @ rng.normal(size=(3, n_genes))
            + rng.normal(size=(n_samples, n_genes)) * rng.uniform(0.2, 2.0, n_genes) + 8)
  studies = (np.arange(n_samples) % 2).astype(str)
  values[studies == '1'] += rng.normal(scale=5.0, size=n_genes)
  centred = values - np.stack([values[studies == s].mean(axis=0) for s in '01'])[
      (studies == '1').astype(int)]
  scaled = centred / centred.std(axis=0)
  moments = greedy_ridge.in_memory(values, studies, 1, space, 'float64')
  paths, _ = greedy_ridge.greedy_paths(moments, [greedy_ridge.ALL_ROWS], [0.1], k, True)
  penalty = 0.1 * np.mean(np.sum(scaled ** 2, axis=0))
  assert list(paths.order[0]) == brute_force_greedy(scaled, k, penalty)
  # Each step's gain is its loss drop over the total sum of squares.
  losses = [np.sum(scaled ** 2)]
  for step in range(1, k + 1):
    panel = scaled[:, paths.order[0, :step]]
    b = np.linalg.solve(panel.T @ panel + penalty * np.eye(step), panel.T @ scaled)
    losses.append(np.sum((scaled - panel @ b) ** 2) + penalty * np.sum(b ** 2))
  np.testing.assert_allclose(paths.gain[0], -np.diff(losses) / losses[0], rtol=1e-8, atol=1e-12)


@pytest.fixture(scope='module')
def real_gctx(fold0, tmp_path_factory):
  """The fold's training profiles on 400 real probes as a GCTX whose column metadata names
  each profile's study, and the same rows in memory."""
  _, _, _, splits, _ = fold0
  train = splits.train.take_features(np.arange(400))
  path = str(tmp_path_factory.mktemp('gctx') / 'train.gctx')
  readers.write_gctx(path, train)
  return path, train


def test_streamed_equals_in_memory(real_gctx):
  """One pass over a GCTX in chunks of 37 rows gives the cross-products of the matrix in
  memory (gene space, forced: 361 rows < 400 probes) and the same validated panel."""
  path, train = real_gctx
  stream = streaming.SampleStream(path, chunk_samples=37, study_field='study')
  np.testing.assert_array_equal(stream.meta['study'], train.meta['study'])
  studies = train.meta['study'].to_numpy()
  streamed = greedy_ridge.accumulate(stream.arrays(), studies, 400, 3, 'genes', 'float64')
  memory = greedy_ridge.in_memory(train.values, studies, 3, 'genes', 'float64')
  np.testing.assert_allclose(np.asarray(streamed.cross), np.asarray(memory.cross),
                             rtol=1e-9, atol=1e-7)
  (streamed_paths, streamed_alpha, streamed_errors), (paths, alpha, errors) = (
      greedy_ridge.select(moments, 60, ALPHAS, 60, True) for moments in (streamed, memory))
  np.testing.assert_array_equal(streamed_paths.order, paths.order)
  assert streamed_alpha == alpha
  np.testing.assert_allclose(streamed_errors, errors, rtol=1e-9)


def test_designer_streamed_equals_in_memory(fold0, real_gctx):
  """design.design picks the same genes, with the same gains, from the GCTX stream as from
  the rows in memory (probes collapsed to genes chunk by chunk)."""
  _, _, _, _, annotation = fold0
  path, train = real_gctx
  config = panel_config.get_config('k=40')
  stream = streaming.SampleStream(path, chunk_samples=50, study_field='study')
  tables = [design.design(split, annotation, config, None, []) for split in (stream, train)]
  pd.testing.assert_frame_equal(tables[0], tables[1], rtol=1e-6)
  assert len(tables[0]) == 40 and tables[0]['gain'].gt(0).all()


SCRIPT = r'''
import sys
import jax
import numpy as np
from landmark.selection import greedy_ridge
from landmark.training import sharding

assert jax.device_count() == 8, jax.devices()
values = np.load(sys.argv[1])
studies = np.load(sys.argv[2])
for space, genes in (('samples', values.shape[1]), ('genes', 150)):
  x = values[:, :genes]
  orders = []
  for devices in (1, 8):
    mesh = sharding.device_mesh(devices)
    moments = greedy_ridge.in_memory(x, studies, 3, space, 'float64', mesh)
    paths, alpha, _ = greedy_ridge.select(moments, 40, (1.0, 10.0), 40, True, mesh)
    orders.append(paths.order[0])
  np.testing.assert_array_equal(orders[0], orders[1])
  print(space, 'same panel on 8 devices as on 1:', orders[0][:5])
'''


def test_same_panel_on_8_devices_as_on_1(fold0, tmp_path):
  """Genes (sample space) or gene rows (gene space) split over 8 forced CPU devices, with
  padding to a multiple of 8: 301 and 150 genes do not divide."""
  values, studies, _, _, _ = fold0
  np.save(tmp_path / 'values.npy', values[:, :301])
  np.save(tmp_path / 'studies.npy', studies)
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=8', PYTHONPATH=REPO)
  result = subprocess.run([sys.executable, '-c', SCRIPT, str(tmp_path / 'values.npy'),
                           str(tmp_path / 'studies.npy')], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count('same panel on 8 devices') == 2


def test_one_study_cannot_validate_a_penalty():
  moments = greedy_ridge.in_memory(np.random.default_rng(0).normal(size=(20, 6)), None, 3)
  with pytest.raises(ValueError, match='at least two studies'):
    greedy_ridge.select(moments, 2, ALPHAS, 2, True)
  paths, alpha, errors = greedy_ridge.select(moments, 2, ALPHAS[:1], 2, True)
  assert alpha == ALPHAS[0] and len(errors) == 0 and paths.order.shape == (1, 2)
