"""Landmark selectors: every way of choosing k genes, behind one interface.

  select(name, context, k, seed) -> the k best gene symbols, best first

A selector is a function (context, k, seed) -> ranked symbols, registered in SELECTORS.
Most rank every gene once, so their k-selection is the first k of their ranking at any k;
those in K_SPECIFIC (concrete_ae, persist, peel_off) solve a new problem for every k. Those in
STOCHASTIC depend on the seed.

  deeplift_ae           the paper: DeepLIFT Rescale scores of the trained AutoEncoder's
                        encoder, probe scores -> gene scores (max over probes)
  gradient_x_input      the same, with gradient x (input - reference) attributions
  integrated_gradients  the same, with integrated gradients from the reference
  deeplift_stratified   deeplift_ae scored within each training study; genes by their rank
                        aggregated over the studies (selectors.stratified_aggregate)
  gradient_x_input_stratified   the same with gradient x input
  concrete_ae           Concrete Autoencoder (selection.concrete_selection) trained for this k
  persist               PERSIST (landmark.selection.persist): a learned hard-concrete gate per gene
                        before a reconstruction MLP, its sparsity price tuned to leave k open
  l1000                 the L1000 landmarks, in their listed order
  random                a uniform random permutation of the genes
  variance              most variable genes first
  pca_loadings          genes by the norm of their loadings on the top principal components
  peel_off              one central gene per cluster of correlated genes (LINCS-style)
  greedy_ridge          greedy forward selection: each step adds the gene that most lowers the
                        ridge loss of predicting every gene from the chosen ones (log2 units)
  greedy_ridge_standardised   the same with every gene scaled to unit sd, so that each gene's
                        fraction of variance explained counts alike
"""

import dataclasses
import functools
from typing import Optional, Sequence

from absl import logging
import ml_collections
import numpy as np
import pandas as pd
from scipy import stats
from sklearn import cluster
from sklearn import decomposition

from landmark import metrics
from landmark.attribution import attributions
from landmark.attribution import deeplift
from landmark.attribution import ranking
from landmark.errors import ConfigError
from landmark.selection import concrete_selection
from landmark.selection import greedy_ridge as greedy_ridge_lib
from landmark.selection import persist
from landmark.training import sharding

STRATIFIED_AGGREGATES = ('mean', 'median', 'trimmed_mean')
TRIMMED_FRACTION = 0.25   # trimmed_mean drops this fraction of the studies at either end


@dataclasses.dataclass
class TrainedEncoder:
  """The trained AutoEncoder as the attribution selectors need it (trained by the caller)."""

  layers: list              # encoder (W, b) pairs: `models.AutoEncoder.encoder_layers()`
  activation: str           # config.model.activation
  x: np.ndarray             # (samples, probes) training split scaled as the AE saw it: the
                            # samples scored and the source of the reference (config.deeplift)
  probes: np.ndarray        # feature IDs of x's columns
  annotation: pd.DataFrame  # `data.read_probe_annotation`: probes -> genes


@dataclasses.dataclass
class SelectionContext:
  """What the selectors choose from: one gene universe and its training data."""

  genes: np.ndarray         # the gene universe: symbols of `train`'s columns
  train: np.ndarray         # (samples, genes) float32 log2 quantile-normalised training split
  l1000: Sequence[str]      # L1000 landmark symbols
  config: ml_collections.ConfigDict   # the run's config (sections deeplift, selectors)
  encoder: Optional[TrainedEncoder] = None   # needed by the attribution selectors only
  studies: np.ndarray | None = None   # the study of each row of `train` (and of encoder.x):
                                      # needed by greedy_ridge and the stratified selectors

  def __post_init__(self):
    self.genes = np.asarray(self.genes, dtype=str)
    if self.train.shape[1] != len(self.genes):
      raise ValueError(f'{self.train.shape[1]} training columns for {len(self.genes)} genes')
    if self.studies is not None and len(self.studies) != len(self.train):
      raise ValueError(f'{len(self.studies)} study labels for {len(self.train)} training rows')
    repeated = pd.Index(self.genes)[pd.Index(self.genes).duplicated()]
    if len(repeated):
      raise ValueError(f'The gene universe repeats {len(repeated)} symbols, e.g. '
                       f'{list(repeated[:3])}; each gene must be one column')


