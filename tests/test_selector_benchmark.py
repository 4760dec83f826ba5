"""The selector benchmark's folds, seeds and summary (its panels and scores are the
selectors' and panels' own, tested elsewhere)."""

import os

import numpy as np
import pandas as pd
import pytest

from configs import compendium
from configs import cross_study
from configs import test as test_config
from experiments import selector_benchmark
from landmark.inference import regression
from landmark.training import metric_writing


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


def test_gaps_are_set_against_the_random_panels_gaps(tmp_path):
  rows = [{'fold': fold, 'selector': 'random', 'seed': seed, 'pcc_vs_l1000': gap,
           'mae_centred_vs_l1000': -gap}
          for fold in ('fold_0', 'fold_1') for seed, gap in enumerate((-0.02, -0.01, 0.0, 0.01))]
  rows += [{'fold': 'fold_0', 'selector': 'best', 'seed': 0, 'pcc_vs_l1000': 0.035,
            'mae_centred_vs_l1000': -0.035},
           {'fold': 'fold_1', 'selector': 'best', 'seed': 0, 'pcc_vs_l1000': 0.015,
            'mae_centred_vs_l1000': -0.015}]
  table = pd.DataFrame(rows).assign(k=943, model='ridge', targets=50, pcc_mean=0.3,
                                    mae_centred_mean=0.5, mae_mean=1.0, pcc_vs_l1000_t_p=1.0,
                                    mae_centred_vs_l1000_t_p=1.0)
  per_fold, summary = selector_benchmark.summarize(table, alpha=0.01)
  # Gaps between two random panels, over the 12 ordered pairs: ±0.01 (6), ±0.02 (4), ±0.03 (2).
  null_sd = np.std(np.outer([1, -1], [0.01] * 3 + [0.02] * 2 + [0.03]), ddof=1)
  best = per_fold[per_fold['selector'] == 'best'].set_index('fold')
  assert best.loc['fold_0', 'pcc_gap_z'] == pytest.approx(0.035 / null_sd)
  assert best.loc['fold_1', 'mae_centred_gap_z'] == pytest.approx(-0.015 / null_sd)
  row = summary.set_index('selector').loc['best']
  assert row['pcc_gap_z'] == pytest.approx(0.025 / null_sd)
  # Two of the twelve random-minus-random gaps are as large as 0.025 (both 0.03 in size).
  assert row['pcc_gap_p'] == pytest.approx(3 / 13)
  assert row['mae_centred_gap_p'] == pytest.approx(3 / 13)
  # The random panels' own mean gap (-0.005) is smaller than every gap between two of them.
  assert summary.set_index('selector').loc['random', 'pcc_gap_p'] == pytest.approx(1.0)
  assert list(best['pcc_ahead']) == [True, True]
  # Ahead in both folds, but by 1.3 random-panel sds: short of the goal's 2.
  assert not selector_benchmark.meets_goal(row)
  stronger = row.copy()
  stronger['pcc_gap_z'], stronger['mae_centred_gap_z'] = 2.0, -2.0
  assert selector_benchmark.meets_goal(stronger)
  assert '| best | 2 | 1 |' in selector_benchmark.markdown(summary, 'run')
  selector_benchmark.plot(tmp_path / 'selectors.png', summary, 'run')
  assert (tmp_path / 'selectors.png').stat().st_size > 0


def fake_fold(monkeypatch):
  """Replaces choosing and scoring panels by fakes; returns the list of jobs scored."""
  genes = [f'G{i}' for i in range(6)]
  def fake_panels(config, workdir, names, sizes, seeds, stale=frozenset()):
    return None, {(name, seed): {k: genes[:k] for k in sizes}
                  for name in names for seed in selector_benchmark.seeds_of(name, seeds)}
  scored = []
  def fake_score(config, gene_splits, panels, jobs, workdir):
    scored.extend(jobs)
    rng = np.random.default_rng(len(scored))
    return {job: pd.DataFrame({'pcc': rng.uniform(size=3), 'mae_centred': rng.uniform(size=3),
                               'mae': rng.uniform(size=3)}, index=['G3', 'G4', 'G5'])
            for job in jobs}
  monkeypatch.setattr(selector_benchmark, 'fold_panels', fake_panels)
  monkeypatch.setattr(selector_benchmark, 'score', fake_score)
  return scored


def test_a_fold_scores_only_the_rows_its_table_lacks(tmp_path, monkeypatch):
  """Adding a selector to a finished fold scores that selector (and L1000 beside it, for the
  paired tests) and keeps every row already there."""
  scored = fake_fold(monkeypatch)
  seeds = {'stochastic': 1, 'random': 2, 'ae': 1}
  config = test_config.get_config()
  first = selector_benchmark.run_fold('fold_0', config, str(tmp_path), ['l1000', 'random'],
                                      {'ridge': [2, 3]}, seeds)
  assert len(first) == 6 and len(scored) == 6
  scored.clear()
  both = selector_benchmark.run_fold('fold_0', config, str(tmp_path),
                                     ['l1000', 'random', 'variance'], {'ridge': [2, 3]}, seeds)
  assert sorted(scored) == [('l1000', 0, 2, 'ridge'), ('l1000', 0, 3, 'ridge'),
                            ('variance', 0, 2, 'ridge'), ('variance', 0, 3, 'ridge')]
  assert len(both) == 8 and not both.duplicated(['selector', 'seed', 'k']).any()
  saved = pd.read_csv(tmp_path / 'selectors_ridge.tsv', sep='\t')
  assert len(saved) == 8
  scored.clear()
  # Asking for fewer selectors reads their rows back and scores nothing.
  only = selector_benchmark.run_fold('fold_0', config, str(tmp_path), ['l1000', 'variance'],
                                     {'ridge': [2, 3]}, seeds)
  assert not scored and sorted(set(only['selector'])) == ['l1000', 'variance']


