"""From per-feature importance scores to a gene ranking, the landmark set, and its L1000 overlap.

A probe annotated with several genes ('A /// B') counts for each of them; a gene's score is
the maximum over its probes (method.md section 3). Probes without a gene symbol are dropped.
"""

import os
from typing import Any, Iterable, Sequence

from absl import logging
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from scipy import stats

from landmark import fileio
from landmark.data import readers
from landmark.errors import NumericalError

L1000_COLUMNS = ('probe', 'entrez', 'symbol', 'title')
RANKING_COLUMNS = ('rank', 'symbol', 'entrez', 'probes', 'score')
SEPARATOR = readers.GENE_SEPARATOR


def _split(field):
  return [item.strip() for item in field.split(SEPARATOR) if item.strip()]


def _probe_genes(annotation):
  """(probe, symbol) pairs, one per gene of each probe; probes without a symbol drop out."""
  pairs = annotation[['probe']].assign(symbol=annotation.symbol.map(_split)).explode('symbol')
  return pairs.dropna(subset=['symbol']).reset_index(drop=True)


def _gene_entrez(annotation):
  """Symbol -> Entrez ID(s), from single-gene probes only.

  In multi-gene probes the symbol and Entrez lists are sorted separately, so they do not
  pair up; genes seen only there get no Entrez ID.
  """
  single = annotation[annotation.symbol.map(lambda field: len(_split(field)) == 1)]
  ids = single.assign(entrez=single.entrez.map(_split)).explode('entrez').dropna()
  return ids.groupby('symbol', sort=False).entrez.agg(
      lambda x: f' {SEPARATOR} '.join(dict.fromkeys(x)))


def rank_genes(probe_scores: ArrayLike, probes: ArrayLike,
               annotation: pd.DataFrame) -> pd.DataFrame:
  """Every annotated gene ranked by its best probe's score (rank 1 = highest score).

  `probes` are the scored feature IDs: HG-U133A probe IDs, or gene symbols when the data
  were collapsed to genes (the `probes` column then lists the annotation's probes of that
  gene). Ties are broken by symbol. Columns: rank, symbol, entrez, probes, score.
  """
  scores = np.asarray(probe_scores, dtype=np.float64)
  features = np.asarray(probes, dtype=str)
  source = annotation.attrs.get('source', 'probe annotation')
  if scores.shape != features.shape:
    raise ValueError(f'{scores.shape} scores for {features.shape} feature IDs')
  if not np.all(np.isfinite(scores)):
    raise NumericalError('scores', f'{np.sum(~np.isfinite(scores))} of {scores.size} importance '
                         'scores are not finite')
  if scores.size > 1 and np.ptp(scores) == 0:
    raise NumericalError('scores', f'all {scores.size} importance scores equal {scores[0]:.6g}: '
                         'they rank nothing (an untrained or saturated model?)')
  pairs = _probe_genes(annotation)
  scored = pd.DataFrame({'feature': features, 'score': scores})
  if scored.feature.isin(annotation.probe).any():
    hits = scored.merge(pairs, left_on='feature', right_on='probe')
    hits = hits.sort_values(['score', 'probe'], ascending=[False, True])
    genes = hits.groupby('symbol').agg(score=('score', 'max'), probes=('probe', ','.join))
    unmatched = ~scored.feature.isin(hits.probe)
  elif scored.feature.isin(pairs.symbol).any():
    genes = scored.groupby('feature').agg(score=('score', 'max'))
    genes['probes'] = genes.index.map(pairs.groupby('symbol').probe.agg(','.join)).fillna('')
    unmatched = ~scored.feature.isin(pairs.symbol)
  else:
    raise ValueError(f'{source}: none of the {len(features)} feature IDs (e.g. '
                     f'{", ".join(features[:3])}) is a probe or gene symbol there')
  if unmatched.any():
    logging.info('rank_genes: %d of %d features have no gene symbol in %s',
                 unmatched.sum(), len(features), source)
  genes.index.name = 'symbol'
  genes = genes.reset_index().sort_values(['score', 'symbol'], ascending=[False, True])
  genes['entrez'] = genes.symbol.map(_gene_entrez(annotation)).fillna('')
  genes['rank'] = np.arange(1, len(genes) + 1)
  return genes[list(RANKING_COLUMNS)].reset_index(drop=True)


def consensus_ranking(rankings: Sequence[pd.DataFrame]) -> pd.DataFrame:
  """Genes ranked by their mean rank over several rankings (one per AE seed).

  Ties are broken by symbol. Columns: rank, symbol, entrez, probes, mean_rank, rank_sd
  (sd over the rankings; 0 for a single one) and rank_<i> for each input ranking.
  """
  symbols = set(rankings[0].symbol)
  if any(set(r.symbol) != symbols for r in rankings[1:]):
    raise ValueError('consensus_ranking: the rankings do not rank the same genes')
  table = rankings[0].set_index('symbol')[['entrez', 'probes']]
  ranks = pd.concat([r.set_index('symbol')['rank'].rename(f'rank_{i}')
                     for i, r in enumerate(rankings)], axis=1).reindex(table.index)
  table = table.assign(mean_rank=ranks.mean(axis=1),
                       rank_sd=ranks.std(axis=1, ddof=1).fillna(0.0), **ranks)
  table = table.reset_index().sort_values(['mean_rank', 'symbol'])
  table.insert(0, 'rank', np.arange(1, len(table) + 1))
  return table.reset_index(drop=True)


