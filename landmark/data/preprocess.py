"""From raw studies to train/validation/test splits (method.md §1).

missing values -> constant samples -> log2 of linear-scale studies -> feature selection ->
near-duplicate removal -> split -> joint quantile normalisation and optional study
correction, both fitted on the training split.
"""

import dataclasses
import hashlib
import json
import os
from typing import Sequence

from absl import logging
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from sklearn.cluster import MiniBatchKMeans

from landmark import fileio
from landmark.data import correction as correction_lib
from landmark.data import readers
from landmark.errors import ConfigError
from landmark.errors import DataError

LOG2_MODES = ('auto', 'always', 'never')
NAN_POLICIES = ('error', 'impute')
CONSTANT_SAMPLE_POLICIES = ('error', 'drop')
SPLITS = ('random', 'leave_study_out', 'study_kfold')


@dataclasses.dataclass
class Splits:
  train: readers.Compendium
  val: readers.Compendium
  test: readers.Compendium

  def items(self) -> tuple[tuple[str, readers.Compendium], ...]:
    """(name, split) pairs: train, val, test."""
    return (('train', self.train), ('val', self.val), ('test', self.test))


def _check_choice(field, value, choices):
  if value not in choices:
    raise ConfigError(f'config.preprocess.{field}',
                      f'must be one of {", ".join(map(repr, choices))}, got {value!r}')


def check_config(pre: ml_collections.ConfigDict) -> None:
  """Fails with a ConfigError on a `config.preprocess` value that cannot work.

  Needs no data, so a run can call it before reading or writing anything.
  """
  _check_choice('log2', pre.log2, LOG2_MODES)
  _check_choice('nan_policy', pre.nan_policy, NAN_POLICIES)
  _check_choice('constant_samples', pre.constant_samples, CONSTANT_SAMPLE_POLICIES)
  _check_choice('split', pre.split, SPLITS)
  _check_choice('study_correction', pre.study_correction, correction_lib.KINDS)
  for field in ('val_fraction', 'test_fraction'):
    if not 0 <= pre[field] < 1:
      raise ConfigError(f'config.preprocess.{field}', f'must be in [0, 1), got {pre[field]!r}')
  if pre.split == 'random' and pre.val_fraction + pre.test_fraction >= 1:
    raise ConfigError('config.preprocess.test_fraction', f'{pre.test_fraction} + val_fraction '
                      f'{pre.val_fraction} leaves no training samples')
  if pre.split == 'leave_study_out' and not pre.holdout_study:
    raise ConfigError('config.preprocess.holdout_study',
                      "split='leave_study_out' needs the study to hold out")
  if pre.split == 'study_kfold':   # folds <= the number of studies is checked at split time
    if pre.folds < 2:
      raise ConfigError('config.preprocess.folds', f'must be >= 2, got {pre.folds!r}')
    if not 0 <= pre.fold < pre.folds:
      raise ConfigError('config.preprocess.fold',
                        f'must be in [0, folds) = [0, {pre.folds}), got {pre.fold!r}')
  if pre.log2 != 'never' and not pre.log2_floor > 0:
    raise ConfigError('config.preprocess.log2_floor', f'must be > 0, got {pre.log2_floor!r}')
  if pre.dedup and pre.dedup_clusters < 1:
    raise ConfigError('config.preprocess.dedup_clusters',
                      f'must be >= 1, got {pre.dedup_clusters!r}')


def _cell_error(compendium, bad, what, hint=''):
  """A DataError about the cells marked in `bad`, naming the file that holds the first."""
  rows, cols = np.nonzero(bad)
  files = readers.sample_files(compendium)
  first = files[rows[0]]
  in_file = bad & (files == first)[:, None]
  others = sorted(set(files[rows]) - {first})
  also = f'; {int(bad.sum() - in_file.sum())} more in {", ".join(others)}' if others else ''
  return DataError(first, f'{int(in_file.sum())} {what} in {int(in_file.any(axis=1).sum())} '
                   f'samples x {int(in_file.any(axis=0).sum())} features, first at sample '
                   f'{str(compendium.samples[rows[0]])!r}, feature '
                   f'{str(compendium.features[cols[0]])!r}{also}{hint}')


