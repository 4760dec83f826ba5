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

Writes per fold and model `selectors_<model>.tsv` (one row per selector, seed and k; rows
already there are read back, not rerun, and only missing ones are scored: delete a table
to rerun it), then
`selectors_folds.tsv` (per fold, seeds averaged: mean and sd, largest t-test p over seeds),
`selectors_summary.tsv` (mean over folds for each seed that covers them all, then mean and
sd over seeds, and the number of folds where the selector beats or trails L1000 at
p < evaluate.permutation_alpha for every seed; each gap to L1000 also against the gaps
between random panels, as the run reports judge it, `evaluate.gap_against_random`: z
`_gap_z` and two-sided empirical p `_gap_p`), `selectors.md` (those tables in Markdown, with
whether each selector meets the goal against L1000), `selectors.png` and, with D-GEX,
`dgex_curves.png`. --summarize_only tabulates the finished folds.

  python -m experiments.selector_benchmark --config=configs/quick.py --workdir=runs/selectors
  # Leave one study out, all five folds; then D-GEX at k = 943 on the same panels:
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --config.selectors.peel_off_restarts=1
  python -m experiments.selector_benchmark --config=configs/cross_study.py \
      --workdir=runs/selectors_loso --models=linear,ridge,dgex --k=100,300,943,2000 \
      --model_k=linear:100,300,943 --model_k=dgex:943 --config.selectors.peel_off_restarts=1
  # 17 studies, grouped 5-fold CV by study (every step: README, "Seventeen studies"), e.g.
  # ridge with 3 AE seeds and 20 random panels:
  python -m experiments.selector_benchmark --config=configs/compendium.py:folds=5 \
      --workdir=runs/selectors_17 --models=ridge --k=100,300,943 --ae_seeds=3 \
      --random_seeds=20 --config.selectors.peel_off_restarts=1 [--summarize_only]
  # The study-conditional AE's DeepLIFT panels, uncorrected data (the decoder is told the
  # study instead); AE settings are the fold's, so it gets its own workdir:
  python -m experiments.selector_benchmark --config=configs/compendium.py:folds=5 \
      --config.model.study_conditional=True --config.preprocess.study_correction=none \
      --workdir=runs/selectors_17_conditional \
      --models=ridge --k=100,300,943 --selectors=deeplift_ae,deeplift_stratified,l1000,random
"""

import dataclasses
import glob
import json
import os
import shutil
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
from landmark import sweep
from landmark.data import readers
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.inference import regression
from landmark.selection import selectors
from landmark.training import metric_writing
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
IDENTITY_FILE = 'benchmark_identity.json'
CURVES = 'curves'   # D-GEX fits' TensorBoard curves, one run per fit
# Config fields a selector's panels depend on beyond the fold's data and AutoEncoders.
SELECTOR_FIELDS = {
    'integrated_gradients': ('selectors.ig_',),
    'deeplift_stratified': ('selectors.stratified_aggregate',),
    'gradient_x_input_stratified': ('selectors.stratified_aggregate',),
    'pca_loadings': ('selectors.pca_',),
    'peel_off': ('selectors.peel_off_',),
    'greedy_ridge': ('selectors.greedy_ridge_',),
    'greedy_ridge_standardised': ('selectors.greedy_ridge_',),
    'concrete_ae': ('selectors.concrete.',),
    'persist': ('selectors.persist.',),
}
METRICS = {'pcc': False, 'mae_centred': True}   # metric: lower is better
LABELS = {'pcc': 'mean target PCC', 'mae_centred': 'mean target MAE, studies centred (log2)'}


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
  if name in selectors.NEEDS_ENCODER:
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
  """AE seed `seed` of the fold (trained, resumed or reloaded in `<workdir>/seed_<seed>/`);
  a study-conditional one (`model.study_conditional`) is told each training row's study."""
  seeded = config.copy_and_resolve_references()
  seeded.seed = seed
  model, scaler, _ = train.train_autoencoder(seeded, os.path.join(workdir, f'seed_{seed}'),
                                             splits.train, splits.val)
  return selectors.TrainedEncoder(model.encoder_layers(), config.model.activation,
                                  scaler.transform(splits.train.values), splits.train.features,
                                  annotation)


