"""Study correction x DeepLIFT reference x AE seed, leave-one-study-out (configs/study_effects.py).

For every held-out study and correction (a "cell"), the data are prepared once and the
fixed panels (L1000, top variance) and `evaluate.random_sets` random panels of L1000's size
are drawn on the training studies. For every seed the AE is trained (`train_seed`, which
also writes the AE-vs-per-study-mean diagnostic) and DeepLIFT ranks genes once per
reference. Every panel infers all genes outside it on the held-out study, with each model of
`evaluate.models`; per-gene PCC and per-study-centred MAE are kept, and the summary judges
all panels of a fold on their common targets (`read_cell`). Seeds run outermost,
so an interrupted run has whole folds at fewer seeds; finished pieces are skipped on rerun.

Writes per cell and model `<holdout>/<correction>/random_<model>.tsv.gz` and per seed
`seed_<s>/metrics_<model>.tsv.gz`, then `study_effects_folds.tsv` (one row per fold, setting and
model), `study_effects.tsv` (the same averaged over folds) and `study_effects.png`.

  python -m experiments.study_effects --config=configs/study_effects.py --workdir=runs/study_effects
  python -m experiments.study_effects --workdir=runs/study_effects --summarize_only  # tables now
"""

import glob
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

from landmark import data
from landmark import evaluate
from landmark import fileio
from landmark import panels as panels_lib
from landmark import pipeline
from landmark import selectors

