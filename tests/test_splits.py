"""One split interface: the same questions get the same answers in memory and streamed."""

import numpy as np
import pandas as pd
import pytest

from landmark.data import readers
from landmark.data import splits
from landmark.data import streaming

BATCH = 10


@pytest.fixture(scope='module')
def both_kinds(real_slice, tmp_path_factory):
  """The 48 real training profiles of `real_slice` as an in-memory split and as a stream of
  the GCTX they were written to (chunks of 7 rows, so no chunk is a batch)."""
  values = real_slice[0]
  samples = [f's{i}' for i in range(len(values))]
  memory = readers.Compendium(values, [f'p{j}' for j in range(values.shape[1])], samples,
                              pd.DataFrame({'study': 'slice'},
                                           index=pd.Index(samples, name='sample')))
  path = str(tmp_path_factory.mktemp('splits') / 'slice.gctx')
  readers.write_gctx(path, memory, chunk_samples=7)
  return memory, streaming.SampleStream(path, chunk_samples=7, shuffle_buffer_chunks=2,
                                        prefetch=2)


def _answers(split: splits.Split) -> dict:
  """What the stages ask a split (pipeline, train, core), asked the same way of any kind."""
  stats = split.stats()
  profiles, studies = split.profiles_for_means()
  batches = list(split.batches(seed=0, epoch=2, batch_size=BATCH))
  epoch_rows = np.concatenate([x[mask > 0] for x, mask in batches])
  minmax, standard = split.fit_scaler('minmax'), split.fit_scaler('standard')
  subset = split.subset(10, seed=3)
  return {
      'shape': split.shape, 'features': split.features, 'samples': split.samples,
      'studies': split.meta['study'].to_numpy(), 'minimum': stats.minimum,
      'maximum': stats.maximum, 'mean': stats.mean,
      'mean_profile': profiles.mean(axis=0, dtype=np.float64),
      'study_of_profiles': np.unique(studies),
      'steps_per_epoch': split.steps_per_epoch(BATCH),
      'rows_per_batch': [int(mask.sum()) for _, mask in batches],
      'batch_shapes': {x.shape for x, _ in batches},
      'epoch_rows_sorted': epoch_rows[np.lexsort(epoch_rows.T[::-1])],
      'minmax': (minmax.offset, minmax.span), 'standard': (standard.offset, standard.span),
      'scaled': np.concatenate(list(split.with_transform(minmax.transform).arrays())),
      'subset_samples': subset.samples, 'subset_values': subset.to_memory().values,
      'in_memory': split.to_memory().values,
  }


def test_both_kinds_of_split_answer_alike(both_kinds):
  memory, stream = both_kinds
  assert isinstance(memory, splits.Split) and isinstance(stream, splits.Split)
  in_memory, streamed = _answers(memory), _answers(stream)
  assert in_memory.keys() == streamed.keys()
  close = {'mean': 1e-6, 'mean_profile': 1e-6, 'standard': 1e-5}   # float64 sums in chunks
  for question, answer in in_memory.items():
    if question in close:
      np.testing.assert_allclose(streamed[question], answer, rtol=close[question],
                                 err_msg=question)
    else:
      np.testing.assert_array_equal(streamed[question], answer, err_msg=question)
  assert in_memory['rows_per_batch'] == [BATCH] * 4 + [8]
  values = memory.values   # an epoch is every row once
  np.testing.assert_array_equal(in_memory['epoch_rows_sorted'], values[np.lexsort(values.T[::-1])])


def test_a_stream_reads_at_most_its_limit_into_memory(both_kinds):
  """to_memory bounds what a stream reads (the rows `subset` picks); rows already in memory
  are all kept."""
  memory, stream = both_kinds
  read = stream.to_memory(10, seed=3)
  np.testing.assert_array_equal(read.samples, memory.subset(10, seed=3).samples)
  np.testing.assert_array_equal(read.values, memory.subset(10, seed=3).values)
  assert memory.to_memory(10, seed=3) is memory


def test_the_training_core_is_told_how_to_take_the_rows(both_kinds, real_slice):
  memory, stream = both_kinds
  assert memory.resident and set(memory.training_data()) == {'x'}
  assert not stream.resident and stream.training_data() is stream
  bare = splits.as_split(real_slice[0])
  assert isinstance(bare, splits.Split) and splits.as_split(stream) is stream
  np.testing.assert_array_equal(bare.stats().mean, memory.stats().mean)
