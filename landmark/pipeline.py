"""The run a config describes: data -> AutoEncoder -> DeepLIFT landmarks -> evaluation.

Each stage writes its results into the workdir and the next stage reads them, so a run
can be resumed or continued stage by stage with `--mode`.
"""

import json
import os

from absl import logging
import jax.numpy as jnp
import numpy as np
import pandas as pd

from landmark import data as data_lib
from landmark import deeplift
from landmark import diagnostics
from landmark import dry_run
from landmark import evaluate
from landmark import fileio
from landmark import panels as panels_lib
from landmark import preprocess
from landmark import ranking as ranking_lib
from landmark import report
from landmark import sharding
from landmark import sweep
from landmark import train

MODES = ('all', 'prepare', 'train', 'explain', 'evaluate', 'sweep', 'dry_run')
LANDMARKS_FILE = 'landmarks.tsv'


def prepare_data(config, workdir):
  """Reads and preprocesses the compendium; writes `data_summary.json`."""
  compendium = data_lib.load_compendium(config.data)
  splits = preprocess.prepare(compendium, config, config.seed, workdir)
  summary = {name: {'samples': int(c.shape[0]), 'features': int(c.shape[1]),
                    'studies': c.meta['study'].value_counts().to_dict(),
                    'value_range': [float(np.min(c.values)), float(np.max(c.values))]}
             for name, c in splits.items()}
  fileio.write_text(os.path.join(workdir, 'data_summary.json'), json.dumps(summary, indent=2))
  return splits


def train_stage(config, workdir, splits):
  """Trains (or resumes, or reloads) the AutoEncoder and scores it on the test split."""
  model, scaler, _ = train.train_autoencoder(config, workdir, splits.train.values, splits.val.values)
  quality = train.evaluate_reconstruction(model, scaler, splits.test.values, workdir,
                                          config.evaluate.block_size, splits.train.features,
                                          config.evaluate.permutation_alpha)
  baselines = diagnostics.trivial_baselines(
      splits.train.values, splits.train.meta['study'].to_numpy(),
      splits.test.values, splits.test.meta['study'].to_numpy())
  quality['baselines'] = diagnostics.ae_vs_baselines(quality['mean_mae'], baselines)
  fileio.write_text(os.path.join(workdir, 'ae_summary.json'), json.dumps(quality, indent=2))
  logging.info('AutoEncoder on %d held-out profiles: %s', len(splits.test.values), quality)
  logging.info('%s', quality['baselines']['verdict'])
  return model, scaler, quality


def explain_stage(config, workdir, splits, model, scaler):
  """Scores every probe with DeepLIFT, ranks genes and writes `landmarks.tsv`."""
  scored = dict(splits.items())[config.deeplift.samples]
  x = scaler.transform(scored.values)
  reference = deeplift.make_reference(config.deeplift.reference, scaler.transform(splits.train.values))
  layers = model.encoder_layers()
  scores = deeplift.score_inputs(layers, config.model.activation, x, reference,
                                 config.deeplift.aggregate, config.deeplift.max_chunk_mb,
                                 num_samples=len(x), mesh=sharding.make_mesh(config))
  annotation = ranking_lib.read_probe_annotation(config.data.annotation)
  ranking = ranking_lib.rank_genes(scores, scored.features, annotation)
  ranking_lib.write_landmarks(os.path.join(workdir, LANDMARKS_FILE), ranking)
  deeplift.export_for_checking(os.path.join(workdir, 'deeplift'), layers, config.model.activation,
                               x, reference, n=config.deeplift.n_export)
  landmarks = ranking_lib.select_landmarks(ranking, config.deeplift.top_k)
  overlap = ranking_lib.l1000_overlap(landmarks, config.data.l1000_landmarks, ranking)
  fileio.write_text(os.path.join(workdir, 'l1000_overlap.json'), json.dumps(overlap, indent=2))
  logging.info('Top %d DeepLIFT genes share %d with L1000 (expected by chance %.1f)',
               len(landmarks), overlap['count'], overlap['expected'])
  return ranking


def read_ranking(workdir):
  return pd.read_csv(os.path.join(workdir, LANDMARKS_FILE), sep='\t', dtype={'entrez': str})


