"""Landmark panels and how well each infers the rest of the transcriptome (method.md §4-5).

A panel is a list of gene symbols. Every panel is judged the same way: an inference model
(linear regression, D-GEX, KNN) is trained on the training split to predict target genes
from the panel's genes, and scored per target gene on the held-out test split.
"""

import dataclasses
import functools
import os
import time
from typing import Callable, Iterable, Mapping, Sequence

from absl import logging
import ml_collections
import numpy as np
import pandas as pd

from landmark import fileio
from landmark import metrics
from landmark import progress
from landmark.data import preprocess
from landmark.evaluation import evaluate
from landmark.inference import regression
from landmark.selection import selectors


@dataclasses.dataclass
class GeneSplits:
  """Gene-level (probe-collapsed) train/val/test matrices on one gene universe."""

  genes: np.ndarray
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  test_studies: np.ndarray   # the study of each test row (for per-study centring)
  train_studies: np.ndarray | None = None   # the study of each training row (selectors)

  def columns(self, symbols: Iterable[str]) -> np.ndarray:
    """Column indices of `symbols` in these matrices, in the order given."""
    position = {g: i for i, g in enumerate(self.genes)}
    return np.array([position[s] for s in symbols])


def gene_splits(splits: preprocess.Splits, annotation: pd.DataFrame,
                universe: Sequence[str] | None) -> GeneSplits:
  """Collapses probe-level Splits to the genes of `universe` present in the data."""
  collapsed = [preprocess.collapse_to_genes(c, annotation, universe) for _, c in splits.items()]
  genes = collapsed[0].features
  return GeneSplits(genes, *(c.values for c in collapsed), splits.test.meta['study'].to_numpy(),
                    splits.train.meta['study'].to_numpy())


def read_symbols(path: str | os.PathLike, column: str = 'symbol') -> np.ndarray:
  """Gene symbols from a TSV with a `symbol` column (D-GEX and L1000 lists)."""
  return pd.read_csv(path, sep='\t', dtype=str)[column].dropna().to_numpy()


def dgex_universe(data_config: ml_collections.ConfigDict) -> list[str]:
  """D-GEX's 10,463 genes (landmarks then targets), each once.

  445 symbols appear in both of D-GEX's lists (under different probes); a repeated column
  would be its own perfect predictor and distort the permutation test.
  """
  symbols = np.concatenate([read_symbols(data_config.dgex_landmarks),
                            read_symbols(data_config.dgex_targets)])
  return list(dict.fromkeys(symbols))


def reference_panels(data: GeneSplits, ranked_symbols: Iterable[str],
                     l1000_symbols: Sequence[str], k: int, n_random: int,
                     seed: int, ranked_name: str = 'deeplift') -> dict[str, list[str]]:
  """The panels every run compares, all of size min(k, L1000 genes in the universe).

  `ranked_name` (the run's method, 'deeplift' for the paper's): the top-k ranked genes; the others are `selectors.select`'s: `l1000`: L1000's
  landmarks; `variance`: the k most variable training genes; `random_i`: the uniform random
  draw of seed `seed + i` (the noise floor).
  """
  # These three selectors read neither a config nor an encoder.
  context = selectors.SelectionContext(data.genes, data.train, l1000_symbols, config=None,
                                       studies=data.train_studies)
  l1000 = selectors.select('l1000', context, min(k, len(data.genes)))
  k = len(l1000)
  universe = set(data.genes)
  panels = {ranked_name: [g for g in ranked_symbols if g in universe][:k], 'l1000': l1000,
            'variance': selectors.select('variance', context, k)}
  for i in range(n_random):
    panels[f'random_{i}'] = selectors.select('random', context, k, seed + i)
  return panels


def random_panel_count(evaluate_config: ml_collections.ConfigDict, kind: str) -> int:
  """How many random panels model `kind` is scored on: `random_sets` for the closed-form
  linear models, `random_sets_nonlinear` for those that train (each panel a full fit)."""
  if kind in ('linear', 'ridge'):
    return evaluate_config.random_sets
  return evaluate_config.random_sets_nonlinear


