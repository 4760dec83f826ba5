"""Atomic file output: a failed run never leaves a half-written or clobbered result."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator, TYPE_CHECKING

if TYPE_CHECKING:   # pandas and matplotlib stay unimported until a caller brings them
  from matplotlib import figure as mpl_figure
  import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it onto `path` only on success."""
  path = os.fspath(path)
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix,
                             dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, 'w') as f:
      f.write(text)


def write_table(path: str | os.PathLike, frame: pd.DataFrame, **to_csv_kwargs: Any) -> None:
  """Writes a DataFrame as TSV atomically."""
  with atomic_path(path) as tmp:
    frame.to_csv(tmp, sep='\t', **to_csv_kwargs)


def save_figure(path: str | os.PathLike, figure: mpl_figure.Figure) -> None:
  """Saves a matplotlib figure as PNG atomically; one made by pyplot is closed after."""
  with atomic_path(path) as tmp:
    figure.savefig(tmp, dpi=120, bbox_inches='tight', format='png')
  if figure.canvas.manager is not None:
    import matplotlib.pyplot as plt
    plt.close(figure)
