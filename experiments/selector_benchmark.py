"""Every landmark selector side by side: target-gene inference quality against panel size.

For each fold (one run of the config; with configs/cross_study.py, one per held-out study
of its `sweep.grid`, each in `<workdir>/holdout_study_<study>/`; with
configs/compendium.py:folds=N, one per fold of studies, in `<workdir>/fold_<i>/`), trains
(or reloads) --ae_seeds AutoEncoders (`seed_<s>/`), lets every selector pick panels of each
size k from the training split (kept in `selector_panels.tsv` and reused by later
invocations), and scores each panel by inferring the rest of D-GEX's gene universe on the
held-out split. Each panel is scored on its own complement; the paired t-test against
L1000 (at the same k; L1000 has at most 943 genes) uses the targets both leave out.
Stochastic selectors run over --seeds seeds, random panels over --random_seeds, and the
attribution selectors once per AE seed (their `seed` is the AE's). Metrics: mean per-gene
PCC and mean per-gene MAE after centring each held-out study (`mae_centred`; plain MAE,
also kept, is dominated by a held-out study's offset); `pcc_z_random` is a selector's
mean PCC against the random panels' (mean and sd over seeds) of its fold, k and model.

Writes per fold and model `selectors_<model>.tsv` (one row per selector, seed and k; a fold
and model whose table exists is read back, not rerun: delete it to rerun), then
`selectors_folds.tsv` (per fold, seeds averaged: mean and sd, largest t-test p over seeds),
`selectors_summary.tsv` (mean over folds for each seed, then mean and sd over seeds, and the
number of folds where the selector beats or trails L1000 at p < evaluate.permutation_alpha
for every seed) and `selectors.png`. --summarize_only tabulates the finished folds.

  python -m experiments.selector_benchmark --config=configs/quick.py --workdir=runs/selectors
  # Leave one study out, all five folds; then D-GEX at k = 943 on the same panels:
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --config.selectors.peel_off_restarts=1
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge,dgex --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --model_k=dgex:943 --config.selectors.peel_off_restarts=1
  # 17 studies, grouped 5-fold CV by study, 3 AE seeds, 20 random panels, ridge:
  python -m experiments.selector_benchmark --config=configs/compendium.py:folds=5 \
      --workdir=runs/selectors_17 --models=ridge --k=100,300,943 --ae_seeds=3 \
      --random_seeds=20 --config.selectors.peel_off_restarts=1 [--summarize_only]
"""

import dataclasses
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

from landmark import fileio
from landmark import pipeline
from landmark import sweep
from landmark.data import readers
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.selection import selectors
from landmark.training import train

# Experiment modules share flag names; overridable so that tests can import several.
config_flags.DEFINE_config_file('config', 'configs/quick.py', 'Run configuration.',
                                lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the AEs and the results.',
                               allow_override=True)
_SELECTORS = flags.DEFINE_list('selectors', [name for name in selectors.SELECTORS
                                             if name != 'concrete_ae'],
                               'Selectors to compare (concrete_ae needs a GPU at k=943).')
_SIZES = flags.DEFINE_list('k', ['100', '300', '943', '2000'], 'Panel sizes.')
_MODEL_SIZES = flags.DEFINE_multi_string(
    'model_k', [], 'MODEL:K1,K2,...: panel sizes for one model instead of --k (a D-GEX fit '
    'per panel is slow), e.g. --model_k=dgex:943.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds for stochastic selectors.')
_RANDOM_SEEDS = flags.DEFINE_integer('random_seeds', None,
                                     'Random panels per k (default: --seeds).')
_AE_SEEDS = flags.DEFINE_integer('ae_seeds', 1, 'AutoEncoders per fold (seeds 0 ..): each '
                                 'gives the attribution selectors their panels.')
_SUMMARIZE_ONLY = flags.DEFINE_bool('summarize_only', False, 'Only tabulate the folds '
                                    'finished so far; train and score nothing.',
                                    allow_override=True)
_MODELS = flags.DEFINE_list('models', ['linear'],
                            'Inference models (linear, ridge, dgex, knn).')
flags.mark_flag_as_required('workdir')

PANELS_FILE = 'selector_panels.tsv'
METRICS = {'pcc': False, 'mae_centred': True}   # metric: lower is better
LABELS = {'pcc': 'PCC', 'mae_centred': 'MAE, each held-out study centred'}
ATTRIBUTION = frozenset({'deeplift_ae', 'gradient_x_input', 'integrated_gradients',
                         'deeplift_stratified', 'gradient_x_input_stratified'})


