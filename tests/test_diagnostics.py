"""Study-effect diagnostics against scipy and hand computations, and on the real studies."""

import dataclasses

import numpy as np
import pytest
from scipy import stats
from sklearn import decomposition

from landmark import metrics
from landmark.data import correction
from landmark.data import preprocess
from landmark.data import readers
from landmark.evaluation import diagnostics

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


def _low_rank(n_samples, rank=3, n_genes=60, noise=0.1, seed=0):
  """Profiles = gene means + `rank` planted factors (the same for every seed) + small noise."""
  loadings = np.random.default_rng(123).normal(size=(rank, n_genes))
  rng = np.random.default_rng(seed)
  factors = rng.normal(size=(n_samples, rank))
  return 5.0 + factors @ loadings + noise * rng.normal(size=(n_samples, n_genes))


def test_pca_baselines_equal_sklearn_reconstruction():
  train, test = _low_rank(40), _low_rank(15, seed=1)
  pca = diagnostics.fit_pca(train, 8)
  baselines = diagnostics.pca_baselines(pca, test, (2, 8, 100))
  for width, used in ((2, 2), (8, 8), (100, 8)):   # 100 is capped by the components fitted
    direct = decomposition.PCA(used, svd_solver='full').fit(train)
    reconstruction = direct.inverse_transform(direct.transform(test))
    assert baselines[f'pca_{width}'] == pytest.approx({
        'components': used, 'mae': np.mean(metrics.per_gene_mae(test, reconstruction)),
        'pcc': np.mean(metrics.per_gene_pcc(test, reconstruction))}, rel=1e-5)
  assert len(diagnostics.fit_pca(train[:5], 100)[1]) == 4   # rank of 5 centred profiles


def test_pca_baseline_beats_the_mean_profile_on_planted_low_rank_data():
  train, test = _low_rank(40), _low_rank(15, seed=1)
  baselines = diagnostics.pca_baselines(diagnostics.fit_pca(train, 3), test, (3,))['pca_3']
  mean_mae = np.mean(np.abs(test - train.mean(axis=0)))
  assert baselines['mae'] < 0.2 * mean_mae
  assert baselines['pcc'] > 0.95


@pytest.mark.parametrize('ae_pcc, ae_mae, reaches', [(0.5, 0.30, True), (0.3, 0.30, False),
                                                     (0.5, 0.40, False)])
def test_ae_vs_baselines_compares_with_pca_of_its_width(ae_pcc, ae_mae, reaches):
  baselines = {'global_mean': 0.9, 'study_mean': 0.43, 'oracle_studies': [],
               'pca': {'pca_10': {'components': 10, 'mae': 0.38, 'pcc': 0.35},
                       'pca_100': {'components': 100, 'mae': 0.35, 'pcc': 0.45}}}
  summary = diagnostics.ae_vs_baselines(ae_mae, baselines, ae_pcc, width=100)
  assert summary['reaches_pca'] is reaches
  assert (summary['pca_pcc'], summary['pca_mae']) == (0.45, 0.35)
  assert summary['pcc_minus_pca'] == pytest.approx(ae_pcc - 0.45)
  assert summary['pca'] == baselines['pca']
  assert ('reaches PCA of its width' if reaches else 'falls short of PCA') in summary['verdict']
  assert 'PCA with 100 components' in summary['verdict']


@pytest.fixture(scope='module')
def real_genes(real_normalised, real_config):
  """Gene-level values (log2, quantile-normalised) of the epithelial markers and ~280 genes."""
  annotation = readers.read_probe_annotation(real_config.data.annotation)
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


@pytest.mark.parametrize('kind', ['center', 'combat'])
def test_eta_squared_is_measured_before_study_correction(real_normalised, real_config, tmp_path,
                                                         kind):
  """uncorrected_genes undoes the saved correction: eta^2 is the raw data's, not ~0."""
  annotation = readers.read_probe_annotation(real_config.data.annotation)
  probes = real_normalised.take_features(np.arange(0, real_normalised.shape[1], 100))
  studies = probes.meta['study'].to_numpy()
  fitted = correction.StudyCorrection(kind).fit(probes.values, studies)
  path = str(tmp_path / 'study_correction.npz')
  fitted.save(path)
  corrected = dataclasses.replace(probes, values=fitted.transform(probes.values, studies))
  genes = diagnostics.uncorrected_genes(corrected, path, annotation, None)
  raw = preprocess.collapse_to_genes(probes, annotation)
  np.testing.assert_allclose(genes.values, raw.values, atol=1e-3)
  assert np.median(diagnostics.study_eta_squared(genes.values, studies)) > 0.1
  unchanged = diagnostics.uncorrected_genes(corrected, str(tmp_path / 'absent.npz'), annotation,
                                            None)
  assert np.median(diagnostics.study_eta_squared(unchanged.values, studies)) < 1e-3   # corrected
