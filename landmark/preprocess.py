"""From raw studies to train/validation/test splits (method.md §1).

log2 of linear-scale studies -> missing values -> feature selection -> near-duplicate
removal -> split -> joint quantile normalisation and optional study correction, both
fitted on the training split.
"""

import dataclasses

from absl import logging
import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans

from landmark import correction as correction_lib
from landmark import data as data_lib
from landmark import fileio


@dataclasses.dataclass
class Splits:
  train: data_lib.Compendium
  val: data_lib.Compendium
  test: data_lib.Compendium

  def items(self):
    return (('train', self.train), ('val', self.val), ('test', self.test))


def to_log2(compendium, mode='auto', linear_threshold=100.0, floor=1.0):
  """log2 of each study that is on a linear scale (values below `floor` are raised to it).

  mode 'auto' treats a study as linear when its maximum exceeds `linear_threshold`
  (log2 microarray values stay below ~20); 'always' / 'never' force the choice.
  """
  if mode not in ('auto', 'always', 'never'):
    raise ValueError(f"preprocess.log2 must be 'auto', 'always' or 'never', got {mode!r}")
  values = compendium.values.copy()
  for study in compendium.meta['study'].unique():
    rows = (compendium.meta['study'] == study).to_numpy()
    linear = mode == 'always' or (mode == 'auto' and np.nanmax(values[rows]) > linear_threshold)
    if linear:
      if np.nanmin(values[rows]) < 0:
        raise data_lib.DataError(compendium.source, f'study {study!r} has negative values '
                                 'but was taken for linear scale: set preprocess.log2')
      values[rows] = np.log2(np.maximum(values[rows], floor))
    logging.info('Study %s: %s scale', study, 'linear -> log2' if linear else 'log2 already')
  return dataclasses.replace(compendium, values=values)


def handle_missing(compendium, policy='error'):
  """Fails on NaN/inf values (saying how many and where) or imputes per-feature means."""
  bad = ~np.isfinite(compendium.values)
  if not bad.any():
    return compendium
  rows, cols = np.nonzero(bad)
  where = (f'{int(bad.sum())} NaN/inf values in {len(np.unique(rows))} samples x '
           f'{len(np.unique(cols))} features, first at sample {compendium.samples[rows[0]]!r}, '
           f'feature {compendium.features[cols[0]]!r}')
  if policy == 'error':
    raise data_lib.DataError(compendium.source, where + " (set preprocess.nan_policy='impute' to fill)")
  if policy != 'impute':
    raise ValueError(f"preprocess.nan_policy must be 'error' or 'impute', got {policy!r}")
  values = np.where(bad, np.nan, compendium.values)
  means = np.nanmean(values, axis=0)
  if np.isnan(means).any():
    raise data_lib.DataError(compendium.source, f'{int(np.isnan(means).sum())} features have no '
                             'finite value to impute from')
  logging.warning('Imputing %s', where)
  return dataclasses.replace(compendium, values=np.where(bad, means, values))


def read_id_list(path):
  """IDs from a one-column list or a TSV with a `probe(s)`/`symbol` column."""
  data_lib._check_file(path)
  table = pd.read_csv(path, sep='\t', dtype=str)
  for column in ('probes', 'probe', 'symbol'):
    if column in table:
      ids = table[column].dropna().str.split(',').explode().str.strip()
      return ids[ids != ''].unique()
  return np.concatenate([[table.columns[0]], table.iloc[:, 0].dropna().to_numpy()])


def restrict_features(compendium, ids, source):
  """Keeps the features listed in `ids` (order of the compendium); fails if none match."""
  keep = np.isin(compendium.features, np.asarray(ids, dtype=str))
  if not keep.any():
    raise data_lib.DataError(source, f'none of its {len(ids)} IDs (e.g. {list(ids[:3])}) matches '
                             f'a feature of {compendium.source}')
  logging.info('Keeping %d of %d features listed in %s', keep.sum(), len(keep), source)
  return compendium.take_features(keep)


def drop_control_probes(compendium):
  """Drops Affymetrix AFFX-* hybridisation/housekeeping control probes."""
  return compendium.take_features(~np.char.startswith(compendium.features, 'AFFX'))


def near_duplicates(values, n_clusters=100, threshold=1.0, seed=0):
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


def random_split(n, val_fraction, test_fraction, seed):
  """Index arrays (train, val, test) of a seeded random split."""
  order = np.random.default_rng(seed).permutation(n)
  n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
  return np.sort(order[n_test + n_val:]), np.sort(order[n_test:n_test + n_val]), np.sort(order[:n_test])


def leave_study_out_split(studies, holdout, val_fraction, seed):
  """Index arrays (train, val, test): the held-out study is the test set."""
  studies = np.asarray(studies)
  if holdout not in set(studies):
    raise ValueError(f'holdout study {holdout!r} is not one of {sorted(set(studies))}')
  test = np.flatnonzero(studies == holdout)
  rest = np.random.default_rng(seed).permutation(np.flatnonzero(studies != holdout))
  n_val = int(round(len(rest) * val_fraction))
  return np.sort(rest[n_val:]), np.sort(rest[:n_val]), test


