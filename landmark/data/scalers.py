"""Per-gene scalings fitted on the training split: min-max (the paper's) and z-score."""

import dataclasses
import os

import numpy as np
from numpy.typing import ArrayLike

from landmark import fileio


@dataclasses.dataclass
class ColumnStats:
  """Per-feature minimum, maximum and mean (float64) over a split's rows (`Split.stats`)."""
  minimum: np.ndarray
  maximum: np.ndarray
  mean: np.ndarray


class AffineScaler:
  """Per-feature scaling (x - offset) / span, fitted on the training split by a subclass.

  Values outside what the training split showed are not clipped (held-out data may map
  outside [0, 1] under min-max scaling); that is intended. `save` names the two arrays
  by `KEYS`, so a saved scaler.npz says what its numbers are.
  """

  KEYS = ('offset', 'span')

  def __init__(self, offset=None, span=None):
    self.offset = None if offset is None else np.asarray(offset, np.float32)
    self.span = None if span is None else np.asarray(span, np.float32)

  def transform(self, x: ArrayLike) -> np.ndarray:
    """(x - offset) / span as float32: the scaled values the models see."""
    return ((np.asarray(x, np.float32) - self.offset) / self.span).astype(np.float32)

  def inverse_transform(self, x: ArrayLike) -> np.ndarray:
    """x * span + offset as float32: scaled values (e.g. predictions) back in data units."""
    return (np.asarray(x, np.float32) * self.span + self.offset).astype(np.float32)

  def save(self, path: str | os.PathLike) -> None:
    """Writes the offset and span to an .npz file (atomically), named by `KEYS`."""
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        np.savez(f, **dict(zip(self.KEYS, (self.offset, self.span))))

  @classmethod
  def load(cls, path: str | os.PathLike) -> 'AffineScaler':
    """Reads a scaler written by `save`, to scale new data as the training split was."""
    with np.load(os.fspath(path)) as saved:
      return cls(*(saved[key] for key in cls.KEYS))


def nonzero_span(span: np.ndarray) -> np.ndarray:
  """`span` with zeros (constant features) replaced by 1, so they map to 0 and back."""
  return np.where(span > 0, span, 1.0).astype(np.float32)


class MinMaxScaler(AffineScaler):
  """Per-feature scaling to [0, 1] over the training split: (x - min) / (max - min).

  Constant features (max == min) get span 1, so they map to 0 and back without dividing by
  zero.
  """

  KEYS = ('minimum', 'span')

  @property
  def minimum(self) -> np.ndarray | None:
    """Per-feature training minimum (the offset); None before `fit`."""
    return self.offset

  def fit(self, x: ArrayLike) -> 'MinMaxScaler':
    """Fits minimum and span on the training split `x` (samples, features); returns self."""
    x = np.asarray(x, np.float32)
    self.offset = x.min(axis=0)
    self.span = nonzero_span(x.max(axis=0) - self.offset)
    return self


class StandardScaler(AffineScaler):
  """Per-feature standardisation over the training split: (x - mean) / sd.

  Every gene then weighs the same in the loss whatever its spread, and the targets are
  unbounded, so it goes with a linear output layer. Constant features get sd 1.
  """

  KEYS = ('mean', 'std')

  @property
  def mean(self) -> np.ndarray | None:
    """Per-feature training mean (the offset); None before `fit`."""
    return self.offset

  @property
  def std(self) -> np.ndarray | None:
    """Per-feature training sd (the span, 1 for constant features); None before `fit`."""
    return self.span

  def fit(self, x: ArrayLike) -> 'StandardScaler':
    """Fits mean and sd on the training split `x` (samples, features); returns self."""
    x = np.asarray(x, np.float64)
    self.offset = x.mean(axis=0).astype(np.float32)
    self.span = nonzero_span(x.std(axis=0))
    return self


SCALERS = {'minmax': MinMaxScaler, 'standard': StandardScaler}
