"""The run a config describes: data -> AutoEncoder -> DeepLIFT landmarks -> evaluation
(the paper's method), or data -> designed panel -> evaluation (`config.method` a selector,
e.g. greedy_ridge_standardised: no AutoEncoder).

Each stage writes its results into the workdir and the next stage reads them, so a run
can be resumed or continued stage by stage with `--mode`. The AE and DeepLIFT are
stochastic: they run once per seed (`config.seeds`, each in `seed_<s>/`), the landmarks are
the consensus (mean rank over seeds) and the figures are given as mean ± sd over seeds.
"""

import datetime
import functools
import glob
import json
import os
import shutil
import time
from typing import Any, Mapping, Sequence

from absl import logging
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from landmark import dry_run
from landmark import errors
from landmark import fileio
from landmark import progress
from landmark import run_identity
from landmark import sweep
from landmark import validation
from landmark.attribution import deeplift
from landmark.attribution import ranking as ranking_lib
from landmark.data import preprocess
from landmark.data import readers
from landmark.data import scalers
from landmark.data import streaming
from landmark.evaluation import diagnostics
from landmark.evaluation import evaluate
from landmark.evaluation import panels as panels_lib
from landmark.evaluation import reconstruction
from landmark.evaluation import report
from landmark.inference import saved_models
from landmark.models import autoencoder
from landmark.selection import design
from landmark.selection import selectors
from landmark.training import checkpointing
from landmark.training import metric_writing
from landmark.training import sharding
from landmark.training import train

MODES = ('all', 'prepare', 'train', 'explain', 'evaluate', 'sweep', 'dry_run', 'infer')
LANDMARKS_FILE = 'landmarks.tsv'
ASSAY_PANEL_FILE = 'panel_deeplift.tsv'
PANEL_FILE = 'panel.tsv'        # a selector method's ranked panel, assay-ready, with gains
PANEL_GMT = 'panel.gmt'
DGEX_CURVES = 'dgex_curves'     # TensorBoard runs of the named panels' D-GEX fits
TENSORBOARD = 'tensorboard'     # the run's figures and report, as TensorBoard images and text
# What each stage writes (globs; seed stages' relative to seed_<s>/): removed, with the
# stage's record, when `overwrite` recomputes a stale stage.
STAGE_OUTPUTS = {
    'data': ('config.json', 'data_summary.json', 'quantile_reference.npy',
             'study_correction.npz', preprocess.DEDUP_FILE),
    'train': ('checkpoints', 'checkpoints.rejected', 'tensorboard', 'scaler.npz',
              'ae_gene_metrics.tsv', 'ae_density.png', 'ae_summary.json'),
    'explain': (LANDMARKS_FILE, 'l1000_overlap.json', 'deeplift'),
    'consensus': ('ae_summary.json', LANDMARKS_FILE, 'l1000_overlap.json', ASSAY_PANEL_FILE),
    'panel': (PANEL_FILE, PANEL_GMT, 'l1000_overlap.json'),
    'evaluate': ('panel_study_effects.tsv', 'panel_summary.tsv', 'panel_gene_metrics.tsv',
                 'panel_comparisons.tsv', 'panels.tsv', 'panels.gmt', 'fig3_*.png',
                 'go_*.tsv', 'go_*.png', 'clustering*.tsv', 'clustering_*.png', 'report.md',
                 'headline_*.png', DGEX_CURVES, TENSORBOARD,
                 saved_models.MODELS_DIR),
}


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> preprocess.Splits:
  """Reads and preprocesses the compendium; writes `data_summary.json`.

  With `config.data.stream` the training split stays on disk (a streaming.SampleStream);
  every stage asks it what it asks an in-memory one (landmark.data.splits.Split).
  """
  if config.data.stream:
    splits = streaming.prepare_splits(config)
  else:
    compendium = readers.load_compendium(config.data)
    _check_top_k(config, compendium.features)
    splits = preprocess.prepare(compendium, config, config.seed, workdir)
  summary = {name: {'samples': int(c.shape[0]), 'features': int(c.shape[1]),
                    'studies': c.meta['study'].value_counts().to_dict(),
                    'value_range': _value_range(c)}
             for name, c in splits.items()}
  fileio.write_text(os.path.join(workdir, 'data_summary.json'), json.dumps(summary, indent=2))
  return splits


