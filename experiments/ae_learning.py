"""Why the demo's AutoEncoder learned little, measured (issue #20).

On the demo's data and split (the preprocessing of --config, by default configs/quick.py),
trains AutoEncoder variants through the project's own `train.train_autoencoder`, each in a
temporary workdir, and records the validation split's mean per-gene PCC and MAE after
every epoch, against optimisation steps. Beside them: PCA of widths 10, 50 and the
bottleneck's, fitted on the training split and scored on the same validation profiles
(diagnostics.pca_baselines), the linear reconstruction an AE of that width should match.

Variants (VARIANTS) start from the paper's AE (sigmoid everywhere, min-max inputs, MAE,
Adam 1e-3, dropout 0.1, L2 1e-6; configs/quick.py:paper) and change one thing, or start
from the demo's default (configs/quick.py, chosen here on the validation split only) and
take one thing back. "Early stopping" is read off every curve: the epoch of best
validation PCC (an optimistic figure, since it is chosen on the split it is scored on).

Writes into --out: `ae_learning.tsv` (one row per variant: final and best-epoch
validation PCC and MAE, mean and sd over seeds, the final model's reconstruction of its own
training profiles (`train_pcc`, `train_mae`: underfitting or overfitting?), training
seconds; then one row per PCA baseline, on both splits), `ae_learning_curves.tsv` (every
epoch of every variant and seed) and `ae_learning.png`. Finished (variant, seed) curves are
kept in --workdir and not rerun; the tables summarise every finished curve, so a variant
may have fewer seeds (`seeds`).

  python -m experiments.ae_learning --workdir=runs/ae_learning \
      --out=experiments/results/ae_learning
  python -m experiments.ae_learning --workdir=runs/ae_learning --variants=paper,default
"""

import glob
import os
import tempfile
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

from configs import quick
from landmark import fileio
from landmark import metrics
from landmark import pipeline
from landmark.evaluation import diagnostics
from landmark.training import core
from landmark.training import train

config_flags.DEFINE_config_file('config', 'configs/quick.py:paper', 'Data, preprocessing and '
                                "the paper's AE, which variants start from.", lock_config=False)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Prepared data and every finished curve.')
_OUT = flags.DEFINE_string('out', None, 'Where the table and figure go (default: --workdir).')
_VARIANTS = flags.DEFINE_list('variants', None, 'Names of VARIANTS to run (default: all).')
_SEEDS = flags.DEFINE_integer('seeds', 2, 'Seeds per variant (config.seed, config.seed + 1, ...).')
_SUMMARIZE_ONLY = flags.DEFINE_bool('summarize_only', False, 'Only tabulate the curves '
                                    'already in --workdir; train nothing.')
flags.mark_flag_as_required('workdir')

# name -> (start, overrides): 'paper' is --config; 'default' is --config with quick.AE.
STANDARDISED = {'model.scale': 'standard', 'model.output_activation': 'linear'}
VARIANTS = {
    'paper': ('paper', {}),
    'paper_epochs400': ('paper', {'train.epochs': 400}),
    'paper_lr3e-3': ('paper', {'train.learning_rate': 3e-3}),
    'paper_cosine': ('paper', {'train.schedule': 'cosine', 'train.warmup_fraction': 0.05}),
    'paper_batch8': ('paper', {'train.batch_size': 8}),
    'paper_mse': ('paper', {'train.loss': 'mse'}),
    'paper_linear_output': ('paper', {'model.output_activation': 'linear'}),
    'paper_standardised': ('paper', STANDARDISED),
    'paper_standardised_mse': ('paper', {**STANDARDISED, 'train.loss': 'mse'}),
    'paper_no_dropout_l2': ('paper', {'model.dropout': 0.0, 'train.l2': 0.0}),
    'paper_tanh': ('paper', {'model.activation': 'tanh'}),
    'paper_linear_ae': ('paper', {**STANDARDISED, 'train.loss': 'mse',
                                  'model.activation': 'linear'}),
    'default': ('default', {}),
    'default_epochs200': ('default', {'train.epochs': 200}),
    'default_mae': ('default', {'train.loss': 'mae'}),
    'default_minmax_sigmoid': ('default', {'model.scale': 'minmax',
                                           'model.output_activation': 'sigmoid'}),
    'default_sigmoid_hidden': ('default', {'model.activation': 'sigmoid'}),
    'default_linear_hidden': ('default', {'model.activation': 'linear'}),
    'default_constant_lr': ('default', {'train.schedule': 'constant',
                                        'train.warmup_fraction': 0.0}),
    'default_l2_1e-6': ('default', {'train.l2': 1e-6}),
    'default_dropout_0.1': ('default', {'model.dropout': 0.1}),
}


