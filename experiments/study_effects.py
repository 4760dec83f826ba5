"""Study correction x DeepLIFT reference x AE seed on held-out studies (configs/study_effects.py).

A "holdout" is one held-out study (leave one study out) or, with `preprocess.split=
'study_kfold'`, one fold `fold_<i>` of studies. For every holdout and correction (a
"cell"), the data are prepared once and the
fixed panels (L1000, top variance) and `evaluate.random_sets` random panels of L1000's size
are drawn on the training studies. For every seed the AE is trained (`train_seed`, which
also writes the AE-vs-per-study-mean diagnostic) and DeepLIFT ranks genes once per
reference. Every panel infers all genes outside it on the held-out studies, with each model of
`evaluate.models`; per-gene PCC and per-study-centred MAE are kept, and the summary judges
all panels of a fold on their common targets (`read_cell`). Seeds run outermost,
so an interrupted run has whole folds at fewer seeds; pieces finished under the same
settings (`run_identity.results_identity`, recorded in the cell's `results.json`) are
skipped on rerun, and those made under others are computed again and left out of tables.

Writes per cell and model `<holdout>/<correction>/random_<model>.tsv.gz` and per seed
`seed_<s>/metrics_<model>.tsv.gz`, then `study_effects_folds.tsv` (one row per fold, setting and
model; `test_studies` names a fold's studies), `study_effects.tsv` (the same averaged over
folds) and `study_effects.png`.

  python -m experiments.study_effects --config=configs/study_effects.py --workdir=runs/study_effects
  python -m experiments.study_effects --workdir=runs/study_effects --summarize_only  # tables now
  python -m experiments.study_effects \
      --config=configs/study_effects.py:studies=compendium,folds=5,models=ridge \
      --workdir=runs/study_effects_17 [--summarize_only]
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

from landmark import fileio
from landmark import pipeline
from landmark import run_identity
from landmark.data import readers
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.selection import selectors

# Experiment modules share flag names; overridable so that tests can import several.
config_flags.DEFINE_config_file('config', 'configs/study_effects.py', 'Experiment grid.',
                                lock_config=True, allow_override=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for every fold and the tables.',
                               allow_override=True)
_SUMMARIZE_ONLY = flags.DEFINE_bool('summarize_only', False, 'Only tabulate what the cells '
                                    'finished so far left in --workdir; train nothing.',
                                    allow_override=True)
flags.mark_flag_as_required('workdir')

METRICS = ('pcc', 'mae_centred')
FOLD_PREFIX = 'fold_'


def hold_out(preprocess, holdout: str) -> None:
  """Sets `preprocess` to hold out `holdout`: a study, or `fold_<i>` of a study_kfold split."""
  if preprocess.split == 'study_kfold':
    if not holdout.startswith(FOLD_PREFIX):
      raise ValueError(f"split='study_kfold' holds out folds {FOLD_PREFIX}<i>, not {holdout!r}")
    preprocess.fold = int(holdout[len(FOLD_PREFIX):])
  else:
    preprocess.holdout_study = holdout


def cell_config(config, holdout, correction, seed=0, reference=None):
  """The pipeline config of one cell (and seed, and DeepLIFT reference) of the grid."""
  cell = config.copy_and_resolve_references()
  with cell.unlocked():
    del cell['study_effects']
    hold_out(cell.preprocess, holdout)
    cell.preprocess.study_correction = correction
    cell.seed = seed
    if reference is not None:
      cell.deeplift.reference = reference
  return cell


def prepare_cell(config, cell_dir, holdout, correction, annotation, universe, l1000):
  """Splits, gene matrices, fixed panels and AE baselines of one cell (the same for every seed)."""
  base = cell_config(config, holdout, correction)
  splits = pipeline.prepare_data(base, cell_dir)
  genes = panels_lib.gene_splits(splits, annotation, universe)
  context = selectors.SelectionContext(genes.genes, genes.train, l1000, base,
                                       studies=genes.train_studies)
  fixed = {'l1000': selectors.select('l1000', context, len(genes.genes))}
  k = len(fixed['l1000'])
  fixed['variance'] = selectors.select('variance', context, k)
  return splits, genes, context, fixed, pipeline.study_baselines(splits)


def seed_identity(config, holdout, correction, seed):
  """What a cell's scores of seed `seed` depend on: its run's settings and files
  (`run_identity.results_identity`) and the DeepLIFT references scored."""
  return {**run_identity.results_identity(cell_config(config, holdout, correction, seed)),
          'references': list(config.study_effects.references)}


def random_identity(config, holdout, correction):
  """What a cell's random panels' scores depend on."""
  return run_identity.results_identity(cell_config(config, holdout, correction))


def missing_models(config, cell_dir, holdout, correction, seed):
  """The models of `config.evaluate.models` that have not scored seed `seed` of a cell under
  the current settings yet."""
  identity = seed_identity(config, holdout, correction, seed)
  return [kind for kind in config.evaluate.models
          if not run_identity.result_is_current(cell_dir, metrics_file(seed, kind), identity)]


def metrics_file(seed, kind):
  """A seed's table of model `kind`, relative to its cell."""
  return os.path.join(f'seed_{seed}', f'metrics_{kind}.tsv.gz')