def _check_top_k(config, features):
  """Refuses a `deeplift.top_k` larger than the genes the data can rank, before training."""
  n_genes = ranking_lib.ranked_gene_count(
      features, readers.read_probe_annotation(config.data.annotation))
  if config.deeplift.top_k > n_genes:
    raise errors.ConfigError('config.deeplift.top_k', f'{config.deeplift.top_k} landmarks '
                             f'asked for, but the data have only {n_genes} annotated genes')


def _value_range(split):
  stats = split.stats()  # a stream's: one pass over the file, reused for the scaler
  return [float(np.min(stats.minimum)), float(np.max(stats.maximum))]


def in_memory(config: ml_collections.ConfigDict, splits: preprocess.Splits) -> preprocess.Splits:
  """`splits` with the training split in memory, for the stages that need a matrix: a
  streamed one reads at most `data.stream_eval_samples` seeded random rows."""
  return preprocess.Splits(
      splits.train.to_memory(config.data.stream_eval_samples, config.seed), splits.val,
      splits.test)


def seed_runs(config: ml_collections.ConfigDict,
              workdir: str) -> list[tuple[ml_collections.ConfigDict, str]]:
  """(config, workdir) of each AE seed: config.seed, config.seed + 1, ... (config.seeds)."""
  runs = []
  for seed in range(config.seed, config.seed + config.seeds):
    seeded = config.copy_and_resolve_references()
    seeded.seed = seed
    runs.append((seeded, os.path.join(workdir, f'seed_{seed}')))
  return runs


def study_baselines(splits: preprocess.Splits, pca_widths: Sequence[int] = (),
                    pca_train: np.ndarray | None = None) -> dict[str, Any]:
  """`diagnostics.trivial_baselines` of the test split: the same for every seed's AE.

  With `pca_widths`, also PCA of each width fitted on `pca_train` (default: the training
  values) and scored on the test split ('pca') and on the validation split ('pca_val',
  beside the AE's per-epoch curves).
  """
  baselines = diagnostics.trivial_baselines(
      *splits.train.profiles_for_means(), splits.test.values, splits.test.meta['study'].to_numpy())
  if pca_widths:
    pca = diagnostics.fit_pca(splits.train.values if pca_train is None else pca_train,
                              max(pca_widths))
    baselines['pca'] = diagnostics.pca_baselines(pca, splits.test.values, pca_widths)
    baselines['pca_val'] = diagnostics.pca_baselines(pca, splits.val.values, pca_widths)
  return baselines


def write_baseline_scalars(config: ml_collections.ConfigDict, workdir: str,
                           baselines: Mapping[str, Any]) -> None:
  """The validation split's PCA baselines as TensorBoard scalars 'baseline/pca_<w>_{mae,pcc}'
  in `<workdir>/tensorboard`, at the first and last epoch (a flat line beside 'eval/*');
  written once, the first time the seed is trained."""
  logdir = os.path.join(workdir, 'tensorboard')
  scalars = {f'baseline/{name}_{metric}': entry[metric]
             for name, entry in baselines.get('pca_val', {}).items() for metric in ('mae', 'pcc')}
  if not scalars or (os.path.isdir(logdir) and
                     set(scalars) <= set(metric_writing.read_scalars(logdir))):
    return
  with metric_writing.MetricWriter(logdir) as writer:
    for step in (1, config.train.epochs):
      writer.write_scalars(step, scalars)


HPARAMS = ('seed', 'model.hidden', 'model.bottleneck', 'model.activation', 'model.scale',
           'model.output_activation', 'model.dropout', 'train.epochs', 'train.batch_size',
           'train.learning_rate', 'train.schedule', 'train.loss', 'train.l2',
           'preprocess.study_correction')


def write_hparams(config: ml_collections.ConfigDict, workdir: str, quality: dict) -> None:
  """The AE's settings (HPARAMS) with its test-split mean MAE and PCC for TensorBoard's
  HParams dashboard, in the seed's run beside its curves; written once, like the baselines."""
  logdir = os.path.join(workdir, 'tensorboard')
  if os.path.isdir(logdir) and 'hparams/test_pcc' in metric_writing.read_scalars(logdir):
    return
  fields = run_identity.flatten(config)
  hparams = {field: fields[field] for field in HPARAMS}
  with metric_writing.MetricWriter(logdir) as writer:
    writer.write_hparams(hparams, {'hparams/test_mae': quality['mean_mae'],
                                   'hparams/test_pcc': quality['mean_pcc']})


