"""The study-effects experiment's bookkeeping: common targets, random bands, seeds.

The cells themselves are the pipeline's stages (tested elsewhere); here synthetic per-gene
tables stand in for them, so that each summary figure can be checked by hand.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

from configs import common
from configs import study_effects as study_effects_config
from experiments import study_effects
from landmark import fileio
from landmark import run_identity

GENES = [f'G{i}' for i in range(40)]


def _write_cell(config, cell_dir, rng):
  """Two seeds of panels deeplift_zeros (genes 0-4 or 1-5) and l1000 (genes 10-14), and
  four random panels, each scored on the genes outside it, recorded as made under `config`
  for held-out chowdary, centred."""
  panels = {0: {'deeplift_zeros': GENES[0:5], 'l1000': GENES[10:15]},
            1: {'deeplift_zeros': GENES[1:6], 'l1000': GENES[10:15]}}
  for seed, by_name in panels.items():
    rows = [{'target': g, 'mae': 1.0, 'pcc': rng.uniform(0.2, 0.8), 'mae_centred': 0.5,
             'model': 'ridge', 'panel': name}
            for name, panel in by_name.items() for g in GENES if g not in panel]
    seed_dir = os.path.join(cell_dir, f'seed_{seed}')
    fileio.write_table(os.path.join(seed_dir, 'metrics_ridge.tsv.gz'), pd.DataFrame(rows),
                       index=False)
    fileio.write_text(os.path.join(seed_dir, 'ae_summary.json'),
                      json.dumps({'baselines': {'gain_over_study': 0.1 * seed}}))
    run_identity.record_result(cell_dir, study_effects.metrics_file(seed, 'ridge'),
                               study_effects.seed_identity(config, 'chowdary', 'center', seed))
  rows = [{'target': g, 'mae': 1.0, 'pcc': 0.5 + 0.01 * i + 0.001 * j,
           'mae_centred': 0.4 + 0.01 * i,
           'model': 'ridge', 'panel': f'random_{i}'}
          for i in range(4) for j, g in enumerate(GENES) if j % 4 != i]
  fileio.write_table(os.path.join(cell_dir, 'random_ridge.tsv.gz'), pd.DataFrame(rows),
                     index=False)
  run_identity.record_result(cell_dir, 'random_ridge.tsv.gz',
                             study_effects.random_identity(config, 'chowdary', 'center'))


def test_fold_rows_use_common_targets_and_the_random_band(tmp_path):
  rng = np.random.default_rng(0)
  config = study_effects_config.get_config('models=ridge')
  cell_dir = tmp_path / 'chowdary' / 'center'
  _write_cell(config, str(cell_dir), rng)
  seeded, random = study_effects.read_cell(config, str(cell_dir), 'chowdary', 'center', 'ridge')
  common = set(GENES) - set(GENES[0:6]) - set(GENES[10:15])
  assert set(seeded['target']) == common and set(random['target']) <= common

  rows = {row['panel']: row
          for row in study_effects.fold_rows(config, str(tmp_path), 'chowdary', 'center')}
  deeplift = seeded[seeded['panel'] == 'deeplift_zeros']
  per_seed = deeplift.groupby('seed')['pcc'].mean()
  band = random.groupby('panel')['pcc'].mean()
  row = rows['deeplift_zeros']
  assert row['seeds'] == 2 and row['targets'] == len(common)
  assert row['pcc'] == pytest.approx(per_seed.mean())
  assert row['pcc_seed_sd'] == pytest.approx(per_seed.std(ddof=1))
  assert row['pcc_z_random'] == pytest.approx((per_seed.mean() - band.mean()) / band.std(ddof=1))
  assert row['ae_gain_over_study'] == pytest.approx(0.05)
  assert 'pcc_vs_l1000_gap_z' in row and 'pcc_vs_l1000_gap_z' not in rows['l1000']
  assert rows['l1000']['mae_centred_z_random'] == pytest.approx(
      (0.5 - 0.415) / np.std([0.4, 0.41, 0.42, 0.43], ddof=1))


def test_scores_made_under_other_settings_are_neither_reused_nor_reported(tmp_path):
  config = study_effects_config.get_config('models=ridge')
  cell_dir = str(tmp_path / 'chowdary' / 'center')
  _write_cell(config, cell_dir, np.random.default_rng(0))
  assert study_effects.missing_models(config, cell_dir, 'chowdary', 'center', 1) == []
  assert study_effects.missing_models(config, cell_dir, 'chowdary', 'center', 2) == ['ridge']
  # Another ridge penalty grid: every table of the cell is stale.
  changed = study_effects_config.get_config('models=ridge')
  with changed.unlocked():
    changed.evaluate.ridge_grid = (10.0, 100.0)
  assert study_effects.missing_models(changed, cell_dir, 'chowdary', 'center', 0) == ['ridge']
  assert study_effects.read_cell(changed, cell_dir, 'chowdary', 'center', 'ridge') == (None, None)
  assert study_effects.fold_rows(changed, str(tmp_path), 'chowdary', 'center') == []
  # Another set of DeepLIFT references: the seeds' panels differ, the random panels do not.
  fewer = study_effects_config.get_config('models=ridge,reference=zeros')
  assert study_effects.missing_models(fewer, cell_dir, 'chowdary', 'center', 0) == ['ridge']
  assert run_identity.result_is_current(cell_dir, 'random_ridge.tsv.gz',
                                        study_effects.random_identity(fewer, 'chowdary', 'center'))


def test_versus_l1000_pairs_each_seed_with_its_own_l1000_scores():
  index = pd.MultiIndex.from_product([[0, 1], GENES[:10]], names=['seed', 'target'])
  l1000 = pd.Series(np.tile(np.linspace(0.3, 0.6, 10), 2), index=index)
  better = l1000 + 0.05 + np.random.default_rng(1).normal(0, 0.001, len(l1000))
  randoms = [np.random.default_rng(i).normal(0.45, 0.1, 10) for i in range(5)]
  result = study_effects.versus_l1000(better, l1000, randoms)
  assert result['pcc_vs_l1000_t_p_max'] < 1e-6
  gaps = [study_effects.evaluate.calibrated_gap(better.loc[s], l1000.loc[s], randoms)['z']
          for s in (0, 1)]
  assert result['pcc_vs_l1000_gap_z'] == pytest.approx(np.mean(gaps))


def test_holdouts_are_studies_or_study_folds():
  config = study_effects_config.get_config('models=ridge')
  assert tuple(config.study_effects.holdouts) == common.HGU133A_STUDIES
  cell = study_effects.cell_config(config, 'chowdary', 'center', seed=2, reference='zeros')
  assert cell.preprocess.holdout_study == 'chowdary' and cell.seed == 2
  assert cell.preprocess.study_correction == 'center' and cell.deeplift.reference == 'zeros'
  config = study_effects_config.get_config('studies=compendium,folds=5,epochs=7')
  assert len(config.data.studies) == 17 and config.train.epochs == 7
  assert config.preprocess.split == 'study_kfold' and config.preprocess.folds == 5
  assert tuple(config.study_effects.holdouts) == tuple(f'fold_{i}' for i in range(5))
  cell = study_effects.cell_config(config, 'fold_3', 'combat')
  assert cell.preprocess.fold == 3 and 'study_effects' not in cell
  with pytest.raises(ValueError, match="not 'chowdary'"):
    study_effects.cell_config(config, 'chowdary', 'none')
