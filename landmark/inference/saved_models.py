"""Saved inference models and `--mode=infer`: measure the landmarks, infer the rest.

The panels stage saves each linear, ridge and D-GEX model it fits to a named panel in
`<workdir>/models/<panel>_<model>/`, readable without the run (`model.json` lists it all):

  landmarks.tsv, targets.tsv  the genes in model order: symbol, entrez, ensembl, probes
                              (the compendium's), l1000_probe
  accuracy.tsv                per target, held out on the run's test split: mae, pcc,
                              mae_centred, p_value (permutation test), passes
  reference.npz               what inputs are mapped onto and checked against: the
                              training landmarks' mean sorted values (their quantiles),
                              per-landmark mean and sd, per-target training range, and
                              the training correlations of a seeded subset of targets
  quantile_reference.npy      the run's probe-level quantile reference (the training
                              profiles were normalised to it before genes were collapsed)
  linear.npz                  linear / ridge: weights, intercept, penalty
  standardizers.npz, dgex/    D-GEX: the input and output z-scores and the parameters
                              (an orbax checkpoint, landmark.training.checkpointing)
  config.json                 the run's config

`run_infer` reads landmark measurements in any format `data.read_any` reads, finds the
model's landmark genes among its features (HG-U133A probes, gene symbols, Entrez or
Ensembl IDs), maps each sample onto the training landmarks' quantiles by rank (as
preprocessing maps a profile onto the reference), centres each input batch on its own
mean when the run centred its studies (the model was trained on study-centred data), and
writes full profiles, the held-out accuracy of every inferred gene and sanity checks that
need no ground truth.
"""

import dataclasses
import json
import os
import shutil
from typing import Iterable

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

from landmark import fileio
from landmark import metrics
from landmark import run_identity
from landmark.data import preprocess
from landmark.data import readers
from landmark.errors import ConfigError
from landmark.errors import DataError
from landmark.errors import RunIdentityError
from landmark.inference import regression
from landmark.models import dgex
from landmark.training import checkpointing

MODELS_DIR = 'models'
MANIFEST = 'model.json'
SAVED_KINDS = ('linear', 'ridge', 'dgex')   # KNN would have to keep the training split
INPUT_SCALES = ('auto', 'log2', 'linear', 'zscore')
FEATURE_TYPES = ('probe', 'symbol', 'entrez', 'ensembl')
STRUCTURE_GENES = 200        # targets whose correlation structure is compared
STANDARDISED_MEDIAN = 0.1    # |per-gene median| below which values look like z-scores


def model_name(panel: str, kind: str) -> str:
  """The directory name of a saved model (under `<workdir>/models/`)."""
  return f'{panel}_{kind}'


def gene_ids(symbols: Iterable[str], annotation: pd.DataFrame, features: ArrayLike,
             data_config: ml_collections.ConfigDict) -> pd.DataFrame:
  """Entrez, Ensembl and probe IDs of each gene of `symbols` (a frame indexed by symbol).

  probes: the compendium's (`features`) single-gene probes whose mean is the gene's value
  (preprocess.collapse_to_genes), comma-separated; entrez: theirs in the probe annotation
  (`GENE_SEPARATOR` between several); ensembl: D-GEX's gene lists'; l1000_probe: the probe
  L1000 measures the gene with, which the probe annotation may give to several genes
  (VDAC1's 217140_s_at, ABHD6's 221552_at). '' where unknown.
  """
  symbol = annotation['symbol']
  single = annotation[annotation['probe'].isin(features) & (symbol != '')
                      & ~symbol.str.contains(readers.GENE_SEPARATOR, regex=False)]
  grouped = single.groupby('symbol')
  lists = [readers.read_string_table(path, ('symbol', 'ensembl'), 'gene list')
           for path in (data_config.dgex_landmarks, data_config.dgex_targets)]
  ensembl = pd.concat(lists).drop_duplicates('symbol').set_index('symbol')['ensembl']
  l1000 = readers.read_string_table(data_config.l1000_landmarks, ('probe', 'symbol'),
                                     'L1000 landmark list')
  columns = {
      'entrez': grouped['entrez'].agg(
          lambda ids: readers.GENE_SEPARATOR.join(dict.fromkeys(i for i in ids if i))),
      'ensembl': ensembl,
      'probes': grouped['probe'].agg(','.join),
      'l1000_probe': l1000.drop_duplicates('symbol').set_index('symbol')['probe'],
  }
  index = pd.Index(np.asarray(symbols, str), name='symbol')
  return pd.DataFrame({name: c.reindex(index).fillna('').to_numpy() for name, c in
                       columns.items()}, index=index)