def train_seed(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
               baselines: Mapping[str, Any], identity: dict[str, Any] | None
               ) -> tuple[autoencoder.AutoEncoder, scalers.AffineScaler, dict[str, Any]]:
  """Trains (or resumes, or reloads) one AutoEncoder and scores it on the test split,
  beside `baselines` (`study_baselines(splits)`); `identity` goes into its checkpoints."""
  model, scaler, _ = train.train_autoencoder(config, workdir, splits.train, splits.val, identity)
  quality = reconstruction.evaluate_reconstruction(model, scaler, splits.test, workdir,
                                                   config.evaluate.block_size,
                                                   splits.train.features,
                                                   config.evaluate.permutation_alpha)
  quality['baselines'] = diagnostics.ae_vs_baselines(quality['mean_mae'], baselines,
                                                     quality['mean_pcc'], config.model.bottleneck)
  fileio.write_text(os.path.join(workdir, 'ae_summary.json'), json.dumps(quality, indent=2))
  write_baseline_scalars(config, workdir, baselines)
  write_hparams(config, workdir, quality)
  logging.info('AutoEncoder on %d held-out profiles: %s', len(splits.test.values), quality)
  logging.info('%s', quality['baselines']['verdict'])
  return model, scaler, quality


SEED_VARYING = ('mean_mae', 'mean_pcc', 'n_pass')


def train_stage(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
                identity: run_identity.RunIdentity
                ) -> tuple[list[tuple[autoencoder.AutoEncoder, scalers.AffineScaler]],
                           dict[str, Any]]:
  """One AutoEncoder per seed (`train_seed`, each in `seed_<s>/`); `ae_summary.json` holds
  their mean, sd (`<figure>_sd`) and per-seed figures. Returns [(model, scaler)], summary.

  Each seed's stage is recorded in `identity` (a run_identity.RunIdentity) as it completes.
  """
  widths = tuple(sorted({*diagnostics.PCA_WIDTHS, config.model.bottleneck}))
  runs = seed_runs(config, workdir)
  baselines = study_baselines(splits, widths, in_memory(config, splits).train.values)
  trained, started = [], time.monotonic()
  for done, (seeded, seed_dir) in enumerate(runs, start=1):
    stage = f'train/seed_{seeded.seed}'
    trained.append(train_seed(seeded, seed_dir, splits, baselines, identity.identity(stage)))
    identity.mark_done(stage)
    logging.info('AutoEncoder %d of %d done%s', done, len(runs),
                 progress.eta(started, done, len(runs)))
  per_seed = [quality for _, _, quality in trained]
  quality = dict(per_seed[0], seeds=[seeded.seed for seeded, _ in runs])
  for figure in SEED_VARYING:
    values = np.array([q[figure] for q in per_seed], np.float64)
    quality[figure] = float(values.mean())
    quality[f'{figure}_sd'] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    quality[f'{figure}_per_seed'] = values.tolist()
  quality['baselines'] = diagnostics.ae_vs_baselines(quality['mean_mae'], baselines,
                                                     quality['mean_pcc'], config.model.bottleneck)
  fileio.write_text(os.path.join(workdir, 'ae_summary.json'), json.dumps(quality, indent=2))
  if len(per_seed) > 1:
    logging.info('AutoEncoder over %d seeds: MAE %.4f ± %.4f, PCC %.4f ± %.4f', len(per_seed),
                 quality['mean_mae'], quality['mean_mae_sd'], quality['mean_pcc'],
                 quality['mean_pcc_sd'])
  return [(model, scaler) for model, scaler, _ in trained], quality


