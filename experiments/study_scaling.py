"""Panel quality against the number of training studies, on fixed held-out studies.

configs/study_scaling.py says what is held out and drawn. A "cell" is one draw and size n:
the draw's first n studies train (with the held-out studies the only other data read);
normalisation, study correction, the AE (`pipeline.train_seed`, which also writes the
AE-vs-per-study-mean diagnostic) and DeepLIFT are fitted on them. DeepLIFT's top genes,
L1000 and peel-off (`selectors`, all of L1000's size k in D-GEX's universe) and
`evaluate.random_sets` random panels infer every other gene of the held-out studies with
each model of `evaluate.models`; the summary judges all panels of a cell on their common
targets (the genes in none of the three fixed panels; random panels on those outside
themselves). Cells run draw by draw, sizes ascending, so an interrupted run has whole
curves; a cell finished under the same settings (`run_identity.results_identity`, recorded
in its `results.json`) is skipped on rerun, one made under others is run again, and an AE
resumes from its checkpoint.

Writes per cell `draw_<d>/n_<n>/`: the run's files (`data_summary.json`, `seed_0/` with the
AE, `ae_summary.json` and `landmarks.tsv`), `panels.tsv`, and per model
`metrics_<model>.tsv.gz` (fixed panels) and `random_<model>.tsv.gz`; then
`study_scaling_cells.tsv` (one row per cell, model and panel), `study_scaling.tsv` (mean
and sd over draws) and `study_scaling.png`.

  python -m experiments.study_scaling --config=configs/study_scaling.py \
      --workdir=runs/study_scaling --budget_minutes=100
  python -m experiments.study_scaling --config=configs/study_scaling.py \
      --workdir=runs/study_scaling --summarize_only    # tables of the cells finished so far
"""

import json
import os
import time

from absl import app
from absl import flags
from absl import logging
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags
import numpy as np
import pandas as pd

from landmark import fileio
from landmark import pipeline
from landmark import run_identity
from landmark.data import readers
from landmark.errors import ConfigError
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.selection import selectors

# Experiment modules share flag names; overridable so that tests can import several.
config_flags.DEFINE_config_file('config', 'configs/study_scaling.py', 'Experiment grid.',
                                lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for every cell and the tables.',
                               allow_override=True)
_SUMMARIZE_ONLY = flags.DEFINE_bool('summarize_only', False, 'Only tabulate the cells '
                                    'finished so far in --workdir; train nothing.',
                                    allow_override=True)
_BUDGET = flags.DEFINE_float('budget_minutes', 0.0, 'Start no cell that would, at the mean '
                             'time of the cells run so far, end after this many minutes '
                             '(0: no limit); then tabulate what finished.')
flags.mark_flag_as_required('workdir')

FIXED = ('deeplift', 'l1000', 'peel_off')
METRICS = ('pcc', 'mae_centred')


def study_files(config) -> dict[str, str]:
  """Study name -> file of each study of `config.data.studies` (files are named after them)."""
  return {os.path.basename(path).split('.')[0]: path for path in config.data.studies}


def held_out(config) -> list[str]:
  return config.preprocess.holdout_study.split('+')


def draws(config) -> list[list[str]]:
  """Each draw's random order of the training pool (every study not held out)."""
  pool = sorted(set(study_files(config)) - set(held_out(config)))
  scaling = config.study_scaling
  if max(scaling.sizes) > len(pool):
    raise ConfigError('config.study_scaling.sizes', f'{max(scaling.sizes)} training studies '
                      f'asked for, but {len(pool)} are not held out: {pool}')
  return [[str(s) for s in np.random.default_rng([scaling.draw_seed, d]).permutation(pool)]
          for d in range(scaling.draws)]


def cells(config) -> list[tuple[int, int, list[str]]]:
  """(draw, n, training studies) of every cell, draw by draw, sizes ascending."""
  return [(d, n, order[:n]) for d, order in enumerate(draws(config))
          for n in sorted(config.study_scaling.sizes)]


def cell_dir(workdir: str, draw: int, n: int) -> str:
  return os.path.join(workdir, f'draw_{draw}', f'n_{n:02d}')