def sizes_by_model(models, sizes, model_sizes):
  """{model: sorted panel sizes} from --models, --k and --model_k."""
  by_model = {kind: sorted(int(k) for k in sizes) for kind in models}
  for item in model_sizes:
    kind, _, listed = item.partition(':')
    if kind not in by_model or not listed:
      raise ValueError(f'--model_k={item!r}: expected MODEL:K1,K2 with MODEL one of {models}')
    by_model[kind] = sorted(int(k) for k in listed.split(','))
  return by_model


SWEPT = {'preprocess.holdout_study': ('{}', 'holdout_study_{}'),   # (fold name, directory)
         'preprocess.fold': ('fold_{}', 'fold_{}')}


def folds(config, workdir):
  """[(fold name, config, workdir)]: one per held-out study or study fold of a sweep."""
  if 'sweep' not in config:
    return [(config.preprocess.holdout_study or config.preprocess.split, config, workdir)]
  if config.sweep.parameter not in SWEPT:
    raise ValueError(f'experiments.selector_benchmark sweeps held-out studies or study folds '
                     f'only; the config sweeps {config.sweep.parameter!r}')
  name, directory = SWEPT[config.sweep.parameter]
  return [(name.format(value), sweep.member_config(config, config.sweep.parameter, value),
           os.path.join(workdir, directory.format(value))) for value in config.sweep.grid]


def seeds_of(name, seeds):
  """The seeds selector `name` runs with; `seeds` maps 'stochastic', 'random' and 'ae' to
  counts (the attribution selectors' seed is their AE's)."""
  if name in ATTRIBUTION:
    return range(seeds['ae'])
  if name == 'random':
    return range(seeds['random'])
  return range(seeds['stochastic'] if name in selectors.STOCHASTIC else 1)


def ranked_panels(context, names, sizes, seeds):
  """{(selector, seed): {k: panel}}: one ranking per deterministic selector, cut to each k."""
  panels = {}
  for name in names:
    start = time.time()
    for seed in seeds_of(name, seeds):
      if name in selectors.K_SPECIFIC:
        panels[name, seed] = {k: selectors.select(name, context, k, seed) for k in sizes}
      else:
        ranked = selectors.select(name, context, max(sizes), seed)
        panels[name, seed] = {k: ranked[:k] for k in sizes}
    logging.info('Selector %s done in %.0f s', name, time.time() - start)
  return panels


def trained_encoder(config, workdir, splits, annotation, seed):
  """AE seed `seed` of the fold (trained, resumed or reloaded in `<workdir>/seed_<seed>/`)."""
  seeded = config.copy_and_resolve_references()
  seeded.seed = seed
  model, scaler, _ = train.train_autoencoder(seeded, os.path.join(workdir, f'seed_{seed}'),
                                             splits.train.values, splits.val.values)
  return selectors.TrainedEncoder(model.encoder_layers(), config.model.activation,
                                  scaler.transform(splits.train.values), splits.train.features,
                                  annotation)


def fold_panels(config, workdir, names, sizes, seeds):
  """The fold's gene-level splits and panels, chosen once and kept in `PANELS_FILE`.

  The kept panels are reused when they hold every (selector, seed, k) asked for; otherwise
  the AutoEncoders are trained (or reloaded) and every selector chooses again.
  """
  splits = pipeline.prepare_data(config, workdir)
  annotation = readers.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  wanted = [(name, seed) for name in names for seed in seeds_of(name, seeds)]
  path = os.path.join(workdir, PANELS_FILE)
  if os.path.exists(path):
    kept = pd.read_csv(path, sep='\t', dtype={'gene': str}).sort_values('rank')
    kept = {key: group['gene'].tolist() for key, group in kept.groupby(['selector', 'seed', 'k'])}
    if all((name, seed, k) in kept for name, seed in wanted for k in sizes):
      logging.info('Reusing the panels in %s', path)
      return genes, {(name, seed): {k: kept[name, seed, k] for k in sizes}
                     for name, seed in wanted}
  context = selectors.SelectionContext(genes.genes, genes.train,
                                       panels_lib.read_symbols(config.data.dgex_landmarks),
                                       config, studies=genes.train_studies)
  panels = ranked_panels(context, [n for n in names if n not in ATTRIBUTION], sizes, seeds)
  for seed in seeds_of('deeplift_ae', seeds):
    encoder = trained_encoder(config, workdir, splits, annotation, seed)
    one_seed = dict(seeds, ae=1)
    for (name, _), by_size in ranked_panels(dataclasses.replace(context, encoder=encoder),
                                            [n for n in names if n in ATTRIBUTION], sizes,
                                            one_seed).items():
      panels[name, seed] = by_size
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