def explain_stage(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
                  model: autoencoder.AutoEncoder, scaler: scalers.AffineScaler,
                  annotation: pd.DataFrame) -> pd.DataFrame:
  """Scores every probe with DeepLIFT, ranks genes and writes `landmarks.tsv`.

  The scored split is scored chunk by chunk as it is read (Split.arrays: a stream's
  chunks, or the matrix); the training split's mean profile (Split.profiles_for_means)
  gives the `train_mean` reference (the mean of the scaled rows: the scaling is affine).
  The exported check holds the first chunk of a seeded random `deeplift.n_export` rows.
  """
  scored = dict(splits.items())[config.deeplift.samples].with_transform(scaler.transform)
  x = scored.arrays()
  exported = next(iter(scored.subset(config.deeplift.n_export, config.seed).arrays()))
  reference = deeplift.make_reference(config.deeplift.reference,
                                      scaler.transform(splits.train.profiles_for_means()[0]))
  layers = model.encoder_layers()
  scores = deeplift.score_inputs(layers, config.model.activation, x, reference,
                                 config.deeplift.aggregate, config.deeplift.max_chunk_mb,
                                 num_samples=scored.shape[0], mesh=sharding.make_mesh(config))
  ranking = ranking_lib.rank_genes(scores, scored.features, annotation)
  ranking_lib.write_landmarks(os.path.join(workdir, LANDMARKS_FILE), ranking)
  deeplift.export_for_checking(os.path.join(workdir, 'deeplift'), layers, config.model.activation,
                               exported, reference, n=config.deeplift.n_export)
  write_l1000_overlap(config, workdir, ranking)
  return ranking


def write_l1000_overlap(config: ml_collections.ConfigDict, workdir: str,
                        ranking: pd.DataFrame) -> None:
  """`l1000_overlap.json`: how many of the top-k genes of `ranking` L1000 also chose."""
  landmarks = ranking_lib.select_landmarks(ranking, config.deeplift.top_k)
  overlap = ranking_lib.l1000_overlap(landmarks, config.data.l1000_landmarks, ranking)
  fileio.write_text(os.path.join(workdir, 'l1000_overlap.json'), json.dumps(overlap, indent=2))
  logging.info('Top %d DeepLIFT genes share %d with L1000 (expected by chance %.1f)',
               len(landmarks), overlap['count'], overlap['expected'])


def consensus_stage(config: ml_collections.ConfigDict, workdir: str,
                    seed_rankings: Sequence[pd.DataFrame]) -> pd.DataFrame:
  """The landmarks of the run: genes by mean DeepLIFT rank over the seeds (`landmarks.tsv`), and
  the top `deeplift.top_k` of them as an assay-ready panel (`panel_deeplift.tsv`)."""
  ranking = ranking_lib.consensus_ranking(seed_rankings)
  ranking_lib.write_landmarks(os.path.join(workdir, LANDMARKS_FILE), ranking)
  write_l1000_overlap(config, workdir, ranking)
  panel = ranking_lib.assay_panel(ranking, config.deeplift.top_k, config.data.l1000_landmarks)
  fileio.write_table(os.path.join(workdir, ASSAY_PANEL_FILE), panel, index=False)
  return ranking


def panel_universe(config: ml_collections.ConfigDict) -> list[str] | None:
  """The genes a run's panels are chosen from and judged on: D-GEX's universe for the paper's
  method and `panel.universe='dgex'`; None (every annotated gene) for `panel.universe='all'`."""
  if config.method == design.PAPER_METHOD or config.panel.universe == 'dgex':
    return panels_lib.dgex_universe(config.data)
  return None


def panel_size(config: ml_collections.ConfigDict) -> int:
  """The genes of the run's panel: `deeplift.top_k` (the paper's method) or `panel.k`."""
  return config.deeplift.top_k if config.method == design.PAPER_METHOD else config.panel.k


