"""Preprocessing on the real compendium, plus planted cases for duplicate removal."""

import dataclasses
import os
import re

import numpy as np
import pandas as pd
import pytest

from configs import common
from configs import compendium
from landmark.data import correction as correction_lib
from landmark.data import preprocess
from landmark.data import readers
from landmark.errors import ConfigError


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


def test_near_duplicate_removal_runs_once_per_data_and_settings(real_compendium, real_config,
                                                                  tmp_path, monkeypatch):
  """A rerun on the same values reuses the saved mask (`--mode=evaluate` does not redo the
  slowest step); other values or other settings compute it again."""
  small = real_compendium.take_samples(np.arange(len(real_compendium.samples)) < 60)
  config = real_config.copy_and_resolve_references()
  config.preprocess.dedup = True
  first = preprocess.prepare(small, config, 0, tmp_path)
  assert (tmp_path / preprocess.DEDUP_FILE).exists()
  calls = []
  monkeypatch.setattr(preprocess, 'near_duplicates',
                      lambda *args: calls.append(args) or np.ones(len(args[0]), bool))
  again = preprocess.prepare(small, config, 0, tmp_path)
  assert calls == []
  np.testing.assert_array_equal(again.train.values, first.train.values)
  preprocess.prepare(small, config, 1, tmp_path)                      # another seed
  changed = dataclasses.replace(small, values=small.values * np.float32(1.01))
  preprocess.prepare(changed, config, 0, tmp_path)                    # other values
  assert len(calls) == 2


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
  train, val, test = preprocess.leave_study_out_split(studies, 'c+a', 0.1, seed=0)
  assert set(studies[test]) == {'a', 'c'} and len(test) == 80
  assert set(studies[np.concatenate([train, val])]) == {'b'} and len(val) == 2
  with pytest.raises(ValueError, match="'z'"):
    preprocess.leave_study_out_split(studies, 'a+z', 0.1, seed=0)


def _two_files(real_compendium):
  """3 GSE781 then 3 chowdary samples (each from its own real file), 10 probes."""
  studies = real_compendium.meta['study'].to_numpy()
  rows = np.concatenate([np.flatnonzero(studies == study)[:3] for study in ('GSE781', 'chowdary')])
  return real_compendium.take_samples(rows).take_features(np.arange(10))


def _file_of(study):
  return common.data_path('hgu133a', f'{study}.tsv.gz')


def test_nan_values_error_names_the_file_of_the_cell(real_compendium):
  small = _two_files(real_compendium)
  values = small.values.copy()
  values[4, 7], values[5, 7] = np.nan, np.inf                 # chowdary
  broken = dataclasses.replace(small, values=values)
  with pytest.raises(readers.DataError) as e:
    preprocess.handle_missing(broken)
  assert str(e.value) == (
      f"{_file_of('chowdary')}: 2 NaN/inf values in 2 samples x 1 features, first at sample "
      f"'{small.samples[4]}', feature '{small.features[7]}' (set preprocess.nan_policy='impute' "
      'to fill)')
  values[1, 2] = np.nan                                       # and one in GSE781
  with pytest.raises(readers.DataError, match=re.escape(
      f"{_file_of('GSE781')}: 1 NaN/inf values in 1 samples x 1 features, first at sample "
      f"'{small.samples[1]}', feature '{small.features[2]}'; 2 more in {_file_of('chowdary')}")):
    preprocess.handle_missing(dataclasses.replace(small, values=values))
  fixed = preprocess.handle_missing(broken, 'impute')
  assert fixed.values[4, 7] == pytest.approx(np.delete(values[:, 7], [4, 5]).mean())


def test_negative_values_in_a_linear_study_name_its_file(real_compendium):
  small = _two_files(real_compendium)
  values = small.values.copy()
  values[5, 3] = -4.0                                         # chowdary: MAS5, linear
  with pytest.raises(readers.DataError) as e:
    preprocess.to_log2(dataclasses.replace(small, values=values))
  message = str(e.value)
  assert message.startswith(f"{_file_of('chowdary')}: 1 negative values in 1 samples x 1 "
                            f"features, first at sample '{small.samples[5]}'")
  assert "study 'chowdary'" in message and 'GSE781' not in message and 'np.str_' not in message