def landmark_panels_stage(config, workdir, splits, ranking):
  """Target-gene inference from DeepLIFT, L1000, top-variance and random panels."""
  ev = config.evaluate
  annotation = preprocess.read_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  panels = panels_lib.reference_panels(genes, ranking['symbol'],
                                       panels_lib.read_symbols(config.data.dgex_landmarks),
                                       config.deeplift.top_k, ev.random_sets, config.seed)
  targets = panels_lib.common_targets(genes, panels)
  study_effects = diagnostics.panel_study_effects(genes.train, splits.train.meta['study'].to_numpy(),
                                                  genes.genes, panels)
  fileio.write_table(os.path.join(workdir, 'panel_study_effects.tsv'), study_effects, index=False)
  membership = pd.DataFrame([(name, g) for name, p in panels.items() for g in p],
                            columns=['panel', 'gene'])
  fileio.write_table(os.path.join(workdir, 'panels.tsv'), membership, index=False)
  n_random = {kind: ev.random_sets if kind == 'linear' else ev.random_sets_nonlinear
              for kind in ev.models}
  results = panels_lib.evaluate_panels(config, genes, panels, targets, ev.models, n_random,
                                       config.seed)
  summary = panels_lib.summarize(results, ev.permutation_alpha)
  fileio.write_table(os.path.join(workdir, 'panel_summary.tsv'), summary, index=False)
  per_gene = pd.concat({key: frame for key, frame in results.items()
                        if not key[1].startswith('random_')}, names=['model', 'panel'])
  fileio.write_table(os.path.join(workdir, 'panel_gene_metrics.tsv'), per_gene)
  comparisons = panels_lib.compare_panels(results, ev.models, ev.permutation_alpha, workdir)
  fileio.write_table(os.path.join(workdir, 'panel_comparisons.tsv'), comparisons, index=False)
  return {'summary': summary, 'comparisons': comparisons, 'study_effects': study_effects,
          'n_targets': len(targets),
          'panel_size': len(panels['l1000']), 'n_genes': len(genes.genes)}


def go_stage(config, workdir, splits, ranking):
  """GO molecular-function enrichment of the DeepLIFT and L1000 landmarks."""
  annotation = preprocess.read_annotation(config.data.annotation)
  measured = annotation['symbol'].reindex(splits.train.features).dropna()
  universe = sorted({g for s in measured for g in s.split(' /// ')})
  gene_sets = evaluate.read_gmt(config.data.go_gmt)
  ev = config.evaluate
  tables = {}
  for name, genes in (('deeplift', ranking_lib.select_landmarks(ranking, config.deeplift.top_k)),
                      ('l1000', panels_lib.read_symbols(config.data.dgex_landmarks))):
    table = evaluate.go_enrichment(genes, universe, gene_sets, ev.go_min_size, ev.go_max_size)
    fileio.write_table(os.path.join(workdir, f'go_{name}.tsv'), table, index=False)
    evaluate.plot_enrichment(os.path.join(workdir, f'go_{name}.png'), table, ev.go_fdr)
    tables[name] = table
  return tables


def clustering_stage(config, workdir, splits, model, scaler):
  """Clusters each labelled study in the bottleneck, in raw expression and in PCA space."""
  everything = [c for _, c in splits.items()]
  values = np.concatenate([c.values for c in everything])
  meta = pd.concat([c.meta for c in everything])
  bottleneck = np.asarray(model.encode(jnp.asarray(scaler.transform(values))))
  rows, figure_study = [], None
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
  clustering = pd.concat(rows, ignore_index=True)
  fileio.write_table(os.path.join(workdir, 'clustering.tsv'), clustering, index=False)
  study, _, representations, labels = figure_study
  evaluate.plot_representations(os.path.join(workdir, f'clustering_{study}.png'), representations,
                                labels)
  return clustering


def run(config, workdir, mode='all'):
  """Runs `mode` of the pipeline in `workdir`, reusing what earlier runs left there."""
  if mode == 'sweep':
    return sweep.run_sweep(config, workdir, run)
  os.makedirs(workdir, exist_ok=True)
  if mode == 'dry_run':
    return dry_run.run(config, workdir)
  splits = prepare_data(config, workdir)
  fileio.write_text(os.path.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
  if mode == 'prepare':
    return
  model, scaler, quality = train_stage(config, workdir, splits)
  if mode == 'train':
    return
  have_ranking = os.path.exists(os.path.join(workdir, LANDMARKS_FILE))
  if mode == 'explain' or not have_ranking:
    ranking = explain_stage(config, workdir, splits, model, scaler)
  else:
    ranking = read_ranking(workdir)
  if mode == 'explain':
    return
  panels = landmark_panels_stage(config, workdir, splits, ranking)
  go_tables = go_stage(config, workdir, splits, ranking)
  clustering = clustering_stage(config, workdir, splits, model, scaler)
  report.write_report(config, workdir, quality, ranking, panels, go_tables, clustering)