def landmark_panels_stage(config: ml_collections.ConfigDict, workdir: str,
                          splits: preprocess.Splits,
                          annotation: pd.DataFrame, ranking: pd.DataFrame,
                          seed_rankings: Sequence[pd.DataFrame],
                          evaluate_identity: dict[str, Any]) -> dict[str, Any]:
  """Target-gene inference from the run's panel (DeepLIFT's consensus and, with several
  seeds, each seed's own panel `deeplift_seed_<s>`; or `config.method`'s), `config.selector`'s
  panel if one is named, L1000, top-variance and random panels.

  The linear, ridge and D-GEX models of the named panels are saved for `--mode=infer`
  (`_save_model`), marked with `evaluate_identity` (the stage's run identity).
  """
  ev = config.evaluate
  genes = panels_lib.gene_splits(splits, annotation, panel_universe(config))
  k = panel_size(config)
  panels = panels_lib.reference_panels(genes, ranking['symbol'],
                                       panels_lib.read_symbols(config.data.dgex_landmarks),
                                       k, ev.random_sets, config.seed, config.method)
  if config.selector:
    context = selectors.SelectionContext(
        genes.genes, genes.train, panels_lib.read_symbols(config.data.dgex_landmarks), config,
        studies=genes.train_studies)
    panels[config.selector] = selectors.select(config.selector, context, len(panels['l1000']))
  if len(seed_rankings) > 1:
    universe = set(genes.genes)
    for (seeded, _), seed_ranking in zip(seed_runs(config, workdir), seed_rankings):
      in_universe = [g for g in seed_ranking['symbol'] if g in universe]
      panels[f'deeplift_seed_{seeded.seed}'] = in_universe[:len(panels['deeplift'])]
  targets = panels_lib.common_targets(genes, panels)
  uncorrected = diagnostics.uncorrected_genes(
      splits.train, os.path.join(workdir, 'study_correction.npz'), annotation, genes.genes)
  study_effects = diagnostics.panel_study_effects(
      uncorrected.values, splits.train.meta['study'].to_numpy(), uncorrected.features, panels)
  fileio.write_table(os.path.join(workdir, 'panel_study_effects.tsv'), study_effects, index=False)
  membership = pd.DataFrame([(name, g) for name, p in panels.items() for g in p],
                            columns=['panel', 'gene'])
  fileio.write_table(os.path.join(workdir, 'panels.tsv'), membership, index=False)
  ranking_lib.write_gmt(os.path.join(workdir, 'panels.gmt'), panels,
                        f'landmark panel of {len(panels["l1000"])} genes, {workdir}')
  n_random = {kind: panels_lib.random_panel_count(ev, kind) for kind in ev.models}
  gene_ids = saved_models.gene_ids(genes.genes, annotation, splits.train.features, config.data)
  save = functools.partial(_save_model, config, workdir, genes, gene_ids,
                           run_identity.digest(evaluate_identity))
  results = panels_lib.evaluate_panels(config, genes, panels, targets, ev.models, n_random,
                                       config.seed, on_fit=save,
                                       curves_dir=os.path.join(workdir, DGEX_CURVES))
  summary = panels_lib.summarize(results, ev.permutation_alpha)
  fileio.write_table(os.path.join(workdir, 'panel_summary.tsv'), summary, index=False)
  per_gene = pd.concat({key: frame for key, frame in results.items()
                        if not key[1].startswith('random_')}, names=['model', 'panel'])
  fileio.write_table(os.path.join(workdir, 'panel_gene_metrics.tsv'), per_gene)
  comparisons = panels_lib.compare_panels(results, ev.models, ev.permutation_alpha, workdir,
                                          config.method)
  fileio.write_table(os.path.join(workdir, 'panel_comparisons.tsv'), comparisons, index=False)
  return {'summary': summary, 'comparisons': comparisons, 'study_effects': study_effects,
          'n_targets': len(targets),
          'panel_size': len(panels['l1000']), 'n_genes': len(genes.genes)}


def _save_model(config, workdir, genes, gene_ids, identity, kind, name, panel, model, targets,
                metrics):
  """Saves a model of a named panel in `<workdir>/models/<panel>_<kind>/`
  (landmark.inference.saved_models)."""
  if kind not in saved_models.SAVED_KINDS:
    return
  x, y = genes.columns(panel), genes.columns(targets)
  reference = os.path.join(workdir, 'quantile_reference.npy')
  saved_models.save_model(
      os.path.join(workdir, saved_models.MODELS_DIR, saved_models.model_name(name, kind)), model,
      kind=kind, panel=name, config=config, genes=gene_ids.loc[[*panel, *targets]],
      accuracy=metrics, train_x=genes.train[:, x], train_y=genes.train[:, y],
      test_x=genes.test[:, x], test_y=genes.test[:, y], identity=identity,
      quantile_reference=reference if os.path.exists(reference) else '')