def _correlations(values):
  with np.errstate(divide='ignore', invalid='ignore'):
    return np.corrcoef(np.asarray(values, np.float64), rowvar=False)


def structure_similarity(values: np.ndarray, training_corr: np.ndarray) -> float | None:
  """Pearson r between the gene-gene correlations of `values` (samples, genes) and
  `training_corr` over the gene pairs where both are defined; None under 3 samples."""
  if len(values) < 3:
    return None
  upper = np.triu_indices(training_corr.shape[0], 1)
  a, b = _correlations(values)[upper], training_corr[upper]
  both = np.isfinite(a) & np.isfinite(b)
  return float(np.corrcoef(a[both], b[both])[0, 1]) if both.sum() > 2 else None


def _in_range(values, reference):
  """Per target: the fraction of samples whose value lies in the training range."""
  return ((values >= reference['target_min']) & (values <= reference['target_max'])).mean(0)


def save_model(directory: str, model: regression.LinearModel | regression.DGEXModel, *,
               kind: str, panel: str, config: ml_collections.ConfigDict, genes: pd.DataFrame,
               accuracy: pd.DataFrame, train_x: np.ndarray, train_y: np.ndarray,
               test_x: np.ndarray, test_y: np.ndarray, identity: str,
               quantile_reference: str) -> None:
  """Saves a fitted linear/ridge/D-GEX `model` with all that applying it needs.

  `genes`: `gene_ids` of the landmarks then the targets, in the model's column order;
  `accuracy`: its `metrics.gene_metrics` on the test split (`test_x`, `test_y`);
  `identity`: the run_identity.digest of the evaluation that fitted it;
  `quantile_reference`: the run's quantile_reference.npy ('' if it has none).
  """
  n_landmarks = train_x.shape[1]
  landmarks, targets = genes.iloc[:n_landmarks], genes.iloc[n_landmarks:]
  structure = np.sort(np.random.default_rng(config.seed).permutation(len(targets))
                      [:STRUCTURE_GENES])
  reference = {
      'landmark_quantiles': np.sort(train_x, axis=1).mean(axis=0, dtype=np.float64),
      'landmark_mean': train_x.mean(axis=0, dtype=np.float64),
      'landmark_sd': train_x.std(axis=0, dtype=np.float64),
      'target_min': train_y.min(axis=0), 'target_max': train_y.max(axis=0),
      'structure_genes': structure, 'structure_corr': _correlations(train_y[:, structure]),
  }
  predicted = np.asarray(model.predict(test_x))
  alpha = config.evaluate.permutation_alpha
  accuracy = accuracy.assign(passes=metrics.permutation_pass(accuracy['p_value'], alpha))
  manifest = {
      'kind': kind, 'panel': panel, 'landmarks': len(landmarks), 'targets': len(targets),
      'identity': identity,
      'preprocess': {key: config.preprocess[key] for key in (
          'log2', 'linear_threshold', 'log2_floor', 'quantile_normalize', 'study_correction')},
      'held_out': {
          'samples': len(test_x), 'mae_mean': float(accuracy['mae'].mean()),
          'pcc_mean': float(accuracy['pcc'].mean()),
          'passes': int(accuracy['passes'].sum()), 'permutation_alpha': alpha,
          'in_training_range': float(_in_range(predicted, reference).mean()),
          'structure_r_predicted': structure_similarity(predicted[:, structure],
                                                        reference['structure_corr']),
          'structure_r_true': structure_similarity(test_y[:, structure],
                                                   reference['structure_corr'])},
      'files': ['landmarks.tsv', 'targets.tsv', 'accuracy.tsv', 'reference.npz',
                'config.json'],
  }
  arrays = {}
  if isinstance(model, regression.LinearModel):
    arrays['linear.npz'] = {'weights': model.weights, 'intercept': model.intercept,
                            'penalty': model.penalty}
    manifest['penalty'] = model.penalty
  else:
    arrays['standardizers.npz'] = {
        'x_mean': model.x_scaler.mean, 'x_std': model.x_scaler.std,
        'y_mean': model.y_scaler.mean, 'y_std': model.y_scaler.std}
    manifest.update(best_epoch=model.best_epoch,
                    history={k: np.asarray(v).tolist() for k, v in model.history.items()})
    manifest['files'].append('dgex')
  if quantile_reference:
    manifest['files'].append('quantile_reference.npy')
  manifest['files'] += list(arrays)
  arrays['reference.npz'] = reference

  if os.path.exists(directory):
    shutil.rmtree(directory)
  os.makedirs(directory)
  for name, table in (('landmarks.tsv', landmarks), ('targets.tsv', targets)):
    fileio.write_table(os.path.join(directory, name), table)
  fileio.write_table(os.path.join(directory, 'accuracy.tsv'),
                     targets[['entrez']].join(accuracy.rename_axis('symbol')))
  for name, content in arrays.items():
    with fileio.atomic_path(os.path.join(directory, name)) as tmp, open(tmp, 'wb') as f:
      np.savez(f, **{key: np.asarray(value) for key, value in content.items()})
  if quantile_reference:
    shutil.copyfile(quantile_reference, os.path.join(directory, 'quantile_reference.npy'))
  if kind == 'dgex':
    manager = checkpointing.make_manager(os.path.join(directory, 'dgex'))
    checkpointing.save(manager, model.best_epoch + 1,
                       {'params': model.params}, force=True)
    manager.close()
  fileio.write_text(os.path.join(directory, 'config.json'), config.to_json_best_effort(indent=2))
  fileio.write_text(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=2))
  logging.info('Saved the %s model of panel %s in %s', kind, panel, directory)


