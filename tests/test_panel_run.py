"""The panel designer as a run of its own (config.method a selector) and as an API call:
data -> panel -> evaluation, with no AutoEncoder, on the real studies of configs/test.py."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from configs import common
from configs import test as test_config
import landmark
from landmark import errors
from landmark import pipeline
from landmark.data import readers
from landmark.evaluation import panels as panels_lib
from landmark.selection import selectors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHOD = 'greedy_ridge_standardised'
K = 60
FLAGS = (f'--config.method={METHOD}', f'--config.panel.k={K}', '--config.dgex.epochs=2')


def _main(workdir, *flags):
  return subprocess.run([sys.executable, 'main.py', '--config=configs/test.py', *FLAGS,
                         f'--workdir={workdir}', *flags], capture_output=True, text=True,
                        cwd=REPO, check=False)


def _config(**panel):
  config = test_config.get_config()
  config.method, config.panel.k, config.dgex.epochs = METHOD, K, 2
  config.panel.update(panel)
  return config


@pytest.fixture(scope='module')
def panel_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('panel'))
  result = _main(workdir)
  assert result.returncode == 0, result.stderr[-5000:]
  return workdir, result.stderr


def test_the_run_designs_without_an_autoencoder(panel_run):
  workdir, log = panel_run
  with open(os.path.join(workdir, 'stages.json')) as f:
    assert list(json.load(f)) == ['data', 'panel', 'evaluate']
  assert not [name for name in os.listdir(workdir) if name.startswith('seed_')]
  assert 'AutoEncoder' not in log and 'DeepLIFT' not in log
  for name in ('panel.tsv', 'panel.gmt', 'report.md', 'panels.gmt', 'panel_summary.tsv',
               'l1000_overlap.json', 'fig3_linear.png', 'fig3_dgex.png'):
    assert os.path.exists(os.path.join(workdir, name)), name
  models = sorted(os.listdir(os.path.join(workdir, 'models')))
  assert f'{METHOD}_dgex' in models and f'{METHOD}_linear' in models and 'l1000_dgex' in models
  with open(os.path.join(workdir, 'report.md')) as f:
    report = f.read()
  assert report.index(f'**linear: the {METHOD} panel') < report.index('## The panel')


def test_panel_is_the_selectors_panel_on_the_prepared_data(panel_run):
  """panel.tsv (the data streamed through the split interface, probes collapsed chunk by
  chunk, every annotated gene) holds what the in-memory selector picks from the same
  training split, with gains and the assay columns."""
  workdir, _ = panel_run
  table = pd.read_csv(os.path.join(workdir, 'panel.tsv'), sep='\t', dtype={'entrez': str},
                      keep_default_na=False)
  assert list(table.columns) == ['rank', 'symbol', 'entrez', 'probes', 'gain', 'in_l1000',
                                 'shares_probe_with']
  assert table['rank'].tolist() == list(range(1, K + 1)) and table['symbol'].is_unique
  assert (table['gain'] > 0).all() and table['gain'].sum() < 1
  config = _config()
  splits = pipeline.prepare_data(config, os.path.join(workdir, 'again'))
  genes = panels_lib.gene_splits(splits, readers.read_probe_annotation(config.data.annotation),
                                 None)
  context = selectors.SelectionContext(genes.genes, genes.train, [], config,
                                       studies=genes.train_studies)
  expected = selectors.greedy_ridge_panel(context, K, standardise=True)
  assert table['symbol'].tolist() == expected['symbol'].tolist()
  np.testing.assert_allclose(table['gain'], expected['gain'], rtol=1e-6)
  gmt = open(os.path.join(workdir, 'panel.gmt')).read().rstrip('\n').split('\t')
  assert gmt[0] == METHOD and gmt[2:] == table['symbol'].tolist()


def test_rerun_reuses_and_changes_are_refused(panel_run):
  workdir, _ = panel_run
  before = os.path.getmtime(os.path.join(workdir, 'panel.tsv'))
  again = _main(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'panel is current' in again.stderr and 'evaluation of this panel is current' in again.stderr
  assert os.path.getmtime(os.path.join(workdir, 'panel.tsv')) == before
  changed = _main(workdir, '--config.panel.k=50')
  assert changed.returncode == 2
  assert changed.stderr.strip().splitlines()[-1].startswith(
      f'error: {workdir}: its panel results were made under another config or other data '
      '(panel.k: 60 -> 50)')
  train = _main(workdir, '--mode=train')
  assert train.returncode == 2 and 'trains no AutoEncoder' in train.stderr.splitlines()[-1]


def test_bad_method_and_universe_are_refused_before_reading(tmp_path):
  config = _config()
  config.method = 'deeplift_ae'
  with pytest.raises(errors.ConfigError, match=r"^config.method: must be one of \['deeplift'"):
    pipeline.run(config, str(tmp_path))
  with pytest.raises(errors.ConfigError, match='^config.panel.universe: must be one of'):
    pipeline.run(_config(universe='mine'), str(tmp_path))
  with pytest.raises(errors.ConfigError, match='^config.panel.k: 99999 genes asked for'):
    pipeline.run(_config(k=99999), str(tmp_path), mode='explain')


@pytest.fixture(scope='module')
def expression():
  """37 real profiles of two studies (20 chowdary, 17 GSE781) x their first 2,000 probes,
  samples in rows, raw values; and the study of each."""
  frames = [pd.read_csv(common.data_path('hgu133a', f'{study}.tsv.gz'), sep='\t',
                        index_col='probe', nrows=2000).iloc[:, :20]
            for study in ('chowdary', 'GSE781')]
  return pd.concat(frames, axis=1).T, ['chowdary'] * 20 + ['GSE781'] * len(frames[1].columns)


def test_design_panel_api(expression, tmp_path):
  data, studies = expression
  panel = landmark.design_panel(data, k=25, studies=studies, workdir=str(tmp_path))
  assert len(panel) == 25 and panel['symbol'].is_unique and (panel['gain'] > 0).all()
  assert panel.attrs['workdir'] == str(tmp_path)
  again = landmark.design_panel(data, k=25, studies=studies, workdir=str(tmp_path))
  pd.testing.assert_frame_equal(again, panel)   # the finished stage is reused
  with pytest.raises(ValueError, match=f'studies: 3 labels for {len(data)} samples'):
    landmark.design_panel(data, k=25, studies=['a', 'b', 'c'])
  assert 'design_panel' in landmark.API
