"""Streaming a GCTX in sample chunks: coverage, determinism, prefetch, memory bound, parity."""

import json
import os
import time

from flax import nnx
import jax
import numpy as np
import pandas as pd
import pytest

from configs import common
from configs import test as test_config
from landmark import pipeline
from landmark.attribution import deeplift
from landmark.data import readers
from landmark.data import scalers
from landmark.data import streaming
from landmark.training import core
from landmark.training import train

N_ROWS, CHUNK, BATCH = 203, 16, 10


@pytest.fixture(scope='module')
def numbered(tmp_path_factory):
  """A synthetic GCTX whose feature 0 holds the row number (to follow samples around)."""
  values = np.random.default_rng(0).normal(size=(N_ROWS, 6)).astype(np.float32)
  values[:, 0] = np.arange(N_ROWS)
  samples = [f's{i}' for i in range(N_ROWS)]
  compendium = readers.Compendium(values, [f'f{i}' for i in range(6)], samples,
                               pd.DataFrame(index=pd.Index(samples, name='sample')))
  path = str(tmp_path_factory.mktemp('numbered') / 'numbered.gctx')
  readers.write_gctx(path, compendium, chunk_samples=CHUNK)
  return path


@pytest.fixture(scope='module')
def two_studies():
  """60 real profiles, the first 30 of chowdary and of nakayama: probes x samples, linear."""
  frames = [pd.read_csv(common.data_path('hgu133a', f'{study}.tsv.gz'), sep='\t',
                        index_col='probe', usecols=range(31))
            for study in ('chowdary', 'nakayama')]
  return pd.concat(frames, axis=1)


@pytest.fixture(scope='module')
def real_gctx(two_studies, tmp_path_factory):
  """The 60 real profiles, log2, 600 probes and the AFFX controls, as GCTX."""
  keep = (np.arange(len(two_studies)) < 600) | two_studies.index.str.startswith('AFFX')
  table = two_studies[keep]
  values = np.log2(np.maximum(table.T.to_numpy(np.float32), 1.0))
  compendium = readers.Compendium(values, table.index, table.columns,
                               pd.DataFrame(index=pd.Index(table.columns, name='sample')))
  path = str(tmp_path_factory.mktemp('real') / 'real.gctx')
  readers.write_gctx(path, compendium, chunk_samples=8)
  return path, compendium


def _row_ids(batches):
  """The row numbers of each batch's real samples, and the masks."""
  ids, masks = [], []
  for x, mask in batches:
    assert x.shape == (BATCH, 6) and mask.shape == (BATCH,)
    ids.append(x[mask > 0, 0].astype(int))
    masks.append(mask)
  return ids, masks


def _stream(path, **kwargs):
  options = {'chunk_samples': CHUNK, 'shuffle_buffer_chunks': 3, 'prefetch': 2, **kwargs}
  return streaming.SampleStream(path, **options)