@dataclasses.dataclass
class SavedModel:
  """A model read back from its directory (`load_model`)."""

  directory: str
  manifest: dict
  config: ml_collections.ConfigDict
  landmarks: pd.DataFrame        # indexed by symbol: entrez, ensembl, probes
  targets: pd.DataFrame
  accuracy: pd.DataFrame         # indexed by symbol
  reference: dict                # reference.npz
  predictor: regression.LinearModel | regression.DGEXModel

  def predict(self, x: ArrayLike) -> np.ndarray:
    """Targets inferred from the model's input `x` (samples, landmarks), in data units."""
    return np.asarray(self.predictor.predict(x))


def _read_genes(path):
  return pd.read_csv(path, sep='\t', dtype=str, keep_default_na=False, index_col='symbol')


def load_model(directory: str) -> SavedModel:
  """Reads a model that `save_model` wrote."""
  path = lambda name: os.path.join(directory, name)
  with readers.reading(path(MANIFEST), 'saved model'):
    with open(path(MANIFEST)) as f:
      manifest = json.load(f)
    with open(path('config.json')) as f:
      config = ml_collections.ConfigDict(json.load(f))
    landmarks, targets = _read_genes(path('landmarks.tsv')), _read_genes(path('targets.tsv'))
    accuracy = pd.read_csv(path('accuracy.tsv'), sep='\t', index_col='symbol',
                           dtype={'entrez': str}, keep_default_na=False)
    with np.load(path('reference.npz')) as saved:
      reference = {key: saved[key] for key in saved.files}
    if manifest['kind'] == 'dgex':
      with np.load(path('standardizers.npz')) as saved:
        x_scaler = regression.Standardizer(saved['x_mean'], saved['x_std'])
        y_scaler = regression.Standardizer(saved['y_mean'], saved['y_std'])
      graphdef, params = nnx.split(dgex.build_dgex(config.dgex, len(landmarks), len(targets),
                                                   jax.random.key(0)))
      manager = checkpointing.make_manager(path('dgex'))
      restored = checkpointing.restore(manager, checkpointing.abstract(
          {'params': nnx.to_pure_dict(params)}))
      manager.close()
      if restored is None:
        raise DataError(path('dgex'), 'holds no D-GEX parameters')
      params = restored[1]['params']
      history = {k: np.asarray(v) for k, v in manifest['history'].items()}
      predictor = regression.DGEXModel(graphdef, params, x_scaler, y_scaler, history,
                                 manifest['best_epoch'])
    else:
      with np.load(path('linear.npz')) as saved:
        predictor = regression.LinearModel(jnp.asarray(saved['weights']),
                                     jnp.asarray(saved['intercept']), float(saved['penalty']))
  return SavedModel(directory, manifest, config, landmarks, targets, accuracy, reference,
                    predictor)


