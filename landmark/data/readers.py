"""Readers for expression compendia: GEO/TSV tables, CMap GCT/GCTX, AnnData .h5ad.

Every reader returns a `Compendium` (samples x features, float32) and fails with a
one-line `DataError` that names the file and the problem.
"""

import contextlib
import dataclasses
import gzip
import os
from typing import Callable, Iterable, Iterator, Sequence
import zlib

from absl import logging
import h5py
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

from landmark.data import scalers
from landmark.errors import ConfigError
from landmark.errors import DataError

GCTX_MATRIX = '0/DATA/0/matrix'
GCTX_ROW_META = '0/META/ROW'   # features (CMap's rid)
GCTX_COL_META = '0/META/COL'   # samples (CMap's cid)
HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
FILE_COLUMN = 'file'   # meta column: the file each sample was read from


def plain_ids(ids: Iterable[object], n: int = 3) -> list[str]:
  """The first `n` IDs as plain strs, so messages show 'GSM1', not np.str_('GSM1')."""
  return [str(i) for i in list(ids)[:n]]


def _one_line(error):
  text = error.args[0] if isinstance(error, KeyError) and error.args else error
  return ' '.join(str(text).split())


@contextlib.contextmanager
def reading(path: str, what: str) -> Iterator[None]:
  """Turns the low-level errors of reading `path` as `what` into DataErrors naming it.

  Corrupt gzip streams, binary files fed to the text reader, unparsable tables and
  missing or unreadable HDF5 objects otherwise surface as bare EOFError, zlib.error,
  UnicodeDecodeError or KeyError without the file's name.
  """
  try:
    yield
  except DataError:
    raise
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:
    raise DataError(path, f'corrupt or truncated gzip file ({_one_line(e)})') from None
  except UnicodeDecodeError as e:
    raise DataError(path, f'not UTF-8 text at byte {e.start}: a binary file read as a '
                    f'{what}?') from None
  except pd.errors.ParserError as e:
    raise DataError(path, f'cannot parse it as a {what} ({_one_line(e)})') from None
  except (KeyError, OSError) as e:   # h5py: a missing object, an unreadable block
    raise DataError(path, f'unreadable {what} ({_one_line(e)})') from None


