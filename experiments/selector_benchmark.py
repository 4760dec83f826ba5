"""Every landmark selector side by side: target-gene inference quality against panel size.

For each fold (one run of the config; with configs/cross_study.py, one per held-out study
of its `sweep.grid`, each in `<workdir>/holdout_study_<study>/`), trains (or reloads) the
AutoEncoder, lets every selector pick panels of each size k from the training split (kept
in `selector_panels.tsv` and reused by later invocations), and scores each panel by
inferring the rest of D-GEX's gene universe on the held-out split. Each panel is scored on
its own complement; the paired t-test against L1000 (at the same k; L1000 has at most 943
genes) uses the targets both leave out. Stochastic selectors run over --seeds seeds.
Metrics: mean per-gene PCC and mean per-gene MAE after centring each held-out study
(`mae_centred`; plain MAE, also kept, is dominated by a held-out study's offset).

Writes per fold and model `selectors_<model>.tsv` (one row per selector, seed and k; a fold
and model whose table exists is read back, not rerun: delete it to rerun), then
`selectors_folds.tsv` (per fold, seeds averaged: mean and sd, largest t-test p over seeds),
`selectors_summary.tsv` (mean over folds for each seed, then mean and sd over seeds, and the
number of folds where the selector beats or trails L1000 at p < evaluate.permutation_alpha
for every seed) and `selectors.png`.

  python -m experiments.selector_benchmark --config=configs/quick.py --workdir=runs/selectors
  # Leave one study out, all five folds; then D-GEX at k = 943 on the same panels:
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --config.selectors.peel_off_restarts=1
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge,dgex --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --model_k=dgex:943 --config.selectors.peel_off_restarts=1
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags
import pandas as pd

from landmark import data
from landmark import evaluate
from landmark import fileio
from landmark import panels as panels_lib
from landmark import pipeline
from landmark import selectors
from landmark import sweep
from landmark import train

config_flags.DEFINE_config_file('config', 'configs/quick.py', 'Run configuration.',
                                lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the AEs and the results.')
_SELECTORS = flags.DEFINE_list('selectors', [name for name in selectors.SELECTORS
                                             if name != 'concrete_ae'],
                               'Selectors to compare (concrete_ae needs a GPU at k=943).')
_SIZES = flags.DEFINE_list('k', ['100', '300', '943', '2000'], 'Panel sizes.')
_MODEL_SIZES = flags.DEFINE_multi_string(
    'model_k', [], 'MODEL:K1,K2,...: panel sizes for one model instead of --k (a D-GEX fit '
    'per panel is slow), e.g. --model_k=dgex:943.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds for stochastic selectors.')
_MODELS = flags.DEFINE_list('models', ['linear'],
                            'Inference models (linear, ridge, dgex, knn).')
flags.mark_flag_as_required('workdir')

PANELS_FILE = 'selector_panels.tsv'
METRICS = {'pcc': False, 'mae_centred': True}   # metric: lower is better


def sizes_by_model(models, sizes, model_sizes):
  """{model: sorted panel sizes} from --models, --k and --model_k."""
  by_model = {kind: sorted(int(k) for k in sizes) for kind in models}
  for item in model_sizes:
    kind, _, listed = item.partition(':')
    if kind not in by_model or not listed:
      raise ValueError(f'--model_k={item!r}: expected MODEL:K1,K2 with MODEL one of {models}')
    by_model[kind] = sorted(int(k) for k in listed.split(','))
  return by_model


def folds(config, workdir):
  """[(held-out study or split name, config, workdir)]: one per study of a LOSO sweep."""
  if 'sweep' not in config:
    return [(config.preprocess.holdout_study or config.preprocess.split, config, workdir)]
  if config.sweep.parameter != 'preprocess.holdout_study':
    raise ValueError(f'experiments.selector_benchmark sweeps held-out studies only; the config '
                     f'sweeps {config.sweep.parameter!r}')
  return [(study, sweep.member_config(config, config.sweep.parameter, study),
           os.path.join(workdir, f'holdout_study_{study}')) for study in config.sweep.grid]


def ranked_panels(context, names, sizes, seeds):
  """{(selector, seed): {k: panel}}: one ranking per deterministic selector, cut to each k."""
  panels = {}
  for name in names:
    start = time.time()
    for seed in range(seeds if name in selectors.STOCHASTIC else 1):
      if name in selectors.K_SPECIFIC:
        panels[name, seed] = {k: selectors.select(name, context, k, seed) for k in sizes}
      else:
        ranked = selectors.select(name, context, max(sizes), seed)
        panels[name, seed] = {k: ranked[:k] for k in sizes}
    logging.info('Selector %s done in %.0f s', name, time.time() - start)
  return panels


def fold_panels(config, workdir, names, sizes, seeds):
  """The fold's gene-level splits and panels, chosen once and kept in `PANELS_FILE`.

  The kept panels are reused when they hold every (selector, seed, k) asked for; otherwise
  the AutoEncoder is trained (or reloaded) and every selector chooses again.
  """
  splits = pipeline.prepare_data(config, workdir)
  annotation = data.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  wanted = [(name, seed) for name in names
            for seed in range(seeds if name in selectors.STOCHASTIC else 1)]
  path = os.path.join(workdir, PANELS_FILE)
  if os.path.exists(path):
    kept = pd.read_csv(path, sep='\t', dtype={'gene': str}).sort_values('rank')
    kept = {key: group['gene'].tolist() for key, group in kept.groupby(['selector', 'seed', 'k'])}
    if all((name, seed, k) in kept for name, seed in wanted for k in sizes):
      logging.info('Reusing the panels in %s', path)
      return genes, {(name, seed): {k: kept[name, seed, k] for k in sizes}
                     for name, seed in wanted}
  model, scaler, _ = train.train_autoencoder(config, workdir, splits.train.values,
                                             splits.val.values)
  encoder = selectors.TrainedEncoder(model.encoder_layers(), config.model.activation,
                                     scaler.transform(splits.train.values), splits.train.features,
                                     annotation)
  context = selectors.SelectionContext(genes.genes, genes.train,
                                       panels_lib.read_symbols(config.data.dgex_landmarks),
                                       config, encoder)
  panels = ranked_panels(context, names, sizes, seeds)
  fileio.write_table(path, pd.DataFrame(
      [(name, seed, k, rank, gene) for (name, seed), by_size in panels.items()
       for k, panel in by_size.items() for rank, gene in enumerate(panel)],
      columns=['selector', 'seed', 'k', 'rank', 'gene']), index=False)
  return genes, panels


def score(config, genes, panels, kind, sizes):
  """Per-gene metrics of every (selector, seed, k) panel on its own complement with `kind`."""
  jobs = [(name, seed, k, kind) for k in sizes for name, seed in panels]
  results, start = {}, time.time()
  for done, (name, seed, k, kind) in enumerate(jobs, 1):
    panel = panels[name, seed][k]
    targets = [g for g in genes.genes if g not in set(panel)]
    results[name, seed, k, kind] = panels_lib.evaluate_panel(
        kind, config, genes, panel, targets, config.seed, permutation=False)
    rate = done / (time.time() - start)
    logging.info('Scored %d/%d panels (%s, seed %d, k=%d, %s): %.2f panels/s, ETA %.0f s',
                 done, len(jobs), name, seed, k, kind, rate, (len(jobs) - done) / rate)
  return results


def tabulate(results, fold):
  """One row per (selector, seed, k, model): means and the paired t-tests against L1000."""
  rows = []
  for (name, seed, k, kind), frame in results.items():
    row = {'fold': fold, 'selector': name, 'seed': seed, 'k': k, 'model': kind,
           'targets': len(frame), 'pcc_mean': frame['pcc'].mean(),
           'mae_centred_mean': frame['mae_centred'].mean(), 'mae_mean': frame['mae'].mean()}
    l1000 = results.get(('l1000', 0, k, kind))
    if l1000 is not None and name != 'l1000':
      common = frame.index.intersection(l1000.index)
      for metric, lower_is_better in METRICS.items():
        paired = evaluate.paired_comparison(frame.loc[common, metric], l1000.loc[common, metric],
                                            lower_is_better)
        row[f'{metric}_vs_l1000'] = paired['mean_difference']
        row[f'{metric}_vs_l1000_t_p'] = paired['t_p_value']
    rows.append(row)
  return pd.DataFrame(rows)


def run_fold(fold, config, workdir, names, by_model, seeds):
  """The fold's table over every model; a model's finished table is read back."""
  tables, todo = [], {}
  for kind, sizes in by_model.items():
    path = os.path.join(workdir, f'selectors_{kind}.tsv')
    if os.path.exists(path):
      logging.info('Fold %s, %s is finished (%s); reading it back', fold, kind, path)
      tables.append(pd.read_csv(path, sep='\t', keep_default_na=False, na_values=['']))
    else:
      todo[kind] = sizes
  if todo:
    start = time.time()
    genes, panels = fold_panels(config, workdir, names, sorted(set().union(*todo.values())),
                                seeds)
    for kind, sizes in todo.items():
      table = tabulate(score(config, genes, panels, kind, sizes), fold)
      fileio.write_table(os.path.join(workdir, f'selectors_{kind}.tsv'), table, index=False)
      tables.append(table)
    logging.info('Fold %s done in %.0f s', fold, time.time() - start)
  return pd.concat(tables, ignore_index=True)


def summarize(table, alpha):
  """(per-fold table, summary over folds); see the module docstring."""
  table = table.copy()
  for metric, lower_is_better in METRICS.items():
    gap, significant = table[f'{metric}_vs_l1000'], table[f'{metric}_vs_l1000_t_p'] < alpha
    table[f'{metric}_better'] = significant & ((gap < 0) if lower_is_better else (gap > 0))
    table[f'{metric}_worse'] = significant & ((gap > 0) if lower_is_better else (gap < 0))
  means = ['pcc_mean', 'mae_centred_mean', 'mae_mean', 'pcc_vs_l1000', 'mae_centred_vs_l1000']
  key = ['model', 'k', 'selector']
  per_fold = table.groupby(['fold', *key], as_index=False, sort=False).agg(
      seeds=('seed', 'count'), targets=('targets', 'mean'),
      **{name: (name, 'mean') for name in means},
      **{f'{name}_sd': (name, 'std') for name in ('pcc_mean', 'mae_centred_mean')},
      **{f'{m}_vs_l1000_t_p': (f'{m}_vs_l1000_t_p', 'max') for m in METRICS},
      **{f'{m}_{side}': (f'{m}_{side}', 'all') for m in METRICS for side in ('better', 'worse')})
  over_folds = table.groupby([*key, 'seed'], as_index=False, sort=False).agg(
      folds=('fold', 'nunique'), **{name: (name, 'mean') for name in means})
  summary = over_folds.groupby(key, as_index=False, sort=False).agg(
      folds=('folds', 'min'), seeds=('seed', 'count'),
      **{name: (name, 'mean') for name in means},
      **{f'{name}_sd': (name, 'std') for name in ('pcc_mean', 'mae_centred_mean')})
  wins = per_fold.groupby(key, as_index=False, sort=False)[
      [f'{m}_{side}' for m in METRICS for side in ('better', 'worse')]].sum()
  wins.columns = [*key, *(f'folds_{c}' for c in wins.columns[len(key):])]
  summary = summary.merge(wins, on=key).sort_values(key, ignore_index=True)
  return per_fold.sort_values(['fold', *key], ignore_index=True), summary


def plot(path, summary):
  """Mean PCC and centred MAE against k, one column per model; bars: sd over seeds.

  L1000 has at most 943 genes: above that its points repeat its whole list.
  """
  models = summary['model'].unique()
  figure, axes = plt.subplots(len(METRICS), len(models), figsize=(5.5 * len(models), 8),
                              squeeze=False, layout='constrained')
  for column, kind in enumerate(models):
    for row, metric in enumerate(METRICS):
      ax = axes[row, column]
      for name, group in summary[summary['model'] == kind].groupby('selector'):
        ax.errorbar(group['k'], group[f'{metric}_mean'], yerr=group[f'{metric}_mean_sd'].fillna(0),
                    marker='o', capsize=3, label=name)
      ax.set(xscale='log', xlabel='panel size k', ylabel=f'mean target-gene {metric}',
             title=f'{kind} inference')
  axes[0, 0].legend(fontsize=8)
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  if 'l1000' not in _SELECTORS.value:
    raise ValueError('--selectors must include l1000: every selector is compared with it')
  by_model = sizes_by_model(_MODELS.value, _SIZES.value, _MODEL_SIZES.value)
  tables = [run_fold(fold, fold_config, fold_workdir, _SELECTORS.value, by_model, _SEEDS.value)
            for fold, fold_config, fold_workdir in folds(config, workdir)]
  per_fold, summary = summarize(pd.concat(tables, ignore_index=True),
                                config.evaluate.permutation_alpha)
  fileio.write_table(os.path.join(workdir, 'selectors_folds.tsv'), per_fold, index=False)
  fileio.write_table(os.path.join(workdir, 'selectors_summary.tsv'), summary, index=False)
  plot(os.path.join(workdir, 'selectors.png'), summary)
  with pd.option_context('display.width', 250, 'display.max_columns', 30):
    print(summary.to_string(index=False))


if __name__ == '__main__':
  app.run(main)