def check_config(infer: ml_collections.ConfigDict) -> None:
  """ConfigErrors for `config.infer` values that cannot work (before anything is read)."""
  if not infer.input:
    raise ConfigError('config.infer.input', 'names no file of landmark measurements')
  if not infer.panel:
    raise ConfigError('config.infer.panel', 'names no panel')
  if infer.model not in SAVED_KINDS:
    raise ConfigError('config.infer.model', f'must be one of {SAVED_KINDS}, got {infer.model!r}')
  if infer.input_scale not in INPUT_SCALES:
    raise ConfigError('config.infer.input_scale', f'must be one of {INPUT_SCALES}, got '
                      f'{infer.input_scale!r}')
  if not 0 < infer.min_landmark_fraction <= 1:
    raise ConfigError('config.infer.min_landmark_fraction', 'must be in (0, 1], got '
                      f'{infer.min_landmark_fraction!r}')


def model_directory(workdir: str, panel: str, kind: str) -> str:
  """`<workdir>/models/<panel>_<kind>`; a ConfigError naming the saved ones if it is absent."""
  models = os.path.join(workdir, MODELS_DIR)
  directory = os.path.join(models, model_name(panel, kind))
  if os.path.isfile(os.path.join(directory, MANIFEST)):
    return directory
  saved = sorted(name for name in (os.listdir(models) if os.path.isdir(models) else ())
                 if os.path.isfile(os.path.join(models, name, MANIFEST)))
  have = (f'saved: {", ".join(saved)}' if saved else
          'it holds none (run the evaluation first: --mode=evaluate or all)')
  raise ConfigError('config.infer.panel', f'{workdir} has no saved {kind} model of panel '
                    f'{panel!r} ({directory}); {have}')


def check_current(saved: SavedModel, workdir: str) -> None:
  """RunIdentityError unless the workdir's completed evaluation is the one that saved it;
  DataError if the run's study correction cannot be applied to new samples."""
  recorded = run_identity.records(workdir).get('evaluate')
  if recorded is None or run_identity.digest(recorded) != saved.manifest['identity']:
    raise RunIdentityError(saved.directory, 'not made by the evaluation this workdir records '
                           'as complete (it did not finish, or ran under another config); '
                           'rerun --mode=evaluate')
  kind = saved.manifest['preprocess']['study_correction']
  if kind not in ('none', 'center'):
    raise DataError(saved.directory, f"the run used {kind!r} study correction, which "
                    "inference cannot apply to new samples ('none' and 'center' can)")


def _id_positions(landmarks, feature_type, column=None):
  """Landmark ID (of `feature_type`, read from `column`) -> position of its gene."""
  if feature_type == 'symbol':
    return {symbol: i for i, symbol in enumerate(landmarks.index)}
  separator = {'probe': ',', 'entrez': readers.GENE_SEPARATOR, 'ensembl': None}[feature_type]
  column = landmarks[column or ('probes' if feature_type == 'probe' else feature_type)]
  return {key: i for i, ids in enumerate(column)
          for key in (ids.split(separator) if separator else [ids]) if key}


def _positions(ids, landmarks, feature_type):
  """The landmark position of each input ID (-1 if none).

  A gene none of whose compendium probes was measured is found by its L1000 probe.
  """
  lookup = _id_positions(landmarks, feature_type)
  positions = np.array([lookup.get(i, -1) for i in ids])
  if feature_type == 'probe':
    by_l1000 = _id_positions(landmarks, 'probe', 'l1000_probe')
    fallback = np.array([by_l1000.get(i, -1) for i in ids])
    unmatched = (positions < 0) & ~np.isin(fallback, positions)
    positions[unmatched] = fallback[unmatched]
  return positions


def _normalise_ids(features, feature_type):
  """Feature IDs as the landmark tables write them: Ensembl without version, Entrez as int."""
  ids = pd.Series(np.asarray(features, str)).str.strip()
  if feature_type == 'ensembl':
    ids = ids.str.split('.').str[0]
  elif feature_type == 'entrez':
    ids = ids.str.removesuffix('.0')
  return ids.to_numpy()