def cell_config(config, training):
  """The pipeline config of a cell: the training studies and the held-out ones are read."""
  cell = config.copy_and_resolve_references()
  keep = set(training) | set(held_out(config))
  with cell.unlocked():
    del cell['study_scaling']
    cell.data.studies = tuple(path for name, path in study_files(config).items() if name in keep)
  return cell


def finished(directory, identity, models) -> bool:
  """Whether every model's tables of a cell exist and were made under `identity` (the
  cell's `run_identity.results_identity`)."""
  return all(run_identity.result_is_current(directory, f'{kind}_{model}.tsv.gz', identity)
             for model in models for kind in ('metrics', 'random'))


class Steps:
  """Logs each step of a cell with its time."""

  def __init__(self, name):
    self.name, self.last = name, time.perf_counter()

  def done(self, what, *args):
    now = time.perf_counter()
    logging.info('%s: %s in %.0f s', self.name, what % args, now - self.last)
    self.last = now


def run_cell(config, directory, training, annotation, universe, l1000):
  """Prepares a cell's data, trains its AE, picks and scores its panels."""
  cell = cell_config(config, training)
  steps = Steps(os.path.relpath(directory, os.path.dirname(os.path.dirname(directory))))
  splits = pipeline.prepare_data(cell, directory)
  genes = panels_lib.gene_splits(splits, annotation, universe)
  steps.done('data of %d studies prepared (%d train, %d val, %d held-out profiles)',
             len(training), len(genes.train), len(genes.val), len(genes.test))
  context = selectors.SelectionContext(genes.genes, genes.train, l1000, cell,
                                       studies=genes.train_studies)
  panels = {'l1000': selectors.select('l1000', context, len(genes.genes))}
  k = len(panels['l1000'])
  seed_dir = os.path.join(directory, f'seed_{cell.seed}')
  identity = run_identity.RunIdentity(cell, seed_dir).identity(f'train/seed_{cell.seed}')
  model, scaler, quality = pipeline.train_seed(cell, seed_dir, splits,
                                               pipeline.study_baselines(splits), identity)
  steps.done('AE trained (gain over per-study mean %.3f)',
             quality['baselines']['gain_over_study'])
  ranking = pipeline.explain_stage(cell, seed_dir, splits, model, scaler, annotation)
  panels['deeplift'] = ranking['symbol'][ranking['symbol'].isin(set(genes.genes))].tolist()[:k]
  steps.done('DeepLIFT ranked the genes')
  panels['peel_off'] = selectors.select('peel_off', context, k, seed=0)
  steps.done('peel-off chose %d genes', k)
  fileio.write_table(os.path.join(directory, 'panels.tsv'), pd.DataFrame(
      [(name, rank, gene) for name, panel in panels.items() for rank, gene in enumerate(panel)],
      columns=['panel', 'rank', 'gene']), index=False)
  identity = run_identity.results_identity(cell)
  for kind in cell.evaluate.models:
    for name, table in (
        (f'random_{kind}', panels_lib.score_random_panels(cell, context, genes, k, kind)),
        (f'metrics_{kind}', panels_lib.score_panels(cell, genes, panels, cell.seed, (kind,)))):
      fileio.write_table(os.path.join(directory, f'{name}.tsv.gz'), table, index=False)
      run_identity.record_result(directory, f'{name}.tsv.gz', identity)
    steps.done('%d random and %d fixed panels scored with %s',
               panels_lib.random_panel_count(cell.evaluate, kind), len(panels), kind)


