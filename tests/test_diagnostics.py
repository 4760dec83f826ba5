"""Study-effect diagnostics against scipy and hand computations, and on the real studies."""

import numpy as np
import pytest
from scipy import stats

from landmark import correction
from landmark import data
from landmark import diagnostics
from landmark import preprocess

EPITHELIAL = ['CDH1', 'EPCAM', 'KRT7']


def test_eta_squared_by_hand_and_from_the_anova_f():
  np.testing.assert_allclose(diagnostics.study_eta_squared(np.array([[1.], [2.], [4.], [5.]]),
                                                           ['a', 'a', 'b', 'b']), [9 / 10])
  rng = np.random.default_rng(0)
  studies = np.repeat(['a', 'b', 'c'], [5, 8, 11])
  offsets = rng.normal(size=(3, 30))[np.searchsorted(['a', 'b', 'c'], studies)]
  values = rng.normal(size=(24, 30)) + offsets
  f = stats.f_oneway(*(values[studies == s] for s in 'abc')).statistic
  between_df, within_df = 2, 24 - 3
  np.testing.assert_allclose(diagnostics.study_eta_squared(values, studies),
                             f * between_df / (f * between_df + within_df), rtol=1e-10)


def test_eta_squared_planted_genes():
  studies = np.repeat(['a', 'b', 'c'], 4)
  only_study = np.repeat([1.0, 5.0, -2.0], 4)             # constant within each study
  no_study = np.tile([0.3, -1.0, 2.0, 7.0], 3)            # every study holds the same values
  constant = np.full(12, 3.25)
  eta2 = diagnostics.study_eta_squared(np.column_stack([only_study, no_study, constant]), studies)
  np.testing.assert_allclose(eta2, [1.0, 0.0, 0.0], atol=1e-12)


def test_trivial_baselines_by_hand():
  train = np.array([[0., 0.], [2., 2.], [10., 10.], [12., 12.]])
  test = np.array([[1., 3.], [11., 11.], [5., 5.], [7., 7.]])
  baselines = diagnostics.trivial_baselines(train, ['a', 'a', 'b', 'b'], test, ['a', 'b', 'c', 'c'])
  # global mean profile (6, 6); per-study means a (1, 1), b (11, 11), unseen c its own (6, 6)
  assert baselines['global_mean'] == pytest.approx((5 + 3 + 5 + 5 + 1 + 1 + 1 + 1) / 8)
  assert baselines['study_mean'] == pytest.approx((0 + 2 + 0 + 0 + 1 + 1 + 1 + 1) / 8)
  assert baselines['oracle_studies'] == ['c']


@pytest.mark.parametrize('ae_mae, beyond, phrase', [
    (0.41, False, 'explains little beyond which study'),
    (0.20, True, 'beats study identity by 53%'),
    (0.60, False, 'worse than the per-study mean'),
])
def test_ae_vs_baselines_verdict(ae_mae, beyond, phrase):
  summary = diagnostics.ae_vs_baselines(ae_mae, {'global_mean': 0.9, 'study_mean': 0.43,
                                                 'oracle_studies': ['GSE781']})
  assert summary['beyond_study'] is beyond
  assert phrase in summary['verdict'] and 'oracle' in summary['verdict']
  assert summary['verdict'].startswith(f'AE MAE {ae_mae:.3g} vs per-study mean 0.43')
  assert summary['gain_over_study'] == pytest.approx(1 - ae_mae / 0.43)


@pytest.fixture(scope='module')
def real_genes(real_normalised, real_config):
  """Gene-level values (log2, quantile-normalised) of the epithelial markers and ~280 genes."""
  annotation = data.read_probe_annotation(real_config.data.annotation)
  symbols = annotation.set_index('probe')['symbol'].reindex(real_normalised.features).to_numpy()
  rng = np.random.default_rng(0)
  keep = np.isin(symbols, EPITHELIAL) | np.isin(np.arange(len(symbols)),
                                                rng.choice(len(symbols), 300, replace=False))
  return preprocess.collapse_to_genes(real_normalised.take_features(keep), annotation)


def test_real_epithelial_markers_are_mostly_study(real_genes):
  """Measured: CDH1 0.74, EPCAM 0.74, KRT7 0.45 (median 0.74); median over the 279 genes 0.35."""
  studies = real_genes.meta['study'].to_numpy()
  panels = {'epithelial': EPITHELIAL}
  rng = np.random.default_rng(1)
  for i in range(5):
    panels[f'random_{i}'] = list(rng.choice(real_genes.features, 20, replace=False))
  table = diagnostics.panel_study_effects(real_genes.values, studies, real_genes.features,
                                          panels).set_index('panel')
  assert table.loc['epithelial', 'genes'] == 3
  assert table.loc['epithelial', 'median_eta2'] > 0.65
  assert table.loc['all genes', 'median_eta2'] < 0.45
  assert table.loc['random', 'median_eta2'] < 0.5 and table.loc['random', 'median_eta2_sd'] > 0
  expected_mean = real_genes.values[:, np.isin(real_genes.features, EPITHELIAL)].mean()
  assert table.loc['epithelial', 'mean_expression'] == pytest.approx(expected_mean, rel=1e-5)
  centred = correction.StudyCorrection('center').fit(real_genes.values, studies)
  eta2 = diagnostics.study_eta_squared(centred.transform(real_genes.values, studies), studies)
  assert eta2.max() < 1e-6                              # no study left to explain