def landmark_columns(measured: readers.Compendium,
                     landmarks: pd.DataFrame) -> tuple[np.ndarray, str]:
  """(values (samples, landmarks), NaN for genes not measured; the input's feature type).

  The feature type is the one of FEATURE_TYPES that finds the most landmark genes. A gene
  with several measured probes takes their mean (as collapse_to_genes does); gene-level
  IDs must name each gene once.
  """
  best = None
  for feature_type in FEATURE_TYPES:
    positions = _positions(_normalise_ids(measured.features, feature_type), landmarks,
                           feature_type)
    found = len(np.unique(positions[positions >= 0]))
    if best is None or found > best[2]:
      best = (feature_type, positions, found)
  feature_type, positions, found = best
  if not found:
    raise DataError(measured.source, f'none of its {len(measured.features)} feature IDs (e.g. '
                    f'{readers.plain_ids(measured.features)}) is a probe, symbol, Entrez or '
                    f'Ensembl ID of the {len(landmarks)} landmark genes')
  used = positions >= 0
  counts = np.bincount(positions[used], minlength=len(landmarks))
  if feature_type != 'probe' and (counts > 1).any():
    gene = int(np.argmax(counts))
    raise DataError(measured.source, f'{int((counts > 1).sum())} landmark genes appear more than '
                    f'once among its {feature_type} IDs, e.g. {landmarks.index[gene]} as '
                    f'{readers.plain_ids(measured.features[positions == gene])}: give each gene '
                    'once')
  sums = np.zeros((measured.shape[0], len(landmarks)), np.float64)
  np.add.at(sums.T, positions[used], measured.values[:, used].T)
  with np.errstate(invalid='ignore'):
    return sums / np.where(counts > 0, counts, np.nan), feature_type


def _looks_standardised(values):
  """Per-gene z-scores (e.g. L1000 level 4): negative values, every gene's median near 0."""
  return values.min() < 0 and np.median(np.abs(np.median(values, axis=0))) < STANDARDISED_MEDIAN


def input_scale(values: np.ndarray, declared: str, pre: dict, source: str) -> str:
  """The scale of the measured `values`: 'log2', 'linear' or 'zscore' (DataError if wrong).

  'auto' calls values linear when their maximum exceeds the run's
  `preprocess.linear_threshold` (preprocess.to_log2's rule) and refuses per-gene z-scores,
  which a rank mapping would scramble; a declared 'log2' is refused on linear-looking values.
  """
  top = float(np.max(values))
  linear = top > pre['linear_threshold']
  if declared == 'auto':
    if not linear and _looks_standardised(values):
      raise DataError(source, 'every gene has a median near 0 and values are negative: these '
                      'look like per-gene z-scores (e.g. L1000 level 4), not expression levels; '
                      "set config.infer.input_scale='zscore' to place them on the training "
                      "per-gene mean and sd, or 'log2' if they are log2 levels")
    declared = 'linear' if linear else 'log2'
  if declared == 'log2' and linear:
    raise DataError(source, f'values reach {top:g}, above the run\'s linear_threshold '
                    f"{pre['linear_threshold']:g}: linear, not log2 (set "
                    "config.infer.input_scale='linear' or 'auto')")
  if declared == 'linear' and values.min() < 0:
    raise DataError(source, f'negative values (down to {values.min():g}) cannot be linear '
                    "intensities or counts (config.infer.input_scale='linear')")
  return declared


