"""Training and scoring data larger than memory: a GCTX streamed in sample chunks.

A `SampleStream` names rows of a GCTX file (a split, by sample index) and reads them in
chunks of `chunk_samples` consecutive rows, so that HDF5 reads are large and sequential
and memory holds a few chunks, never the matrix:

  batches(seed, epoch, batch_size)  training order: the chunks in a permutation drawn from
      (seed, epoch); `shuffle_buffer_chunks` chunks at a time are pooled and their samples
      shuffled together; the pool is cut into fixed-size batches (rows that do not fill a
      batch join the next pool) and the last, short batch is padded with zero rows and
      masked, as in the in-memory epoch. A function of (seed, epoch) only, so a resumed
      run sees the batches an uninterrupted one saw.
  arrays()  every row once, in file order, one chunk at a time (scoring, statistics).

A `SampleStream` is a split (landmark.data.splits.Split): it answers the questions an
in-memory split (`readers.Compendium`) answers, from disk.

Both run on a background thread that stays `prefetch` items ahead of the consumer, so
reading, the per-chunk `transform` (feature scaling) and placing batches on the devices
overlap the consumer's compute; `Prefetch.wait_seconds` is the time the consumer waited.

Memory: batches and chunks are host buffers of tens of MB, made on the prefetch thread
and freed on the consumer's. glibc's malloc would move such sizes into per-thread arenas
(its mmap threshold adapts upwards to 32 MiB), which keep freed memory, and each epoch's
new thread adds an arena: resident memory grew by ~200 MB an epoch at the paper's width.
`Prefetch` therefore fixes glibc's mmap threshold at 4 MiB once per process, so that such
buffers are mapped on allocation and handed back to the system when freed (measured with
`experiments/benchmark.py --sections=stream`: `stream_rss_growth_per_epoch_mb`).
"""

import copy
import ctypes
import functools
import queue
import threading
import time
from typing import Callable

from absl import logging
import ml_collections
import numpy as np

from landmark.data import preprocess
from landmark.data import readers
from landmark.data import scalers

_DONE = object()
_M_MMAP_THRESHOLD = -3      # mallopt parameter (glibc's malloc.h)
_MMAP_THRESHOLD_BYTES = 4 << 20


@functools.cache
def _map_large_buffers():
  """Fixes glibc's mmap threshold (see the module docstring); a no-op elsewhere."""
  try:
    libc = ctypes.CDLL('libc.so.6')
  except OSError:
    return
  libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


class Prefetch:
  """Iterates the generator `make_items()` on a background thread, `size` items ahead.

  `place` (e.g. a copy to the devices) runs on that thread too. `wait_seconds` adds up the
  time the consumer spent waiting for the next item; with `size` 0 the items are made in
  the consumer's thread and all of their making is waiting.
  """

  def __init__(self, make_items, size, place=None):
    self._make_items = make_items
    self._size = size
    self._place = place or (lambda item: item)
    self.wait_seconds = 0.0
    _map_large_buffers()

  def __iter__(self):
    if not self._size:
      items = self._make_items()
      try:
        while True:
          started = time.perf_counter()
          item = next(items, _DONE)
          item = item if item is _DONE else self._place(item)
          self.wait_seconds += time.perf_counter() - started
          if item is _DONE:
            return
          yield item
      finally:
        items.close()
    ready = queue.Queue(self._size)
    stop = threading.Event()

    def put(entry):
      while not stop.is_set():
        try:
          ready.put(entry, timeout=0.1)
          return True
        except queue.Full:
          pass
      return False

    def produce():
      items = self._make_items()
      try:
        for item in items:
          if not put((self._place(item), None)):
            return
        put((_DONE, None))
      except Exception as error:  # pylint: disable=broad-except  # re-raised by the consumer
        put((_DONE, error))
      finally:
        items.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
      while True:
        started = time.perf_counter()
        item, error = ready.get()
        self.wait_seconds += time.perf_counter() - started
        if error is not None:
          raise error
        if item is _DONE:
          return
        yield item
    finally:
      stop.set()
      thread.join()


