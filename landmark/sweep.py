"""Sweeps: one run per value of a config field, each in its own sub-workdir, compared.

Members whose `report.md` exists are skipped, so a sweep resumes where it stopped. Every
member's hyperparameters and final metrics go to TensorBoard's HParams plugin; the sweep
writes one table (`sweep.tsv`) and one plot (`sweep.png`).
"""

import json
import os
from typing import Any, Callable

from absl import logging
import ml_collections
import numpy as np
import pandas as pd

from landmark import fileio
from landmark import run_identity
from landmark.evaluation import evaluate
from landmark.training import metric_writing


def member_config(config: ml_collections.ConfigDict, parameter: str,
                  value: Any) -> ml_collections.ConfigDict:
  """A copy of `config` with the dotted field `parameter` set to `value`, without `sweep`."""
  member = config.copy_and_resolve_references()
  with member.unlocked():
    del member['sweep']
    node = member
    *parents, leaf = parameter.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return member


def member_results(workdir: str | os.PathLike) -> dict[str, float]:
  """The figures a finished member run left: reconstruction and landmark quality."""
  with open(os.path.join(workdir, 'ae_summary.json')) as f:
    quality = json.load(f)
  with open(os.path.join(workdir, 'l1000_overlap.json')) as f:
    overlap = json.load(f)
  panels = pd.read_csv(os.path.join(workdir, 'panel_summary.tsv'), sep='\t')
  linear = panels[panels['model'] == 'linear'].set_index('panel')
  random = linear[linear.index.str.startswith('random_')]
  seeds = linear[linear.index.str.startswith('deeplift_seed_')]
  return {'ae_mae': quality['mean_mae'], 'ae_pcc': quality['mean_pcc'],
          'ae_pass_fraction': quality['n_pass'] / quality['n_features'],
          'ae_gain_over_study_mean': quality['baselines']['gain_over_study'],
          'l1000_overlap': overlap['count'],
          'deeplift_pcc': linear.loc['deeplift', 'pcc_mean'],
          'deeplift_mae': linear.loc['deeplift', 'mae_mean'],
          'deeplift_pcc_z_random': linear.loc['deeplift', 'pcc_z_random'],
          'deeplift_seed_pcc_sd': seeds['pcc_mean'].std() if len(seeds) > 1 else 0.0,
          'l1000_pcc': linear.loc['l1000', 'pcc_mean'],
          'random_pcc_mean': random['pcc_mean'].mean(), 'random_pcc_sd': random['pcc_mean'].std()}


def plot(path: str | os.PathLike, table: pd.DataFrame, parameter: str) -> None:
  """AE reconstruction PCC, its MAE and the panels' target PCC against the swept value, one
  metric per axis. Numeric values spanning more than a decade go on a log axis ticked at the
  values themselves; other values are categories, drawn as points, not joined."""
  values = table[parameter]
  numeric = pd.api.types.is_numeric_dtype(values) and len(values) > 1
  logarithmic = numeric and (values > 0).all() and values.max() / values.min() > 10
  x = values.to_numpy(np.float64) if numeric else np.arange(len(table))
  style = {'linestyle': '-' if numeric else 'none'}
  figure, axes = evaluate.new_figure(1, 3, (15, 4.2))
  pcc, mae, landmarks = axes[0]
  pcc.plot(x, table['ae_pcc'], marker='o', color='C0', **style)
  pcc.set(ylabel='mean per-gene PCC (Pearson r)', title='AE reconstruction, held-out PCC')
  mae.plot(x, table['ae_mae'], marker='s', color='C1', **style)
  mae.set(ylabel='mean per-gene MAE (log2 expression)', title='AE reconstruction, held-out MAE')
  landmarks.plot(x, table['deeplift_pcc'], marker='o', color='C2', label='DeepLIFT panel',
                 **style)
  landmarks.plot(x, table['l1000_pcc'], marker='D', color='C3', label='L1000 panel',
                 **{**style, 'linestyle': '--' if numeric else 'none'})
  landmarks.errorbar(x, table['random_pcc_mean'], yerr=2 * table['random_pcc_sd'], fmt='none',
                     ecolor='0.5', capsize=4, label='random panels, mean ± 2 sd')
  landmarks.set(ylabel='mean target PCC, linear (Pearson r)', title='Landmark panels')
  landmarks.legend(fontsize='small')
  for ax in axes[0]:
    ax.set_xlabel(f'{parameter} (log scale)' if logarithmic else parameter)
    if logarithmic:
      ax.set_xscale('log')
      ax.minorticks_off()
    ax.set_xticks(x, [str(v) for v in values], rotation=30 if not numeric else 0)
  figure.suptitle(f'{evaluate.run_name(path)}: sweep of {parameter} ({len(table)} runs)')
  fileio.save_figure(path, figure)


def run_sweep(config: ml_collections.ConfigDict, workdir: str,
              run_member: Callable[[ml_collections.ConfigDict, str], Any]) -> pd.DataFrame:
  """Runs `run_member(member_config, member_workdir)` for each sweep value; compares them.

  A member whose results are current (landmark.run_identity) is not run again.
  """
  parameter, rows = config.sweep.parameter, []
  for value in config.sweep.grid:
    member_dir = os.path.join(workdir, f"{parameter.split('.')[-1]}_{value}")
    member = member_config(config, parameter, value)
    finished = run_identity.RunIdentity(member, member_dir).is_current('evaluate')
    if finished:
      logging.info('Sweep member %s=%s is finished; skipping', parameter, value)
    else:
      logging.info('Sweep member %s=%s -> %s', parameter, value, member_dir)
      run_member(member, member_dir)
    results = member_results(member_dir)
    if not finished:
      with metric_writing.MetricWriter(os.path.join(member_dir, 'tensorboard')) as writer:
        writer.write_hparams({parameter: value}, {f'hparams/{k}': v for k, v in results.items()})
    rows.append({parameter: value, **results})
  table = pd.DataFrame(rows)
  fileio.write_table(os.path.join(workdir, 'sweep.tsv'), table, index=False)
  plot(os.path.join(workdir, 'sweep.png'), table, parameter)
  return table