def map_input(measured: readers.Compendium, saved: SavedModel,
              infer: ml_collections.ConfigDict) -> tuple[np.ndarray, dict, np.ndarray]:
  """The model's input (samples, landmarks) from measurements, what was done to them and
  which landmarks were measured (a mask).

  Steps: landmark genes found (refused below `infer.min_landmark_fraction`); log2 of linear
  values (floor preprocess.log2_floor); each sample's measured landmarks mapped by rank
  onto the training landmarks' quantiles (interpolated when some are missing), or, for
  z-scores, mean + z * sd of each training landmark; unmeasured landmarks set to their
  training mean; with 'center' study correction, each batch (`infer.batch_column`, or the
  whole input) centred on its own mean and moved to the training mean.
  """
  source, reference, pre = measured.source, saved.reference, saved.manifest['preprocess']
  values, feature_type = landmark_columns(measured, saved.landmarks)
  found = ~np.isnan(values[0])
  fraction = found.mean()
  logging.info('Found %d of the %d landmark genes (%.1f%%) as %s IDs', found.sum(), len(found),
               100 * fraction, feature_type)
  if fraction < infer.min_landmark_fraction:
    raise DataError(source, f'{found.sum()} of the {len(found)} landmark genes of '
                    f'{model_name(saved.manifest["panel"], saved.manifest["kind"])} found '
                    f'({fraction:.1%}), below config.infer.min_landmark_fraction '
                    f'{infer.min_landmark_fraction:g}')
  present = values[:, found]
  if not np.isfinite(present).all():
    raise DataError(source, f'{int((~np.isfinite(present)).sum())} NaN/inf landmark values')
  scale = input_scale(present, infer.input_scale, pre, source)
  logging.info('Input scale: %s (config.infer.input_scale=%s)', scale, infer.input_scale)
  if scale == 'linear':
    present = np.log2(np.maximum(present, pre['log2_floor']))
  if scale == 'zscore':
    present = reference['landmark_mean'][found] + present * reference['landmark_sd'][found]
  elif pre['quantile_normalize']:
    quantiles = reference['landmark_quantiles']
    present = preprocess.QuantileNormalizer(quantiles).transform(present)
  x = np.tile(reference['landmark_mean'], (len(values), 1))
  x[:, found] = present
  batches = {}
  if pre['study_correction'] == 'center':
    if infer.batch_column and infer.batch_column not in measured.meta:
      raise ConfigError('config.infer.batch_column', f'{infer.batch_column!r} is not a sample '
                        f'metadata column of {source}; it has {list(measured.meta.columns)}')
    labels = (measured.meta[infer.batch_column].astype(str).to_numpy() if infer.batch_column
              else np.full(len(x), 'input'))
    names, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
      raise DataError(source, f'batch {names[np.argmin(counts)]!r} has 1 sample; the run '
                      "centred each study, and centring one sample leaves nothing (group "
                      'samples with config.infer.batch_column)')
    for name in names:
      rows = labels == name
      x[rows] += reference['landmark_mean'] - x[rows].mean(axis=0)
    batches = dict(zip(names.tolist(), counts.tolist()))
    logging.info('Centred %d batch(es) on their own means (the run centred each study)',
                 len(names))
  report = {
      'feature_type': feature_type,
      'landmarks': {'found': int(found.sum()), 'total': len(found), 'fraction': float(fraction),
                    'missing': saved.landmarks.index[~found].tolist(),
                    'missing_set_to': 'training mean'},
      'input_scale': {'declared': infer.input_scale, 'used': scale,
                      'max_value': float(np.max(values[:, found]))},
      'mapped_onto': ('training per-gene mean and sd' if scale == 'zscore' else
                      'training landmark quantiles' if pre['quantile_normalize'] else 'as is'),
      'study_correction': {'run': pre['study_correction'], 'batches': batches},
  }
  return x.astype(np.float32), report, found


def sanity_checks(x: np.ndarray, predicted: np.ndarray,
                  saved: SavedModel) -> tuple[dict, np.ndarray]:
  """Checks that need no ground truth; and per target, the fraction of samples inside its
  training range.

  Beside each figure: what it gave on the run's held-out profiles (predicted and true),
  and on the model's input `x` with every landmark shuffled over the samples on its own
  (seed 0), which keeps each landmark's values but breaks their co-variation. A model
  imposes some correlation structure on anything it is given; an input carries real
  structure only where it beats the shuffled one.
  """
  reference, held_out = saved.reference, saved.manifest['held_out']
  shuffled = saved.predict(np.random.default_rng(0).permuted(x, axis=0))
  inside = _in_range(predicted, reference)
  structure = reference['structure_genes']
  similarity = lambda values: structure_similarity(values[:, structure],
                                                   reference['structure_corr'])
  return {
      'in_training_range': {
          'mean': float(inside.mean()), 'median': float(np.median(inside)),
          'genes_all_inside': float((inside == 1).mean()), 'min': float(inside.min()),
          'held_out_mean': held_out['in_training_range'],
          'shuffled_landmarks_mean': float(_in_range(shuffled, reference).mean())},
      'correlation_structure': {
          'genes': len(structure), 'r_inferred_vs_training': similarity(predicted),
          'held_out_r_predicted': held_out['structure_r_predicted'],
          'held_out_r_true': held_out['structure_r_true'],
          'r_shuffled_landmarks': similarity(shuffled)},
  }, inside