def variant_config(config, name, seed):
  """The config of variant `name` at `seed`: the checkpoints only at the end."""
  start, overrides = VARIANTS[name]
  variant = config.copy_and_resolve_references()
  for field, value in {**(quick.AE if start == 'default' else {}), **overrides}.items():
    section, key = field.split('.')
    variant[section][key] = value
  variant.seed = seed
  variant.train.checkpoint_every_epochs = variant.train.epochs
  variant.train.log_every_epochs = 1
  return variant


def changes(name):
  """The variant's fields that differ from the paper's AE, as 'field=value' text."""
  start, overrides = VARIANTS[name]
  fields = {**(quick.AE if start == 'default' else {}), **overrides}
  return ', '.join(f'{field}={value}' for field, value in fields.items()) or '(none)'


def curve_path(workdir, name, seed):
  return os.path.join(workdir, 'curves', f'{name}_seed{seed}.tsv')


def reconstruction_scores(values, reconstruction):
  """Mean per-gene MAE and PCC, as the pipeline reports them."""
  return (float(np.mean(metrics.per_gene_mae(values, reconstruction))),
          float(np.mean(metrics.per_gene_pcc(values, reconstruction))))


def run_variant(config, workdir, splits, name, seed):
  """Trains variant `name` at `seed` in a temporary workdir; writes and returns its curve,
  with the final model's reconstruction of the training split (to tell overfitting from
  underfitting)."""
  variant = variant_config(config, name, seed)
  train_x = splits.train.values
  steps_per_epoch = -(-len(train_x) // variant.train.batch_size)
  with tempfile.TemporaryDirectory(dir=workdir) as scratch:
    started = time.perf_counter()
    model, scaler, history = train.train_autoencoder(variant, scratch, train_x,
                                                     splits.val.values)
    seconds = time.perf_counter() - started
  fit = scaler.inverse_transform(np.asarray(train.reconstruct(model, scaler.transform(train_x))))
  train_mae, train_pcc = reconstruction_scores(train_x, fit)
  curve = pd.DataFrame({
      'variant': name, 'seed': seed, 'epoch': history['epoch'],
      'step': np.asarray(history['epoch']) * steps_per_epoch,
      'train_loss': history[core.TRAIN_LOSS], 'val_mae': history[train.EVAL_MAE],
      'val_pcc': history[train.EVAL_PCC], 'final_train_mae': train_mae,
      'final_train_pcc': train_pcc, 'train_seconds': seconds})
  fileio.write_table(curve_path(workdir, name, seed), curve, index=False)
  return curve


def summarize(curves, baselines, train_baselines, width):
  """One row per variant (final and best-validation-PCC epoch, mean and sd over seeds),
  then one per PCA baseline (`train_baselines`: PCA's reconstruction of the training split)."""
  rows = []
  for name in [n for n in VARIANTS if n in set(curves['variant'])]:
    runs = curves[curves['variant'] == name]
    last = runs.loc[runs.groupby('seed')['epoch'].idxmax()]
    best = runs.loc[runs.groupby('seed')['val_pcc'].idxmax()]
    rows.append({
        'variant': name, 'changes_from_paper': changes(name), 'seeds': len(last),
        'epochs': int(last['epoch'].max()), 'steps': int(last['step'].max()),
        'val_pcc': last['val_pcc'].mean(), 'val_pcc_sd': last['val_pcc'].std(ddof=1),
        'val_mae': last['val_mae'].mean(), 'val_mae_sd': last['val_mae'].std(ddof=1),
        'best_val_pcc': best['val_pcc'].mean(), 'best_epoch': best['epoch'].mean(),
        'val_mae_at_best': best['val_mae'].mean(),
        'train_pcc': last['final_train_pcc'].mean(), 'train_mae': last['final_train_mae'].mean(),
        'pcc_minus_pca': last['val_pcc'].mean() - baselines[f'pca_{width}']['pcc'],
        'mae_minus_pca': last['val_mae'].mean() - baselines[f'pca_{width}']['mae'],
        'train_seconds': last['train_seconds'].mean()})
  for name, pca in baselines.items():
    rows.append({'variant': name, 'changes_from_paper': f"PCA, {pca['components']} components",
                 'val_pcc': pca['pcc'], 'val_mae': pca['mae'],
                 'train_pcc': train_baselines[name]['pcc'],
                 'train_mae': train_baselines[name]['mae']})
  table = pd.DataFrame(rows)
  return table.astype({column: 'Int64' for column in ('seeds', 'epochs', 'steps')})


def plot(path, curves, baselines, title):
  """Validation PCC and MAE against steps, one line per variant (mean over seeds), PCA
  baselines as horizontal lines."""
  figure, axes = plt.subplots(1, 2, figsize=(17, 6.5))
  names = [n for n in VARIANTS if n in set(curves['variant'])]
  colours = plt.get_cmap('tab20')(np.linspace(0, 1, 20))
  for i, name in enumerate(names):
    mean = curves[curves['variant'] == name].groupby('step')[['val_pcc', 'val_mae']].mean()
    style = '-' if VARIANTS[name][0] == 'paper' else '--'
    width = 2.8 if name in ('paper', 'default') else 1.3
    for ax, metric in zip(axes, ('val_pcc', 'val_mae')):
      ax.plot(mean.index, mean[metric], style, color=colours[i % 20], lw=width, label=name)
  for j, (name, pca) in enumerate(baselines.items()):
    for ax, metric in zip(axes, ('pcc', 'mae')):
      ax.axhline(pca[metric], color='k', ls=':', lw=1.0 + j * 0.6,
                 label=f"{name} (PCA, {pca['components']} components)")
      ax.annotate(f"PCA {pca['components']}", (1.0, pca[metric]), xycoords=('axes fraction',
                  'data'), xytext=(-4, 2), textcoords='offset points', ha='right', fontsize=8)
  axes[0].set(xlabel='optimisation steps (Adam updates)',
              ylabel='validation: mean per-gene PCC (higher is better)')
  # The linear encoders' transient MAE spikes (up to ~1.8) are cut off, so the rest shows.
  lowest = min(pca['mae'] for pca in baselines.values())
  axes[1].set(xlabel='optimisation steps (Adam updates)', ylim=(lowest - 0.01, 0.72),
              ylabel='validation: mean per-gene MAE, log2 units (lower is better)')
  for ax in axes:
    ax.set_xscale('log')
    ax.grid(alpha=0.3)
  axes[1].legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc='upper left',
                 title='solid: from the paper; dashed: from the default')
  figure.suptitle(title)
  figure.tight_layout()
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  out = _OUT.value or workdir
  names = _VARIANTS.value or list(VARIANTS)
  unknown = sorted(set(names) - set(VARIANTS))
  if unknown:
    raise app.UsageError(f'Unknown variants {unknown}; known: {list(VARIANTS)}')
  os.makedirs(os.path.join(workdir, 'curves'), exist_ok=True)
  splits = pipeline.prepare_data(config, os.path.join(workdir, 'data'))
  width = config.model.bottleneck
  widths = tuple(sorted({*diagnostics.PCA_WIDTHS, width}))
  pca = diagnostics.fit_pca(splits.train.values, max(widths))
  baselines = diagnostics.pca_baselines(pca, splits.val.values, widths)
  train_baselines = diagnostics.pca_baselines(pca, splits.train.values, widths)
  for seed in range(config.seed, config.seed + _SEEDS.value):   # an interrupted run has
    for name in names:                                          # every variant at fewer seeds
      if not (_SUMMARIZE_ONLY.value or os.path.exists(curve_path(workdir, name, seed))):
        logging.info('Training variant %r, seed %d', name, seed)
        run_variant(config, workdir, splits, name, seed)
  curves = pd.concat([pd.read_csv(path, sep='\t') for name in VARIANTS
                      for path in sorted(glob.glob(curve_path(workdir, name, '*')))],
                     ignore_index=True)
  table = summarize(curves, baselines, train_baselines, width)
  os.makedirs(out, exist_ok=True)
  fileio.write_table(os.path.join(out, 'ae_learning.tsv'), table, index=False)
  fileio.write_table(os.path.join(out, 'ae_learning_curves.tsv'), curves, index=False)
  title = ('Validation reconstruction of AutoEncoder variants (mean over seeds) beside PCA\n'
           f'demo data: {len(config.data.studies)} HG-U133A studies, '
           f'{len(splits.train.values)} training / {len(splits.val.values)} validation profiles, '
           f'{splits.train.values.shape[1]} probes, study correction '
           f"'{config.preprocess.study_correction}'; AE "
           f"{' -> '.join(map(str, ('input', *config.model.hidden, width)))} -> mirror")
  plot(os.path.join(out, 'ae_learning.png'), curves, baselines, title)
  print(table.drop(columns='changes_from_paper').to_string(index=False,
                                                         float_format=lambda v: f'{v:.4f}'))


if __name__ == '__main__':
  app.run(main)