def to_log2(compendium: readers.Compendium, mode: str = 'auto', linear_threshold: float = 100.0,
            floor: float = 1.0) -> readers.Compendium:
  """log2 of each study that is on a linear scale (values below `floor` are raised to it).

  mode 'auto' treats a study as linear when its maximum exceeds `linear_threshold`
  (log2 microarray values stay below ~20); 'always' / 'never' force the choice.
  """
  _check_choice('log2', mode, LOG2_MODES)
  values = compendium.values.copy()
  for study in compendium.meta['study'].unique():
    rows = (compendium.meta['study'] == study).to_numpy()
    linear = mode == 'always' or (mode == 'auto' and np.nanmax(values[rows]) > linear_threshold)
    if linear:
      if np.nanmin(values[rows]) < 0:
        raise _cell_error(compendium, (values < 0) & rows[:, None], 'negative values',
                          f' in study {str(study)!r}, which was taken for linear scale: set '
                          'preprocess.log2')
      values[rows] = np.log2(np.maximum(values[rows], floor))
    logging.info('Study %s: %s scale', study, 'linear -> log2' if linear else 'log2 already')
  return dataclasses.replace(compendium, values=values)


def handle_missing(compendium: readers.Compendium,
                   policy: str = 'error') -> readers.Compendium:
  """Fails on NaN/inf values (saying how many and where) or imputes per-feature means."""
  _check_choice('nan_policy', policy, NAN_POLICIES)
  bad = ~np.isfinite(compendium.values)
  if not bad.any():
    return compendium
  if policy == 'error':
    raise _cell_error(compendium, bad, 'NaN/inf values',
                      " (set preprocess.nan_policy='impute' to fill)")
  values = np.where(bad, np.nan, compendium.values)
  means = np.nanmean(values, axis=0)
  empty = np.isnan(means)
  if empty.any():
    raise DataError(compendium.source, f'{int(empty.sum())} features have no finite value to '
                    f'impute from, e.g. {readers.plain_ids(compendium.features[empty])}')
  logging.warning('Imputing %d NaN/inf values in %d samples', bad.sum(), bad.any(axis=1).sum())
  return dataclasses.replace(compendium, values=np.where(bad, means, values))


def handle_constant_samples(compendium: readers.Compendium,
                            policy: str = 'error') -> readers.Compendium:
  """Refuses samples whose values are all equal (e.g. all 0), or drops them ('drop').

  Such a sample is a failed or empty array, not a profile, yet quantile normalisation
  ranks its ties by position and turns it into a plausible-looking one.
  """
  _check_choice('constant_samples', policy, CONSTANT_SAMPLE_POLICIES)
  values = compendium.values
  constant = values.min(axis=1) == values.max(axis=1)
  if not constant.any():
    return compendium
  if constant.all():
    raise DataError(compendium.source, f'all {len(constant)} samples have all their values equal')
  if policy == 'drop':
    logging.warning('Dropping %d samples whose values are all equal, e.g. %s', constant.sum(),
                    readers.plain_ids(compendium.samples[constant], 10))
    return compendium.take_samples(~constant)
  files = readers.sample_files(compendium)
  first = files[np.argmax(constant)]
  in_file = constant & (files == first)
  others = sorted(set(files[constant]) - {first})
  also = f'; {int(constant.sum() - in_file.sum())} more in {", ".join(others)}' if others else ''
  raise DataError(first, f'{int(in_file.sum())} samples have all their values equal (e.g. '
                  f'{readers.plain_ids(compendium.samples[in_file])}, the first all '
                  f'{values[np.argmax(constant), 0]:g}){also}: they are not profiles (set '
                  "preprocess.constant_samples='drop' to drop them)")


def read_id_list(path: str | os.PathLike) -> ArrayLike:
  """IDs from a one-column list or a TSV with a `probe(s)`/`symbol` column."""
  readers._check_file(path)
  table = pd.read_csv(path, sep='\t', dtype=str)
  for column in ('probes', 'probe', 'symbol'):
    if column in table:
      ids = table[column].dropna().str.split(',').explode().str.strip()
      return ids[ids != ''].unique()
  return np.concatenate([[table.columns[0]], table.iloc[:, 0].dropna().to_numpy()])


def restrict_features(compendium: readers.Compendium, ids: ArrayLike,
                      source: str | os.PathLike) -> readers.Compendium:
  """Keeps the features listed in `ids` (order of the compendium); fails if none match."""
  keep = np.isin(compendium.features, np.asarray(ids, dtype=str))
  if not keep.any():
    raise DataError(source, f'none of its {len(ids)} IDs (e.g. {readers.plain_ids(ids)}) '
                    f'matches a feature of {compendium.source}')
  logging.info('Keeping %d of %d features listed in %s', keep.sum(), len(keep), source)
  return compendium.take_features(keep)


