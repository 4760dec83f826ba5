"""Landmark selectors: every way of choosing k genes, behind one interface.

  select(name, context, k, seed) -> the k best gene symbols, best first

A selector is a function (context, k, seed) -> ranked symbols, registered in SELECTORS.
Most rank every gene once, so their k-selection is the first k of their ranking at any k;
those in K_SPECIFIC (concrete_ae, peel_off) solve a new problem for every k. Those in
STOCHASTIC depend on the seed.

  deeplift_ae           the paper: DeepLIFT Rescale scores of the trained AutoEncoder's
                        encoder, probe scores -> gene scores (max over probes)
  gradient_x_input      the same, with gradient x (input - reference) attributions
  integrated_gradients  the same, with integrated gradients from the reference
  concrete_ae           Concrete Autoencoder (landmark.concrete) trained for this k
  l1000                 the L1000 landmarks, in their listed order
  random                a uniform random permutation of the genes
  variance              most variable genes first
  pca_loadings          genes by the norm of their loadings on the top principal components
  peel_off              one central gene per cluster of correlated genes (LINCS-style)
"""

import dataclasses
import functools
from typing import Optional, Sequence

from absl import logging
import ml_collections
import numpy as np
import pandas as pd
from sklearn import cluster
from sklearn import decomposition

from landmark import attributions
from landmark import concrete
from landmark import deeplift
from landmark import evaluate
from landmark import ranking


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

  def __post_init__(self):
    self.genes = np.asarray(self.genes, dtype=str)
    if self.train.shape[1] != len(self.genes):
      raise ValueError(f'{self.train.shape[1]} training columns for {len(self.genes)} genes')
    repeated = pd.Index(self.genes)[pd.Index(self.genes).duplicated()]
    if len(repeated):
      raise ValueError(f'The gene universe repeats {len(repeated)} symbols, e.g. '
                       f'{list(repeated[:3])}; each gene must be one column')


def _attribution_ranking(method, context, k, seed):
  """Genes ranked by `method`'s mean attribution to the bottleneck, over the scored samples."""
  del k, seed
  encoder = context.encoder
  if encoder is None:
    raise ValueError(f'Selector {method!r} needs a trained AutoEncoder (context.encoder)')
  config = context.config
  scores = attributions.score_inputs(
      method, encoder.layers, encoder.activation, encoder.x,
      deeplift.make_reference(config.deeplift.reference, encoder.x),
      config.deeplift.aggregate, config.deeplift.max_chunk_mb,
      steps=config.selectors.ig_steps, rule=config.selectors.ig_rule, num_samples=len(encoder.x))
  ranked = ranking.rank_genes(scores, encoder.probes, encoder.annotation).symbol
  return ranked[ranked.isin(set(context.genes))].tolist()


def concrete_ae(context, k, seed):
  """The k genes a Concrete Autoencoder learns to keep, ranked by selection probability."""
  model = concrete.fit(context.train, k, context.config.selectors.concrete, seed)
  return list(context.genes[concrete.selected_inputs(model)])


def l1000(context, k, seed):
  """The L1000 landmarks inside the gene universe, in their listed order."""
  del k, seed
  universe = set(context.genes)
  return list(dict.fromkeys(g for g in context.l1000 if g in universe))


def random_genes(context, k, seed):
  """A uniform random permutation of the genes: every prefix is a uniform random subset."""
  del k
  return list(np.random.default_rng(seed).permutation(context.genes))


def variance(context, k, seed):
  """Genes by training-set variance, highest first (ties by universe order)."""
  del k, seed
  return list(context.genes[np.argsort(-context.train.var(axis=0), kind='stable')])


def pca_loadings(context, k, seed):
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


def peel_off(context, k, seed):
  """One gene per cluster of co-expressed genes, largest cluster first (LINCS-style).

  Genes are clustered by k-means (`selectors.peel_off_restarts` initialisations) on their
  centred, unit-norm training profiles, where squared Euclidean distance is 2 (1 - Pearson
  r). Each cluster contributes its most central gene: the highest mean correlation with
  the other members. Clusters are ranked by size, ties by that mean correlation.
  """
  profiles = evaluate._standardise(context.train).T  # pylint: disable=protected-access
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


SELECTORS = {
    'deeplift_ae': functools.partial(_attribution_ranking, 'deeplift'),
    'gradient_x_input': functools.partial(_attribution_ranking, 'gradient_x_input'),
    'integrated_gradients': functools.partial(_attribution_ranking, 'integrated_gradients'),
    'concrete_ae': concrete_ae,
    'l1000': l1000,
    'random': random_genes,
    'variance': variance,
    'pca_loadings': pca_loadings,
    'peel_off': peel_off,
}
STOCHASTIC = frozenset({'concrete_ae', 'random', 'peel_off'})
K_SPECIFIC = frozenset({'concrete_ae', 'peel_off'})


def select(name, context, k, seed=0):
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