@pytest.fixture(scope='module')
def study_with_blank_array(tmp_path_factory):
  """The real GSE781 study plus an all-zero sample (a failed array), as a .tsv.gz file."""
  table = pd.read_csv(_file_of('GSE781'), sep='\t', index_col=0)
  table.insert(5, 'GSM_BLANK', 0.0)
  path = tmp_path_factory.mktemp('blank') / 'GSE781_blank.tsv.gz'
  table.to_csv(path, sep='\t')
  return str(path)


def _config(**preprocess):
  config = common.base_config()
  config.preprocess.update({'dedup': False, **preprocess})
  return config


def test_constant_samples_are_refused(study_with_blank_array, tmp_path):
  compendium = readers.read_any(study_with_blank_array)
  with pytest.raises(readers.DataError) as e:
    preprocess.prepare(compendium, _config(), seed=0, workdir=str(tmp_path))
  assert str(e.value) == (
      f"{study_with_blank_array}: 1 samples have all their values equal (e.g. ['GSM_BLANK'], "
      "the first all 0): they are not profiles (set preprocess.constant_samples='drop' to drop "
      'them)')
  assert not os.listdir(tmp_path)


def test_constant_samples_are_dropped(study_with_blank_array, caplog):
  compendium = readers.read_any(study_with_blank_array)
  splits = preprocess.prepare(compendium, _config(constant_samples='drop'), seed=0)
  sample_ids = np.concatenate([c.samples for _, c in splits.items()])
  assert len(sample_ids) == 17 and 'GSM_BLANK' not in sample_ids
  assert "Dropping 1 samples whose values are all equal, e.g. ['GSM_BLANK']" in caplog.text


@pytest.mark.parametrize('field, value, where', [
    ('log2', 'yes', 'log2'),
    ('nan_policy', 'drop', 'nan_policy'),
    ('constant_samples', 'keep', 'constant_samples'),
    ('split', 'kfold', 'split'),
    ('split', 'leave_study_out', 'holdout_study'),
    ('study_correction', 'ruv', 'study_correction'),
    ('val_fraction', 1.0, 'val_fraction'),
    ('test_fraction', -0.1, 'test_fraction'),
    ('test_fraction', 0.9, 'test_fraction'),
    ('log2_floor', 0.0, 'log2_floor'),
    ('dedup_clusters', 0, 'dedup_clusters'),
])
def test_config_values_that_cannot_work(real_compendium, tmp_path, field, value, where):
  config = _config(dedup=True)
  config.preprocess[field] = value
  with pytest.raises(ConfigError) as e:
    preprocess.prepare(real_compendium, config, seed=0, workdir=str(tmp_path))
  assert e.value.where == f'config.preprocess.{where}' and isinstance(e.value, ValueError)
  assert '\n' not in str(e.value)
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('split, holdout', [('random', ''), ('leave_study_out', 'borovecki'),
                                            ('leave_study_out', 'GSE3585')])
def test_failed_checks_leave_no_quantile_reference(real_compendium, tmp_path, split, holdout):
  """A study too small for 'center' correction (in any split), or a holdout study that is
  not in the data, fails before `quantile_reference.npy` is written."""
  studies = real_compendium.meta['study'].to_numpy()
  rows = np.concatenate([np.flatnonzero(studies == 'GSE781'),
                         np.flatnonzero(studies == 'borovecki')[:1]])
  config = _config(study_correction='center', split=split, holdout_study=holdout)
  with pytest.raises(ConfigError) as e:
    preprocess.prepare(real_compendium.take_samples(rows), config, seed=0, workdir=str(tmp_path))
  if holdout == 'GSE3585':
    assert str(e.value) == ("config.preprocess.holdout_study: study 'GSE3585' is not one of "
                            "['GSE781', 'borovecki']")
  else:
    assert e.value.where == 'config.preprocess.study_correction'
    assert re.search(r"'center' needs at least 2 samples per study, but study 'borovecki' "
                     rf"\({re.escape(_file_of('borovecki'))}\) has 1 in the (train|val|test) split",
                     str(e.value))
  assert not os.listdir(tmp_path)


