"""The selector benchmark's folds, seeds and summary (its panels and scores are the
selectors' and panels' own, tested elsewhere)."""

import os

import numpy as np
import pandas as pd
import pytest

from configs import compendium
from configs import cross_study
from experiments import selector_benchmark


def test_folds_are_held_out_studies_or_study_folds():
  by_study = selector_benchmark.folds(cross_study.get_config('holdout=chowdary'), 'w')
  assert [(name, path) for name, _, path in by_study] == [
      ('chowdary', os.path.join('w', 'holdout_study_chowdary'))]
  by_fold = selector_benchmark.folds(compendium.get_config('folds=5'), 'w')
  assert [name for name, _, _ in by_fold] == [f'fold_{i}' for i in range(5)]
  name, config, path = by_fold[3]
  assert path == os.path.join('w', 'fold_3') and config.preprocess.fold == 3
  assert config.preprocess.split == 'study_kfold' and 'sweep' not in config


def test_each_selector_runs_over_its_own_seeds():
  seeds = {'stochastic': 3, 'random': 20, 'ae': 2}
  assert list(selector_benchmark.seeds_of('deeplift_ae', seeds)) == [0, 1]
  assert list(selector_benchmark.seeds_of('gradient_x_input_stratified', seeds)) == [0, 1]
  assert list(selector_benchmark.seeds_of('greedy_ridge', seeds)) == [0]
  assert list(selector_benchmark.seeds_of('random', seeds)) == list(range(20))
  assert list(selector_benchmark.seeds_of('peel_off', seeds)) == [0, 1, 2]
  assert list(selector_benchmark.seeds_of('variance', seeds)) == [0]


def test_summary_sets_each_selector_against_its_folds_random_panels():
  rows = []
  for fold, shift in (('fold_0', 0.0), ('fold_1', 0.1)):
    for seed in range(4):
      rows.append({'fold': fold, 'selector': 'random', 'seed': seed, 'k': 100, 'model': 'ridge',
                   'pcc_mean': shift + 0.30 + 0.01 * seed})
    rows.append({'fold': fold, 'selector': 'l1000', 'seed': 0, 'k': 100, 'model': 'ridge',
                 'pcc_mean': shift + 0.35})
  table = pd.DataFrame(rows).assign(targets=50, mae_centred_mean=0.5, mae_mean=1.0,
                                    pcc_vs_l1000=0.0, mae_centred_vs_l1000=0.0,
                                    pcc_vs_l1000_t_p=1.0, mae_centred_vs_l1000_t_p=1.0)
  per_fold, summary = selector_benchmark.summarize(table, alpha=0.01)
  band = 0.30 + 0.01 * np.arange(4)
  z = (0.35 - band.mean()) / band.std(ddof=1)
  l1000 = per_fold[per_fold['selector'] == 'l1000']
  assert l1000['pcc_z_random'].to_numpy() == pytest.approx([z, z])
  row = summary.set_index('selector').loc['l1000']
  assert row['pcc_z_random'] == pytest.approx(z) and row['folds'] == 2