@dataclasses.dataclass
class Compendium:
  """Expression profiles: `values[i, j]` is sample i's value of feature j."""

  values: np.ndarray      # float32, (n_samples, n_features)
  features: np.ndarray    # str feature IDs (probes, or gene symbols after collapsing)
  samples: np.ndarray     # str sample IDs
  meta: pd.DataFrame      # one row per sample, index = sample ID; has a 'study' column
  source: str = ''        # file(s) it came from, for error messages

  def __post_init__(self):
    self.values = np.asarray(self.values, dtype=np.float32)
    self.features = np.asarray(self.features, dtype=str)
    self.samples = np.asarray(self.samples, dtype=str)
    if self.values.shape != (len(self.samples), len(self.features)):
      raise DataError(self.source, f'matrix shape {self.values.shape} does not match '
                      f'{len(self.samples)} samples x {len(self.features)} features')

  @property
  def shape(self) -> tuple[int, int]:
    """(samples, features)."""
    return self.values.shape

  def take_samples(self, index: ArrayLike) -> 'Compendium':
    """The compendium restricted to the samples at `index` (ints or a bool mask)."""
    index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
    return dataclasses.replace(self, values=self.values[index], samples=self.samples[index],
                               meta=self.meta.iloc[index])

  def take_features(self, index: ArrayLike) -> 'Compendium':
    """The compendium restricted to the features at `index` (ints or a bool mask)."""
    index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
    return dataclasses.replace(self, values=self.values[:, index], features=self.features[index])

  def select_features(self, ids: Sequence[str] | np.ndarray) -> 'Compendium':
    """The compendium restricted to `ids` (in that order); all must be present."""
    position = {f: i for i, f in enumerate(self.features)}
    missing = [f for f in ids if f not in position]
    if missing:
      raise DataError(self.source, f'{len(missing)} requested features are absent, '
                      f'e.g. {plain_ids(missing)}')
    return self.take_features([position[f] for f in ids])

  # The split interface (landmark.data.splits.Split) of rows held in memory: the same
  # questions a streamed split (landmark.data.streaming.SampleStream) answers from disk.
  resident = True   # the training core puts the values on the devices once

  def stats(self) -> scalers.ColumnStats:
    """Per-feature minimum, maximum and mean (float64) of the rows."""
    return scalers.ColumnStats(self.values.min(axis=0), self.values.max(axis=0),
                               self.values.mean(axis=0, dtype=np.float64))

  def fit_scaler(self, scale: str) -> scalers.AffineScaler:
    """The `scale` scaler ('minmax' or 'standard', scalers.SCALERS) fitted on the rows."""
    return scalers.SCALERS[scale]().fit(self.values)

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches in an epoch: the last one short (padded) when `batch_size` does not divide."""
    return -(-self.shape[0] // batch_size)

  def batches(self, seed: int, epoch: int, batch_size: int,
              place: Callable | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch's (x, mask) batches of `batch_size` rows, in an order drawn from (seed,
    epoch); the last batch is padded with zero rows, masked, as a stream's is. `place` maps
    each (x, mask) (e.g. onto the devices)."""
    place = place or (lambda batch: batch)
    order = np.random.default_rng([seed, epoch]).permutation(self.shape[0])
    for start in range(0, len(order), batch_size):
      index = order[start:start + batch_size]
      x = np.zeros((batch_size, self.shape[1]), np.float32)
      x[:len(index)] = self.values[index]
      yield place((x, (np.arange(batch_size) < len(index)).astype(np.float32)))

  def arrays(self) -> tuple[np.ndarray]:
    """Every row's values in order, as chunks: here one, the matrix."""
    return (self.values,)

  def with_transform(self, transform: Callable[[np.ndarray], np.ndarray]) -> 'Compendium':
    """The same rows with `transform` applied to their values (at once: they are in memory)."""
    return dataclasses.replace(self, values=transform(self.values))

  def subset(self, n: int, seed: int) -> 'Compendium':
    """A seeded random `n` of the rows, in order (all of them when n is 0 or not below
    their number): the rows a stream of the same rows picks (SampleStream.subset)."""
    if not 0 < n < self.shape[0]:
      return self
    return self.take_samples(
        np.sort(np.random.default_rng(seed).choice(self.shape[0], n, replace=False)))

  def to_memory(self, limit: int = 0, seed: int = 0) -> 'Compendium':
    """Itself: its rows are in memory already, so `limit` (a bound on the rows a stream
    reads, SampleStream.to_memory) does not apply, nor `seed`."""
    del limit, seed
    return self

  def profiles_for_means(self) -> tuple[np.ndarray, np.ndarray]:
    """(profiles, their studies) whose overall and per-study means are the split's (e.g.
    diagnostics.trivial_baselines, DeepLIFT's 'train_mean'): here the rows themselves."""
    return self.values, self.meta['study'].to_numpy()

  def training_data(self) -> dict[str, np.ndarray]:
    """What the training core (landmark.training.core.fit) takes: the values as batch['x']."""
    return {'x': self.values}


def _check_file(path):
  if not os.path.exists(path):
    raise DataError(path, 'file not found')
  if os.path.getsize(path) == 0:
    raise DataError(path, 'file is empty')


def _check_unique(source, ids, what):
  ids = pd.Index(ids)
  if ids.has_duplicates:
    dup = ids[ids.duplicated()].unique()
    raise DataError(source, f'{len(dup)} duplicate {what} IDs, e.g. {plain_ids(dup)}')