def run_cells(config, workdir, budget_minutes):
  """Runs every unfinished cell; stops before a cell the budget would not cover."""
  annotation = readers.read_probe_annotation(config.data.annotation)
  universe = panels_lib.dgex_universe(config.data)
  l1000 = panels_lib.read_symbols(config.data.dgex_landmarks)
  grid = cells(config)
  todo = [(d, n, training) for d, n, training in grid
          if not finished(cell_dir(workdir, d, n),
                          run_identity.results_identity(cell_config(config, training)),
                          config.evaluate.models)]
  logging.info('%d of %d cells finished before; %d to run', len(grid) - len(todo), len(grid),
               len(todo))
  started = time.perf_counter()
  for ran, (d, n, training) in enumerate(todo):
    elapsed = time.perf_counter() - started
    mean = elapsed / ran if ran else 0.0
    if budget_minutes and elapsed + mean > budget_minutes * 60:
      logging.info('Stopping: %.0f of %.0f budget minutes spent, a cell takes ~%.0f min; '
                   '%d cells left (rerun to continue)', elapsed / 60, budget_minutes,
                   mean / 60, len(todo) - ran)
      return
    logging.info('Cell draw %d, n=%d: training studies %s', d, n, ', '.join(training))
    run_cell(config, cell_dir(workdir, d, n), training, annotation, universe, l1000)
    elapsed = time.perf_counter() - started
    left = len(todo) - ran - 1
    logging.info('Cell %d/%d done (draw %d, n=%d): %.1f min a cell over %d, %d left, '
                 'ETA %.0f min', len(grid) - left, len(grid), d, n, elapsed / (ran + 1) / 60,
                 ran + 1, left, elapsed / (ran + 1) * left / 60)


def read_cell(directory, identity, kind):
  """(fixed, random) per-gene tables of a cell and model on the common targets (None, None
  while unfinished or made under another `identity`)."""
  if not finished(directory, identity, (kind,)):
    return None, None
  fixed, random = (pd.read_csv(os.path.join(directory, f'{name}_{kind}.tsv.gz'), sep='\t')
                   for name in ('metrics', 'random'))
  common = set.intersection(*(set(group['target']) for _, group in fixed.groupby('panel')))
  return fixed[fixed['target'].isin(common)], random[random['target'].isin(common)]


def cell_rows(directory, identity, draw, n, kind):
  """Rows of one cell and model: each fixed panel and the random band, with its z against
  the random panels and its gap to L1000 (calibrated by `evaluate.calibrated_gap`)."""
  fixed, random = read_cell(directory, identity, kind)
  if fixed is None:
    return []
  with open(os.path.join(directory, 'data_summary.json')) as f:
    profiles = json.load(f)['train']['samples']
  with open(os.path.join(directory, 'seed_0', 'ae_summary.json')) as f:
    gain = json.load(f)['baselines']['gain_over_study']
  k = int((pd.read_csv(os.path.join(directory, 'panels.tsv'), sep='\t')['panel'] == 'l1000').sum())
  band = random.groupby('panel')[list(METRICS)].mean()
  randoms = [group['pcc'].to_numpy() for _, group in random.groupby('panel')]
  l1000 = fixed[fixed['panel'] == 'l1000'].set_index('target')['pcc']
  base = {'draw': draw, 'n_studies': n, 'train_profiles': profiles, 'model': kind, 'k': k,
          'targets': fixed['target'].nunique(), 'random_sets': len(band),
          'ae_gain_over_study': gain}
  rows = []
  for panel, group in fixed.groupby('panel'):
    row = dict(base, panel=panel)
    for metric in METRICS:
      row[metric] = group[metric].mean()
      row[f'{metric}_z_random'] = (row[metric] - band[metric].mean()) / band[metric].std(ddof=1)
    pcc = group.set_index('target')['pcc']
    row['pcc_gap_l1000'] = pcc.mean() - l1000.mean()
    if panel != 'l1000' and len(randoms) >= 3:
      row['pcc_gap_l1000_z'] = evaluate.calibrated_gap(pcc, l1000.reindex(pcc.index),
                                                       randoms)['z']
    rows.append(row)
  row = dict(base, panel='random')
  for metric in METRICS:
    row[metric], row[f'{metric}_sd'] = band[metric].mean(), band[metric].std(ddof=1)
  row['pcc_gap_l1000'] = band['pcc'].mean() - l1000.mean()
  return rows + [row]


