"""Study correction on the five real HG-U133A studies (log2, quantile-normalised)."""

import numpy as np
import pandas as pd
import pytest

from landmark import errors
from landmark.data import correction

N_PROBES = 2000


@pytest.fixture(scope='module')
def real(real_normalised):
  """(values, studies): log2, quantile-normalised, a seeded subset of non-control probes."""
  values = real_normalised.values
  probes = np.sort(np.random.default_rng(0).choice(values.shape[1], N_PROBES, replace=False))
  return values[:, probes], real_normalised.meta['study'].to_numpy()


def study_means(values, studies):
  return {name: values[studies == name].mean(axis=0, dtype=np.float64)
          for name in np.unique(studies)}


def test_center_puts_every_study_at_the_training_grand_mean(real):
  values, studies = real
  corrected = correction.StudyCorrection('center').fit(values, studies).transform(values, studies)
  grand_mean = values.mean(axis=0, dtype=np.float64)
  for name, mean in study_means(corrected, studies).items():
    np.testing.assert_allclose(mean - grand_mean, 0.0, atol=1e-5, err_msg=name)
    rows = studies == name
    shift = corrected[rows] - values[rows]          # one shift per gene within a study
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-5)


def test_combat_matches_scanpy(real):
  why = 'scanpy needs anndata, which needs pandas < 3 on Python 3.11: run in a separate env'
  sc = pytest.importorskip('scanpy', reason=why)
  anndata = pytest.importorskip('anndata', reason=why)
  values, studies = real
  ours = correction.StudyCorrection('combat').fit(values, studies).transform(values, studies)
  adata = anndata.AnnData(values.astype(np.float64),
                          obs=pd.DataFrame({'study': pd.Categorical(studies)},
                                           index=[str(i) for i in range(len(studies))]))
  reference = sc.pp.combat(adata, key='study', inplace=False)
  # scanpy's prior variance tau^2 divides by G genes where sva's divides by G - 1: that is the
  # whole difference (measured: max 6.2e-4, mean 5.5e-6 log2 units; 5e-7 with G).
  difference = np.abs(ours - reference)
  assert difference.max() < 1e-3 and difference.mean() < 1e-5


def assert_location_and_scale_removed(original, corrected, grand_mean, pooled_sd):
  """Per-gene study mean within 10% of its old offset from the grand mean; median sd ratio ~1."""
  offset_before = np.abs(original.mean(axis=0, dtype=np.float64) - grand_mean).mean()
  offset_after = np.abs(corrected.mean(axis=0, dtype=np.float64) - grand_mean).mean()
  assert offset_after < 0.1 * offset_before
  assert 0.95 < np.median(corrected.std(axis=0) / pooled_sd) < 1.05


def test_combat_removes_study_location_and_scale(real):
  """Measured: offsets shrink to 1-7% of their size; sd ratios 0.69-1.18 become 0.98-1.01."""
  values, studies = real
  fitted = correction.StudyCorrection('combat').fit(values, studies)
  corrected = fitted.transform(values, studies)
  for name in np.unique(studies):
    rows = studies == name
    assert_location_and_scale_removed(values[rows], corrected[rows], fitted.grand_mean,
                                      fitted.pooled_sd)


def test_combat_centres_genes_without_within_study_variance(real):
  values, studies = real
  by_study = np.searchsorted(np.unique(studies), studies).astype(np.float32)
  planted = np.column_stack([values, 3.0 + by_study])       # constant within each study
  combat = correction.StudyCorrection('combat')
  corrected = combat.fit(planted, studies).transform(planted, studies)
  np.testing.assert_allclose(corrected[:, -1], planted[:, -1].mean(), atol=1e-5)
  untouched = combat.fit(values, studies).transform(values, studies)   # priors skip that gene
  np.testing.assert_array_equal(corrected[:, :-1], untouched)