def _numeric(source, frame):
  """Converts a string/object frame to float32, naming the first non-numeric cell."""
  numeric = frame.apply(pd.to_numeric, errors='coerce')
  bad = numeric.isna() & frame.notna() & ~frame.astype(str).isin(['', 'nan', 'NaN', 'NA', 'null'])
  if bad.values.any():
    row, col = np.argwhere(bad.values)[0]
    raise DataError(source, f'{int(bad.values.sum())} non-numeric cells, first at row '
                    f'{str(frame.index[row])!r}, column {str(frame.columns[col])!r}: '
                    f'{str(frame.iat[row, col])!r}')
  return numeric.to_numpy(np.float32)


def _study_name(path):
  name = os.path.basename(path)
  for ext in ('.gz', '.tsv', '.txt', '.csv', '.gctx', '.gct', '.h5ad'):
    name = name[:-len(ext)] if name.endswith(ext) else name
  return name.replace('_series_matrix', '')


def _meta(samples, study, extra=None, path=None):
  meta = pd.DataFrame(index=pd.Index(samples, name='sample'))
  if extra is not None:
    meta = meta.join(extra)
  meta['study'] = study
  if path is not None:
    meta[FILE_COLUMN] = path
  return meta


def sample_files(compendium: 'Compendium') -> np.ndarray:
  """The file each sample was read from (for messages about a cell or a sample)."""
  if compendium.meta is not None and FILE_COLUMN in compendium.meta:
    return compendium.meta[FILE_COLUMN].fillna(compendium.source).astype(str).to_numpy()
  return np.full(compendium.shape[0], compendium.source, dtype=object)


def read_table(path: str, study: str | None = None) -> Compendium:
  """Reads a features x samples table (GEO series matrix, TSV or CSV, optionally gzipped).

  The first column holds feature IDs; GEO's `!` metadata lines are skipped.
  """
  _check_file(path)
  opener = gzip.open if path.endswith('.gz') else open
  with reading(path, 'table'):
    with opener(path, 'rt') as f:
      first = f.readline()
    sep = ',' if ('.csv' in os.path.basename(path) and '\t' not in first) else '\t'
    try:
      frame = pd.read_csv(path, sep=sep, comment='!', index_col=0, dtype=str,
                          skip_blank_lines=True)
    except pd.errors.EmptyDataError:
      raise DataError(path, 'file is empty') from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
      raise DataError(path, f'no data: {frame.shape[0]} rows x {frame.shape[1]} sample columns')
    header = pd.read_csv(path, sep=sep, comment='!', header=None, nrows=1, dtype=str).iloc[0, 1:]
  frame.index = frame.index.astype(str)
  frame.columns = header.astype(str).to_numpy()
  _check_unique(path, frame.index, 'feature')
  _check_unique(path, frame.columns, 'sample')
  values = _numeric(path, frame).T
  return Compendium(values, frame.index, frame.columns,
                    _meta(frame.columns, study or _study_name(path), path=path), source=path)


def read_gct(path: str, study: str | None = None) -> Compendium:
  """Reads CMap GCT 1.2 or 1.3 text files (rows = features, columns = samples)."""
  _check_file(path)
  opener = gzip.open if path.endswith('.gz') else open
  with reading(path, 'GCT file'):
    with opener(path, 'rt') as f:
      version, dims = f.readline().strip(), f.readline().strip()
    if version not in ('#1.2', '#1.3'):
      raise DataError(path, f'not a GCT 1.2/1.3 file (first line {version!r})')
    n_counts = 4 if version == '#1.3' else 2
    counts = dims.split('\t')[:n_counts]
    if len(counts) < n_counts or not all(c.strip().isdigit() for c in counts):
      raise DataError(path, f'line 2 of a GCT {version[1:]} file needs {n_counts} counts, '
                      f'got {dims!r}')
    n_rows, n_cols, *meta_counts = [int(c) for c in counts]
    n_row_meta, n_col_meta = meta_counts or (1, 0)
    frame = pd.read_csv(path, sep='\t', skiprows=2, index_col=0, dtype=str)
    frame.columns = pd.read_csv(path, sep='\t', skiprows=2, header=None, nrows=1,
                                dtype=str).iloc[0, 1:]
  frame.index = frame.index.astype(str)
  col_meta = frame.iloc[:n_col_meta, n_row_meta:].T
  col_meta.columns = frame.index[:n_col_meta]
  body = frame.iloc[n_col_meta:, n_row_meta:]
  if body.shape != (n_rows, n_cols):
    raise DataError(path, f'header says {n_rows} x {n_cols}, '
                    f'body has {body.shape[0]} x {body.shape[1]}')
  _check_unique(path, body.index, 'feature')
  _check_unique(path, body.columns, 'sample')
  return Compendium(_numeric(path, body).T, body.index, body.columns,
                    _meta(body.columns, study or _study_name(path), col_meta, path), source=path)