def run_fold(fold, config, workdir, names, by_model, seeds, summarize_only=False):
  """The fold's table over every model; a model's finished table is read back (and only
  those with `summarize_only`)."""
  tables, todo = [], {}
  for kind, sizes in by_model.items():
    path = os.path.join(workdir, f'selectors_{kind}.tsv')
    if os.path.exists(path):
      logging.info('Fold %s, %s is finished (%s); reading it back', fold, kind, path)
      tables.append(pd.read_csv(path, sep='\t', keep_default_na=False, na_values=['']))
    else:
      todo[kind] = sizes
  if todo and not summarize_only:
    start = time.time()
    genes, panels = fold_panels(config, workdir, names, sorted(set().union(*todo.values())),
                                seeds)
    for kind, sizes in todo.items():
      table = tabulate(score(config, genes, panels, kind, sizes), fold)
      fileio.write_table(os.path.join(workdir, f'selectors_{kind}.tsv'), table, index=False)
      tables.append(table)
    logging.info('Fold %s done in %.0f s', fold, time.time() - start)
  return pd.concat(tables, ignore_index=True) if tables else None


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
  random = per_fold[per_fold['selector'] == 'random'].set_index(['fold', 'model', 'k'])
  position = pd.MultiIndex.from_frame(per_fold[['fold', 'model', 'k']])
  per_fold['pcc_z_random'] = (
      (per_fold['pcc_mean'].to_numpy() - random['pcc_mean'].reindex(position).to_numpy())
      / random['pcc_mean_sd'].reindex(position).to_numpy())
  wins = per_fold.groupby(key, as_index=False, sort=False)[
      [f'{m}_{side}' for m in METRICS for side in ('better', 'worse')]].sum()
  wins.columns = [*key, *(f'folds_{c}' for c in wins.columns[len(key):])]
  z = per_fold.groupby(key, as_index=False, sort=False)['pcc_z_random'].mean()
  summary = summary.merge(wins, on=key).merge(z, on=key).sort_values(key, ignore_index=True)
  return per_fold.sort_values(['fold', *key], ignore_index=True), summary


def plot(path, summary, run):
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
      folds_done = int(summary[summary['model'] == kind]['folds'].min())
      sizes = sorted(summary['k'].unique())
      ax.set(xscale='log', xlabel='panel size k', ylabel=f'mean target-gene {LABELS[metric]}',
             title=f'{run}: {kind} inference, mean over {folds_done} held-out folds')
      ax.set_xticks(sizes, [str(k) for k in sizes])
      ax.minorticks_off()
  axes[0, 0].legend(fontsize=8, title='selector (bars: sd over seeds)')
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  if 'l1000' not in _SELECTORS.value:
    raise ValueError('--selectors must include l1000: every selector is compared with it')
  selectors.check_config(config.selectors)
  by_model = sizes_by_model(_MODELS.value, _SIZES.value, _MODEL_SIZES.value)
  seeds = {'stochastic': _SEEDS.value, 'ae': _AE_SEEDS.value,
           'random': _SEEDS.value if _RANDOM_SEEDS.value is None else _RANDOM_SEEDS.value}
  tables = [run_fold(fold, fold_config, fold_workdir, _SELECTORS.value, by_model, seeds,
                     _SUMMARIZE_ONLY.value)
            for fold, fold_config, fold_workdir in folds(config, workdir)]
  tables = [table for table in tables if table is not None]
  if not tables:
    logging.info('No fold of %s has finished yet', workdir)
    return
  per_fold, summary = summarize(pd.concat(tables, ignore_index=True),
                                config.evaluate.permutation_alpha)
  fileio.write_table(os.path.join(workdir, 'selectors_folds.tsv'), per_fold, index=False)
  fileio.write_table(os.path.join(workdir, 'selectors_summary.tsv'), summary, index=False)
  plot(os.path.join(workdir, 'selectors.png'), summary, os.path.basename(workdir.rstrip('/')))
  with pd.option_context('display.width', 250, 'display.max_columns', 30):
    print(summary.to_string(index=False))


if __name__ == '__main__':
  app.run(main)
