"""The study-scaling experiment's draws and bookkeeping; synthetic per-gene tables stand in
for its cells (the pipeline stages they run are tested elsewhere)."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from configs import study_scaling as scaling_config
from experiments import study_scaling
from landmark import fileio
from landmark import run_identity
from landmark.errors import ConfigError

GENES = [f'G{i}' for i in range(40)]


def test_draws_are_nested_and_never_train_on_the_held_out_studies():
  config = scaling_config.get_config('sizes=2+4+12,draws=3')
  held = set(scaling_config.HOLDOUT)
  cells = study_scaling.cells(config)
  assert [(d, n) for d, n, _ in cells] == [(d, n) for d in range(3) for n in (2, 4, 12)]
  for d in range(3):
    by_n = {n: training for draw, n, training in cells if draw == d}
    assert by_n[4][:2] == by_n[2] and by_n[12][:4] == by_n[4]
    assert len(set(by_n[12])) == 12 and not set(by_n[12]) & held
  assert len({tuple(training) for _, n, training in cells if n == 2}) > 1
  cell = study_scaling.cell_config(config, cells[0][2])
  names = {os.path.basename(path).split('.')[0] for path in cell.data.studies}
  assert names == held | set(cells[0][2]) and 'study_scaling' not in cell
  assert cell.preprocess.split == 'leave_study_out'
  assert cell.preprocess.holdout_study == '+'.join(scaling_config.HOLDOUT)
  with pytest.raises(ConfigError, match='14 training studies asked for, but 13'):
    study_scaling.draws(scaling_config.get_config('sizes=2+14'))


def _write_cell(directory, identity, shift):
  """Fixed panels deeplift (genes 0-4), l1000 (10-14), peel_off (20-24) and four random
  panels, recorded as made under `identity`; every PCC is `shift` plus a constant per
  panel."""
  panels = {'deeplift': GENES[0:5], 'l1000': GENES[10:15], 'peel_off': GENES[20:25]}
  level = {'deeplift': 0.30, 'l1000': 0.40, 'peel_off': 0.45}
  rows = [{'target': g, 'pcc': shift + level[name], 'mae': 1.0, 'mae_centred': 0.5,
           'model': 'ridge', 'panel': name}
          for name, panel in panels.items() for g in GENES if g not in panel]
  fileio.write_table(os.path.join(directory, 'metrics_ridge.tsv.gz'), pd.DataFrame(rows),
                     index=False)
  rows = [{'target': g, 'pcc': shift + 0.35 + 0.01 * i, 'mae': 1.0, 'mae_centred': 0.5 + 0.01 * i,
           'model': 'ridge', 'panel': f'random_{i}'}
          for i in range(4) for j, g in enumerate(GENES) if j % 4 != i]
  fileio.write_table(os.path.join(directory, 'random_ridge.tsv.gz'), pd.DataFrame(rows),
                     index=False)
  fileio.write_table(os.path.join(directory, 'panels.tsv'), pd.DataFrame(
      [(name, rank, g) for name, panel in panels.items() for rank, g in enumerate(panel)],
      columns=['panel', 'rank', 'gene']), index=False)
  fileio.write_text(os.path.join(directory, 'data_summary.json'),
                    json.dumps({'train': {'samples': 50}}))
  fileio.write_text(os.path.join(directory, 'seed_0', 'ae_summary.json'),
                    json.dumps({'baselines': {'gain_over_study': 0.01}}))
  for name in ('metrics_ridge.tsv.gz', 'random_ridge.tsv.gz'):
    run_identity.record_result(directory, name, identity)


def _identity(config, draw, n):
  training = next(t for d, size, t in study_scaling.cells(config) if (d, size) == (draw, n))
  return run_identity.results_identity(study_scaling.cell_config(config, training))


def test_summary_averages_draws_and_sets_panels_against_random_and_l1000(tmp_path):
  config = scaling_config.get_config('sizes=2+4,draws=2')
  for d, shift in enumerate((0.0, 0.1)):
    _write_cell(study_scaling.cell_dir(str(tmp_path), d, 2), _identity(config, d, 2), shift)
  per_cell, summary = study_scaling.summarize(config, str(tmp_path))
  assert set(per_cell['n_studies']) == {2} and len(per_cell) == 2 * 4
  rows = summary.set_index('panel')
  assert rows.loc['deeplift', 'draws'] == 2 and rows.loc['deeplift', 'k'] == 5
  assert rows.loc['deeplift', 'pcc'] == pytest.approx(0.35)
  assert rows.loc['deeplift', 'pcc_draw_sd'] == pytest.approx(np.std([0.3, 0.4], ddof=1))
  assert rows.loc['deeplift', 'pcc_gap_l1000'] == pytest.approx(-0.1)
  assert rows.loc['peel_off', 'pcc_gap_l1000'] == pytest.approx(0.05)
  random_means = 0.35 + 0.01 * np.arange(4)
  assert rows.loc['random', 'pcc'] == pytest.approx(random_means.mean() + 0.05)
  assert rows.loc['l1000', 'pcc_z_random'] == pytest.approx(
      (0.40 - random_means.mean()) / random_means.std(ddof=1))
  assert rows.loc['deeplift', 'targets'] == len(GENES) - 15
  assert np.isnan(rows.loc['l1000', 'pcc_gap_l1000_z'])
  assert rows.loc['deeplift', 'pcc_gap_l1000_z'] < 0 < rows.loc['peel_off', 'pcc_gap_l1000_z']


def test_cells_made_under_other_settings_are_run_again_and_not_reported(tmp_path):
  config = scaling_config.get_config('sizes=2+4,draws=2')
  directory = study_scaling.cell_dir(str(tmp_path), 0, 2)
  _write_cell(directory, _identity(config, 0, 2), 0.0)
  assert study_scaling.finished(directory, _identity(config, 0, 2), ('ridge',))
  assert not study_scaling.finished(directory, _identity(config, 1, 2), ('ridge',))
  more_epochs = scaling_config.get_config('sizes=2+4,draws=2,epochs=7')
  assert not study_scaling.finished(directory, _identity(more_epochs, 0, 2), ('ridge',))
  assert study_scaling.summarize(more_epochs, str(tmp_path))[0].empty