def fold_panels(config, workdir, names, sizes, seeds, stale=frozenset()):
  """The fold's gene-level splits and panels, each chosen once and kept in `PANELS_FILE`.

  Kept panels are reused, except those of the `stale` selectors; only the selectors missing
  a (seed, k) asked for choose (training or reloading the AutoEncoders if an attribution
  selector is among them), and their panels replace theirs in the file.
  """
  splits = pipeline.prepare_data(config, workdir)
  annotation = readers.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  path = os.path.join(workdir, PANELS_FILE)
  kept = {}
  if os.path.exists(path):
    table = pd.read_csv(path, sep='\t', dtype={'gene': str}).sort_values('rank')
    kept = {(name, seed): {} for name, seed in zip(table['selector'], table['seed'])}
    for (name, seed, k), group in table.groupby(['selector', 'seed', 'k']):
      kept[name, seed][k] = group['gene'].tolist()
    kept = {(name, seed): by_size for (name, seed), by_size in kept.items() if name not in stale}
  missing = [name for name in names if any(k not in kept.get((name, seed), {})
                                           for seed in seeds_of(name, seeds) for k in sizes)]
  if missing:
    logging.info('Choosing panels for %s (kept in %s: %d)', missing, path, len(kept))
    context = selectors.SelectionContext(genes.genes, genes.train,
                                         panels_lib.read_symbols(config.data.dgex_landmarks),
                                         config, studies=genes.train_studies)
    on_encoder = [name for name in missing if name in selectors.NEEDS_ENCODER]
    chosen = ranked_panels(context, [n for n in missing if n not in on_encoder], sizes, seeds)
    if on_encoder:
      for seed in seeds_of('deeplift_ae', seeds):
        encoder = trained_encoder(config, workdir, splits, annotation, seed)
        for (name, _), by_size in ranked_panels(dataclasses.replace(context, encoder=encoder),
                                                on_encoder, sizes, dict(seeds, ae=1)).items():
          chosen[name, seed] = by_size
    for key, by_size in chosen.items():
      kept[key] = {**kept.get(key, {}), **by_size}
    fileio.write_table(path, pd.DataFrame(
        [(name, seed, k, rank, gene) for (name, seed), by_size in kept.items()
         for k, panel in by_size.items() for rank, gene in enumerate(panel)],
        columns=['selector', 'seed', 'k', 'rank', 'gene']), index=False)
  return genes, {(name, seed): {k: kept[name, seed][k] for k in sizes}
                 for name in names for seed in seeds_of(name, seeds)}


def score(config, genes, panels, jobs, workdir):
  """Per-gene metrics of each (selector, seed, k, model) job's panel on its own complement;
  a fit that trains (D-GEX) writes its TensorBoard curves into
  `<workdir>/<CURVES>/<selector>_seed<seed>_k<k>_<model>`."""
  results, start = {}, time.time()
  for done, (name, seed, k, kind) in enumerate(jobs, 1):
    panel = panels[name, seed][k]
    targets = [g for g in genes.genes if g not in set(panel)]
    curves = os.path.join(workdir, CURVES, f'{name}_seed{seed}_k{k}_{kind}')
    shutil.rmtree(curves, ignore_errors=True)   # a fit scored again replaces its curves
    results[name, seed, k, kind] = panels_lib.evaluate_panel(
        kind, config, genes, panel, targets, config.seed, permutation=False, workdir=curves)
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


def fold_identity(config, names, models):
  """What the fold's results are computed from (landmark.run_identity): `fold`, the data and
  AutoEncoder fields and input files; `selectors`, each selector's own fields; `scores`, each
  inference model's evaluation fields."""
  stages = run_identity.RunIdentity(config, '')
  fold = stages.identity('consensus')
  # Selector fields belong to each panel; the random panels' count is a flag here.
  scores = {f: v for f, v in stages.identity('evaluate').items()
            if f not in fold and not f.startswith(('selector', 'evaluate.random_sets'))}
  flat = run_identity.flatten(config)
  return {'fold': fold,
          'selectors': {name: {f: v for f, v in flat.items()
                               if f.startswith(SELECTOR_FIELDS.get(name, ()))} for name in names},
          'scores': {kind: scores for kind in models}}


