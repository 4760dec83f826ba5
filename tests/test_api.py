"""The notebook API: landmarks of a DataFrame through the pipeline's first stages."""

import os

import pandas as pd
import pytest

from configs import common
from configs import test as test_config
import landmark


@pytest.fixture(scope='module')
def expression():
  """30 real chowdary profiles x its first 3,000 probes, samples in rows, raw values."""
  table = pd.read_csv(common.data_path('hgu133a', 'chowdary.tsv.gz'), sep='\t',
                      index_col='probe', nrows=3000)
  return table.iloc[:, :30].T


def test_find_landmarks_ranks_the_genes_of_a_dataframe(expression, tmp_path):
  config = test_config.get_config('epochs=1')
  config.seeds = 1
  config.data.samples_table = ()
  ranked = landmark.find_landmarks(expression, k=20, config=config, workdir=str(tmp_path))
  assert list(ranked.columns) == ['rank', 'symbol', 'entrez', 'mean_rank', 'score', 'in_L1000']
  assert 2000 < len(ranked) < 3000 and ranked['symbol'].is_unique
  assert ranked['rank'].tolist() == list(range(1, len(ranked) + 1))
  assert ranked['score'].is_monotonic_decreasing and ranked['in_L1000'].any()
  assert ranked.attrs['workdir'] == str(tmp_path)
  written = pd.read_csv(os.path.join(tmp_path, 'input.tsv'), sep='\t', index_col='probe')
  assert written.shape == (3000, 30)
  again = landmark.find_landmarks(expression, k=20, config=config, workdir=str(tmp_path))
  pd.testing.assert_frame_equal(again, ranked)   # the finished run is reused


def test_find_landmarks_refuses_other_data():
  with pytest.raises(TypeError, match='a path, a samples x genes DataFrame or an AnnData'):
    landmark.find_landmarks([[1.0, 2.0]])