config_flags.DEFINE_config_file('config', 'configs/study_effects.py', 'Experiment grid.',
                                lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for every fold and the tables.')
_SUMMARIZE_ONLY = flags.DEFINE_bool('summarize_only', False, 'Only tabulate what the cells '
                                    'finished so far left in --workdir; train nothing.')
flags.mark_flag_as_required('workdir')

METRICS = ('pcc', 'mae_centred')


def cell_config(config, holdout, correction, seed=0, reference=None):
  """The pipeline config of one cell (and seed, and DeepLIFT reference) of the grid."""
  cell = config.copy_and_resolve_references()
  with cell.unlocked():
    del cell['study_effects']
    cell.preprocess.holdout_study = holdout
    cell.preprocess.study_correction = correction
    cell.seed = seed
    if reference is not None:
      cell.deeplift.reference = reference
  return cell


def score_panels(config, genes, panels, seed, models):
  """Long table (model, panel, target, metrics) of every panel inferring all genes outside it."""
  frames = []
  for kind in models:
    for name, panel in panels.items():
      targets = [g for g in genes.genes if g not in set(panel)]
      frame = panels_lib.evaluate_panel(kind, config, genes, panel, targets, seed,
                                        permutation=False)
      frames.append(frame.reset_index().assign(model=kind, panel=name))
  return pd.concat(frames, ignore_index=True)


def prepare_cell(config, cell_dir, holdout, correction, annotation, universe, l1000):
  """Splits, gene matrices, fixed panels and AE baselines of one cell (the same for every seed)."""
  base = cell_config(config, holdout, correction)
  splits = pipeline.prepare_data(base, cell_dir)
  genes = panels_lib.gene_splits(splits, annotation, universe)
  context = selectors.SelectionContext(genes.genes, genes.train, l1000, base)
  fixed = {'l1000': selectors.select('l1000', context, len(genes.genes))}
  k = len(fixed['l1000'])
  fixed['variance'] = selectors.select('variance', context, k)
  return splits, genes, context, fixed, pipeline.study_baselines(splits)


def score_random_panels(config, context, genes, k, kind):
  """Seeded random panels of size k through model `kind`: the noise band of each metric."""
  n = panels_lib.random_panel_count(config.evaluate, kind)
  randoms = {f'random_{i}': selectors.select('random', context, k, seed=i) for i in range(n)}
  return score_panels(config, genes, randoms, 0, (kind,))


def missing_models(config, cell_dir, seed):
  """The models of `config.evaluate.models` that have not scored seed `seed` of a cell yet."""
  return [kind for kind in config.evaluate.models
          if not os.path.exists(os.path.join(cell_dir, f'seed_{seed}', f'metrics_{kind}.tsv.gz'))]


def run_cell(config, cell_dir, seed, prepared, annotation):
  """Trains (or reloads) seed `seed`'s AE of one cell and scores its panels with every model
  not scored yet; scores the cell's random panels the first time."""
  splits, genes, context, fixed, baselines = prepared
  base, k = context.config, len(fixed['l1000'])
  for kind in base.evaluate.models:
    random_path = os.path.join(cell_dir, f'random_{kind}.tsv.gz')
    if not os.path.exists(random_path):
      fileio.write_table(random_path, score_random_panels(base, context, genes, k, kind),
                         index=False)
  missing = missing_models(config, cell_dir, seed)
  if not missing:
    return
  seed_dir = os.path.join(cell_dir, f'seed_{seed}')
  holdout, correction = base.preprocess.holdout_study, base.preprocess.study_correction
  seeded = cell_config(config, holdout, correction, seed)
  model, scaler, quality = pipeline.train_seed(seeded, seed_dir, splits, baselines)
  panels = {}
  for reference in config.study_effects.references:
    explained = cell_config(config, holdout, correction, seed, reference)
    ranking = pipeline.explain_stage(explained, os.path.join(seed_dir, f'deeplift_{reference}'),
                                     splits, model, scaler, annotation)
    in_universe = ranking['symbol'][ranking['symbol'].isin(set(genes.genes))]
    panels[f'deeplift_{reference}'] = in_universe.tolist()[:k]
  panels.update(fixed)
  for kind in missing:
    fileio.write_table(os.path.join(seed_dir, f'metrics_{kind}.tsv.gz'),
                       score_panels(seeded, genes, panels, seed, (kind,)), index=False)
  logging.info('%s / %s / seed %d: AE gain over per-study mean %.3f', holdout, correction, seed,
               quality['baselines']['gain_over_study'])


def read_cell(cell_dir, kind):
  """(seeded, random) per-gene tables of one cell and model, restricted to common targets.

  Common targets are the genes outside every non-random panel of every seed: all panels
  are judged on them (random panels on those outside themselves, an unbiased sample), so
  a panel cannot look better by leaving easier genes to infer. Every seed scored so far
  counts, whatever `study_effects.seeds` says now.
  """
  seeded = []
  for path in sorted(glob.glob(os.path.join(cell_dir, 'seed_*', f'metrics_{kind}.tsv.gz'))):
    seed_dir = os.path.dirname(path)
    with open(os.path.join(seed_dir, 'ae_summary.json')) as f:
      gain = json.load(f)['baselines']['gain_over_study']
    seed = int(os.path.basename(seed_dir).split('_')[1])
    seeded.append(pd.read_csv(path, sep='\t').assign(seed=seed, ae_gain_over_study=gain))
  if not seeded:
    return None, None
  seeded = pd.concat(seeded, ignore_index=True)
  common = set.intersection(*(set(group['target'])
                              for _, group in seeded.groupby(['panel', 'seed'])))
  random = pd.read_csv(os.path.join(cell_dir, f'random_{kind}.tsv.gz'), sep='\t')
  return seeded[seeded['target'].isin(common)], random[random['target'].isin(common)]


def fold_rows(workdir, holdout, correction):
  """Summary rows of one cell (every model scored so far): every DeepLIFT setting and fixed
  panel against the random band."""
  cell_dir = os.path.join(workdir, holdout, correction)
  rows = []
  scored = glob.glob(os.path.join(cell_dir, 'random_*.tsv.gz'))
  for kind in sorted(os.path.basename(path)[len('random_'):-len('.tsv.gz')] for path in scored):
    seeded, random = read_cell(cell_dir, kind)
    if seeded is None:
      continue
    band = random.groupby('panel')[list(METRICS)].mean()
    randoms = [group['pcc'].to_numpy() for _, group in random.groupby('panel')]
    l1000 = seeded[seeded['panel'] == 'l1000'].set_index(['seed', 'target'])['pcc']
    for panel, by_panel in seeded.groupby('panel'):
      means = by_panel.groupby('seed')[list(METRICS)].mean()
      row = {'holdout': holdout, 'correction': correction, 'model': kind, 'panel': panel,
             'seeds': len(means), 'targets': by_panel['target'].nunique(),
             'random_sets': len(band), 'ae_gain_over_study': by_panel['ae_gain_over_study'].mean()}
      for metric in METRICS:
        row[metric] = means[metric].mean()
        row[f'{metric}_seed_sd'] = means[metric].std(ddof=1) if len(means) > 1 else np.nan
        row[f'{metric}_random'] = band[metric].mean()
        row[f'{metric}_random_sd'] = band[metric].std(ddof=1)
        row[f'{metric}_z_random'] = (row[metric] - band[metric].mean()) / band[metric].std(ddof=1)
      if panel != 'l1000':
        row.update(versus_l1000(by_panel.set_index(['seed', 'target'])['pcc'], l1000, randoms))
      rows.append(row)
  return rows


def versus_l1000(pcc, l1000_pcc, random_pccs):
  """PCC against L1000's on the same targets, per seed: the paired t-test's largest p and the
  mean z of the gap against gaps between random panels (`evaluate.calibrated_gap`)."""
  t_p, gap_z = [], []
  for seed in pcc.index.get_level_values('seed').unique():
    a, b = pcc.loc[seed], l1000_pcc.loc[seed].reindex(pcc.loc[seed].index)
    t_p.append(evaluate.paired_comparison(a, b, lower_is_better=False)['t_p_value'])
    if len(random_pccs) >= 3:
      gap_z.append(evaluate.calibrated_gap(a, b, random_pccs)['z'])
  return {'pcc_vs_l1000_t_p_max': max(t_p),
          'pcc_vs_l1000_gap_z': np.mean(gap_z) if gap_z else np.nan}


def summarize(config, workdir):
  """The per-fold table and its mean over folds (by correction, model and panel)."""
  se = config.study_effects
  folds = pd.DataFrame([row for holdout in se.holdouts for correction in se.corrections
                        for row in fold_rows(workdir, holdout, correction)])
  numeric = [c for c in folds.columns if c not in ('holdout', 'correction', 'model', 'panel')]
  overall = folds.groupby(['model', 'correction', 'panel'], as_index=False)[numeric].mean()
  overall.insert(3, 'folds', folds.groupby(['model', 'correction', 'panel']).size().to_numpy())
  return folds, overall


def plot(path, folds):
  """z against the random band (PCC) per held-out study, one subplot per inference model."""
  models = sorted(folds['model'].unique())
  figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.5), squeeze=False)
  holdouts = sorted(folds['holdout'].unique())
  panels, corrections = sorted(folds['panel'].unique()), sorted(folds['correction'].unique())
  for ax, kind in zip(axes[0], models):
    for i, panel in enumerate(panels):          # colour: panel; marker: correction
      for j, correction in enumerate(corrections):
        rows = folds[(folds['model'] == kind) & (folds['correction'] == correction) &
                     (folds['panel'] == panel)].set_index('holdout').reindex(holdouts)
        offset = (i * len(corrections) + j - len(panels) * len(corrections) / 2) * 0.06
        ax.plot(np.arange(len(holdouts)) + offset, rows['pcc_z_random'], 'os^D'[j % 4],
                label=f'{panel} / {correction}', color=f'C{i}')
    ax.axhspan(-2, 2, color='0.9', zorder=0)
    ax.axhline(0, color='0.5', lw=0.8)
    ax.set_xticks(range(len(holdouts)), holdouts)
    ax.set(ylabel='mean target PCC: z against random panels', title=f'{kind}, held-out study')
  axes[0, -1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc='upper left')
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  se = config.study_effects
  annotation = data.read_probe_annotation(config.data.annotation)
  universe = panels_lib.dgex_universe(config.data)
  l1000 = panels_lib.read_symbols(config.data.dgex_landmarks)
  cells = [(seed, holdout, correction) for seed in range(se.seeds) for holdout in se.holdouts
           for correction in se.corrections]
  prepared, started = {}, time.perf_counter()
  for i, (seed, holdout, correction) in enumerate([] if _SUMMARIZE_ONLY.value else cells):
    cell_dir = os.path.join(workdir, holdout, correction)
    done = not missing_models(config, cell_dir, seed)
    if not done and (holdout, correction) not in prepared:
      prepared[holdout, correction] = prepare_cell(config, cell_dir, holdout, correction,
                                                   annotation, universe, l1000)
    if not done:
      run_cell(config, cell_dir, seed, prepared[holdout, correction], annotation)
    elapsed = time.perf_counter() - started
    logging.info('Cell %d/%d done (held-out %s, %s, seed %d); %.0f s so far, ETA %.0f s',
                 i + 1, len(cells), holdout, correction, seed, elapsed,
                 elapsed / (i + 1) * (len(cells) - i - 1))
  folds, overall = summarize(config, workdir)
  fileio.write_table(os.path.join(workdir, 'study_effects_folds.tsv'), folds, index=False)
  fileio.write_table(os.path.join(workdir, 'study_effects.tsv'), overall, index=False)
  plot(os.path.join(workdir, 'study_effects.png'), folds)
  print(overall[['model', 'correction', 'panel', 'folds', 'seeds', 'pcc', 'pcc_seed_sd',
                 'pcc_z_random', 'mae_centred', 'mae_centred_z_random',
                 'pcc_vs_l1000_gap_z']].to_string(index=False))


if __name__ == '__main__':
  app.run(main)