def random_file(kind):
  """The cell's table of its random panels through model `kind`, relative to the cell."""
  return f'random_{kind}.tsv.gz'


def run_cell(config, cell_dir, holdout, seed, prepared, annotation):
  """Trains (or reloads) seed `seed`'s AE of one cell and scores its panels with every model
  not scored under the current settings yet, and the cell's random panels likewise."""
  splits, genes, context, fixed, baselines = prepared
  base, k = context.config, len(fixed['l1000'])
  correction = base.preprocess.study_correction
  of_random = random_identity(config, holdout, correction)
  for kind in base.evaluate.models:
    if not run_identity.result_is_current(cell_dir, random_file(kind), of_random):
      fileio.write_table(os.path.join(cell_dir, random_file(kind)),
                         panels_lib.score_random_panels(base, context, genes, k, kind),
                         index=False)
      run_identity.record_result(cell_dir, random_file(kind), of_random)
  missing = missing_models(config, cell_dir, holdout, correction, seed)
  if not missing:
    return
  seed_dir = os.path.join(cell_dir, f'seed_{seed}')
  seeded = cell_config(config, holdout, correction, seed)
  identity = run_identity.RunIdentity(seeded, seed_dir).identity(f'train/seed_{seed}')
  model, scaler, quality = pipeline.train_seed(seeded, seed_dir, splits, baselines, identity)
  panels = {}
  for reference in config.study_effects.references:
    explained = cell_config(config, holdout, correction, seed, reference)
    ranking = pipeline.explain_stage(explained, os.path.join(seed_dir, f'deeplift_{reference}'),
                                     splits, model, scaler, annotation)
    in_universe = ranking['symbol'][ranking['symbol'].isin(set(genes.genes))]
    panels[f'deeplift_{reference}'] = in_universe.tolist()[:k]
  panels.update(fixed)
  of_seed = seed_identity(config, holdout, correction, seed)
  for kind in missing:
    fileio.write_table(os.path.join(cell_dir, metrics_file(seed, kind)),
                       panels_lib.score_panels(seeded, genes, panels, seed, (kind,)),
                       index=False)
    run_identity.record_result(cell_dir, metrics_file(seed, kind), of_seed)
  logging.info('%s / %s / seed %d: AE gain over per-study mean %.3f', holdout, correction, seed,
               quality['baselines']['gain_over_study'])