def test_gene_list_that_matches_nothing(real_compendium, tmp_path):
  gene_list = tmp_path / 'genes.tsv'
  gene_list.write_text('symbol\nNOT_A_GENE\nALSO_NOT\n')
  with pytest.raises(readers.DataError, match='genes.tsv: none of its 2 IDs'):
    preprocess.restrict_features(real_compendium, preprocess.read_id_list(str(gene_list)),
                                 str(gene_list))


def test_collapse_to_genes_is_mean_of_probes(real_compendium):
  annotation = readers.read_probe_annotation(common.data_path('annotation', 'gpl96_probes.tsv'))
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


LINEAR_STUDIES = {'GSE781', 'chowdary', 'nakayama', 'borovecki', 'GSE3325'}   # MAS5
BELOW_ZERO_STUDIES = {'GSE1145', 'GSE14924', 'GSE20164', 'GSE38666', 'GSE4183'}   # log2


def _study_rows(compendium):
  studies = compendium.meta['study'].to_numpy()
  return {study: studies == study for study in np.unique(studies)}


def test_log2_of_exactly_the_linear_studies_of_17(real_compendium17):
  raw = real_compendium17
  logged = preprocess.to_log2(raw)
  rows = _study_rows(raw)
  changed = {study for study, r in rows.items()
             if not np.array_equal(logged.values[r], raw.values[r])}
  assert changed == LINEAR_STUDIES
  for study in LINEAR_STUDIES:
    np.testing.assert_array_equal(logged.values[rows[study]],
                                  np.log2(np.maximum(raw.values[rows[study]], 1.0)))
  # None is taken for linear twice: all are log2 now, and a second pass changes nothing.
  assert logged.values.max() < 20
  np.testing.assert_array_equal(preprocess.to_log2(logged).values, logged.values)
  # RMA / GCRMA-like values below zero are log2 already: kept as they are, not floored.
  below_zero = {study for study, r in rows.items() if (raw.values[r] < 0).any()}
  assert below_zero == BELOW_ZERO_STUDIES
  assert (logged.values < 0).sum() == (raw.values < 0).sum() == 13416


def test_no_near_duplicates_among_the_17_studies(real_compendium17):
  """The closest two profiles are 17.8 log2 units apart (dedup_threshold is 1): duplicate
  removal keeps all 580 under any clustering, so the tests below switch it off."""
  x = preprocess.drop_control_probes(preprocess.to_log2(real_compendium17)).values
  x = x.astype(np.float64)
  squared = (x**2).sum(axis=1)
  distance = np.sqrt(np.maximum(squared[:, None] + squared[None] - 2 * x @ x.T, 0))
  np.fill_diagonal(distance, np.inf)
  assert 17 < distance.min() < 18


def _compendium_config(arg=''):
  config = compendium.get_config(arg)
  config.preprocess.dedup = False     # test_no_near_duplicates_among_the_17_studies
  return config


def test_joint_quantile_normalisation_of_17_studies(real_compendium17, tmp_path):
  config = _compendium_config()
  config.preprocess.study_correction = 'none'
  splits = preprocess.prepare(real_compendium17, config, seed=0, workdir=str(tmp_path))
  assert {name: c.shape for name, c in splits.items()} == {
      'train': (464, 22215), 'val': (58, 22215), 'test': (58, 22215)}
  assert len(set(splits.train.meta['study'])) == 17
  reference = np.load(tmp_path / 'quantile_reference.npy')
  for _, split in splits.items():   # every sample of every study: the same sorted values
    np.testing.assert_array_equal(np.sort(split.values, axis=1),
                                  np.broadcast_to(reference, split.shape))
  # A study's values below zero are the lowest of their profile after normalisation too.
  raw = preprocess.drop_control_probes(real_compendium17).select_features(splits.train.features)
  raw_rows = {s: i for i, s in enumerate(raw.samples)}
  for _, split in splits.items():
    for i in np.flatnonzero(split.meta['study'].isin(BELOW_ZERO_STUDIES).to_numpy()):
      below = raw.values[raw_rows[split.samples[i]]] < 0
      if below.any():
        assert split.values[i, below].max() <= split.values[i, ~below].min()