def test_a_fold_never_reuses_results_of_other_settings(tmp_path, monkeypatch):
  scored = fake_fold(monkeypatch)
  seeds = {'stochastic': 1, 'random': 2, 'ae': 1}
  names, models = ['l1000', 'random', 'peel_off', 'variance'], {'ridge': [2]}
  config = test_config.get_config()
  selector_benchmark.run_fold('fold_0', config, str(tmp_path), names, models, seeds)
  assert len(scored) == 5
  # A peel-off setting: peel-off's panel is chosen and scored again, nothing else.
  scored.clear()
  changed = config.copy_and_resolve_references()
  changed.selectors.peel_off_restarts += 1
  table = selector_benchmark.run_fold('fold_0', changed, str(tmp_path), names, models, seeds)
  assert sorted(scored) == [('l1000', 0, 2, 'ridge'), ('peel_off', 0, 2, 'ridge')]
  assert len(table) == 5
  # Summarising under the old setting leaves the now-stale peel-off rows out.
  summary = selector_benchmark.run_fold('fold_0', config, str(tmp_path), names, models, seeds,
                                        summarize_only=True)
  assert sorted(set(summary['selector'])) == ['l1000', 'random', 'variance']
  # The pipeline's random-panel count is no setting of the benchmark's (a flag is).
  scored.clear()
  changed.evaluate.random_sets_nonlinear += 2
  selector_benchmark.run_fold('fold_0', changed, str(tmp_path), names, models, seeds)
  assert not scored
  # An evaluation setting: every panel is scored again.
  scored.clear()
  changed.evaluate.ridge_grid = (0.0, 1.0, 10.0)
  selector_benchmark.run_fold('fold_0', changed, str(tmp_path), names, models, seeds)
  assert len(scored) == 5
  # The AutoEncoder's settings: the fold's AEs are stale; the run stops and names the field.
  changed.train.epochs += 1
  with pytest.raises(ValueError, match='train.epochs'):
    selector_benchmark.run_fold('fold_0', changed, str(tmp_path), names, models, seeds)


def test_dgex_curves_are_drawn_from_the_fits_tensorboard_runs(tmp_path):
  for fold in ('fold_0', 'fold_1'):
    for name in ('l1000_seed0_k943_dgex', 'random_seed3_k943_dgex',
                 'deeplift_ae_seed0_k943_dgex'):
      with metric_writing.MetricWriter(
          tmp_path / fold / selector_benchmark.CURVES / name / 'tensorboard') as writer:
        for epoch in range(1, 6):
          writer.write_scalars(epoch, {regression.VAL_MAE: 0.5 - 0.01 * epoch})
  path = tmp_path / 'dgex_curves.png'
  selector_benchmark.plot_dgex_curves(
      path, [(fold, tmp_path / fold) for fold in ('fold_0', 'fold_1', 'fold_2')], 'run')
  assert path.stat().st_size > 0


def test_a_seed_missing_folds_is_left_out_of_the_means_over_folds():
  rows = [{'fold': fold, 'selector': 'random', 'seed': seed, 'pcc_mean': 0.3 + 0.01 * seed}
          for fold in ('fold_0', 'fold_1') for seed in range(3)]
  rows += [{'fold': 'fold_0', 'selector': 'deeplift_ae', 'seed': 0, 'pcc_mean': 0.40},
           {'fold': 'fold_1', 'selector': 'deeplift_ae', 'seed': 0, 'pcc_mean': 0.30},
           {'fold': 'fold_0', 'selector': 'deeplift_ae', 'seed': 1, 'pcc_mean': 0.90}]
  table = pd.DataFrame(rows).assign(k=943, model='ridge', targets=50, mae_centred_mean=0.5,
                                    mae_mean=1.0, pcc_vs_l1000=0.0, mae_centred_vs_l1000=0.0,
                                    pcc_vs_l1000_t_p=1.0, mae_centred_vs_l1000_t_p=1.0)
  per_fold, summary = selector_benchmark.summarize(table, alpha=0.01)
  row = summary.set_index('selector').loc['deeplift_ae']
  assert row['seeds'] == 1 and row['folds'] == 2 and row['pcc_mean'] == pytest.approx(0.35)
  # Per fold, every seed of the fold counts.
  fold_0 = per_fold.set_index(['fold', 'selector']).loc[('fold_0', 'deeplift_ae')]
  assert fold_0['seeds'] == 2 and fold_0['pcc_mean'] == pytest.approx(0.65)
