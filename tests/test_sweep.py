"""Sweep mechanics: members in sub-workdirs, resumption, HParams, table and plot.

The member runs themselves are the pipeline (tested in test_pipeline.py); here a stand-in
writes the files a finished run leaves, so the test exercises the sweep alone.
"""

import json
import os

import pandas as pd

from configs import sweep as sweep_config
from landmark import fileio
from landmark import run_identity
from landmark import sweep
from landmark.training import metric_writing


def fake_run(calls):
  def run(config, workdir):
    calls.append(config.model.bottleneck)
    b = config.model.bottleneck
    fileio.write_text(os.path.join(workdir, 'ae_summary.json'), json.dumps(
        {'mean_mae': 1 / b, 'mean_pcc': 0.5, 'n_pass': b, 'n_features': 1000,
         'baselines': {'gain_over_study': 0.1}}))
    fileio.write_text(os.path.join(workdir, 'l1000_overlap.json'), json.dumps({'count': b}))
    rows = [{'model': 'linear', 'panel': p, 'pcc_mean': pcc, 'mae_mean': 0.5,
             'pcc_z_random': 1.0}
            for p, pcc in (('deeplift', 0.6), ('deeplift_seed_0', 0.5), ('deeplift_seed_1', 0.7),
                           ('l1000', 0.6), ('random_0', 0.6), ('random_1', 0.6))]
    fileio.write_table(os.path.join(workdir, 'panel_summary.tsv'), pd.DataFrame(rows), index=False)
    fileio.write_text(os.path.join(workdir, 'report.md'), 'done')
    run_identity.RunIdentity(config, workdir).mark_done('evaluate')
  return run


def test_sweep_runs_each_member_once_and_compares(tmp_path):
  config = sweep_config.get_config('bottleneck=8+16')
  calls = []
  table = sweep.run_sweep(config, str(tmp_path), fake_run(calls))
  assert calls == [8, 16]
  assert list(table['model.bottleneck']) == [8, 16]
  written = pd.read_csv(tmp_path / 'sweep.tsv', sep='\t')
  assert list(written['l1000_overlap']) == [8, 16]
  assert written['deeplift_seed_pcc_sd'].round(12).tolist() == [0.141421356237, 0.141421356237]
  assert os.path.getsize(tmp_path / 'sweep.png') > 0
  hparams = metric_writing.read_scalars(tmp_path / 'bottleneck_16' / 'tensorboard')
  assert hparams['hparams/ae_mae'] == [(0, 1 / 16)]

  config = sweep_config.get_config('bottleneck=8+16+32')
  sweep.run_sweep(config, str(tmp_path), fake_run(calls))
  assert calls == [8, 16, 32]                 # finished members are skipped


def test_sweep_over_a_categorical_field(tmp_path):
  config = sweep_config.get_config('bottleneck=8')
  config.sweep.parameter, config.sweep.grid = 'preprocess.holdout_study', ('GSE781', 'chowdary')
  calls = []
  table = sweep.run_sweep(config, str(tmp_path), fake_run(calls))
  assert list(table['preprocess.holdout_study']) == ['GSE781', 'chowdary']
  assert os.path.isdir(tmp_path / 'holdout_study_chowdary')
  assert os.path.getsize(tmp_path / 'sweep.png') > 0
