"""TensorBoard event files without TensorFlow: tensorboardX to write, tensorboard to read.

(`flax.metrics.tensorboard` and `clu.metric_writers` import TensorFlow, which this project
does not install.)
"""

import numbers
import os
import time
from typing import Mapping, SupportsFloat

from tensorboard.backend.event_processing import event_accumulator
import matplotlib.image
import tensorboardX
import tensorboardX.summary

from landmark.training import sharding


class MetricWriter:
  """Scalars, figures and hyperparameters of one run, written to `logdir`.

  A run resumed at step s passes `purge_step=s`: TensorBoard (and `read_scalars`) then drop
  the events a crashed predecessor wrote at steps >= s, so every step has one value.
  Event file names end in the creation time in ns: tensorboardX names files by the second
  only, so a writer opened in the same second as its predecessor would overwrite its file.
  In a multi-host run only process 0 writes (`sharding.is_primary`); on the others every
  method does nothing.
  """

  def __init__(self, logdir, purge_step=None):
    self._writer = None
    if sharding.is_primary():
      self._writer = tensorboardX.SummaryWriter(
          os.fspath(logdir), purge_step=purge_step, filename_suffix=f'.{time.time_ns()}')

  def write_scalars(self, step: int, scalars: Mapping[str, SupportsFloat]) -> None:
    """Writes a dict of tag -> number at `step`."""
    if self._writer is not None:
      for tag, value in scalars.items():
        self._writer.add_scalar(tag, float(value), global_step=step)

  def write_text(self, step: int, tag: str, markdown: str) -> None:
    """Writes Markdown text (TensorBoard's Text tab), e.g. the run's config."""
    if self._writer is not None:
      self._writer.add_text(tag, markdown, global_step=step)

  def write_image(self, step: int, tag: str, png_path: str) -> None:
    """Writes a PNG file (a figure the run saved) as an image summary (the Images tab)."""
    if self._writer is not None:
      image = matplotlib.image.imread(png_path)
      self._writer.add_image(tag, image, global_step=step, dataformats='HWC')

  def write_hparams(self, hparams: dict, metrics: dict) -> None:
    """Records a run's hyperparameters with its final metrics for the HParams dashboard,
    in this run (beside its curves), not in a run of their own.

    Values that are not numbers, strings or bools (e.g. layer-width tuples) are stored as
    strings. Metric tags must differ from scalar tags, e.g. 'hparams/eval_mae'.
    """
    hparams = {key: value if isinstance(value, (numbers.Number, str, bool)) else str(value)
               for key, value in hparams.items()}
    metrics = {tag: float(value) for tag, value in metrics.items()}
    if self._writer is not None:
      for summary in tensorboardX.summary.hparams(hparams, metrics):
        self._writer.file_writer.add_summary(summary)
      for tag, value in metrics.items():
        self._writer.add_scalar(tag, value)

  def flush(self) -> None:
    """Writes buffered events to disk now, so TensorBoard sees them mid-run."""
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    """Flushes and closes the event file; the writer writes nothing after."""
    if self._writer is not None:
      self._writer.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()


def read_events(logdir: str | os.PathLike) -> event_accumulator.EventAccumulator:
  """An accumulator holding every event of `logdir` (scalars, text, images, plugin data)."""
  accumulator = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0,
                                  event_accumulator.TENSORS: 0})
  accumulator.Reload()
  return accumulator


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
  """All scalars in the event files of `logdir`: {tag: [(step, value), ...]} by step."""
  accumulator = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.SCALARS: 0})
  accumulator.Reload()
  return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
          for tag in accumulator.Tags()[event_accumulator.SCALARS]}