def stale_results(config, workdir, current):
  """(selectors, models) whose kept panels or scores in `workdir` were computed under other
  settings than `current` (`fold_identity`): to be chosen or scored again. Raises ValueError
  when the fold's data or AutoEncoders were, or when results carry no identity."""
  path = os.path.join(workdir, IDENTITY_FILE)
  if not os.path.exists(path):
    if os.path.exists(os.path.join(workdir, PANELS_FILE)):
      raise ValueError(f'{workdir}: its panels carry no {IDENTITY_FILE} (settings unknown); '
                       'use another --workdir')
    return set(), set()
  recorded = run_identity.read_records(path, 'use another --workdir')
  if not run_identity.matches(recorded['fold'], current['fold']):
    changes = run_identity.RunIdentity(config, workdir).changes('consensus', recorded['fold'])
    raise ValueError(f'{workdir}: its data and AutoEncoders were made under another config or '
                     f'other data ({"; ".join(changes[:3])}); use another --workdir')
  def changed(was, now):   # a field no longer part of an identity does not count
    return not run_identity.matches({f: v for f, v in was.items() if f in now}, now)
  selectors_now, scores_now = current['selectors'], current['scores']
  return ({name for name, fields in recorded['selectors'].items()
           if name in selectors_now and changed(fields, selectors_now[name])},
          {kind for kind, fields in recorded['scores'].items()
           if kind in scores_now and changed(fields, scores_now[kind])})


def record_identity(workdir, current):
  """Records `current`'s selectors and models as those the fold's results now hold."""
  path = os.path.join(workdir, IDENTITY_FILE)
  recorded = {'selectors': {}, 'scores': {},
              **run_identity.read_records(path, 'use another --workdir')}
  fileio.write_text(path, json.dumps(
      {'fold': current['fold'],
       'selectors': {**recorded['selectors'], **current['selectors']},
       'scores': {**recorded['scores'], **current['scores']}}, indent=1, sort_keys=True))


def run_fold(fold, config, workdir, names, by_model, seeds, summarize_only=False):
  """The fold's rows of selectors `names` over every model. A model's table
  (`selectors_<model>.tsv`) keeps every row scored so far; only the (selector, seed, k) rows
  it lacks, or that were computed under other settings (`stale_results`), are scored (none
  with `summarize_only`, which leaves stale rows out), L1000's again beside them for the
  paired tests."""
  current = fold_identity(config, names, by_model)
  stale_selectors, stale_models = stale_results(config, workdir, current)
  if stale_selectors or stale_models:
    logging.warning('Fold %s: results of %s were computed under other settings; %s', fold,
                    sorted(stale_selectors | stale_models),
                    'left out' if summarize_only else 'computing them again')
  tables, todo = {}, {}
  for kind, sizes in by_model.items():
    path = os.path.join(workdir, f'selectors_{kind}.tsv')
    table = None
    if os.path.exists(path) and kind not in stale_models:
      table = pd.read_csv(path, sep='\t', keep_default_na=False, na_values=[''])
      table = table[~table['selector'].isin(stale_selectors)]
    done = set() if table is None else set(zip(table['selector'], table['seed'], table['k']))
    missing = [(name, seed, k, kind) for k in sizes for name in names
               for seed in seeds_of(name, seeds) if (name, seed, k) not in done]
    tables[kind] = table
    if missing:
      todo[kind] = missing
  if todo and not summarize_only:
    start = time.time()
    with run_identity.lock(workdir):
      # The fold's own identity first, so that a run stopped before its first table is
      # still checked when it is resumed.
      record_identity(workdir, dict(current, selectors={}, scores={}))
      sizes = sorted({k for missing in todo.values() for _, _, k, _ in missing})
      genes, panels = fold_panels(config, workdir, names, sizes, seeds, stale_selectors)
      for kind, missing in todo.items():
        references = [('l1000', 0, k, kind) for k in sorted({k for _, _, k, _ in missing})]
        scored = tabulate(score(config, genes, panels, missing + [
            job for job in references if job not in missing], workdir), fold)
        if tables[kind] is not None:
          known = set(zip(tables[kind]['selector'], tables[kind]['seed'], tables[kind]['k']))
          scored = scored[[key not in known for key in
                           zip(scored['selector'], scored['seed'], scored['k'])]]
          scored = pd.concat([tables[kind], scored], ignore_index=True)
        fileio.write_table(os.path.join(workdir, f'selectors_{kind}.tsv'), scored, index=False)
        tables[kind] = scored
      record_identity(workdir, current)
    logging.info('Fold %s done in %.0f s', fold, time.time() - start)
  kept = [table[table['selector'].isin(names)] for table in tables.values() if table is not None]
  return pd.concat(kept, ignore_index=True) if kept else None