def check_config(settings: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a `config.selectors` field of greedy_ridge, the stratified
  selectors or persist that cannot work, before any of their computation."""
  if settings.stratified_aggregate not in STRATIFIED_AGGREGATES:
    raise ConfigError('config.selectors.stratified_aggregate', f'must be one of '
                      f'{STRATIFIED_AGGREGATES}, got {settings.stratified_aggregate!r}')
  alphas = tuple(settings.greedy_ridge_alphas)
  if not alphas or not all(isinstance(a, (int, float)) and 0 < a < np.inf for a in alphas):
    raise ConfigError('config.selectors.greedy_ridge_alphas', 'needs one or more positive, '
                      f'finite relative ridge penalties, got {alphas}')
  if settings.greedy_ridge_validation_k < 1:
    raise ConfigError('config.selectors.greedy_ridge_validation_k',
                      f'must be at least 1, got {settings.greedy_ridge_validation_k!r}')
  if settings.greedy_ridge_dtype not in greedy_ridge_lib.DTYPES:
    raise ConfigError('config.selectors.greedy_ridge_dtype', f'must be one of '
                      f'{greedy_ridge_lib.DTYPES}, got {settings.greedy_ridge_dtype!r}')
  if settings.greedy_ridge_validation_folds < 2:
    raise ConfigError('config.selectors.greedy_ridge_validation_folds',
                      f'must be at least 2, got {settings.greedy_ridge_validation_folds!r}')
  persist.check_config(settings.persist)


def _trained_encoder(method, context):
  if context.encoder is None:
    raise ValueError(f'Selector {method!r} needs a trained AutoEncoder (context.encoder)')
  return context.encoder


def _attribution_order(method, context, x, reference):
  """The universe's genes ranked by `method`'s mean attribution to the bottleneck over the
  rows `x` of encoder.x (best first)."""
  encoder, config = context.encoder, context.config
  scores = attributions.score_inputs(
      method, encoder.layers, encoder.activation, x, reference,
      config.deeplift.aggregate, config.deeplift.max_chunk_mb,
      steps=config.selectors.ig_steps, rule=config.selectors.ig_rule, num_samples=len(x))
  ranked = ranking.rank_genes(scores, encoder.probes, encoder.annotation).symbol
  return ranked[ranked.isin(set(context.genes))].tolist()


def _attribution_ranking(method, context, k, seed):
  """Genes ranked by `method`'s mean attribution to the bottleneck, over the scored samples."""
  del k, seed
  x = _trained_encoder(method, context).x
  return _attribution_order(method, context, x,
                            deeplift.make_reference(context.config.deeplift.reference, x))


def aggregate_ranks(ranks: np.ndarray, how: str) -> np.ndarray:
  """Per gene (column), its ranks over the studies (rows) reduced to one number.

  'mean'; 'median'; 'trimmed_mean': the mean after dropping the TRIMMED_FRACTION best and
  worst studies of each gene (none below 4 studies). Lower is better, as for ranks.
  """
  if how == 'mean':
    return np.mean(ranks, axis=0)
  if how == 'median':
    return np.median(ranks, axis=0)
  if how == 'trimmed_mean':
    return stats.trim_mean(ranks, TRIMMED_FRACTION, axis=0)
  raise ValueError(f'Unknown rank aggregate {how!r}; known: {STRATIFIED_AGGREGATES}')


def _stratified_ranking(method, context, k, seed):
  """Genes by their `method` attribution rank within each training study, aggregated.

  Each training study's rows of encoder.x are scored separately (the reference is still
  that of all training rows, as for the unstratified selector), the genes ranked within
  each study (1 = most important there), and each gene's ranks over the studies reduced by
  `selectors.stratified_aggregate` (`aggregate_ranks`). A pooled mean attribution can be
  won by a gene that is huge in one large or extreme study and idle elsewhere; an
  aggregate rank is high only for a gene that matters in many studies. Ties by symbol.
  """
  del k, seed
  check_config(context.config.selectors)
  x = _trained_encoder(method, context).x
  if context.studies is None or len(context.studies) != len(x):
    raise ValueError(f'Selector {method}_stratified needs the study of each encoder.x row '
                     '(context.studies)')
  reference = deeplift.make_reference(context.config.deeplift.reference, x)
  studies = np.asarray(context.studies)
  orders = [_attribution_order(method, context, x[studies == study], reference)
            for study in np.unique(studies)]
  genes = np.array(sorted(orders[0]))
  ranks = np.stack([pd.Series(np.arange(1, len(order) + 1), index=order)[genes].to_numpy()
                    for order in orders])
  aggregate = aggregate_ranks(ranks, context.config.selectors.stratified_aggregate)
  logging.info('%s_stratified: %s rank over %d training studies', method,
               context.config.selectors.stratified_aggregate, len(orders))
  return list(genes[np.lexsort((genes, aggregate))])


def concrete_ae(context: SelectionContext, k: int, seed: int) -> list[str]:
  """The k genes a Concrete Autoencoder learns to keep, ranked by selection probability."""
  model = concrete_selection.fit(context.train, k, context.config.selectors.concrete, seed)
  return list(context.genes[concrete_selection.selected_inputs(model)])


def persist_gates(context: SelectionContext, k: int, seed: int) -> list[str]:
  """The k genes whose PERSIST gates stay open at the tuned sparsity price, best first."""
  selection = persist.select(context.train, k, context.config.selectors.persist, seed)
  return list(context.genes[selection.columns])


def l1000(context: SelectionContext, k: int, seed: int) -> list[str]:
  """The L1000 landmarks inside the gene universe, in their listed order."""
  del k, seed
  universe = set(context.genes)
  return list(dict.fromkeys(g for g in context.l1000 if g in universe))


def random_genes(context: SelectionContext, k: int, seed: int) -> list[str]:
  """A uniform random permutation of the genes: every prefix is a uniform random subset."""
  del k
  return list(np.random.default_rng(seed).permutation(context.genes))


def variance(context: SelectionContext, k: int, seed: int) -> list[str]:
  """Genes by training-set variance, highest first (ties by universe order)."""
  del k, seed
  return list(context.genes[np.argsort(-context.train.var(axis=0), kind='stable')])


def pca_loadings(context: SelectionContext, k: int, seed: int) -> list[str]:
  """Genes by the norm of their loadings on the top principal components, highest first.

  PCA of the gene-centred training matrix (log2 units). A gene's loading on component c
  is its eigenvector coefficient times sqrt(variance of c), so the squared norm over the
  top components is the part of the gene's variance they capture. The top components are
  the first `selectors.pca_components`, or if that is 0 the fewest that together explain
  more than the fraction `selectors.pca_variance` (in (0, 1)) of the total variance.
  """
  del k, seed
  settings = context.config.selectors
  n_components = settings.pca_components or settings.pca_variance
  pca = decomposition.PCA(n_components=n_components, svd_solver='full').fit(context.train)
  loadings = pca.components_.T * np.sqrt(pca.explained_variance_)
  logging.info('pca_loadings: %d components explain %.3f of the variance', pca.n_components_,
               pca.explained_variance_ratio_.sum())
  return list(context.genes[np.argsort(-np.linalg.norm(loadings, axis=1), kind='stable')])


def peel_off(context: SelectionContext, k: int, seed: int) -> list[str]:
  """One gene per cluster of co-expressed genes, largest cluster first (LINCS-style).

  Genes are clustered by k-means (`selectors.peel_off_restarts` initialisations) on their
  centred, unit-norm training profiles, where squared Euclidean distance is 2 (1 - Pearson
  r). Each cluster contributes its most central gene: the highest mean correlation with
  the other members. Clusters are ranked by size, ties by that mean correlation.
  """
  profiles = metrics.standardise(context.train).T
  labels = cluster.KMeans(n_clusters=k, n_init=context.config.selectors.peel_off_restarts,
                          random_state=seed).fit_predict(profiles)
  centres = []
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    correlation = profiles[members] @ profiles[members].T
    centrality = (correlation.sum(axis=1) - np.diag(correlation)) / max(len(members) - 1, 1)
    best = np.argmax(centrality)
    centres.append((-len(members), -centrality[best], members[best]))
  return [context.genes[column] for _, _, column in sorted(centres)]


def greedy_ridge(context: SelectionContext, k: int, seed: int,
                 standardise: bool = False) -> list[str]:
  """Greedy forward selection under ridge on per-study-centred training data
  (landmark.selection.greedy_ridge, in JAX: sample or gene space by shape).

  Centring each study on its own mean keeps study offsets (batch effects) from passing for
  structure worth a landmark. In log2 units (`greedy_ridge`) the loss is dominated by the
  most variable genes; `standardise` (`greedy_ridge_standardised`) scales every gene to unit
  sd first, so each gene's fraction of variance explained counts alike, as in the per-gene
  PCC the panels are judged by. The penalty is `selectors.greedy_ridge_alphas` times the
  mean squared gene norm of that matrix, one for all genes as in the evaluation's ridge
  model. Given several, the one chosen by validation inside the training studies, holding
  out `selectors.greedy_ridge_validation_folds` groups of studies in turn, at
  `selectors.greedy_ridge_validation_k` genes (or half the universe if fewer), not at k: the
  ranking is one path whose prefixes are the selections at every k.
  """
  del seed
  return [str(g) for g in greedy_ridge_panel(context, k, standardise)['symbol']]


def greedy_ridge_panel(context: SelectionContext, k: int, standardise: bool) -> pd.DataFrame:
  """`greedy_ridge`'s k genes with each one's gain (the fraction of the training data's
  sum of squares its step explained, in the units selected in) and the relative penalty
  used (`.attrs['alpha']`)."""
  settings = context.config.selectors
  check_config(settings)
  mesh = sharding.device_mesh(context.config.mesh.devices)
  moments = greedy_ridge_lib.in_memory(context.train, context.studies,
                                       settings.greedy_ridge_validation_folds,
                                       dtype=settings.greedy_ridge_dtype, mesh=mesh)
  return greedy_ridge_lib.panel_table(moments, context.genes, k, settings, standardise, mesh)


GREEDY_RIDGE = {'greedy_ridge': False, 'greedy_ridge_standardised': True}   # -> standardise
SELECTORS = {
    'deeplift_ae': functools.partial(_attribution_ranking, 'deeplift'),
    'gradient_x_input': functools.partial(_attribution_ranking, 'gradient_x_input'),
    'integrated_gradients': functools.partial(_attribution_ranking, 'integrated_gradients'),
    'concrete_ae': concrete_ae,
    'persist': persist_gates,
    'l1000': l1000,
    'random': random_genes,
    'variance': variance,
    'pca_loadings': pca_loadings,
    'peel_off': peel_off,
    **{name: functools.partial(greedy_ridge, standardise=standardise)
       for name, standardise in GREEDY_RIDGE.items()},
    'deeplift_stratified': functools.partial(_stratified_ranking, 'deeplift'),
    'gradient_x_input_stratified': functools.partial(_stratified_ranking, 'gradient_x_input'),
}
STOCHASTIC = frozenset({'concrete_ae', 'persist', 'random', 'peel_off'})
NEEDS_ENCODER = frozenset({'deeplift_ae', 'gradient_x_input', 'integrated_gradients',
                           'deeplift_stratified', 'gradient_x_input_stratified'})
K_SPECIFIC = frozenset({'concrete_ae', 'persist', 'peel_off'})


def select(name: str, context: SelectionContext, k: int, seed: int = 0) -> list[str]:
  """The k best genes of selector `name`, best first (fewer only where it has fewer: l1000)."""
  if name not in SELECTORS:
    raise ValueError(f'Unknown selector {name!r}; known: {sorted(SELECTORS)}')
  if not 1 <= k <= len(context.genes):
    raise ValueError(f'Selector {name!r}: k must be in [1, {len(context.genes)}], got {k}')
  chosen = [str(g) for g in SELECTORS[name](context, k, seed)[:k]]
  if len(set(chosen)) < len(chosen) or not set(chosen) <= set(context.genes):
    raise ValueError(f'Selector {name!r} returned repeated genes or genes outside the universe')
  logging.info('Selector %s (k=%d, seed=%d): %d genes, first %s', name, k, seed, len(chosen),
               chosen[:5])
  return chosen
