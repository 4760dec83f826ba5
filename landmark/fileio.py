"""Atomic file output: a failed run never leaves a half-written or clobbered result."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path`; renames it onto `path` only on success."""
  path = os.fspath(path)
  directory = os.path.dirname(path) or '.'
  os.makedirs(directory, exist_ok=True)
  suffix = os.path.splitext(path)[1]
  fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=suffix, dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path, text):
  """Writes `text` to `path` atomically."""
  with atomic_path(path) as tmp:
    with open(tmp, 'w') as f:
      f.write(text)


def write_table(path, frame, **to_csv_kwargs):
  """Writes a DataFrame as TSV atomically."""
  with atomic_path(path) as tmp:
    frame.to_csv(tmp, sep='\t', **to_csv_kwargs)


def save_figure(path, figure):
  """Saves a matplotlib figure as PNG atomically; one made by pyplot is closed after."""
  with atomic_path(path) as tmp:
    figure.savefig(tmp, dpi=120, bbox_inches='tight', format='png')
  if figure.canvas.manager is not None:
    import matplotlib.pyplot as plt
    plt.close(figure)