def _decode(array):
  return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in array])


class GctxReader:
  """Chunked access to a CMap GCTX (HDF5) file; the matrix is never read whole.

  CMap stores `/0/DATA/0/matrix` with one row per sample (`/0/META/COL/id`) and one
  column per feature (`/0/META/ROW/id`).
  """

  def __init__(self, path):
    _check_file(path)
    self.path = path
    try:
      self._file = h5py.File(path, 'r')
    except OSError as e:
      raise DataError(path, f'not an HDF5/GCTX file ({_one_line(e)})') from None
    try:
      with reading(path, 'GCTX file'):
        self._read_header()
    except DataError:
      self._file.close()
      raise

  def _read_header(self):
    """Reads the sample and feature IDs and checks them against the matrix."""
    path = self.path
    for name in (GCTX_MATRIX, f'{GCTX_ROW_META}/id', f'{GCTX_COL_META}/id'):
      if not isinstance(self._file.get(name), h5py.Dataset):
        raise DataError(path, f'no /{name} dataset, which a GCTX file needs')
    self.matrix = self._file[GCTX_MATRIX]
    self.features = _decode(self._file[GCTX_ROW_META]['id'][:])
    self.samples = _decode(self._file[GCTX_COL_META]['id'][:])
    expected = (len(self.samples), len(self.features))
    if self.matrix.shape != expected:
      raise DataError(path, f'matrix is {self.matrix.shape} but META says {expected[0]} samples '
                      f'x {expected[1]} features')
    if 0 in expected:
      raise DataError(path, 'file holds no samples or no features')
    _check_unique(path, self.features, 'feature')
    _check_unique(path, self.samples, 'sample')

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self) -> None:
    """Closes the HDF5 file."""
    self._file.close()

  def __len__(self):
    return len(self.samples)

  def sample_meta(self) -> pd.DataFrame:
    """Column (sample) metadata as a DataFrame indexed by sample ID."""
    group = self._file[GCTX_COL_META]
    with reading(self.path, 'GCTX file'):
      columns = {k: _decode(group[k][:]) if group[k].dtype.kind in 'SOU' else group[k][:]
                 for k in group if isinstance(group[k], h5py.Dataset) and k != 'id'
                 and group[k].ndim == 1}
    return pd.DataFrame(columns, index=pd.Index(self.samples, name='sample'))

  def read(self, start: int, stop: int, feature_index: ArrayLike | None = None) -> np.ndarray:
    """Samples [start, stop) as float32, optionally only the features at `feature_index`."""
    with reading(self.path, 'GCTX file'):
      block = self.matrix[start:stop]
    if feature_index is not None:
      block = block[:, feature_index]
    return np.asarray(block, dtype=np.float32)

  def iter_chunks(self, chunk_size: int, feature_index: ArrayLike | None = None
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (start, values) chunks of consecutive samples."""
    for start in range(0, len(self), chunk_size):
      yield start, self.read(start, min(start + chunk_size, len(self)), feature_index)


def read_gctx(path: str, study: str | None = None, max_samples: int = 0,
              chunk_size: int = 4096) -> Compendium:
  """Reads a whole GCTX (or its first `max_samples`) into memory, chunk by chunk."""
  with GctxReader(path) as reader:
    n = min(len(reader), max_samples) if max_samples else len(reader)
    values = np.empty((n, len(reader.features)), np.float32)
    for start in range(0, n, chunk_size):
      stop = min(start + chunk_size, n)
      values[start:stop] = reader.read(start, stop)
    meta = reader.sample_meta().iloc[:n]
    return Compendium(values, reader.features, reader.samples[:n],
                      _meta(reader.samples[:n], study or _study_name(path), meta, path),
                      source=path)


def write_gctx(path: str | os.PathLike, compendium: Compendium, chunk_samples: int = 1024,
               feature_meta: pd.DataFrame | None = None) -> None:
  """Writes a compendium as a CMap-layout GCTX (samples are rows of the HDF5 matrix).

  The sample metadata go to /0/META/COL and the columns of `feature_meta` (a DataFrame,
  one row per feature, in order) to /0/META/ROW, all as strings.
  """
  from landmark import fileio
  with fileio.atomic_path(path) as tmp:
    with h5py.File(tmp, 'w') as f:
      f.attrs['version'] = 'GCTX1.0'
      chunks = (min(chunk_samples, max(1, compendium.shape[0])), compendium.shape[1])
      f.create_dataset(GCTX_MATRIX, data=compendium.values, chunks=chunks)
      f.create_dataset(f'{GCTX_ROW_META}/id', data=compendium.features.astype('S'))
      f.create_dataset(f'{GCTX_COL_META}/id', data=compendium.samples.astype('S'))
      for group, meta in ((GCTX_COL_META, compendium.meta), (GCTX_ROW_META, feature_meta)):
        for column in () if meta is None else meta.columns:
          f.create_dataset(f'{group}/{column}',
                           data=np.char.encode(meta[column].to_numpy(str), 'utf-8'))


def _h5ad_index(group, path):
  key = group.attrs.get('_index', '_index')
  if not isinstance(group.get(key), h5py.Dataset):
    raise DataError(path, f'{group.name} has no index dataset {str(key)!r}')
  return _decode(group[key][:])


def _h5ad_sparse(group, path):
  """A CSR/CSC `X` group as a dense array; a malformed one is a DataError naming `path`."""
  import scipy.sparse
  kind = group.attrs.get('encoding-type', 'csr_matrix')
  kind = kind.decode() if isinstance(kind, bytes) else str(kind)
  matrix_types = {'csr_matrix': scipy.sparse.csr_matrix, 'csc_matrix': scipy.sparse.csc_matrix}
  if kind not in matrix_types:
    raise DataError(path, f'sparse X has encoding-type {kind!r}; csr_matrix or csc_matrix expected')
  missing = [key for key in ('data', 'indices', 'indptr')
             if not isinstance(group.get(key), h5py.Dataset)]
  if 'shape' not in group.attrs:
    missing.append('the shape attribute')
  if missing:
    raise DataError(path, f'sparse X lacks {", ".join(missing)}')
  try:
    matrix = matrix_types[kind]((group['data'][:], group['indices'][:], group['indptr'][:]),
                                shape=tuple(int(n) for n in group.attrs['shape']))
    matrix.check_format(full_check=True)
  except (ValueError, TypeError) as e:
    raise DataError(path, f'malformed sparse X ({_one_line(e)})') from None
  return matrix.toarray()


def read_h5ad(path: str, study: str | None = None) -> Compendium:
  """Reads an AnnData .h5ad (obs = samples, var = features; dense or CSR/CSC `X`)."""
  _check_file(path)
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise DataError(path, f'not an HDF5/h5ad file ({_one_line(e)})') from None
  with f, reading(path, 'h5ad file'):
    if 'X' not in f or 'obs' not in f or 'var' not in f:
      raise DataError(path, 'an h5ad file needs X, obs and var')
    samples, features = _h5ad_index(f['obs'], path), _h5ad_index(f['var'], path)
    x = f['X']
    values = x[:] if isinstance(x, h5py.Dataset) else _h5ad_sparse(x, path)
  _check_unique(path, features, 'feature')
  _check_unique(path, samples, 'sample')
  return Compendium(values, features, samples,
                    _meta(samples, study or _study_name(path), path=path), source=path)


def sniff_format(path: str) -> str:
  """'gctx', 'h5ad', 'gct' or 'table', from the file's content rather than its name.

  Real files lie about their format: CMap ships GCT text under a .gctx name. An HDF5 file
  that is neither a GCTX (`/0/DATA/0/matrix`) nor an h5ad (`X`) falls back on its name, so
  the reader of the format it claims says what it lacks.
  """
  _check_file(path)
  with open(path, 'rb') as f:
    head = f.read(8)
  if head == HDF5_SIGNATURE:
    try:
      with h5py.File(path, 'r') as f:
        top = set(f)
        is_gctx = GCTX_MATRIX in f
    except OSError as e:
      raise DataError(path, f'unreadable HDF5 file ({_one_line(e)})') from None
    name = path.removesuffix('.gz')
    if is_gctx or ('X' not in top and name.endswith('.gctx')):
      return 'gctx'
    if 'X' in top or name.endswith('.h5ad'):
      return 'h5ad'
    raise DataError(path, f'an HDF5 file that is neither GCTX (no /{GCTX_MATRIX}) nor h5ad '
                    f'(no X); its top-level objects are {sorted(top)}')
  with reading(path, 'table'):
    opener = gzip.open if head[:2] == b'\x1f\x8b' else open
    with opener(path, 'rb') as f:
      first = f.read(4)
  return 'gct' if first in (b'#1.2', b'#1.3') else 'table'


def read_any(path: str, study: str | None = None) -> Compendium:
  """Reads one study with the reader its content calls for."""
  kind = sniff_format(path)
  expected = {'gctx': '.gctx', 'h5ad': '.h5ad', 'gct': '.gct'}.get(kind)
  if expected and not path.removesuffix('.gz').endswith(expected):
    logging.warning('%s holds %s data despite its name; reading it as such', path, kind.upper())
  reader = {'gctx': read_gctx, 'h5ad': read_h5ad, 'gct': read_gct, 'table': read_table}[kind]
  return reader(path, study)


def check_orientation(compendium: Compendium, known_features: Iterable[str]) -> None:
  """Fails clearly when a file's feature IDs are unknown or it looks transposed."""
  known = set(known_features)
  n_features = sum(f in known for f in compendium.features)
  if n_features:
    return
  n_samples = sum(s in known for s in compendium.samples)
  if n_samples:
    raise DataError(compendium.source, f'looks transposed: {n_samples} sample IDs are known '
                    'feature IDs (expected features in rows, samples in columns)')
  raise DataError(compendium.source, f'none of its {len(compendium.features)} feature IDs '
                  f'(e.g. {plain_ids(compendium.features)}) is a known ID')


def combine(compendia: Sequence[Compendium]) -> Compendium:
  """Joins studies on their shared features (in the first study's order)."""
  shared = set(compendia[0].features)
  for c in compendia[1:]:
    shared &= set(c.features)
  sources = ', '.join(c.source for c in compendia)
  if not shared:
    raise DataError(sources, 'the studies share no features')
  features = [f for f in compendia[0].features if f in shared]
  dropped = {c.source: len(c.features) - len(features) for c in compendia
             if len(c.features) != len(features)}
  if dropped:
    logging.info('Combining on %d shared features; dropped %s', len(features), dropped)
  parts = [c.select_features(features) for c in compendia]
  samples = np.concatenate([p.samples for p in parts])
  _check_unique(sources, samples, 'sample')
  return Compendium(np.concatenate([p.values for p in parts]), features, samples,
                    pd.concat([p.meta for p in parts]), source=sources)


def _read_sample_table(path):
  _check_file(path)
  with reading(path, 'sample table'):
    table = pd.read_csv(path, sep='\t', dtype=str)
  if 'sample' not in table:
    raise DataError(path, f"a sample table needs a 'sample' column; has {list(table.columns)}")
  return table


def attach_sample_table(compendium: Compendium, paths: Sequence[str]) -> Compendium:
  """Adds the columns of sample tables (sample, study, label, ...) to the metadata.

  `paths` (config.data.samples_table) is a tuple of tables, say one per folder of studies.
  A sample listed twice, in one table or in two, is refused: which row holds would
  otherwise depend on the order of the tables.
  """
  if isinstance(paths, (str, os.PathLike)):
    raise ConfigError('config.data.samples_table', f'must be a tuple of paths, got the one '
                      f'path {os.fspath(paths)!r}; write ({os.fspath(paths)!r},)')
  tables = [_read_sample_table(path) for path in paths]
  if not tables:
    return compendium
  table = pd.concat(tables, ignore_index=True)
  files = np.repeat([os.fspath(path) for path in paths], [len(t) for t in tables])
  repeated = table['sample'].duplicated(keep=False).to_numpy()
  if repeated.any():
    raise DataError(', '.join(dict.fromkeys(files[repeated])),
                    f'{table["sample"][repeated].nunique()} samples are listed more than once, '
                    f'e.g. {plain_ids(table["sample"][repeated].unique())}')
  table = table.set_index('sample')
  meta = compendium.meta.drop(columns=[c for c in table.columns if c in compendium.meta])
  meta = meta.join(table)
  meta['study'] = meta['study'].fillna(compendium.meta['study'])
  return dataclasses.replace(compendium, meta=meta)


ANNOTATION_COLUMNS = ('probe', 'genbank', 'symbol', 'entrez', 'title')
GENE_SEPARATOR = '///'   # between the genes of a multi-gene probe, and their Entrez IDs


def read_string_table(path: str | os.PathLike, columns: Sequence[str],
                      what: str) -> pd.DataFrame:
  """A TSV of strings ('' where empty) with the given columns; one-line errors name the file."""
  path = os.fspath(path)
  _check_file(path)
  try:
    with reading(path, what):
      table = pd.read_csv(path, sep='\t', dtype=str, keep_default_na=False)
  except pd.errors.EmptyDataError:
    raise DataError(path, f'{what} is empty') from None
  missing = [column for column in columns if column not in table.columns]
  if missing:
    raise DataError(path, f'{what} lacks column(s) {missing}; has {list(table.columns)}')
  if table.empty:
    raise DataError(path, f'{what} has no rows')
  table = table[list(columns)].apply(lambda column: column.str.strip())
  table.attrs['source'] = path
  return table


def read_probe_annotation(path: str | os.PathLike) -> pd.DataFrame:
  """The platform's probe table (GPL96 layout): probe, genbank, symbol, entrez, title.

  Empty fields are ''; a probe of several genes lists them (and their Entrez IDs)
  separated by `GENE_SEPARATOR`. Read once per run and passed to the stages that map
  probes to genes (ranking, collapsing, GO).
  """
  return read_string_table(path, ANNOTATION_COLUMNS, 'probe annotation')


def load_compendium(data_config: ml_collections.ConfigDict) -> Compendium:
  """Reads, checks and combines the studies a config names."""
  known = read_probe_annotation(data_config.annotation)['probe'].to_numpy()
  studies = []
  for path in data_config.studies:
    study = read_any(path)
    check_orientation(study, known)
    logging.info('Read %s: %d samples x %d features', path, *study.shape)
    studies.append(study)
  compendium = combine(studies) if len(studies) > 1 else studies[0]
  if data_config.samples_table:
    compendium = attach_sample_table(compendium, data_config.samples_table)
  if 0 < data_config.max_samples < compendium.shape[0]:
    subset = np.random.default_rng(0).choice(compendium.shape[0], data_config.max_samples,
                                             replace=False)
    compendium = compendium.take_samples(np.sort(subset))
  return compendium