def _write_outputs(output, measured, saved, x, found, predicted, inside, summary):
  """profiles.gctx, profiles.tsv, gene_accuracy.tsv and infer_summary.json in `output`."""
  genes = pd.concat([saved.landmarks[found], saved.targets])
  genes = genes.assign(inferred=np.repeat([False, True], [int(found.sum()), len(saved.targets)]))
  values = np.concatenate([x[:, found], predicted], axis=1)
  profiles = readers.Compendium(values, genes.index, measured.samples, measured.meta,
                                 source=measured.source)
  os.makedirs(output, exist_ok=True)
  readers.write_gctx(os.path.join(output, 'profiles.gctx'), profiles,
                      feature_meta=genes[['entrez', 'ensembl', 'inferred']])
  table = pd.DataFrame(values.T, index=genes.index, columns=measured.samples)
  fileio.write_table(os.path.join(output, 'profiles.tsv'),
                     genes[['entrez', 'ensembl', 'inferred']].join(table))
  accuracy = saved.accuracy.assign(in_training_range=inside)
  fileio.write_table(os.path.join(output, 'gene_accuracy.tsv'), accuracy)
  fileio.write_text(os.path.join(output, 'infer_summary.json'), json.dumps(summary, indent=2))


def run_infer(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`--mode=infer`: full profiles from the landmark measurements in `config.infer.input`.

  Applies `<workdir>/models/<panel>_<model>` and writes into `config.infer.output` (default
  `<workdir>/infer/<panel>_<model>/`); returns the summary. Reads the workdir under its
  lock and writes nothing else there; bad input stops it before anything is written.
  """
  infer = config.infer
  check_config(infer)
  directory = model_directory(workdir, infer.panel, infer.model)
  output = infer.output or os.path.join(workdir, 'infer', model_name(infer.panel, infer.model))
  with run_identity.lock(workdir):
    saved = load_model(directory)
    check_current(saved, workdir)
    logging.info('Model %s: %d landmarks -> %d targets (held-out mean MAE %.4f, PCC %.4f)',
                 directory, len(saved.landmarks), len(saved.targets),
                 saved.manifest['held_out']['mae_mean'], saved.manifest['held_out']['pcc_mean'])
    measured = readers.read_any(infer.input)
    logging.info('Read %s: %d samples x %d features', infer.input, *measured.shape)
    x, report, found = map_input(measured, saved, infer)
    predicted = saved.predict(x)
    logging.info('Inferred %d target genes for %d samples', predicted.shape[1], len(x))
    checks, inside = sanity_checks(x, predicted, saved)
    summary = {'input': infer.input, 'samples': len(x), 'model': directory,
               'panel': infer.panel, 'kind': infer.model, **report,
               'targets': predicted.shape[1], **checks,
               'held_out': {k: saved.manifest['held_out'][k]
                            for k in ('samples', 'mae_mean', 'pcc_mean', 'passes')}}
    _write_outputs(output, measured, saved, x, found, predicted, inside, summary)
  logging.info('Landmarks found: %d of %d (%.1f%%)', report['landmarks']['found'],
               report['landmarks']['total'], 100 * report['landmarks']['fraction'])
  in_range = checks['in_training_range']
  logging.info('Inferred values inside the training range: %.1f%% on average per gene '
               '(held-out predictions %.1f%%, shuffled landmarks %.1f%%)', 100 * in_range['mean'],
               100 * in_range['held_out_mean'], 100 * in_range['shuffled_landmarks_mean'])
  structure = checks['correlation_structure']
  logging.info('Gene-gene correlations of %d inferred targets vs training: r = %s (held-out '
               'predictions %s, held-out truth %s, shuffled landmarks %s)', structure['genes'],
               *(_fmt(structure[key]) for key in ('r_inferred_vs_training', 'held_out_r_predicted',
                                                  'held_out_r_true', 'r_shuffled_landmarks')))
  logging.info('Wrote %s', output)
  return summary


def _fmt(value):
  return 'n/a' if value is None else f'{value:.3f}'
