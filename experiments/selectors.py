"""Every landmark selector side by side: target-gene inference quality against panel size.

Trains (or reloads) the config's AutoEncoder in --workdir, lets every selector pick panels
of each size k from the same training split, and scores each panel by inferring the rest
of D-GEX's gene universe on the held-out split. Each panel is scored on its own
complement; the paired comparison with L1000 uses the targets both leave out. Stochastic
selectors run over --seeds seeds (mean ± sd in the table). Writes `selectors.tsv` (one row
per selector, k, model, seed), `selectors_summary.tsv` and `selectors.png`.

  python -m experiments.selectors --config=configs/quick.py --workdir=runs/selectors
  python -m experiments.selectors --config=configs/cross_study.py:holdout=chowdary \
      --workdir=runs/selectors_chowdary --models=linear,dgex
"""

from absl import app
from absl import flags
from absl import logging
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
from ml_collections import config_flags
import numpy as np
import pandas as pd

from landmark import evaluate
from landmark import fileio
from landmark import panels as panels_lib
from landmark import pipeline
from landmark import preprocess
from landmark import ranking
from landmark import selectors
from landmark import train

config_flags.DEFINE_config_file('config', 'configs/quick.py', 'Run configuration.',
                                lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the AE and the results.')
_SELECTORS = flags.DEFINE_list('selectors', [name for name in selectors.SELECTORS
                                             if name != 'concrete_ae'],
                               'Selectors to compare (concrete_ae needs a GPU at k=943).')
_SIZES = flags.DEFINE_list('k', ['100', '300', '943', '2000'], 'Panel sizes.')
_SEEDS = flags.DEFINE_integer('seeds', 3, 'Seeds for stochastic selectors.')
_MODELS = flags.DEFINE_list('models', ['linear'], 'Inference models (linear, dgex, knn).')
flags.mark_flag_as_required('workdir')


def ranked_panels(context, names, sizes, seeds):
  """{(selector, seed): {k: panel}}: one ranking per deterministic selector, cut to each k."""
  panels = {}
  for name in names:
    for seed in range(seeds if name in selectors.STOCHASTIC else 1):
      if name in selectors.K_SPECIFIC:
        panels[name, seed] = {k: selectors.select(name, context, k, seed) for k in sizes}
      else:
        ranked = selectors.select(name, context, max(sizes), seed)
        panels[name, seed] = {k: ranked[:k] for k in sizes}
      logging.info('Selector %s (seed %d) done', name, seed)
  return panels


def score(config, genes, panels, models):
  """Per-gene metrics of every (selector, seed, k, model) panel on its own complement."""
  results = {}
  for (name, seed), by_size in panels.items():
    for k, panel in by_size.items():
      targets = [g for g in genes.genes if g not in set(panel)]
      for kind in models:
        results[name, seed, k, kind] = panels_lib.evaluate_panel(
            kind, config, genes, panel, targets, config.seed, permutation=False)
  return results


def tabulate(results):
  rows = []
  for (name, seed, k, kind), frame in results.items():
    l1000 = results.get(('l1000', 0, k, kind))
    row = {'selector': name, 'seed': seed, 'k': k, 'model': kind,
           'pcc_mean': frame['pcc'].mean(), 'mae_mean': frame['mae'].mean()}
    if l1000 is not None and name != 'l1000':
      paired = evaluate.paired_comparison(*(f.loc[frame.index.intersection(l1000.index), 'pcc']
                                            for f in (frame, l1000)), lower_is_better=False)
      row.update(pcc_vs_l1000=paired['mean_difference'], pcc_vs_l1000_t_p=paired['t_p_value'])
    rows.append(row)
  table = pd.DataFrame(rows)
  summary = table.groupby(['model', 'k', 'selector'], as_index=False).agg(
      pcc_mean=('pcc_mean', 'mean'), pcc_sd=('pcc_mean', 'std'), mae_mean=('mae_mean', 'mean'),
      seeds=('seed', 'count'))
  return table, summary


def plot(path, summary):
  models = summary['model'].unique()
  figure, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
  for ax, kind in zip(axes[0], models):
    for name, group in summary[summary['model'] == kind].groupby('selector'):
      ax.errorbar(group['k'], group['pcc_mean'], yerr=group['pcc_sd'].fillna(0), marker='o',
                  capsize=3, label=name)
    ax.set(xscale='log', xlabel='panel size k', ylabel='mean target-gene PCC (held-out)',
           title=f'{kind} inference')
    ax.legend(fontsize=8)
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  sizes = sorted(int(k) for k in _SIZES.value)
  splits = pipeline.prepare_data(config, workdir)
  model, scaler, _ = train.train_autoencoder(config, workdir, splits.train.values,
                                             splits.val.values)
  annotation = ranking.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, preprocess.read_annotation(config.data.annotation),
                                 panels_lib.dgex_universe(config.data))
  encoder = selectors.TrainedEncoder(model.encoder_layers(), config.model.activation,
                                     scaler.transform(splits.train.values), splits.train.features,
                                     annotation)
  context = selectors.SelectionContext(genes.genes, genes.train,
                                       panels_lib.read_symbols(config.data.dgex_landmarks),
                                       config, encoder)
  panels = ranked_panels(context, _SELECTORS.value, sizes, _SEEDS.value)
  table, summary = tabulate(score(config, genes, panels, _MODELS.value))
  fileio.write_table(f'{workdir}/selectors.tsv', table, index=False)
  fileio.write_table(f'{workdir}/selectors_summary.tsv', summary, index=False)
  plot(f'{workdir}/selectors.png', summary)
  print(summary.to_string(index=False))


if __name__ == '__main__':
  app.run(main)