def common_targets(data: GeneSplits, panels: Mapping[str, Iterable[str]]) -> list[str]:
  """Genes in none of the non-random panels: the targets every panel is judged on."""
  fixed = set().union(*(set(p) for name, p in panels.items() if not name.startswith('random_')))
  return [g for g in data.genes if g not in fixed]


def evaluate_panel(
    kind: str, config: ml_collections.ConfigDict, data: GeneSplits, panel: Sequence[str],
    targets: Iterable[str], seed: int, permutation: bool = True,
    on_fit: Callable[[regression.LinearModel | regression.KNNModel | regression.DGEXModel,
                      list[str], pd.DataFrame], None] | None = None,
    workdir: str | None = None) -> pd.DataFrame:
  """`metrics.gene_metrics` (indexed by target) of `kind` inferring `targets` from `panel`.

  `on_fit(model, targets, metrics)`, if given, receives the fitted model with the targets
  it infers and their metrics (the pipeline saves it for `--mode=infer`); a D-GEX fit
  writes its TensorBoard curves into `workdir`, if given.
  """
  targets = [t for t in targets if t not in set(panel)]
  x, y = data.columns(panel), data.columns(targets)
  model = regression.fit_inference_model(kind, config, data.train[:, x], data.train[:, y],
                                         data.val[:, x], data.val[:, y], seed=seed,
                                         workdir=workdir)
  predicted = np.asarray(model.predict(data.test[:, x]))
  accuracy = metrics.gene_metrics(data.test[:, y], predicted, targets, data.test_studies,
                                  config.evaluate.block_size, permutation)
  if on_fit is not None:
    on_fit(model, targets, accuracy)
  return accuracy


def evaluate_panels(config: ml_collections.ConfigDict, data: GeneSplits,
                    panels: Mapping[str, Sequence[str]], targets: Sequence[str],
                    kinds: Iterable[str], n_random_by_kind: Mapping[str, int], seed: int,
                    on_fit: Callable[..., None] | None = None,
                    curves_dir: str | None = None) -> dict[tuple[str, str], pd.DataFrame]:
  """Per-gene metrics of every (model kind, panel); random panels capped per kind.

  Random panels are scored on the common targets minus their own genes: the mean over
  that random subset of the targets estimates the mean over all of them without bias.
  `on_fit(kind, name, panel, model, targets, metrics)`, if given, receives each model
  fitted to a named (not random) panel; with a `curves_dir`, each such fit that trains
  (D-GEX) writes its TensorBoard curves into `<curves_dir>/<panel>_<kind>`.
  """
  results = {}
  fits = [(kind, name, panel) for kind in kinds for name, panel in panels.items()
          if not name.startswith('random_') or int(name.split('_')[1]) < n_random_by_kind[kind]]
  started = time.monotonic()
  for done, (kind, name, panel) in enumerate(fits):
    what = (f'random panel {int(name.split("_")[1]) + 1} of {n_random_by_kind[kind]}'
            if name.startswith('random_') else f'panel {name}')
    logging.info('Fit %d of %d: inferring %d targets from %s with %s%s', done + 1, len(fits),
                 len(targets), what, kind, progress.eta(started, done, len(fits)))
    named = not name.startswith('random_')
    keep = functools.partial(on_fit, kind, name, panel) if named and on_fit else None
    curves = os.path.join(curves_dir, f'{name}_{kind}') if named and curves_dir else None
    results[kind, name] = evaluate_panel(kind, config, data, panel, targets, seed, on_fit=keep,
                                         workdir=curves)
  return results