def test_new_study_is_corrected_with_its_own_statistics(real):
  values, studies = real
  held_out = studies == 'GSE781'
  fitted = correction.StudyCorrection('center').fit(values[~held_out], studies[~held_out])
  corrected = fitted.transform(values, studies)
  for name, mean in study_means(corrected, studies).items():
    np.testing.assert_allclose(mean, fitted.grand_mean, atol=1e-5, err_msg=name)
  np.testing.assert_allclose(fitted.grand_mean, values[~held_out].mean(axis=0, dtype=np.float64),
                             atol=1e-5)
  fitted = correction.StudyCorrection('combat').fit(values[~held_out], studies[~held_out])
  assert_location_and_scale_removed(values[held_out], fitted.transform(values, studies)[held_out],
                                    fitted.grand_mean, fitted.pooled_sd)


def test_combat_new_study_uses_the_fitted_estimator(real):
  """A training study renamed (so unseen) gets exactly the parameters fitted on it."""
  values, studies = real
  fitted = correction.StudyCorrection('combat').fit(values, studies)
  rows = studies == 'borovecki'
  as_seen = fitted.transform(values[rows], studies[rows])
  as_new = fitted.transform(values[rows], np.full(rows.sum(), 'borovecki_again'))
  np.testing.assert_allclose(as_new, as_seen, atol=1e-5)
  one_sample = fitted.transform(values[rows][:1], studies[rows][:1])   # seen: any sample count
  np.testing.assert_array_equal(one_sample, as_seen[:1])


def test_combat_that_does_not_converge_raises_instead_of_looping(real):
  """GSE781 takes the most iterations of the real studies (21 on every probe)."""
  values, studies = real
  fitted = correction.StudyCorrection('combat').fit(values, studies)
  rows, index = studies == 'GSE781', list(fitted.studies).index('GSE781')
  standardised = (values[rows] - fitted.grand_mean) / fitted.pooled_sd
  gamma, _ = correction._posterior_location_scale(standardised, 'GSE781')
  np.testing.assert_allclose(gamma * fitted.pooled_sd, fitted.offset[index])
  with pytest.raises(errors.NumericalError,
                     match=r"ComBat did not converge on study 'GSE781' in 2 iterations"):
    correction._posterior_location_scale(standardised, 'GSE781', max_iterations=2)


@pytest.mark.parametrize('kind, too_few', [('center', 1), ('combat', 2)])
def test_too_few_samples_for_own_statistics(real, kind, too_few):
  values, studies = real
  train = studies != 'GSE781'
  fitted = correction.StudyCorrection(kind).fit(values[train], studies[train])
  new = np.flatnonzero(~train)[:too_few]
  with pytest.raises(ValueError, match=rf"study 'GSE781' has {too_few} sample"):
    fitted.transform(values[new], studies[new])
  small = np.concatenate([np.flatnonzero(train), new])
  with pytest.raises(ValueError, match=rf"study 'GSE781' has {too_few} sample"):
    correction.StudyCorrection(kind).fit(values[small], studies[small])


@pytest.mark.parametrize('kind', correction.KINDS)
def test_save_load_round_trip(real, kind, tmp_path):
  values, studies = real
  train = studies != 'nakayama'
  fitted = correction.StudyCorrection(kind).fit(values[train], studies[train])
  fitted.save(tmp_path / 'study_correction.npz')
  loaded = correction.StudyCorrection.load(tmp_path / 'study_correction.npz')
  assert loaded.kind == kind
  np.testing.assert_array_equal(loaded.transform(values, studies),
                                fitted.transform(values, studies))


def test_none_is_the_identity_and_unknown_kinds_fail(real):
  values, studies = real
  unchanged = correction.StudyCorrection('none').fit(values, studies).transform(values, studies)
  np.testing.assert_array_equal(unchanged, values)
  with pytest.raises(ValueError, match="'batch'"):
    correction.StudyCorrection('batch')