def drop_control_probes(compendium: readers.Compendium) -> readers.Compendium:
  """Drops Affymetrix AFFX-* hybridisation/housekeeping control probes."""
  return compendium.take_features(~np.char.startswith(compendium.features, 'AFFX'))


def near_duplicates(values: np.ndarray, n_clusters: int = 100, threshold: float = 1.0,
                    seed: int = 0) -> np.ndarray:
  """Boolean mask of profiles to keep, D-GEX style (kmeans.py, nodup_idx.py).

  MiniBatchKMeans groups the profiles; inside each cluster a profile is dropped when its
  Euclidean distance to an earlier kept profile is below `threshold`.
  """
  n_clusters = min(n_clusters, len(values))
  clusters = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3).fit_predict(values)
  keep = np.zeros(len(values), bool)
  for cluster in np.unique(clusters):
    kept = []
    for i in np.flatnonzero(clusters == cluster):
      if not kept or np.min(np.linalg.norm(values[kept] - values[i], axis=1)) >= threshold:
        kept.append(i)
    keep[kept] = True
  return keep


def random_split(n: int, val_fraction: float, test_fraction: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Index arrays (train, val, test) of a seeded random split."""
  order = np.random.default_rng(seed).permutation(n)
  n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
  return (np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]),
          np.sort(order[:n_test]))


def _hold_out(test, val_fraction, seed):
  """Index arrays (train, val, test): the rows of the mask `test` are the test set, and a
  seeded `val_fraction` of the others (so of the training studies) the validation set."""
  rest = np.random.default_rng(seed).permutation(np.flatnonzero(~test))
  n_val = int(round(len(rest) * val_fraction))
  return np.sort(rest[n_val:]), np.sort(rest[:n_val]), np.flatnonzero(test)


def leave_study_out_split(studies: ArrayLike, holdout: str, val_fraction: float,
                          seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Index arrays (train, val, test): the held-out study is the test set; several studies
  are held out together when `holdout` joins their names with '+' ('GSE781+chowdary')."""
  studies = np.asarray(studies, dtype=str)
  held = holdout.split('+')
  for study in held:
    if study not in set(studies):
      raise ConfigError('config.preprocess.holdout_study', f'study {study!r} is not one of '
                        f'{sorted(set(studies.tolist()))}')
  return _hold_out(np.isin(studies, held), val_fraction, seed)


def study_folds(studies: np.ndarray, folds: int, fold_seed: int) -> dict[str, int]:
  """Each study's test fold (0 .. folds - 1) for a k-fold split grouped by study.

  The studies, in an order drawn from `fold_seed`, go one by one to the fold with the
  fewest profiles so far (the first such fold on ties): every study is in exactly one
  fold, every fold holds a study, and two folds differ by at most the largest study.
  """
  names, counts = np.unique(np.asarray(studies, dtype=str), return_counts=True)
  if folds > len(names):
    raise ConfigError('config.preprocess.folds', f'{folds} folds need at least {folds} '
                      f'studies, but the data hold {len(names)}: {names.tolist()}')
  sizes = np.zeros(folds, np.int64)
  assignment = {}
  for i in np.random.default_rng(fold_seed).permutation(len(names)):
    fold = int(np.argmin(sizes))
    assignment[str(names[i])] = fold
    sizes[fold] += counts[i]
  return assignment


def study_kfold_split(studies: np.ndarray, folds: int, fold: int, val_fraction: float,
                      seed: int, fold_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Index arrays (train, val, test): the studies of test fold `fold` (`study_folds`) are
  the test set; as in leave_study_out_split, validation rows come from the other studies.

  The folds are drawn from `fold_seed` and the validation rows from `seed`, so runs that
  differ only in their seed share their folds.
  """
  studies = np.asarray(studies, dtype=str)
  assignment = study_folds(studies, folds, fold_seed)
  return _hold_out(pd.Series(studies).map(assignment).to_numpy() == fold, val_fraction, seed)


class QuantileNormalizer:
  """Joint quantile normalisation to reference quantiles fitted on a training set.

  Reference = mean over samples of each sample's sorted values. A sample is mapped by
  rank (ordinal ranks, as D-GEX did): its r-th smallest value becomes reference[r]. A
  sample with a different number of features (a new platform) is mapped by rank position,
  interpolating the reference.
  """

  def __init__(self, reference=None):
    self.reference = reference

  def fit(self, values: ArrayLike) -> 'QuantileNormalizer':
    """Fits the reference quantiles on `values` (samples x features); returns itself."""
    self.reference = np.sort(values, axis=1).mean(axis=0, dtype=np.float64).astype(np.float32)
    return self

  def transform(self, values: np.ndarray) -> np.ndarray:
    """`values` (samples x features) mapped by rank onto the reference, as float32."""
    n = values.shape[1]
    if n == len(self.reference):
      targets = self.reference
    else:
      targets = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(self.reference)),
                          self.reference)
    ranks = np.argsort(np.argsort(values, axis=1, kind='stable'), axis=1, kind='stable')
    return targets[ranks].astype(np.float32)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the reference to `path` (.npy)."""
    with fileio.atomic_path(path) as tmp:
      np.save(tmp, self.reference)

  @classmethod
  def load(cls, path: str | os.PathLike) -> 'QuantileNormalizer':
    """The normalizer of a reference `save` wrote."""
    return cls(np.load(path))


def split_compendium(compendium: readers.Compendium, config: ml_collections.ConfigDict,
                     seed: int) -> Splits:
  """The (train, val, test) Splits of a compendium as `config.split` says."""
  _check_choice('split', config.split, SPLITS)
  studies = compendium.meta['study'].to_numpy()
  if config.split == 'random':
    index = random_split(compendium.shape[0], config.val_fraction, config.test_fraction, seed)
  elif config.split == 'leave_study_out':
    index = leave_study_out_split(studies, config.holdout_study, config.val_fraction, seed)
  else:
    index = study_kfold_split(studies, config.folds, config.fold, config.val_fraction, seed,
                              config.fold_seed)
  if not len(index[0]):
    raise ConfigError('config.preprocess.split', f'the {config.split!r} split of '
                      f'{compendium.shape[0]} samples leaves none for training')
  return Splits(*(compendium.take_samples(i) for i in index))


def check_study_sizes(splits: Splits, kind: str) -> None:
  """Fails with a ConfigError when a study is too small for the study correction `kind`.

  A training study's parameters are fitted on its training samples; a study absent from
  the training split (a held-out one) is corrected from its own samples in each split.
  """
  need = correction_lib.MIN_SAMPLES[kind]
  train_studies = set(splits.train.meta['study'].astype(str))
  for name, split in splits.items():
    studies = split.meta['study'].astype(str).to_numpy()
    files = readers.sample_files(split)
    for study, n in zip(*np.unique(studies, return_counts=True)):
      if n < need and (name == 'train' or study not in train_studies):
        raise ConfigError('config.preprocess.study_correction',
                          f'{kind!r} needs at least {need} samples per study, but study '
                          f'{str(study)!r} ({files[studies == study][0]}) has {n} in the {name} '
                          "split: set it to 'none' or leave the study out of config.data.studies")


DEDUP_FILE = 'near_duplicates.json'   # the kept-profile mask, with what it was computed on


def _near_duplicates_once(compendium, pre, seed, workdir):
  """`near_duplicates`' mask, reused from `<workdir>/DEDUP_FILE` when that was computed on
  these very values (SHA-256), samples and settings (a rerun, `--mode=evaluate`): the
  slowest step of preparing a large compendium is then done once. Returns (mask, the record
  to save once the preparation succeeds, or None when it was reused)."""
  key = {'values_sha256': hashlib.sha256(np.ascontiguousarray(compendium.values)).hexdigest(),
         'samples': [str(sample) for sample in compendium.samples],
         'clusters': pre.dedup_clusters, 'threshold': pre.dedup_threshold, 'seed': seed}
  path = workdir and os.path.join(workdir, DEDUP_FILE)
  if path and os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved.get('key') == key:
      logging.info('Near-duplicate removal: reusing the mask of %s', path)
      return np.asarray(saved['keep'], bool), None
  keep = near_duplicates(compendium.values, pre.dedup_clusters, pre.dedup_threshold, seed)
  return keep, {'key': key, 'keep': keep.tolist()}


def prepare(compendium: readers.Compendium, config: ml_collections.ConfigDict, seed: int,
            workdir: str | os.PathLike | None = None) -> Splits:
  """Runs the preprocessing of `config.preprocess` and returns normalised Splits.

  The quantile reference and the study correction are fitted on the training split only
  and saved to the workdir (`quantile_reference.npy`, `study_correction.npz`) so new
  samples, studies and platforms can be mapped later. Every check of the config and the
  data comes first: a run that cannot work leaves no file behind.
  """
  pre = config.preprocess
  check_config(pre)
  compendium = handle_constant_samples(handle_missing(compendium, pre.nan_policy),
                                       pre.constant_samples)
  compendium = to_log2(compendium, pre.log2, pre.linear_threshold, pre.log2_floor)
  if pre.drop_control_probes:
    compendium = drop_control_probes(compendium)
  if pre.feature_list:
    compendium = restrict_features(compendium, read_id_list(pre.feature_list), pre.feature_list)
  dedup_record = None
  if pre.dedup:
    keep, dedup_record = _near_duplicates_once(compendium, pre, seed, workdir)
    logging.info('Near-duplicate removal kept %d of %d profiles', keep.sum(), len(keep))
    compendium = compendium.take_samples(keep)
  splits = split_compendium(compendium, pre, seed)
  check_study_sizes(splits, pre.study_correction)
  normalizer = correction = None
  if pre.quantile_normalize:
    normalizer = QuantileNormalizer().fit(splits.train.values)
    splits = Splits(*(dataclasses.replace(c, values=normalizer.transform(c.values))
                      for _, c in splits.items()))
  if pre.study_correction != 'none':
    correction = correction_lib.StudyCorrection(pre.study_correction).fit(
        splits.train.values, splits.train.meta['study'].to_numpy())
    splits = Splits(*(dataclasses.replace(c, values=correction.transform(
        c.values, c.meta['study'].to_numpy())) for _, c in splits.items()))
  if workdir and normalizer is not None:
    normalizer.save(f'{workdir}/quantile_reference.npy')
  if workdir and correction is not None:
    correction.save(f'{workdir}/study_correction.npz')
  if workdir and dedup_record is not None:
    fileio.write_text(os.path.join(workdir, DEDUP_FILE), json.dumps(dedup_record))
  logging.info('Splits: %s', {name: c.shape for name, c in splits.items()})
  return splits


@dataclasses.dataclass
class GeneCollapse:
  """Probe -> gene values of one feature list: a gene's value is the mean of its probes
  (method.md §1). Applies to any chunk of rows with those features (a stream's included)."""

  genes: np.ndarray     # the output's gene symbols, in order
  columns: np.ndarray   # input columns used, grouped by gene (in `genes` order)
  starts: np.ndarray    # where each gene's group begins in `columns`
  counts: np.ndarray    # probes per gene

  def __call__(self, values: np.ndarray) -> np.ndarray:
    """(rows, features) -> (rows, genes) float32 gene means."""
    sums = np.add.reduceat(np.asarray(values, np.float64)[:, self.columns], self.starts, axis=1)
    return (sums / self.counts).astype(np.float32)


def gene_collapse(features: Sequence[str] | np.ndarray, annotation: pd.DataFrame,
                  genes: Sequence[str] | np.ndarray | None = None,
                  source: str = 'data') -> GeneCollapse:
  """The `GeneCollapse` of `features` under `annotation` (`data.read_probe_annotation`).

  Probes annotated to several genes or none are left out. `genes` optionally restricts and
  orders the output (e.g. D-GEX's 10,463 genes); genes without a probe in the data are
  dropped with a log line. Without `genes`, the genes come sorted by symbol.
  """
  symbols = annotation.set_index('probe')['symbol'].reindex(np.asarray(features)).fillna('')
  usable = ((symbols != '') & ~symbols.str.contains(readers.GENE_SEPARATOR)).to_numpy()
  if not usable.any():
    raise DataError(source, 'no feature is a probe of the annotation')
  by_gene = pd.Series(np.flatnonzero(usable), index=symbols.to_numpy()[usable])
  order = sorted(set(by_gene.index))
  if genes is not None:
    present = set(order)
    order = [g for g in dict.fromkeys(genes) if g in present]
    if not order:
      raise DataError(source, 'none of the requested genes has a probe')
    if len(order) < len(set(genes)):
      logging.info('%d of %d requested genes have no probe in the data',
                   len(set(genes)) - len(order), len(set(genes)))
  groups = by_gene.groupby(level=0, sort=False).agg(list)[order]
  counts = groups.map(len).to_numpy()
  return GeneCollapse(np.asarray(order, str), np.concatenate(groups.to_numpy()).astype(int),
                      np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int), counts)


def collapse_to_genes(compendium: readers.Compendium, annotation: pd.DataFrame,
                      genes: Sequence[str] | np.ndarray | None = None) -> readers.Compendium:
  """The compendium's probes collapsed to genes (`gene_collapse`)."""
  collapse = gene_collapse(compendium.features, annotation, genes, compendium.source)
  return dataclasses.replace(compendium, values=collapse(compendium.values),
                             features=collapse.genes)