def summarize(results: Mapping[tuple[str, str], pd.DataFrame], alpha: float) -> pd.DataFrame:
  """One row per (model, panel): MAE and PCC, permutation-test failures, z against random.

  `*_z_random` is how many standard deviations of the random panels' means a panel's mean
  lies from theirs (positive = higher); empty where a model has fewer than 3 random panels.
  """
  rows = []
  for (kind, name), frame in results.items():
    rows.append({'model': kind, 'panel': name, 'targets': len(frame),
                 'mae_mean': frame['mae'].mean(), 'mae_median': frame['mae'].median(),
                 'mae_centred_mean': frame['mae_centred'].mean(),
                 'pcc_mean': frame['pcc'].mean(), 'pcc_median': frame['pcc'].median(),
                 'perm_fail': int((frame['p_value'] >= alpha).sum())})
  summary = pd.DataFrame(rows)
  for kind, group in summary.groupby('model'):
    random = group[group['panel'].str.startswith('random_')]
    if len(random) < 3:
      continue
    for metric in ('mae_mean', 'pcc_mean'):
      z = (group[metric] - random[metric].mean()) / random[metric].std(ddof=1)
      summary.loc[group.index, metric.replace('_mean', '_z_random')] = z
  return summary


def fixed_pairs(method: str = 'deeplift') -> tuple[tuple[str, str], ...]:
  """The pairs every run compares: its own panel (`method`'s) against L1000 and top-variance
  genes, and L1000 against top-variance genes."""
  return ((method, 'l1000'), (method, 'variance'), ('l1000', 'variance'))


def compare_panels(results: Mapping[tuple[str, str], pd.DataFrame], kinds: Iterable[str],
                   alpha: float, workdir: str | os.PathLike,
                   method: str = 'deeplift') -> pd.DataFrame:
  """Paired tests and noise-calibrated gaps between the fixed panels (`fixed_pairs` of the
  run's `method`; and of a selector's panel, `config.selector`, against L1000), per model.

  Each gap is set beside the same gap between random panels of equal size (z-score and
  empirical p from `evaluate.calibrated_gap`). Writes the paper's Fig. 3 for the run's panel
  vs L1000 as `fig3_<model>.png` and the permutation-test failures as
  `perm_failures_<model>.tsv`.
  """
  rows = []
  pairs = fixed_pairs(method)
  for kind in kinds:
    randoms = [frame for (k, name), frame in results.items()
               if k == kind and name.startswith('random_')]
    fixed = {name for pair in pairs for name in pair}
    chosen = [(name, 'l1000') for k, name in results if k == kind and name not in fixed
              and not name.startswith(('random_', 'deeplift_seed_'))]
    for a, b in (*pairs, *chosen):
      summary, failing = evaluate.compare_landmark_sets(results[kind, a], results[kind, b],
                                                        (a, b), alpha)
      common = results[kind, a].index.intersection(results[kind, b].index, sort=False)
      for _, row in summary.iterrows():
        row, metric = {'model': kind, **row.to_dict()}, row['metric']
        if len(randoms) >= 3:
          gap = evaluate.calibrated_gap(results[kind, a].loc[common, metric],
                                        results[kind, b].loc[common, metric],
                                        [r[metric].to_numpy() for r in randoms])
          row.update({'gap': gap['gap'], 'null_mean': gap['null_mean'], 'null_sd': gap['null_sd'],
                      'null_z': gap['z'], 'null_p_value': gap['p_value'],
                      'n_random_panels': gap['n_random_sets']})
        rows.append(row)
      if (a, b) == pairs[0]:
        evaluate.plot_comparison(f'{workdir}/fig3_{kind}.png', results[kind, a],
                                 results[kind, b], (a, b), kind)
        fileio.write_table(f'{workdir}/perm_failures_{kind}.tsv', failing, index=False)
  return pd.DataFrame(rows)