def read_cell(config, cell_dir, holdout, correction, kind):
  """(seeded, random) per-gene tables of one cell and model, restricted to common targets.

  Common targets are the genes outside every non-random panel of every seed: all panels
  are judged on them (random panels on those outside themselves, an unbiased sample), so
  a panel cannot look better by leaving easier genes to infer. Every seed scored so far
  under the current settings counts, whatever `study_effects.seeds` says now; tables made
  under other settings are left out.
  """
  if not run_identity.result_is_current(cell_dir, random_file(kind),
                                        random_identity(config, holdout, correction)):
    return None, None
  seeded = []
  for path in sorted(glob.glob(os.path.join(cell_dir, 'seed_*', f'metrics_{kind}.tsv.gz'))):
    seed_dir = os.path.dirname(path)
    seed = int(os.path.basename(seed_dir).split('_')[1])
    if not run_identity.result_is_current(cell_dir, metrics_file(seed, kind),
                                          seed_identity(config, holdout, correction, seed)):
      logging.warning('%s: made under other settings; left out', path)
      continue
    with open(os.path.join(seed_dir, 'ae_summary.json')) as f:
      gain = json.load(f)['baselines']['gain_over_study']
    seeded.append(pd.read_csv(path, sep='\t').assign(seed=seed, ae_gain_over_study=gain))
  if not seeded:
    return None, None
  seeded = pd.concat(seeded, ignore_index=True)
  common = set.intersection(*(set(group['target'])
                              for _, group in seeded.groupby(['panel', 'seed'])))
  random = pd.read_csv(os.path.join(cell_dir, random_file(kind)), sep='\t')
  return seeded[seeded['target'].isin(common)], random[random['target'].isin(common)]


def test_studies(cell_dir):
  """'+'-joined studies of a cell's test split (from its `data_summary.json`; '' before)."""
  path = os.path.join(cell_dir, 'data_summary.json')
  if not os.path.exists(path):
    return ''
  with open(path) as f:
    return '+'.join(sorted(json.load(f)['test']['studies']))


def fold_rows(config, workdir, holdout, correction):
  """Summary rows of one cell (every model scored so far): every DeepLIFT setting and fixed
  panel against the random band."""
  cell_dir = os.path.join(workdir, holdout, correction)
  studies, rows = test_studies(cell_dir), []
  scored = glob.glob(os.path.join(cell_dir, 'random_*.tsv.gz'))
  for kind in sorted(os.path.basename(path)[len('random_'):-len('.tsv.gz')] for path in scored):
    seeded, random = read_cell(config, cell_dir, holdout, correction, kind)
    if seeded is None:
      continue
    band = random.groupby('panel')[list(METRICS)].mean()
    randoms = [group['pcc'].to_numpy() for _, group in random.groupby('panel')]
    l1000 = seeded[seeded['panel'] == 'l1000'].set_index(['seed', 'target'])['pcc']
    for panel, by_panel in seeded.groupby('panel'):
      means = by_panel.groupby('seed')[list(METRICS)].mean()
      row = {'holdout': holdout, 'test_studies': studies, 'correction': correction,
             'model': kind, 'panel': panel,
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
                        for row in fold_rows(config, workdir, holdout, correction)])
  if folds.empty:
    return folds, folds
  numeric = [c for c in folds.columns
             if c not in ('holdout', 'test_studies', 'correction', 'model', 'panel')]
  overall = folds.groupby(['model', 'correction', 'panel'], as_index=False)[numeric].mean()
  overall.insert(3, 'folds', folds.groupby(['model', 'correction', 'panel']).size().to_numpy())
  return folds, overall