def summarize(table, alpha):
  """(per-fold table, summary over folds); see the module docstring.

  A gap to L1000 is set against the gaps between random panels of the same fold, model and
  k, the gaps that panels of equal quality show by chance (`evaluate.gap_against_random` on
  the random panels' gaps to L1000; over folds, on each random seed's fold-mean gap):
  `<metric>_gap_z` is its z and `<metric>_gap_p` its two-sided empirical p.
  """
  table = table.copy()
  for metric, lower_is_better in METRICS.items():
    gap, significant = table[f'{metric}_vs_l1000'], table[f'{metric}_vs_l1000_t_p'] < alpha
    table[f'{metric}_better'] = significant & ((gap < 0) if lower_is_better else (gap > 0))
    table[f'{metric}_worse'] = significant & ((gap > 0) if lower_is_better else (gap < 0))
  gaps = [f'{m}_vs_l1000' for m in METRICS]
  means = ['pcc_mean', 'mae_centred_mean', 'mae_mean', *gaps]
  spread = ['pcc_mean', 'mae_centred_mean', *gaps]
  key = ['model', 'k', 'selector']
  per_fold = table.groupby(['fold', *key], as_index=False, sort=False).agg(
      seeds=('seed', 'count'), targets=('targets', 'mean'),
      **{name: (name, 'mean') for name in means},
      **{f'{name}_sd': (name, 'std') for name in spread},
      **{f'{m}_vs_l1000_t_p': (f'{m}_vs_l1000_t_p', 'max') for m in METRICS},
      **{f'{m}_{side}': (f'{m}_{side}', 'all') for m in METRICS for side in ('better', 'worse')})
  # Over folds, a seed counts only if it covers every fold its selector has been scored on.
  covered = (table.groupby([*key, 'seed'])['fold'].transform('nunique')
             == table.groupby(key)['fold'].transform('nunique'))
  over_folds = table[covered].groupby([*key, 'seed'], as_index=False, sort=False).agg(
      folds=('fold', 'nunique'), **{name: (name, 'mean') for name in means})
  summary = over_folds.groupby(key, as_index=False, sort=False).agg(
      folds=('folds', 'min'), seeds=('seed', 'count'),
      **{name: (name, 'mean') for name in means},
      **{f'{name}_sd': (name, 'std') for name in spread})
  _against_random(per_fold, table, ['fold', 'model', 'k'])
  _against_random(summary, over_folds, ['model', 'k'])
  for metric, lower_is_better in METRICS.items():
    sign = -1 if lower_is_better else 1
    per_fold[f'{metric}_ahead'] = sign * per_fold[f'{metric}_vs_l1000'] > 0
  wins = per_fold.groupby(key, as_index=False, sort=False)[
      [f'{m}_{side}' for m in METRICS for side in ('better', 'worse', 'ahead')]].sum()
  wins.columns = [*key, *(f'folds_{c}' for c in wins.columns[len(key):])]
  summary = summary.merge(wins, on=key).sort_values(key, ignore_index=True)
  return per_fold.sort_values(['fold', *key], ignore_index=True), summary


def _against_random(frame, seeds, group):
  """Adds `pcc_z_random` (mean PCC against the random panels' mean and sd) and each metric's
  `_gap_z` and `_gap_p` (its gap to L1000 against the gaps between the random panels of
  `seeds`, one row per random seed) to `frame`, matching rows on `group`; NaN where there
  are fewer than 3 random panels or no gap."""
  random = frame[frame['selector'] == 'random'].set_index(group)
  position = pd.MultiIndex.from_frame(frame[group])
  def of_random(column):
    return random[column].reindex(position).to_numpy()
  with np.errstate(divide='ignore', invalid='ignore'):
    frame['pcc_z_random'] = ((frame['pcc_mean'].to_numpy() - of_random('pcc_mean'))
                             / of_random('pcc_mean_sd'))
  random_seeds = seeds[seeds['selector'] == 'random'].groupby(group)
  for metric in METRICS:
    null = {key: rows[f'{metric}_vs_l1000'].to_numpy() for key, rows in random_seeds}
    against = [evaluate.gap_against_random(gap, null[key])
               if key in null and len(null[key]) >= 3 and not np.isnan(gap) else {}
               for key, gap in zip(position, frame[f'{metric}_vs_l1000'])]
    frame[f'{metric}_gap_z'] = [result.get('z', np.nan) for result in against]
    frame[f'{metric}_gap_p'] = [result.get('p_value', np.nan) for result in against]


