"""The one interface of a split, in memory or streamed from disk.

A training split is either a `readers.Compendium` (its values in memory) or a
`streaming.SampleStream` (rows of a GCTX left on disk). Both answer the questions the
stages ask (`Split`), so no stage asks which kind it holds: the answers that differ by
kind (a stream reads in chunks, caches its statistics, bounds what it reads into memory)
live in the two implementations.
"""

from typing import Callable, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from landmark.data import readers
from landmark.data import scalers


@runtime_checkable
class Split(Protocol):
  """Rows of expression profiles (samples x features, float32) and what is known of them.

  `features`, `samples` and `meta` (one row per sample, with a 'study' column) describe
  the rows; `shape` is (rows, features); `resident` says whether the training core puts
  the rows on the devices once (True) or steps through `batches` (False).
  """
  features: np.ndarray
  samples: np.ndarray
  meta: pd.DataFrame
  resident: bool

  @property
  def shape(self) -> tuple[int, int]: ...

  def stats(self) -> scalers.ColumnStats:
    """Per-feature minimum, maximum and mean (float64) of the rows."""

  def fit_scaler(self, scale: str) -> scalers.AffineScaler:
    """The `scale` scaler ('minmax' or 'standard') fitted on the rows."""

  def steps_per_epoch(self, batch_size: int) -> int:
    """Batches in an epoch of `batch_size` rows (the last padded)."""

  def batches(self, seed: int, epoch: int, batch_size: int,
              place: Callable | None = None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """One epoch's (x, mask) batches of `batch_size` rows, in an order drawn from (seed,
    epoch); every row once, the last batch padded with zero rows whose mask is 0."""

  def arrays(self) -> Iterable[np.ndarray]:
    """Every row's values once, in order, as chunks of rows."""

  def with_transform(self, transform: Callable[[np.ndarray], np.ndarray]) -> 'Split':
    """The same rows with `transform` (e.g. a scaler's) applied to their values."""

  def subset(self, n: int, seed: int) -> 'Split':
    """A seeded random `n` of the rows, in order (all when n is 0 or not below their number);
    the same rows for both kinds of split."""

  def to_memory(self, limit: int = 0, seed: int = 0) -> readers.Compendium:
    """The rows in memory, for the stages that need a matrix; a stream reads at most a
    seeded random `limit` of them (0: all)."""

  def profiles_for_means(self) -> tuple[np.ndarray, np.ndarray]:
    """(profiles, their studies) whose overall and per-study means are the split's."""

  def training_data(self) -> 'Mapping[str, np.ndarray] | Split':
    """What landmark.training.core.fit takes: host arrays by name, or the split itself."""


def as_split(data: 'Split | np.ndarray') -> Split:
  """`data` as a Split: a split as it is; a (samples, features) array as an in-memory split
  of numbered samples and features, one study (for callers that train on a bare matrix)."""
  if isinstance(data, Split):
    return data
  values = np.asarray(data, np.float32)
  samples = np.arange(len(values)).astype(str)
  return readers.Compendium(values, np.arange(values.shape[1]).astype(str), samples,
                            pd.DataFrame({'study': ''}, index=pd.Index(samples, name='sample')))