def plot(path, folds, run):
  """z against the random band (PCC) per holdout, one subplot per inference model."""
  models = sorted(folds['model'].unique())
  figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.8), squeeze=False,
                              layout='constrained')
  holdouts = sorted(folds['holdout'].unique())
  studies = folds.groupby('holdout')['test_studies'].first().reindex(holdouts)
  labels = [h if s in ('', h) else f'{h}\n' + s.replace('+', '\n') for h, s in studies.items()]
  panels, corrections = sorted(folds['panel'].unique()), sorted(folds['correction'].unique())
  for ax, kind in zip(axes[0], models):
    for i, panel in enumerate(panels):          # colour: panel; marker: correction
      for j, correction in enumerate(corrections):
        rows = folds[(folds['model'] == kind) & (folds['correction'] == correction) &
                     (folds['panel'] == panel)].set_index('holdout').reindex(holdouts)
        if rows['pcc_z_random'].isna().all():
          continue
        offset = (i * len(corrections) + j - len(panels) * len(corrections) / 2) * 0.06
        ax.plot(np.arange(len(holdouts)) + offset, rows['pcc_z_random'], 'os^D'[j % 4],
                label=f'{panel} / {correction}', color=f'C{i}')
    ax.axhspan(-2, 2, color='0.9', zorder=0, label='|z| < 2')
    ax.axhline(0, color='0.5', lw=0.8)
    ax.set_xticks(range(len(holdouts)), labels, fontsize=7)
    of_kind = folds[folds['model'] == kind]
    ax.set(ylabel=f'mean target-gene PCC: z against {int(of_kind["random_sets"].max())} '
                  'random panels',
           title=f'{run}: {kind}, held-out studies (AE seeds: {int(of_kind["seeds"].max())})')
  axes[0, -1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc='upper left')
  fileio.save_figure(path, figure)


def main(argv):
  del argv
  config, workdir = flags.FLAGS.config, _WORKDIR.value
  se = config.study_effects
  cells = [(seed, holdout, correction) for seed in range(se.seeds) for holdout in se.holdouts
           for correction in se.corrections]
  if not _SUMMARIZE_ONLY.value:
    with run_identity.lock(workdir):
      run_cells(config, workdir, cells)
  folds, overall = summarize(config, workdir)
  if folds.empty:
    logging.info('No cell of %s has finished yet', workdir)
    return
  fileio.write_table(os.path.join(workdir, 'study_effects_folds.tsv'), folds, index=False)
  fileio.write_table(os.path.join(workdir, 'study_effects.tsv'), overall, index=False)
  plot(os.path.join(workdir, 'study_effects.png'), folds, os.path.basename(workdir.rstrip('/')))
  print(overall[['model', 'correction', 'panel', 'folds', 'seeds', 'pcc', 'pcc_seed_sd',
                 'pcc_z_random', 'mae_centred', 'mae_centred_z_random',
                 'pcc_vs_l1000_gap_z']].to_string(index=False))


def run_cells(config, workdir, cells):
  """Runs every (seed, holdout, correction) cell not finished yet, logging rate and ETA."""
  annotation = readers.read_probe_annotation(config.data.annotation)
  universe = panels_lib.dgex_universe(config.data)
  l1000 = panels_lib.read_symbols(config.data.dgex_landmarks)
  prepared, started, ran = {}, time.perf_counter(), 0
  for i, (seed, holdout, correction) in enumerate(cells):
    cell_dir = os.path.join(workdir, holdout, correction)
    if not missing_models(config, cell_dir, holdout, correction, seed):
      continue
    if (holdout, correction) not in prepared:
      prepared[holdout, correction] = prepare_cell(config, cell_dir, holdout, correction,
                                                   annotation, universe, l1000)
    run_cell(config, cell_dir, holdout, seed, prepared[holdout, correction], annotation)
    ran += 1
    elapsed = time.perf_counter() - started
    left = sum(bool(missing_models(config, os.path.join(workdir, h, c), h, c, s))
               for s, h, c in cells[i + 1:])
    logging.info('Cell %d/%d done (held-out %s, %s, seed %d): %.0f s a cell over the %d run '
                 'now, %d left, ETA %.0f min', i + 1, len(cells), holdout, correction, seed,
                 elapsed / ran, ran, left, elapsed / ran * left / 60)


if __name__ == '__main__':
  app.run(main)