GOAL_Z = 2.0   # the goal: gaps of at least this many random-panel sds on both metrics...
GOAL_FOLDS = 2 / 3   # ...and ahead of L1000 in at least this share of the folds


def markdown(summary, run):
  """The summary as Markdown tables, one per model and k, best PCC gap first, with whether
  each selector meets the goal (GOAL_Z, GOAL_FOLDS) against L1000."""
  lines = [f'# {run}: every selector against L1000 and random panels', '',
           'Means over the held-out folds (for each seed; ± sd over seeds). Gap: to L1000 on '
           'the targets both leave out; z: the gap over the sd of the gaps between two random '
           'panels; p: the two-sided share of those gaps as large. b/w/a: folds '
           'where the selector is better / worse at paired-t p < alpha for every seed / ahead '
           f'of L1000 on the fold mean. Goal: |z| >= {GOAL_Z:g} on both metrics and ahead in at '
           f'least {GOAL_FOLDS:.0%} of the folds on both.', '']
  for (model, k), group in summary.groupby(['model', 'k'], sort=True):
    group = group.sort_values('pcc_vs_l1000', ascending=False, na_position='last')
    lines += [f'## {model}, k = {k}', '',
              '| selector | folds | seeds | PCC | PCC gap (z, p) | b/w/a | centred MAE '
              '| MAE gap (z, p) | b/w/a | goal |', '|---|---|---|---|---|---|---|---|---|---|']
    for _, row in group.iterrows():
      cells = [row['selector'], str(int(row['folds'])), str(int(row['seeds']))]
      for metric in METRICS:
        spread = row[f'{metric}_mean_sd']
        cells.append(f"{row[f'{metric}_mean']:.4f}" + ('' if np.isnan(spread) else
                                                       f' ± {spread:.4f}'))
        gap = row[f'{metric}_vs_l1000']
        cells.append('—' if np.isnan(gap) else f"{gap:+.4f} ({row[f'{metric}_gap_z']:+.1f}, "
                     f"{row[f'{metric}_gap_p']:.3f})")
        cells.append('/'.join(str(int(row[f'folds_{metric}_{side}']))
                              for side in ('better', 'worse', 'ahead')))
      cells.append('yes' if meets_goal(row) else '')
      lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def meets_goal(row):
  """Whether a summary row beats L1000 by the goal's margin on both metrics."""
  pcc, mae = row['pcc_gap_z'], row['mae_centred_gap_z']
  enough = GOAL_FOLDS * row['folds']
  return bool(pcc >= GOAL_Z and mae <= -GOAL_Z and row['folds_pcc_ahead'] >= enough
              and row['folds_mae_centred_ahead'] >= enough)