def score_panels(config: ml_collections.ConfigDict, data: GeneSplits,
                 panels: Mapping[str, Sequence[str]], seed: int,
                 kinds: Iterable[str]) -> pd.DataFrame:
  """Long table (model, panel, target, metrics) of every panel of `panels` inferring all
  genes of `data` outside it, with each model of `kinds` (no permutation test)."""
  frames = []
  fits = [(kind, name, panel) for kind in kinds for name, panel in panels.items()]
  started = time.monotonic()
  for done, (kind, name, panel) in enumerate(fits):
    logging.info('Scoring panel %s (%d of %d) with %s%s', name, done + 1, len(fits), kind,
                 progress.eta(started, done, len(fits)))
    targets = [g for g in data.genes if g not in set(panel)]
    frame = evaluate_panel(kind, config, data, panel, targets, seed, permutation=False)
    frames.append(frame.reset_index().assign(model=kind, panel=name))
  return pd.concat(frames, ignore_index=True)


def score_random_panels(config: ml_collections.ConfigDict, context: selectors.SelectionContext,
                        data: GeneSplits, k: int, kind: str) -> pd.DataFrame:
  """`score_panels` of `random_panel_count` seeded random panels of size k (random_<i>, the
  draw of seed i) through model `kind`: the noise band of each metric."""
  n = random_panel_count(config.evaluate, kind)
  randoms = {f'random_{i}': selectors.select('random', context, k, seed=i) for i in range(n)}
  return score_panels(config, data, randoms, 0, (kind,))


SIGNIFICANT_Z = 2.0   # |z| from which a gap counts as more than random panels show by chance
VERDICT_METRICS = (('pcc_mean', 'mean target PCC', 'PCC', 'higher'),
                   ('mae_centred_mean', 'mean per-study-centred target MAE', 'MAE', 'lower'))


def _words(z, versus):
  """'better than L1000 by 1.3 random-panel SDs: not significant' for an oriented z."""
  if pd.isna(z):
    return f'vs {versus}: no random-panel null (fewer than 3 random panels)'
  direction = 'better' if z > 0 else 'worse'
  significance = 'significant' if abs(z) >= SIGNIFICANT_Z else 'not significant'
  return f'{direction} than {versus} by {abs(z):.1f} random-panel SDs: {significance}'


def calibrated_comparisons(summary: pd.DataFrame) -> pd.DataFrame:
  """Each named panel of each model against L1000 and against random panels of its size.

  summary: `summarize`'s table (all named panels share the common targets). For each model,
  panel, metric of `VERDICT_METRICS` (its name and `short` name) and `versus` ('L1000' or
  'random panels'): the panel's value, the reference value, the gap, the sd of the same gap
  among random panels (`null_sd`: random minus random panel for L1000, via
  `evaluate.gap_against_random`; random panel minus their mean for random panels),
  z = gap / null_sd oriented so that positive means this panel is better, whether
  |z| >= SIGNIFICANT_Z, and the verdict in words.
  z is NaN where a model has fewer than 3 random panels.
  """
  rows = []
  for model, group in summary.groupby('model', sort=False):
    random = group[group['panel'].str.startswith('random_')]
    named = group[~group['panel'].str.startswith('random_')].set_index('panel')
    for panel, row in named.iterrows():
      for column, metric, short, better in VERDICT_METRICS:
        sign = 1.0 if better == 'higher' else -1.0
        randoms = random[column].to_numpy(np.float64)
        references = [('random panels', randoms.mean() if len(randoms) else np.nan)]
        if panel != 'l1000' and 'l1000' in named.index:
          references.insert(0, ('L1000', named.loc['l1000', column]))
        for versus, reference in references:
          gap = row[column] - reference
          if len(randoms) < 3:
            null_sd = np.nan
          elif versus == 'L1000':
            null_sd = evaluate.gap_against_random(gap, randoms)['null_sd']
          else:
            null_sd = randoms.std(ddof=1)
          z = sign * gap / null_sd
          rows.append({'model': model, 'panel': panel, 'metric': metric, 'short': short,
                       'better': better,
                       'value': row[column], 'versus': versus, 'reference': reference,
                       'gap': gap, 'null_sd': null_sd, 'z': z, 'n_random_panels': len(randoms),
                       'significant': bool(abs(z) >= SIGNIFICANT_Z),
                       'verdict': _words(z, versus)})
  return pd.DataFrame(rows)