def summarize(config, workdir):
  """The per-cell table and its mean and sd over draws (by model, n and panel)."""
  rows = []
  for d, n, training in cells(config):
    identity = run_identity.results_identity(cell_config(config, training))
    for kind in config.evaluate.models:
      rows += cell_rows(cell_dir(workdir, d, n), identity, d, n, kind)
  per_cell = pd.DataFrame(rows)
  if per_cell.empty:
    return per_cell, per_cell
  key = ['model', 'n_studies', 'panel']
  values = [c for c in per_cell.columns if c not in (*key, 'draw')]
  grouped = per_cell.groupby(key)
  summary = grouped[values].mean()
  spread = grouped[['pcc', 'pcc_gap_l1000', 'mae_centred']].std(ddof=1)
  summary = summary.join(spread.add_suffix('_draw_sd'))
  summary.insert(0, 'draws', grouped.size())
  return per_cell, summary.reset_index()


def plot(path, summary, per_cell, title):
  """Mean PCC and the gap to L1000 against n, one row per model; random: mean ± sd band."""
  models = sorted(summary['model'].unique())
  figure, axes = plt.subplots(len(models), 2, figsize=(12, 4.5 * len(models)), squeeze=False,
                              layout='constrained')
  for row, kind in enumerate(models):
    rows = summary[summary['model'] == kind]
    cells_of = per_cell[per_cell['model'] == kind]
    for column, (metric, label) in enumerate(
        (('pcc', 'mean target-gene PCC'), ('pcc_gap_l1000', 'PCC gap to L1000 (panel − L1000)'))):
      ax = axes[row, column]
      random = rows[rows['panel'] == 'random'].sort_values('n_studies')
      centre = random[metric]
      ax.fill_between(random['n_studies'], centre - random['pcc_sd'], centre + random['pcc_sd'],
                      color='0.85', label='random panels (mean ± sd over panels)')
      ax.plot(random['n_studies'], centre, color='0.5', lw=1)
      for i, panel in enumerate(FIXED):
        if metric == 'pcc_gap_l1000' and panel == 'l1000':
          continue
        by_n = rows[rows['panel'] == panel].sort_values('n_studies')
        ax.errorbar(by_n['n_studies'], by_n[metric], yerr=by_n[f'{metric}_draw_sd'].fillna(0),
                    marker='o', capsize=3, color=f'C{i}', label=f'{panel} (mean ± sd over draws)')
        each = cells_of[cells_of['panel'] == panel]
        ax.plot(each['n_studies'], each[metric], '.', color=f'C{i}', alpha=0.4)
      if metric == 'pcc_gap_l1000':
        ax.axhline(0, color='C1', lw=1, ls='--', label='L1000')
      ax.set(xlabel='training studies n', ylabel=label, xticks=sorted(rows['n_studies'].unique()),
             title=f'{kind}: {label}')
      ax.legend(fontsize=8)
  figure.suptitle(title)
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  if not _SUMMARIZE_ONLY.value:
    with run_identity.lock(workdir):
      run_cells(config, workdir, _BUDGET.value)
  per_cell, summary = summarize(config, workdir)
  if summary.empty:
    logging.info('No cell of %s has finished yet', workdir)
    return
  fileio.write_table(os.path.join(workdir, 'study_scaling_cells.tsv'), per_cell, index=False)
  fileio.write_table(os.path.join(workdir, 'study_scaling.tsv'), summary, index=False)
  title = (f'{os.path.basename(workdir.rstrip("/"))}: panels of {int(summary["k"].max())} '
           f'genes inferring ~{int(summary["targets"].mean())} others on the held-out '
           f'{", ".join(held_out(config))}\n(up to {summary["draws"].max()} draws of training '
           f'studies per n, one AE each, {config.train.epochs} epochs)')
  plot(os.path.join(workdir, 'study_scaling.png'), summary, per_cell, title)
  with pd.option_context('display.width', 200, 'display.max_columns', 20):
    print(summary[['model', 'n_studies', 'panel', 'draws', 'train_profiles', 'pcc', 'pcc_draw_sd',
                   'pcc_z_random', 'pcc_gap_l1000', 'pcc_gap_l1000_z', 'mae_centred',
                   'ae_gain_over_study']].to_string(index=False))


if __name__ == '__main__':
  app.run(main)