class QuantileNormalizer:
  """Joint quantile normalisation to reference quantiles fitted on a training set.

  Reference = mean over samples of each sample's sorted values. A sample is mapped by
  rank (ordinal ranks, as D-GEX did): its r-th smallest value becomes reference[r]. A
  sample with a different number of features (a new platform) is mapped by rank position,
  interpolating the reference.
  """

  def __init__(self, reference=None):
    self.reference = reference

  def fit(self, values):
    self.reference = np.sort(values, axis=1).mean(axis=0, dtype=np.float64).astype(np.float32)
    return self

  def transform(self, values):
    n = values.shape[1]
    if n == len(self.reference):
      targets = self.reference
    else:
      targets = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(self.reference)), self.reference)
    ranks = np.argsort(np.argsort(values, axis=1, kind='stable'), axis=1, kind='stable')
    return targets[ranks].astype(np.float32)

  def save(self, path):
    with fileio.atomic_path(path) as tmp:
      np.save(tmp, self.reference)

  @classmethod
  def load(cls, path):
    return cls(np.load(path))


def split_compendium(compendium, config, seed):
  """The (train, val, test) Splits of a compendium as `config.split` says."""
  if config.split == 'random':
    index = random_split(compendium.shape[0], config.val_fraction, config.test_fraction, seed)
  elif config.split == 'leave_study_out':
    index = leave_study_out_split(compendium.meta['study'].to_numpy(), config.holdout_study,
                                  config.val_fraction, seed)
  else:
    raise ValueError(f"preprocess.split must be 'random' or 'leave_study_out', got {config.split!r}")
  return Splits(*(compendium.take_samples(i) for i in index))


def prepare(compendium, config, seed, workdir=None):
  """Runs the preprocessing of `config.preprocess` and returns normalised Splits.

  The quantile reference and the study correction are fitted on the training split only
  and saved to the workdir (`quantile_reference.npy`, `study_correction.npz`) so new
  samples, studies and platforms can be mapped later.
  """
  pre = config.preprocess
  compendium = to_log2(handle_missing(compendium, pre.nan_policy), pre.log2, pre.linear_threshold,
                       pre.log2_floor)
  if pre.drop_control_probes:
    compendium = drop_control_probes(compendium)
  if pre.feature_list:
    compendium = restrict_features(compendium, read_id_list(pre.feature_list), pre.feature_list)
  if pre.dedup:
    keep = near_duplicates(compendium.values, pre.dedup_clusters, pre.dedup_threshold, seed)
    logging.info('Near-duplicate removal kept %d of %d profiles', keep.sum(), len(keep))
    compendium = compendium.take_samples(keep)
  splits = split_compendium(compendium, pre, seed)
  if pre.quantile_normalize:
    normalizer = QuantileNormalizer().fit(splits.train.values)
    if workdir:
      normalizer.save(f'{workdir}/quantile_reference.npy')
    splits = Splits(*(dataclasses.replace(c, values=normalizer.transform(c.values))
                      for _, c in splits.items()))
  if pre.study_correction != 'none':
    correction = correction_lib.StudyCorrection(pre.study_correction).fit(
        splits.train.values, splits.train.meta['study'].to_numpy())
    if workdir:
      correction.save(f'{workdir}/study_correction.npz')
    splits = Splits(*(dataclasses.replace(c, values=correction.transform(
        c.values, c.meta['study'].to_numpy())) for _, c in splits.items()))
  logging.info('Splits: %s', {name: c.shape for name, c in splits.items()})
  return splits


def collapse_to_genes(compendium, annotation, genes=None):
  """Probe -> gene matrix: a gene's value is the mean of its probes (method.md §1).

  `annotation` is `data.read_probe_annotation`'s table. Probes annotated to several genes
  or none are left out. `genes` optionally restricts and orders the output (e.g. D-GEX's
  10,463 genes); genes without a probe in the data are dropped with a log line.
  """
  symbols = annotation.set_index('probe')['symbol'].reindex(compendium.features).fillna('')
  usable = ((symbols != '') & ~symbols.str.contains(data_lib.GENE_SEPARATOR)).to_numpy()
  if not usable.any():
    raise data_lib.DataError(compendium.source, 'no feature is a probe of the annotation')
  symbols = symbols.to_numpy()[usable]
  frame = pd.DataFrame(compendium.values[:, usable].T, index=symbols)
  gene_values = frame.groupby(level=0, sort=True).mean()
  if genes is not None:
    present = [g for g in genes if g in gene_values.index]
    if not present:
      raise data_lib.DataError(compendium.source, 'none of the requested genes has a probe')
    if len(present) < len(genes):
      logging.info('%d of %d requested genes have no probe in the data', len(genes) - len(present), len(genes))
    gene_values = gene_values.loc[present]
  return dataclasses.replace(compendium, values=gene_values.to_numpy(np.float32).T,
                             features=gene_values.index.to_numpy(str))