class SampleStream:
  """The rows `rows` (sorted sample indices; default all) of the GCTX at `path`, streamed.

  `feature_index` keeps those columns (default all); `transform` maps each chunk's
  (samples, features) float32 values, after the column selection, to what the consumer
  sees (`with_transform`). `features`, `samples` and `meta` describe the rows as a
  `data.Compendium` would; `shape` is (rows, features).
  """

  resident = False   # the training core steps through `batches`, prefetched

  def __init__(self, path, rows=None, feature_index=None, *, chunk_samples=512,
               shuffle_buffer_chunks=4, prefetch=4, transform=None, study_field=''):
    if chunk_samples < 1 or shuffle_buffer_chunks < 1 or prefetch < 0:
      raise ValueError(f'chunk_samples ({chunk_samples}) and shuffle_buffer_chunks '
                       f'({shuffle_buffer_chunks}) must be positive, prefetch ({prefetch}) >= 0')
    with readers.GctxReader(path) as reader:
      n_rows = len(reader)
      rows = np.arange(n_rows) if rows is None else np.asarray(rows, np.int64)
      if not len(rows) or rows[0] < 0 or rows[-1] >= n_rows or np.any(np.diff(rows) <= 0):
        raise readers.DataError(path, f'stream rows must be increasing sample indices in '
                                 f'[0, {n_rows}), got {len(rows)} rows')
      self.feature_index = None if feature_index is None else np.asarray(feature_index)
      self.features = (reader.features if feature_index is None
                       else reader.features[self.feature_index])
      self.samples = reader.samples[rows]
      sample_meta = reader.sample_meta().iloc[rows]
      study = readers._study_name(path)  # pylint: disable=protected-access
      if study_field:
        if study_field not in sample_meta:
          raise readers.DataError(path, f'no column-metadata field {study_field!r} '
                                  f'(config.data.study_field); fields: {list(sample_meta)}')
        study = sample_meta[study_field].astype(str).to_numpy()
      self.meta = readers._meta(self.samples, study, sample_meta)  # pylint: disable=protected-access
    self.path, self.rows = path, rows
    self.chunk_samples, self.shuffle_buffer_chunks = chunk_samples, shuffle_buffer_chunks
    self.prefetch, self.transform, self.study_field = prefetch, transform, study_field
    self._stats = None

  def __len__(self):
    return len(self.rows)

  @property
  def shape(self) -> tuple[int, int]:
    return len(self.rows), len(self.features)

  def with_transform(self, transform: Callable[[np.ndarray], np.ndarray]) -> 'SampleStream':
    """The same rows with `transform` applied to every chunk as it is read."""
    stream = copy.copy(self)
    stream.transform, stream._stats = transform, None
    return stream

  def _chunks(self):
    return [self.rows[i:i + self.chunk_samples] for i in range(0, len(self), self.chunk_samples)]

  def _read(self, reader, rows):
    """One chunk's values: one slice read when its rows are dense in the file, else a row list."""
    start, stop = int(rows[0]), int(rows[-1]) + 1
    if stop - start <= 2 * len(rows):
      block = reader.read(start, stop, self.feature_index)
      block = block if stop - start == len(rows) else block[rows - start]
    else:
      block = np.asarray(reader.matrix[rows], np.float32)  # HDF5 reads just these rows
      block = block if self.feature_index is None else block[:, self.feature_index]
    return block if self.transform is None else self.transform(block)

  def _file_order(self):
    with readers.GctxReader(self.path) as reader:
      for rows in self._chunks():
        yield self._read(reader, rows)

  def _shuffled_batches(self, seed, epoch, batch_size):
    rng = np.random.default_rng([seed, epoch])
    chunks = self._chunks()
    order = rng.permutation(len(chunks))
    carry = np.empty((0, self.shape[1]), np.float32)
    with readers.GctxReader(self.path) as reader:
      for first in range(0, len(order), self.shuffle_buffer_chunks):
        group = [chunks[c] for c in order[first:first + self.shuffle_buffer_chunks]]
        pool = np.empty((len(carry) + sum(map(len, group)), self.shape[1]), np.float32)
        pool[:len(carry)], filled = carry, len(carry)
        for rows in group:  # read into the pool, so memory holds it and one chunk at most
          pool[filled:filled + len(rows)] = self._read(reader, rows)
          filled += len(rows)
        mixed = rng.permutation(len(pool))
        n_full = len(pool) // batch_size * batch_size
        for start in range(0, n_full, batch_size):
          yield pool[mixed[start:start + batch_size]], np.ones(batch_size, np.float32)
        carry = pool[mixed[n_full:]]
        del pool
    if len(carry):
      x = np.zeros((batch_size, self.shape[1]), np.float32)
      x[:len(carry)] = carry
      yield x, (np.arange(batch_size) < len(carry)).astype(np.float32)

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches in an epoch: the last one short (padded) when `batch_size` does not divide."""
    return -(-len(self) // batch_size)

  def batches(self, seed: int, epoch: int, batch_size: int,
              place: Callable | None = None) -> Prefetch:
    """A `Prefetch` of one epoch's (x, mask) batches, both with `batch_size` rows.

    `place` maps each (x, mask) on the background thread (e.g. onto the devices).
    """
    return Prefetch(lambda: self._shuffled_batches(seed, epoch, batch_size), self.prefetch,
                    place)

  def arrays(self) -> Prefetch:
    """A `Prefetch` of every row's values, in file order, one chunk at a time."""
    return Prefetch(self._file_order, self.prefetch)

  def stats(self) -> scalers.ColumnStats:
    """Per-feature minimum, maximum and mean of the (transformed) rows: one pass, cached.

    Fails with a one-line DataError at the first NaN/inf value.
    """
    if self._stats is None:
      n_features = self.shape[1]
      minimum = np.full(n_features, np.inf, np.float32)
      maximum = np.full(n_features, -np.inf, np.float32)
      total = np.zeros(n_features, np.float64)
      done = 0
      for chunk in self.arrays():
        bad = ~np.isfinite(chunk)
        if bad.any():
          row, column = np.argwhere(bad)[0]
          raise readers.DataError(self.path, f'NaN/inf values, first at sample '
                                   f'{str(self.samples[done + row])!r}, feature '
                                   f'{str(self.features[column])!r}')
        np.minimum(minimum, chunk.min(axis=0), out=minimum)
        np.maximum(maximum, chunk.max(axis=0), out=maximum)
        total += chunk.sum(axis=0, dtype=np.float64)
        done += len(chunk)
      self._stats = scalers.ColumnStats(minimum, maximum, total / done)
    return self._stats

  def fit_scaler(self, scale: str) -> scalers.AffineScaler:
    """The `scale` scaler ('minmax' or 'standard') of the rows: min-max from the cached
    column statistics, standard with one more pass for the standard deviations."""
    if scale == 'minmax':
      return fit_scaler(self)
    mean = self.stats().mean
    squares = sum(np.sum((chunk - mean) ** 2, axis=0, dtype=np.float64)
                  for chunk in self.arrays())
    return scalers.StandardScaler(mean, scalers.nonzero_span(np.sqrt(squares / len(self))))

  def subset(self, n: int, seed: int) -> 'SampleStream':
    """A seeded random `n` of the rows (all of them when n is 0 or not below their number)."""
    if not 0 < n < len(self):
      return self
    rows = np.sort(np.random.default_rng(seed).choice(self.rows, n, replace=False))
    return SampleStream(self.path, rows, self.feature_index, chunk_samples=self.chunk_samples,
                        shuffle_buffer_chunks=self.shuffle_buffer_chunks, prefetch=self.prefetch,
                        transform=self.transform, study_field=self.study_field)

  def to_memory(self, limit: int = 0, seed: int = 0) -> readers.Compendium:
    """The rows read into memory as a `data.Compendium`: a seeded random `limit` of them
    (`subset`; all when `limit` is 0), so that memory holds what the caller can afford."""
    stream = self.subset(limit, seed)
    logging.info('Reading %d of %d streamed profiles of %s into memory', len(stream), len(self),
                 self.path)
    values = np.concatenate(list(stream.arrays()))
    return readers.Compendium(values, stream.features, stream.samples, stream.meta,
                              source=self.path)

  def profiles_for_means(self) -> tuple[np.ndarray, np.ndarray]:
    """(profiles, their studies) whose overall and per-study means are the split's: the
    mean profile (cached `stats`) and the one study of the file, so nothing is read twice."""
    return self.stats().mean[None], self.meta['study'].to_numpy()[:1]

  def training_data(self) -> 'SampleStream':
    """What the training core (landmark.training.core.fit) takes: the stream itself, whose
    `batches` it steps through."""
    return self


