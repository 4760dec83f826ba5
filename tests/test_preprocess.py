"""Preprocessing on the real compendium, plus planted cases for duplicate removal."""

import numpy as np
import pandas as pd
import pytest

from configs import common
from landmark import data
from landmark import preprocess


@pytest.fixture(scope='module')
def real_splits(real_compendium, real_config, tmp_path_factory):
  # The closest two real profiles are 47 log2 units apart (dedup_threshold is 1): none is a
  # near duplicate under any clustering, and 10 clusters take a third of the paper's 100's time.
  config = real_config.copy_and_resolve_references()
  config.preprocess.dedup_clusters = 10
  workdir = tmp_path_factory.mktemp('prep')
  return preprocess.prepare(real_compendium, config, seed=0, workdir=str(workdir)), workdir


def test_real_splits_are_normalised(real_splits):
  splits, workdir = real_splits
  sizes = {name: c.shape[0] for name, c in splits.items()}
  assert sum(sizes.values()) == 314 and sizes['train'] == 252
  assert all(c.shape[1] == 22283 - 68 for _, c in splits.items())   # AFFX controls dropped
  reference = np.load(workdir / 'quantile_reference.npy')
  for _, c in splits.items():
    assert np.isfinite(c.values).all()
    assert 0 < c.values.min() and c.values.max() < 16            # log2 scale after all
    np.testing.assert_array_equal(np.sort(c.values, axis=1), np.broadcast_to(reference, c.shape))
  sample_ids = np.concatenate([c.samples for _, c in splits.items()])
  assert len(set(sample_ids)) == 314


def test_log2_only_linear_studies(real_compendium):
  logged = preprocess.to_log2(real_compendium)
  bladder = (real_compendium.meta['study'] == 'bladderbatch').to_numpy()
  np.testing.assert_array_equal(logged.values[bladder], real_compendium.values[bladder])
  chowdary = (real_compendium.meta['study'] == 'chowdary').to_numpy()
  expected = np.log2(np.maximum(real_compendium.values[chowdary], 1.0))
  np.testing.assert_allclose(logged.values[chowdary], expected)
  assert logged.values[chowdary].min() == 0.0                   # real zeros floored at 1


def test_quantile_normalizer_maps_new_samples_and_platforms():
  rng = np.random.default_rng(0)
  train = rng.gamma(2.0, 2.0, size=(30, 200)).astype(np.float32)
  normalizer = preprocess.QuantileNormalizer().fit(train)
  new = rng.normal(size=(3, 200))
  mapped = normalizer.transform(new)
  np.testing.assert_array_equal(np.argsort(mapped[0]), np.argsort(new[0]))
  np.testing.assert_allclose(np.sort(mapped[1]), normalizer.reference)
  other_platform = normalizer.transform(rng.normal(size=(2, 57)))   # fewer features
  assert other_platform.min() == normalizer.reference[0]
  assert other_platform.max() == normalizer.reference[-1]


def test_quantile_reference_round_trip(tmp_path):
  normalizer = preprocess.QuantileNormalizer().fit(np.arange(12, dtype=np.float32).reshape(3, 4))
  normalizer.save(tmp_path / 'ref.npy')
  np.testing.assert_array_equal(preprocess.QuantileNormalizer.load(tmp_path / 'ref.npy').reference,
                                [4, 5, 6, 7])


def test_near_duplicates_removes_planted_copies(real_compendium):
  profiles = preprocess.to_log2(real_compendium).values[:40, :2000]
  rng = np.random.default_rng(1)
  copies = profiles[[3, 17, 29]] + rng.normal(scale=0.005, size=(3, 2000)).astype(np.float32)
  keep = preprocess.near_duplicates(np.concatenate([profiles, copies]), n_clusters=5, threshold=1.0)
  assert keep[:40].all() and keep[40:].sum() == 0


def test_splits_random_and_leave_study_out():
  train, val, test = preprocess.random_split(100, 0.1, 0.2, seed=3)
  assert (len(train), len(val), len(test)) == (70, 10, 20)
  assert len(np.union1d(np.union1d(train, val), test)) == 100
  studies = np.array(['a'] * 30 + ['b'] * 20 + ['c'] * 50)
  train, val, test = preprocess.leave_study_out_split(studies, 'b', 0.1, seed=0)
  assert set(studies[test]) == {'b'} and len(test) == 20
  assert 'b' not in set(studies[np.concatenate([train, val])])
  with pytest.raises(ValueError, match="'z'"):
    preprocess.leave_study_out_split(studies, 'z', 0.1, seed=0)


def test_nan_values_error_or_impute(real_compendium):
  small = real_compendium.take_samples(np.arange(6)).take_features(np.arange(10))
  values = small.values.copy()
  values[2, 4] = np.nan
  values[3, 4] = np.inf
  broken = data.Compendium(values, small.features, small.samples, small.meta, source='broken.tsv')
  with pytest.raises(data.DataError, match=r'broken.tsv: 2 NaN/inf values .* first at sample') as e:
    preprocess.handle_missing(broken)
  assert '\n' not in str(e.value)
  fixed = preprocess.handle_missing(broken, 'impute')
  assert fixed.values[2, 4] == pytest.approx(np.delete(values[:, 4], [2, 3]).mean())


def test_gene_list_that_matches_nothing(real_compendium, tmp_path):
  gene_list = tmp_path / 'genes.tsv'
  gene_list.write_text('symbol\nNOT_A_GENE\nALSO_NOT\n')
  with pytest.raises(data.DataError, match='genes.tsv: none of its 2 IDs'):
    preprocess.restrict_features(real_compendium, preprocess.read_id_list(str(gene_list)),
                                 str(gene_list))


def test_collapse_to_genes_is_mean_of_probes(real_compendium):
  annotation = data.read_probe_annotation(common.data_path('annotation', 'gpl96_probes.tsv'))
  genes = preprocess.collapse_to_genes(real_compendium, annotation)
  probes = annotation['probe'][annotation['symbol'] == 'DDR1']
  columns = np.isin(real_compendium.features, probes)
  assert columns.sum() >= 2
  np.testing.assert_allclose(genes.values[:, list(genes.features).index('DDR1')],
                             real_compendium.values[:, columns].mean(axis=1), rtol=1e-5)
  dgex = pd.read_csv(common.data_path('annotation', 'dgex_landmark_genes.tsv'), sep='\t')
  restricted = preprocess.collapse_to_genes(real_compendium, annotation, list(dgex['symbol']))
  assert restricted.shape[1] > 900
  assert not any('///' in g for g in genes.features)