def panel_stage(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
                annotation: pd.DataFrame) -> pd.DataFrame:
  """Designs the run's panel with `config.method` (landmark.selection.design) and writes it:
  `panel.tsv` (rank, symbol, entrez, probes, gain, in_l1000, shares_probe_with), `panel.gmt`
  and `l1000_overlap.json`. Returns the panel (rank, symbol, entrez, probes, ...)."""
  table = design.design(splits.train, annotation, config, panel_universe(config),
                        panels_lib.read_symbols(config.data.dgex_landmarks))
  universe = table.attrs['universe']
  order = pd.Series(0.0, index=universe)
  order[table['symbol']] = np.arange(len(table), 0, -1)   # the panel first, in its order
  ranking = ranking_lib.rank_genes(order.to_numpy(), universe, annotation).drop(columns='score')
  panel = ranking_lib.assay_panel(ranking, len(table), config.data.l1000_landmarks)
  if 'gain' in table:
    panel.insert(panel.columns.get_loc('probes') + 1, 'gain', table['gain'].to_numpy())
  fileio.write_table(os.path.join(workdir, PANEL_FILE), panel, index=False)
  ranking_lib.write_gmt(os.path.join(workdir, PANEL_GMT), {config.method: list(panel['symbol'])},
                        f'{config.method} panel of {len(panel)} genes, {workdir}')
  overlap = ranking_lib.l1000_overlap(list(panel['symbol']), config.data.l1000_landmarks,
                                      ranking)
  fileio.write_text(os.path.join(workdir, 'l1000_overlap.json'), json.dumps(overlap, indent=2))
  logging.info('%s panel of %d genes (%s): first %s; %d shared with L1000 (expected by chance '
               '%.1f)', config.method, len(panel), os.path.join(workdir, PANEL_FILE),
               list(panel['symbol'][:5]), overlap['count'], overlap['expected'])
  return panel


def go_stage(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
             annotation: pd.DataFrame, ranking: pd.DataFrame) -> dict[str, pd.DataFrame]:
  """GO molecular-function enrichment of the run's panel and the L1000 landmarks."""
  measured = annotation[annotation['probe'].isin(splits.train.features)]['symbol']
  universe = sorted({g.strip() for s in measured for g in s.split(readers.GENE_SEPARATOR)
                     if g.strip()})
  gene_sets = evaluate.read_gmt(config.data.go_gmt)
  ev = config.evaluate
  tables = {}
  k = panel_size(config)
  for name, genes in ((config.method, ranking_lib.select_landmarks(ranking, k)),
                      ('l1000', panels_lib.read_symbols(config.data.dgex_landmarks))):
    table = evaluate.go_enrichment(genes, universe, gene_sets, ev.go_min_size, ev.go_max_size)
    fileio.write_table(os.path.join(workdir, f'go_{name}.tsv'), table, index=False)
    evaluate.plot_enrichment(os.path.join(workdir, f'go_{name}.png'), table, name, ev.go_fdr)
    tables[name] = table
  return tables


def clustering_stage(config: ml_collections.ConfigDict, workdir: str, splits: preprocess.Splits,
                     model: autoencoder.AutoEncoder,
                     scaler: scalers.AffineScaler) -> pd.DataFrame:
  """Clusters each labelled study in the bottleneck (of the first seed's AE), in raw
  expression and in PCA space."""
  everything = [c for _, c in splits.items()]
  values = np.concatenate([c.values for c in everything])
  meta = pd.concat([c.meta for c in everything])
  bottleneck = np.asarray(model.encode(jnp.asarray(scaler.transform(values))))
  rows, figure_study = [], None
  if 'label' not in meta:
    meta = meta.assign(label=np.nan)
  for study, group in meta.groupby('study', sort=True):
    labels = group['label'].to_numpy()
    if group['label'].isna().any() or len(set(labels)) < 2:
      continue
    rows_of_study = meta.index.get_indexer(group.index)
    representations = {
        'expression': values[rows_of_study],
        f'pca_{bottleneck.shape[1]}': evaluate.pca_features(
            values[rows_of_study], min(bottleneck.shape[1], len(rows_of_study) - 1)),
        'autoencoder': bottleneck[rows_of_study]}
    table = evaluate.compare_representations(representations, labels)
    table.insert(0, 'study', study)
    table.insert(1, 'classes', len(set(labels)))
    rows.append(table)
    if figure_study is None or len(set(labels)) > figure_study[1]:
      figure_study = (study, len(set(labels)), representations, labels)
  if not rows:
    logging.info('No study has sample labels of two or more classes: nothing to cluster')
    return pd.DataFrame()
  clustering = pd.concat(rows, ignore_index=True)
  fileio.write_table(os.path.join(workdir, 'clustering.tsv'), clustering, index=False)
  study, _, representations, labels = figure_study
  evaluate.plot_representations(os.path.join(workdir, f'clustering_{study}.png'), representations,
                                labels, study)
  return clustering