def test_every_sample_once_per_epoch_deterministic_per_epoch(numbered):
  stream = _stream(numbered)
  ids, masks = _row_ids(stream.batches(seed=0, epoch=1, batch_size=BATCH))
  np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(N_ROWS))
  assert len(ids) == stream.steps_per_epoch(BATCH) == 21
  assert all(m.all() for m in masks[:-1]) and masks[-1].sum() == N_ROWS % BATCH
  again, _ = _row_ids(stream.batches(seed=0, epoch=1, batch_size=BATCH))
  assert all(np.array_equal(a, b) for a, b in zip(ids, again))
  for seed, epoch in ((0, 2), (1, 1)):
    other, _ = _row_ids(stream.batches(seed=seed, epoch=epoch, batch_size=BATCH))
    assert not np.array_equal(np.concatenate(ids), np.concatenate(other))
  # Chunks are read in a shuffled order and the buffer mixes samples of several chunks.
  first_chunks = [batch[0] // CHUNK for batch in ids]
  assert first_chunks != sorted(first_chunks)
  assert max(len(np.unique(batch // CHUNK)) for batch in ids) > 1


def test_a_split_streams_exactly_its_rows(numbered):
  rows = np.sort(np.random.default_rng(1).choice(N_ROWS, 77, replace=False))
  stream = _stream(numbered, rows=rows)
  ids, _ = _row_ids(stream.batches(seed=0, epoch=3, batch_size=BATCH))
  np.testing.assert_array_equal(np.sort(np.concatenate(ids)), rows)
  np.testing.assert_array_equal(np.concatenate(list(stream.arrays()))[:, 0], rows)
  np.testing.assert_array_equal(stream.samples, [f's{i}' for i in rows])
  with pytest.raises(readers.DataError, match='increasing sample indices'):
    _stream(numbered, rows=rows[::-1])


def test_prefetch_thread_yields_the_batches_of_a_synchronous_read(numbered):
  threaded = list(_stream(numbered, prefetch=3).batches(0, 1, BATCH))
  synchronous = list(_stream(numbered, prefetch=0).batches(0, 1, BATCH))
  assert len(threaded) == len(synchronous)
  for (x, mask), (x0, mask0) in zip(threaded, synchronous):
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(mask, mask0)


def test_reader_stays_within_buffer_and_prefetch(numbered, monkeypatch):
  """Rows read but not yet consumed never exceed the shuffle buffer plus the prefetch queue."""
  counts = {'read': 0, 'consumed': 0, 'ahead': 0}
  read = readers.GctxReader.read

  def counting_read(self, start, stop, feature_index=None):
    counts['read'] += stop - start
    counts['ahead'] = max(counts['ahead'], counts['read'] - counts['consumed'])
    return read(self, start, stop, feature_index)

  monkeypatch.setattr(readers.GctxReader, 'read', counting_read)
  buffer_chunks, prefetch = 2, 2
  stream = _stream(numbered, shuffle_buffer_chunks=buffer_chunks, prefetch=prefetch)
  batches = stream.batches(0, 1, BATCH)
  for _ in batches:
    counts['consumed'] += BATCH
    time.sleep(0.002)  # a slow consumer: the reader runs as far ahead as it may
  assert counts['read'] == N_ROWS
  assert counts['ahead'] <= buffer_chunks * CHUNK + (prefetch + 2) * BATCH < N_ROWS
  assert batches.wait_seconds >= 0


def test_producer_errors_reach_the_consumer(numbered):
  def failing(chunk):
    raise RuntimeError('bad chunk')

  with pytest.raises(RuntimeError, match='bad chunk'):
    list(_stream(numbered).with_transform(failing).batches(0, 1, BATCH))


def test_streamed_scaler_equals_in_memory_fit(real_gctx):
  path, compendium = real_gctx
  stream = _stream(path, chunk_samples=7)
  scaler = streaming.fit_scaler(stream)
  expected = scalers.MinMaxScaler().fit(compendium.values)
  np.testing.assert_array_equal(scaler.minimum, expected.minimum)
  np.testing.assert_array_equal(scaler.span, expected.span)
  np.testing.assert_allclose(stream.stats().mean, compendium.values.mean(axis=0, dtype=np.float64),
                             rtol=1e-6)


def test_nan_in_the_file_is_a_one_line_error(tmp_path):
  values = np.zeros((20, 3), np.float32)
  values[13, 2] = np.nan
  samples = [f's{i}' for i in range(20)]
  path = str(tmp_path / 'nan.gctx')
  readers.write_gctx(path, readers.Compendium(values, ['a', 'b', 'c'], samples,
                                        pd.DataFrame(index=pd.Index(samples))))
  with pytest.raises(readers.DataError, match=r"nan.gctx: NaN/inf .* sample 's13', feature 'c'"):
    _stream(path, chunk_samples=4).stats()


def test_streamed_deeplift_equals_in_memory(real_gctx):
  path, compendium = real_gctx
  n_features = compendium.shape[1]
  keys = jax.random.split(jax.random.key(0), 2)
  layers = [(np.asarray(jax.random.normal(keys[0], (n_features, 12)) / 25),
             np.zeros(12, np.float32)),
            (np.asarray(jax.random.normal(keys[1], (12, 4)) / 4), np.zeros(4, np.float32))]
  scaler = scalers.MinMaxScaler().fit(compendium.values)
  x = scaler.transform(compendium.values)
  reference = x.mean(axis=0)
  stream = _stream(path, chunk_samples=9).with_transform(scaler.transform)
  streamed = deeplift.score_inputs(layers, 'sigmoid', stream.arrays(), reference, max_chunk_mb=0.2)
  in_memory = deeplift.score_inputs(layers, 'sigmoid', x, reference, max_chunk_mb=0.2)
  np.testing.assert_allclose(streamed, in_memory, rtol=1e-6)


def _params(model):
  return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _train_config(epochs):
  config = test_config.get_config(f'epochs={epochs}')
  config.train.checkpoint_every_epochs = 100  # only the last epoch, always saved
  return config


def test_streamed_training_resumes_bit_exactly(real_gctx, tmp_path):
  path, compendium = real_gctx
  stream = _stream(path, rows=np.arange(48), chunk_samples=8, shuffle_buffer_chunks=2)
  heldout = compendium.values[48:]
  config = _train_config(epochs=3)
  model, scaler, history = train.train_autoencoder(config, str(tmp_path / 'whole'), stream, heldout)
  np.testing.assert_array_equal(scaler.minimum, compendium.values[:48].min(axis=0))
  losses = history[core.TRAIN_LOSS]
  assert len(losses) == 3 and losses[-1] < losses[0]
  assert all(0 <= f <= 1 for f in history[core.DATA_WAIT_FRACTION])
  workdir = str(tmp_path / 'resumed')
  train.train_autoencoder(_train_config(epochs=1), workdir, stream, heldout)
  resumed, _, resumed_history = train.train_autoencoder(config, workdir, stream, heldout)
  for expected, actual in zip(_params(model), _params(resumed)):
    np.testing.assert_array_equal(expected, actual)
  assert resumed_history[core.TRAIN_LOSS] == history[core.TRAIN_LOSS]


def _stream_config(path, **preprocess):
  config = test_config.get_config()
  config.data.studies = (path,)
  config.data.samples_table = ()
  config.data.max_samples = 0
  config.data.stream = True
  config.data.chunk_samples = 8
  config.preprocess.update({'log2': 'never', 'dedup': False, 'quantile_normalize': False,
                            'val_fraction': 0.15, 'test_fraction': 0.15, **preprocess})
  return config


def test_pipeline_prepares_streamed_splits_without_control_probes(real_gctx, tmp_path):
  path, compendium = real_gctx
  splits = pipeline.prepare_data(_stream_config(path), str(tmp_path))
  assert isinstance(splits.train, streaming.SampleStream)
  assert not np.char.startswith(splits.train.features, 'AFFX').any()
  assert len(splits.train.features) == 600
  np.testing.assert_array_equal(splits.val.features, splits.train.features)
  ids = np.concatenate([splits.train.samples, splits.val.samples, splits.test.samples])
  assert sorted(ids) == sorted(compendium.samples)
  assert (len(splits.val.samples), len(splits.test.samples)) == (9, 9)
  expected = compendium.take_samples(np.isin(compendium.samples, splits.test.samples))
  np.testing.assert_array_equal(splits.test.values, expected.values[:, :600])
  with open(os.path.join(tmp_path, 'data_summary.json')) as f:
    summary = json.load(f)
  train_values = compendium.values[np.isin(compendium.samples, splits.train.samples)][:, :600]
  assert summary['train']['value_range'] == [float(train_values.min()), float(train_values.max())]


@pytest.mark.parametrize('setting, value', [('dedup', True), ('quantile_normalize', True),
                                            ('study_correction', 'center'), ('log2', 'auto')])
def test_settings_that_need_the_matrix_in_memory_are_refused(real_gctx, tmp_path, setting, value):
  config = _stream_config(real_gctx[0], **{setting: value})
  with pytest.raises(ValueError, match=f'cannot run preprocess.{setting}'):
    pipeline.prepare_data(config, str(tmp_path))


def test_the_whole_run_streams_a_real_gctx(two_studies, tmp_path):
  """Every stage on a streamed GCTX of 60 real profiles at full HG-U133A width: DeepLIFT
  scores the stream, the evaluation stages read a subset of its rows into memory."""
  compendium = readers.Compendium(np.log2(np.maximum(two_studies.T.to_numpy(np.float32), 1.0)),
                               two_studies.index, two_studies.columns,
                               pd.DataFrame(index=pd.Index(two_studies.columns, name='sample')))
  path = str(tmp_path / 'two_studies.gctx')
  readers.write_gctx(path, compendium, chunk_samples=8)
  config = _stream_config(path)
  config.seeds = 1
  config.data.stream_eval_samples = 30
  config.evaluate.models = ('linear',)
  config.evaluate.random_sets = 0   # random panels: test_pipeline.py
  workdir = str(tmp_path / 'run')
  pipeline.run(config, workdir)
  ranking = pd.read_csv(os.path.join(workdir, 'landmarks.tsv'), sep='\t')
  assert len(ranking) > 10000 and ranking['symbol'].is_unique
  sample = np.load(os.path.join(workdir, 'seed_0', 'deeplift', 'sample.npz'))
  assert sample['contributions'].shape[0] == 8   # the first streamed chunk of the subset
  report = open(os.path.join(workdir, 'report.md')).read()
  assert 'DeepLIFT vs L1000' in report and 'No study has labels' in report