def _folds(studies, fold_seed=0, seed=0):
  return [preprocess.study_kfold_split(studies, 5, fold, 0.1, seed, fold_seed)
          for fold in range(5)]


def test_study_kfold_puts_every_study_in_one_test_fold(real_compendium17):
  studies = real_compendium17.meta['study'].to_numpy()
  folds = _folds(studies)
  tests = [set(studies[test]) for _, _, test in folds]
  assert all(tests) and sum(map(len, tests)) == 17
  assert set().union(*tests) == set(common.COMPENDIUM_STUDIES)
  sizes = [len(test) for _, _, test in folds]
  assert sum(sizes) == 580 and max(sizes) - min(sizes) <= 105   # at most the largest study
  for (train, val, test), test_studies in zip(folds, tests):
    assert len(train) + len(val) + len(test) == 580
    assert not set(studies[np.concatenate([train, val])]) & test_studies
    assert len(val) == round(0.1 * (580 - len(test)))


def test_study_kfold_folds_follow_fold_seed_only(real_compendium17):
  studies = real_compendium17.meta['study'].to_numpy()
  folds = preprocess.study_folds(studies, 5, fold_seed=0)
  assert preprocess.study_folds(studies[::-1], 5, fold_seed=0) == folds   # not the row order
  assert preprocess.study_folds(studies, 5, fold_seed=1) != folds
  for (train, val, test), (train1, val1, test1) in zip(_folds(studies), _folds(studies, seed=1)):
    np.testing.assert_array_equal(test, test1)     # the AE seed moves validation rows only
    np.testing.assert_array_equal(np.union1d(train, val), np.union1d(train1, val1))
    assert not np.array_equal(val, val1)


def test_study_kfold_fits_on_the_training_studies_alone(real_compendium17, tmp_path):
  splits = preprocess.prepare(real_compendium17, _compendium_config('folds=5,fold=1'), seed=0,
                              workdir=str(tmp_path))
  test_studies = set(splits.test.meta['study'])
  assert test_studies == {s for s, fold in preprocess.study_folds(
      real_compendium17.meta['study'].to_numpy(), 5, 0).items() if fold == 1}
  assert not test_studies & (set(splits.train.meta['study']) | set(splits.val.meta['study']))
  # Refit both steps on the training split's raw profiles (training studies only).
  logged = preprocess.drop_control_probes(preprocess.to_log2(real_compendium17))
  train = logged.take_samples(np.isin(logged.samples, splits.train.samples))
  normalizer = preprocess.QuantileNormalizer().fit(train.values)
  np.testing.assert_array_equal(np.load(tmp_path / 'quantile_reference.npy'), normalizer.reference)
  assert not np.array_equal(preprocess.QuantileNormalizer().fit(logged.values).reference,
                            normalizer.reference)   # the test studies would have moved it
  correction = correction_lib.StudyCorrection('center').fit(
      normalizer.transform(train.values), train.meta['study'].to_numpy())
  saved = correction_lib.StudyCorrection.load(tmp_path / 'study_correction.npz')
  assert set(saved.studies) == set(splits.train.meta['study'])
  for field in ('studies', 'grand_mean', 'pooled_sd', 'offset', 'scale'):
    np.testing.assert_array_equal(getattr(saved, field), getattr(correction, field))


@pytest.mark.parametrize('folds, fold, where, problem', [
    (1, 0, 'folds', 'must be >= 2, got 1'),
    (5, 5, 'fold', 'must be in [0, folds) = [0, 5), got 5'),
    (5, -1, 'fold', 'must be in [0, folds) = [0, 5), got -1'),
    (6, 0, 'folds', "6 folds need at least 6 studies, but the data hold 5: ['GSE781', "
                    "'bladderbatch', 'borovecki', 'chowdary', 'nakayama']"),
])
def test_study_kfold_config_that_cannot_work(real_compendium, tmp_path, folds, fold, where,
                                             problem):
  config = _config(split='study_kfold', folds=folds, fold=fold)
  with pytest.raises(ConfigError) as e:
    preprocess.prepare(real_compendium, config, seed=0, workdir=str(tmp_path))
  assert str(e.value) == f'config.preprocess.{where}: {problem}'
  assert not os.listdir(tmp_path)