def _checkpoint_identities(config, workdir):
  """train/seed_<s> -> the run identity in that seed's newest checkpoint, for seeds with one
  (none for a selector method: it trains no AutoEncoder)."""
  found = {}
  if config.method != design.PAPER_METHOD:
    return found
  for seeded, seed_dir in seed_runs(config, workdir):
    metadata = checkpointing.latest_metadata(os.path.join(seed_dir, 'checkpoints'))
    if metadata is not None:
      found[f'train/seed_{seeded.seed}'] = metadata.get('identity')
  return found


def _remove_outputs(workdir, stage):
  """Deletes what `stage` wrote (STAGE_OUTPUTS), so that it is recomputed from scratch."""
  kind, _, seed = stage.partition('/seed_')
  directory = os.path.join(workdir, f'seed_{seed}') if seed else workdir
  for pattern in STAGE_OUTPUTS[kind]:
    for path in glob.glob(os.path.join(directory, pattern)):
      logging.info('--overwrite: removing %s (stale %s results)', path, stage)
      if os.path.isdir(path):
        shutil.rmtree(path)
      else:
        os.remove(path)


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'all',
        overwrite: bool = False) -> pd.DataFrame | dict[str, Any] | None:
  """Runs `mode` of the pipeline in `workdir`, reusing the stages whose results are current.

  `prepare`, `train` and `explain` run the stages up to theirs; `evaluate` runs only the
  evaluation, from the landmarks an earlier run of the same config left; `all` runs every
  stage. Results made under another config or other data stop the run before anything is
  written (landmark.run_identity), unless `overwrite` recomputes them. `infer` applies a
  model the evaluation saved to new landmark measurements (landmark.inference.saved_models) and
  records no stage.
  """
  validation.check_config(config)
  if mode == 'sweep':
    return sweep.run_sweep(config, workdir,
                           lambda member, member_dir: run(member, member_dir, 'all', overwrite))
  if mode == 'dry_run':
    os.makedirs(workdir, exist_ok=True)
    return dry_run.run(config, workdir)
  if mode == 'infer':
    return saved_models.run_infer(config, workdir)
  if mode == 'train' and config.method != design.PAPER_METHOD:
    raise errors.ConfigError('--mode', f'train: config.method={config.method!r} trains no '
                             'AutoEncoder; --mode=explain designs its panel, all runs it all')
  validation.check_files(config)
  with run_identity.lock(workdir):
    identity = run_identity.RunIdentity(config, workdir)
    stale = identity.check(_checkpoint_identities(config, workdir), overwrite)
    if mode == 'evaluate':
      missing = [s for s in identity.stages()[:-1] if not identity.is_current(s)]
      if missing:
        raise errors.RunIdentityError(workdir, f'--mode=evaluate needs the landmarks of this '
                                      f'config, but {missing[0]} has not run; run --mode=explain '
                                      '(or all) first')
    _run_stages(config, workdir, mode, identity, stale)


def write_report_to_tensorboard(config: ml_collections.ConfigDict, workdir: str) -> None:
  """The run's report (text), config (text) and every figure of the run's top folder
  (images, tagged by file name) in `<workdir>/tensorboard`, beside the seeds' curves."""
  figures = sorted(glob.glob(os.path.join(workdir, '*.png')))
  with metric_writing.MetricWriter(os.path.join(workdir, TENSORBOARD), purge_step=0) as writer:
    with open(os.path.join(workdir, 'report.md')) as f:
      writer.write_text(0, 'report', f.read())
    writer.write_text(0, 'config', f'```\n{config.to_json_best_effort(indent=2)}\n```')
    for path in figures:
      writer.write_image(0, f'figures/{os.path.basename(path)[:-len(".png")]}', path)
  logging.info('TensorBoard: the report, config and %d figures in %s', len(figures),
               os.path.join(workdir, TENSORBOARD))