def fit_scaler(stream: SampleStream) -> scalers.MinMaxScaler:
  """The per-feature min-max scaler of `stream`'s rows, from one streaming pass."""
  stats = stream.stats()
  span = stats.maximum - stats.minimum
  return scalers.MinMaxScaler(stats.minimum, np.where(span > 0, span, 1.0))


_NEEDS_MEMORY = {  # config setting -> is it on; each needs the whole matrix in memory
    'preprocess.dedup': lambda c: c.preprocess.dedup,
    'preprocess.quantile_normalize': lambda c: c.preprocess.quantile_normalize,
    'preprocess.study_correction': lambda c: c.preprocess.study_correction != 'none',
    'preprocess.log2 (other than "never")': lambda c: c.preprocess.log2 != 'never',
    'preprocess.nan_policy="impute"': lambda c: c.preprocess.nan_policy != 'error',
    'preprocess.split (other than "random")': lambda c: c.preprocess.split != 'random',
    'data.samples_table': lambda c: bool(c.data.samples_table),
}


def prepare_splits(config: ml_collections.ConfigDict) -> preprocess.Splits:
  """Random train/val/test splits of one GCTX by sample index, the matrix left on disk.

  The training split is a `SampleStream`; validation and test rows are read into memory
  as `data.Compendium`s. Features: AFFX control probes and `preprocess.feature_list` are
  applied by column. Settings that need the whole matrix in memory raise a ValueError.
  """
  data_config = config.data
  if len(data_config.studies) != 1:
    raise ValueError(f'config.data.stream reads one GCTX file; {len(data_config.studies)} '
                     'studies are listed in config.data.studies')
  path = data_config.studies[0]
  if readers.sniff_format(path) != 'gctx':
    raise readers.DataError(path, 'config.data.stream needs a GCTX (HDF5) file')
  needed = [name for name, is_on in _NEEDS_MEMORY.items() if is_on(config)]
  if needed:
    raise ValueError(f'config.data.stream leaves {path} on disk, so it cannot run '
                     f'{", ".join(needed)}: these need the whole matrix in memory (turn them '
                     'off; the file must hold log2, normalised values)')
  with readers.GctxReader(path) as reader:
    n_samples, features = len(reader), reader.features
  header = readers.Compendium(np.empty((0, len(features))), features, [], None, source=path)
  readers.check_orientation(
      header, readers.read_probe_annotation(data_config.annotation)['probe'].to_numpy())
  pre = config.preprocess
  if pre.drop_control_probes:
    header = preprocess.drop_control_probes(header)
  if pre.feature_list:
    header = preprocess.restrict_features(header, preprocess.read_id_list(pre.feature_list),
                                          pre.feature_list)
  feature_index = np.flatnonzero(np.isin(features, header.features))
  rows = np.arange(n_samples)
  if 0 < data_config.max_samples < n_samples:
    rows = np.sort(np.random.default_rng(0).choice(n_samples, data_config.max_samples,
                                                   replace=False))
  streams = [SampleStream(path, rows[index], feature_index,
                          chunk_samples=data_config.chunk_samples,
                          shuffle_buffer_chunks=data_config.shuffle_buffer_chunks,
                          prefetch=data_config.prefetch, study_field=data_config.study_field)
             for index in preprocess.random_split(len(rows), pre.val_fraction,
                                                  pre.test_fraction, config.seed)]
  return preprocess.Splits(streams[0], streams[1].to_memory(), streams[2].to_memory())