def select_landmarks(ranking: pd.DataFrame, k: int = 943) -> list[str]:
  """The symbols of the k best-ranked genes."""
  if k > len(ranking):
    raise ValueError(f'Cannot select {k} landmarks from {len(ranking)} ranked genes')
  return ranking.sort_values('rank').symbol.head(k).tolist()


def l1000_overlap(landmark_symbols: Iterable[str], l1000_table_path: str | os.PathLike,
                  ranking: pd.DataFrame) -> dict[str, Any]:
  """How many landmarks are L1000 landmarks, and whether that is more than chance.

  An L1000 gene is matched to a ranked gene by symbol, or else by Entrez ID (symbols were
  renamed between annotation releases). The universe is the ranked genes; p is the
  hypergeometric probability of an overlap at least this large for a random landmark set.
  """
  table = readers.read_string_table(l1000_table_path, L1000_COLUMNS, 'L1000 landmark table')
  by_entrez = {entrez: symbol for symbol, field in zip(ranking.symbol, ranking.entrez)
               for entrez in _split(field)}
  universe = set(ranking.symbol)
  l1000 = {symbol if symbol in universe else by_entrez.get(entrez)
           for symbol, entrez in zip(table.symbol, table.entrez)} - {None}
  landmarks = set(landmark_symbols)
  if not landmarks <= universe:
    raise ValueError(f'{len(landmarks - universe)} landmark symbols are not in the ranking')
  overlap = sorted(landmarks & l1000)
  n_universe, n_l1000, n_landmarks = len(universe), len(l1000), len(landmarks)
  return {
      'count': len(overlap),
      'symbols': overlap,
      'n_landmarks': n_landmarks,
      'n_l1000': len(table),
      'n_l1000_in_universe': n_l1000,
      'n_universe': n_universe,
      'expected': n_landmarks * n_l1000 / n_universe,
      'p_value': float(stats.hypergeom.sf(len(overlap) - 1, n_universe, n_l1000, n_landmarks)),
  }


def ranked_gene_count(features: ArrayLike, annotation: pd.DataFrame) -> int:
  """How many genes `rank_genes` would rank for these feature IDs (probes or symbols)."""
  pairs = _probe_genes(annotation)
  features = pd.Index(np.asarray(features, dtype=str))
  by_probe = pairs[pairs.probe.isin(features)].symbol.nunique()
  return int(by_probe) if by_probe else int(features.isin(pairs.symbol).sum())


def assay_panel(ranking: pd.DataFrame, k: int, l1000_table_path: str) -> pd.DataFrame:
  """The top-k genes of `ranking` as an assay-ready panel.

  Columns: rank, symbol, entrez, probes (the HG-U133A probe sets measuring the gene),
  in_l1000 (L1000 also measures it, matched by symbol or Entrez ID) and
  shares_probe_with (panel genes measured by one of the same probe sets: a multi-gene probe
  set cannot tell them apart, so an assay needs one reagent for them, or two specific ones).
  """
  panel = ranking.sort_values('rank').head(k)[['rank', 'symbol', 'entrez', 'probes']].copy()
  l1000 = readers.read_string_table(l1000_table_path, L1000_COLUMNS, 'L1000 landmark table')
  l1000_entrez = {e for field in l1000.entrez for e in _split(field)}
  panel['in_l1000'] = [symbol in set(l1000.symbol) or any(e in l1000_entrez for e in _split(ids))
                       for symbol, ids in zip(panel.symbol, panel.entrez)]
  genes_of_probe = {}
  for symbol, probes in zip(panel.symbol, panel.probes):
    for probe in filter(None, probes.split(',')):
      genes_of_probe.setdefault(probe, []).append(symbol)
  panel['shares_probe_with'] = [
      ','.join(sorted({g for probe in filter(None, probes.split(','))
                       for g in genes_of_probe[probe]} - {symbol}))
      for symbol, probes in zip(panel.symbol, panel.probes)]
  return panel.reset_index(drop=True)


def write_gmt(path: str | os.PathLike, panels: dict[str, list[str]], description: str) -> None:
  """Writes gene panels as a GMT file (name, description, genes), e.g. for enrichment tools."""
  fileio.write_text(path, ''.join(f'{name}\t{description}\t' + '\t'.join(genes) + '\n'
                                  for name, genes in panels.items()))


def write_landmarks(path: str | os.PathLike, ranking: pd.DataFrame) -> None:
  """Writes the full gene ranking as TSV (the paper's Additional file 1)."""
  fileio.write_table(path, ranking, index=False)


def read_landmarks(path: str | os.PathLike) -> pd.DataFrame:
  """Reads a ranking written by `write_landmarks`: text columns as written ('' stays '')."""
  text = {'symbol': str, 'entrez': str, 'probes': str}
  return pd.read_csv(path, sep='\t', dtype=text, keep_default_na=False, na_values={})