def _run_stages(config, workdir, mode, identity, stale):
  """The stages of `mode`; the outputs of `stale` ones are removed once the data are read and
  prepared, so bad input never costs a result (the data stage rewrites its own)."""
  stages = _Progress(mode, identity.designs_panel)
  stages.stage('prepare: reading and normalising the compendium')
  splits = prepare_data(config, workdir)
  identity.forget(list(stale))
  for stage in stale:
    if stage != 'data':
      _remove_outputs(workdir, stage)
  fileio.write_text(os.path.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
  identity.mark_done('data')
  if mode == 'prepare':
    return
  if identity.designs_panel:
    _design_stages(config, workdir, mode, identity, splits, stages)
    return
  stages.stage(f'train: {config.seeds} AutoEncoder(s)')
  trained, quality = train_stage(config, workdir, splits, identity)
  if mode == 'train':
    return
  annotation = readers.read_probe_annotation(config.data.annotation)
  stages.stage('explain: DeepLIFT scores and landmarks of each seed, and their consensus')
  seed_rankings, started = [], time.monotonic()
  for done, ((seeded, seed_dir), (model, scaler)) in enumerate(
      zip(seed_runs(config, workdir), trained), start=1):
    stage = f'explain/seed_{seeded.seed}'
    if identity.is_current(stage):
      seed_rankings.append(ranking_lib.read_landmarks(os.path.join(seed_dir, LANDMARKS_FILE)))
    else:
      seed_rankings.append(explain_stage(seeded, seed_dir, splits, model, scaler, annotation))
      identity.mark_done(stage)
    logging.info('DeepLIFT ranking %d of %d done%s', done, len(trained),
                 progress.eta(started, done, len(trained)))
  ranking = consensus_stage(config, workdir, seed_rankings)
  identity.mark_done('consensus')
  if mode == 'explain':
    return

  def write(splits, panels, go_tables):
    clustering = clustering_stage(config, workdir, splits, *trained[0])
    report.write_report(config, workdir, quality, ranking, panels, go_tables, clustering)

  _evaluate_stage(config, workdir, identity, stages, splits, annotation, ranking,
                  seed_rankings, write, 'these landmarks', 'GO, clustering, report')


def _evaluate_stage(config, workdir, identity, stages, splits, annotation, ranking,
                    seed_rankings, write_report, what, parts):
  """The evaluation of the run's panel (`ranking`) unless it is current: target-gene
  inference from each panel, GO, then `write_report(splits, panels, go_tables)` (the
  method's report), its TensorBoard copy and the stage's record."""
  if identity.is_current('evaluate'):
    logging.info('The evaluation of %s is current (%s); nothing to do.', what,
                 os.path.join(workdir, 'report.md'))
    return
  stages.stage(f'evaluate: target-gene inference from each panel, {parts}')
  splits = in_memory(config, splits)
  panels = landmark_panels_stage(config, workdir, splits, annotation, ranking, seed_rankings,
                                 identity.identity('evaluate'))
  write_report(splits, panels, go_stage(config, workdir, splits, annotation, ranking))
  write_report_to_tensorboard(config, workdir)
  identity.mark_done('evaluate')
  logging.info('Done in %s; the report: %s', stages.elapsed(), os.path.join(workdir, 'report.md'))


def _design_stages(config, workdir, mode, identity, splits, stages):
  """A selector method's stages after the data: the panel (`panel_stage`), then its
  evaluation and report (`report.write_panel_report`); no AutoEncoder, no DeepLIFT."""
  annotation = readers.read_probe_annotation(config.data.annotation)
  if identity.is_current('panel'):
    stages.stage(f'panel: the {config.method} panel is current ({PANEL_FILE})')
    ranking = ranking_lib.read_landmarks(os.path.join(workdir, PANEL_FILE))
  else:
    stages.stage(f'panel: designing it with {config.method}')
    ranking = panel_stage(config, workdir, splits, annotation)
    identity.mark_done('panel')
  if mode == 'explain':
    return
  _evaluate_stage(config, workdir, identity, stages, splits, annotation, ranking, [],
                  lambda _, panels, go_tables: report.write_panel_report(
                      config, workdir, ranking, panels, go_tables),
                  'this panel', 'GO, report')


class _Progress:
  """'Stage i of n' log lines with the time each took and the time since the start."""

  STAGES = {'prepare': 1, 'train': 2, 'explain': 3, 'evaluate': 4, 'all': 4}
  DESIGN_STAGES = {'prepare': 1, 'explain': 2, 'evaluate': 3, 'all': 3}

  def __init__(self, mode, designs_panel=False):
    total = (self.DESIGN_STAGES if designs_panel else self.STAGES)[mode]
    self.total, self.done, self.started = total, 0, time.monotonic()

  def stage(self, what: str) -> None:
    """Logs the start of the next stage, `what`."""
    self.done += 1
    logging.info('Stage %d of %d, %s (%s since the start)', self.done, self.total, what,
                 self.elapsed())

  def elapsed(self) -> datetime.timedelta:
    """The time since the start, to the second."""
    return datetime.timedelta(seconds=round(time.monotonic() - self.started))