def plot(path, summary, run):
  """Each selector's gap to L1000 (on the targets both leave out) against k, per metric
  (rows) and model (columns), beside the random panels' gaps (mean ± 2 sd, grey): how far
  panels of no special quality fall from L1000 (the gap z in the tables uses the wider
  spread between two random panels).
  Bars: sd over seeds. Only selectors scored on every fold of the model are drawn.

  L1000 has at most 943 genes: above that the gaps are to its whole list.
  """
  models = summary['model'].unique()
  names = [n for n in summary['selector'].unique() if n not in ('l1000', 'random')]
  palette = plt.get_cmap('tab20').colors
  colours = dict(zip(names, palette[::2] + palette[1::2]))   # ten strong colours first
  markers = dict(zip(names, 'osD^v<>pPhX*d'))
  figure, axes = plt.subplots(len(METRICS), len(models), figsize=(5.5 * len(models) + 3, 8.5),
                              squeeze=False, layout='constrained')
  left_out = []
  for column, kind in enumerate(models):
    of_model = summary[summary['model'] == kind]
    folds_done = int(of_model['folds'].max())
    complete = of_model[of_model['folds'] == folds_done]
    left_out += [f'{name} ({kind})' for name in
                 sorted(set(of_model['selector']) - set(complete['selector']))]
    sizes = sorted(of_model['k'].unique())
    for row, (metric, lower_is_better) in enumerate(METRICS.items()):
      ax = axes[row, column]
      ax.axhline(0.0, color='black', ls='--', lw=1.2, label='L1000 (gap 0)')
      random = complete[complete['selector'] == 'random'].sort_values('k')
      centre, spread = random[f'{metric}_vs_l1000'], 2 * random[f'{metric}_vs_l1000_sd']
      ax.errorbar(random['k'], centre, yerr=spread, color='0.55', lw=0, elinewidth=6,
                  alpha=0.5, label='random genes, mean ± 2 sd')
      if len(random) > 1:
        ax.fill_between(random['k'], centre - spread, centre + spread, color='0.88')
      for name in names:
        group = complete[complete['selector'] == name].sort_values('k')
        if len(group):
          ax.errorbar(group['k'], group[f'{metric}_vs_l1000'],
                      yerr=group[f'{metric}_vs_l1000_sd'].fillna(0), marker=markers[name],
                      color=colours[name], capsize=3, label=name)
      side = 'below' if lower_is_better else 'above'
      ax.set(xscale='log', xlabel='panel size k (genes)',
             ylabel=f'{LABELS[metric]}: selector − L1000\n({side} 0 = better than L1000)',
             title=f'{kind}: mean over {folds_done} held-out folds, '
                   f'{int(random["seeds"].min())} random panels')
      ax.set_xticks(sizes, [str(k) for k in sizes])
      ax.set_xlim(min(sizes) / 1.5, max(sizes) * 1.5)
      ax.minorticks_off()
      ax.grid(alpha=0.3)
  handles = {}
  for ax in axes.flat:
    handles.update(zip(*reversed(ax.get_legend_handles_labels())))
  figure.legend(handles.values(), handles.keys(), loc='outside right center', fontsize=8,
                title='selector (bars: sd over seeds)')
  figure.suptitle(f'{run}: selectors against L1000 on held-out studies, by panel size')
  if left_out:
    figure.supxlabel('Not yet scored on every fold, left out: ' + ', '.join(left_out),
                     fontsize=7, wrap=True)
  fileio.save_figure(path, figure)


def plot_dgex_curves(path, fold_dirs, run):
  """Each D-GEX fit's validation MAE against epoch, one panel per fold, from the fits'
  TensorBoard curves: whether `dgex.epochs` let the fits level off."""
  curves = {fold: sorted(glob.glob(os.path.join(directory, CURVES, '*_dgex')))
            for fold, directory in fold_dirs}
  curves = {fold: dirs for fold, dirs in curves.items() if dirs}
  if not curves:
    return
  columns = min(3, len(curves))
  rows = -(-len(curves) // columns)
  figure, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.8 * rows),
                              squeeze=False, sharey=True, layout='constrained')
  for ax in axes.flat[len(curves):]:
    ax.set_visible(False)
  colours = {'l1000': 'black', 'random': '0.6'}
  palette = iter(plt.get_cmap('tab10').colors)
  for ax, (fold, dirs) in zip(axes.flat, curves.items()):
    for directory in dirs:
      name = os.path.basename(directory).split('_seed')[0]
      if name not in colours:
        colours[name] = next(palette)
      steps, values = zip(*metric_writing.read_scalars(
          os.path.join(directory, 'tensorboard'))[regression.VAL_MAE])
      ax.plot(steps, values, color=colours[name], alpha=0.8, lw=1,
              label=name if name != 'random' else 'random panels')
    ax.set(xlabel='epoch', ylabel='validation MAE of the targets (log2)',
           title=f'{fold}: {len(dirs)} D-GEX fits')
    ax.grid(alpha=0.3)
  handles = dict(zip(*reversed(axes[0, 0].get_legend_handles_labels())))
  axes[0, 0].legend(handles.values(), handles.keys(), fontsize=8, title='panel')
  figure.suptitle(f'{run}: D-GEX validation curves (the best epoch is kept)')
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
  run = os.path.basename(workdir.rstrip('/'))
  fileio.write_text(os.path.join(workdir, 'selectors.md'), markdown(summary, run))
  plot(os.path.join(workdir, 'selectors.png'), summary, run)
  plot_dgex_curves(os.path.join(workdir, 'dgex_curves.png'),
                   [(fold, fold_workdir) for fold, _, fold_workdir in folds(config, workdir)], run)
  with pd.option_context('display.width', 250, 'display.max_columns', 30):
    print(summary.to_string(index=False))


if __name__ == '__main__':
  app.run(main)
