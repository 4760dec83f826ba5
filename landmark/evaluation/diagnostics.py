"""What every run states about study effects and about what the AE learned.

On a compendium of a few very different studies, an AutoEncoder can reconstruct profiles
well by learning little more than which study each came from, and DeepLIFT then ranks
study-separating genes first. These figures make that visible: the share of each gene's
variance that study explains (eta^2), and the AE's error beside baselines that know only
the study. PCA of the AE's bottleneck width, fitted on the same training profiles, is the
linear reconstruction an AE of that width should at least match.
"""

import dataclasses
import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike
import pandas as pd
from sklearn import decomposition

from landmark import metrics
from landmark.data import correction
from landmark.data import preprocess
from landmark.data import readers

SIMILAR = 0.10   # relative MAE gap under which the AE is "about" the per-study mean
PCA_WIDTHS = (10, 50)   # PCA baselines of every run, beside the one of the AE's bottleneck
EXACT_PCA_ROWS = 4096   # fit_pca: exact SVD up to this many profiles (or genes)


def _study_blocks(values, studies):
  studies = np.asarray(studies, dtype=str)
  return {name: np.asarray(values[studies == name], dtype=np.float64)
          for name in np.unique(studies)}


def study_eta_squared(values: np.ndarray, studies: ArrayLike) -> np.ndarray:
  """Per-gene share of variance explained by study: one-way ANOVA eta^2 = SS_between / SS_total.

  values: (samples, genes); studies: one label per sample. Genes constant over all samples
  (max == min) have no variance to explain and get 0.
  """
  blocks = _study_blocks(values, studies)
  n_total = sum(len(b) for b in blocks.values())
  grand_mean = sum(b.sum(axis=0) for b in blocks.values()) / n_total
  within = sum(np.sum((b - b.mean(axis=0))**2, axis=0) for b in blocks.values())
  between = sum(len(b) * (b.mean(axis=0) - grand_mean)**2 for b in blocks.values())
  constant = np.ptp(np.asarray(values), axis=0) == 0
  return np.where(constant, 0.0, between / np.where(constant, 1.0, within + between))


def trivial_baselines(train_values: np.ndarray, train_studies: ArrayLike, test_values: ArrayLike,
                      test_studies: ArrayLike) -> dict[str, Any]:
  """Reconstruction MAE on the test samples of two predictors that ignore the profile.

  MAE is the per-gene mean over test samples of |x - prediction|, averaged over genes, in
  the units of the values given (pass the AE's scaled values to compare with its loss).
    global_mean: every sample predicted by the training mean profile.
    study_mean:  every sample predicted by its study's training mean profile. A test study
                 absent from training is predicted by its own mean over the test samples:
                 an oracle computed from the test study itself, i.e. what knowing the
                 study buys. Those studies are listed in `oracle_studies`.
  """
  test_values = np.asarray(test_values, dtype=np.float64)
  test_studies = np.asarray(test_studies, dtype=str)
  train = _study_blocks(train_values, train_studies)
  test = _study_blocks(test_values, test_studies)
  global_mean = sum(b.sum(axis=0) for b in train.values()) / sum(len(b) for b in train.values())
  study_mean = np.empty_like(test_values)
  for name, block in test.items():
    study_mean[test_studies == name] = (train[name] if name in train else block).mean(axis=0)
  return {
      'global_mean': float(np.mean(np.abs(test_values - global_mean))),
      'study_mean': float(np.mean(np.abs(test_values - study_mean))),
      'oracle_studies': sorted(name for name in test if name not in train),
  }


def fit_pca(train_values: ArrayLike, n_components: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean profile, components) of PCA on the training profiles, at most `n_components`
  components (capped by the rank of the centred training matrix).

  Exact SVD up to `EXACT_PCA_ROWS` profiles; randomized SVD on larger matrices (a streamed
  compendium's in-memory sample), where the exact one would take hours.
  """
  train_values = np.asarray(train_values, np.float32)
  n_components = max(1, min(n_components, len(train_values) - 1, train_values.shape[1]))
  solver = 'full' if min(train_values.shape) <= EXACT_PCA_ROWS else 'randomized'
  pca = decomposition.PCA(n_components, svd_solver=solver, random_state=0).fit(train_values)
  return pca.mean_.astype(np.float64), pca.components_.astype(np.float64)


def pca_baselines(pca: tuple[np.ndarray, np.ndarray], values: ArrayLike,
                  widths: Iterable[int]) -> dict:
  """Reconstruction of held-out `values` by the first w components of `pca` (`fit_pca`),
  for every w in `widths`: mean + (x - mean) V_w' V_w.

  Scored as the AE is: mean over genes of metrics.per_gene_mae and per_gene_pcc, in the
  units of `values`. Keys 'pca_<w>'; each entry has the components used (w capped by the
  components fitted), mae and pcc.
  """
  mean, components = pca
  values = np.asarray(values, np.float64)
  scores = (values - mean) @ components.T
  baselines = {}
  for width in widths:
    used = min(width, len(components))
    reconstruction = mean + scores[:, :used] @ components[:used]
    baselines[f'pca_{width}'] = {
        'components': used,
        'mae': float(np.mean(metrics.per_gene_mae(values, reconstruction))),
        'pcc': float(np.mean(metrics.per_gene_pcc(values, reconstruction)))}
  return baselines


def ae_vs_baselines(ae_mae: float, baselines: Mapping[str, Any], ae_pcc: float | None = None,
                    width: int | None = None) -> dict[str, Any]:
  """The AE's reconstruction beside `trivial_baselines` and PCA of its width, with a verdict.

  The AE learned more than study identity when its MAE is more than `SIMILAR` (10%) below
  the per-study mean profile's; within 10% it explains little beyond the study. When
  `baselines['pca']` (`pca_baselines` of the same profiles) has width `width` (the AE's
  bottleneck), the verdict also says whether the AE's mean per-gene PCC (`ae_pcc`) and MAE
  reach that PCA's: an AE that does not has learned less than a linear projection of its
  size.
  """
  study, overall = baselines['study_mean'], baselines['global_mean']
  gain_over_study = 1.0 - ae_mae / study
  head = f'AE MAE {ae_mae:.3g} vs per-study mean {study:.3g} (global mean {overall:.3g})'
  if gain_over_study > SIMILAR:
    verdict = f'{head}: the AE beats study identity by {gain_over_study:.0%}'
  elif gain_over_study >= -SIMILAR:
    verdict = f'{head}: the AE explains little beyond which study a profile came from'
  else:
    verdict = (f'{head}: the AE is {-gain_over_study:.0%} worse than the per-study mean; '
               'it has not even learned study identity')
  if baselines['oracle_studies']:
    verdict += (f" (per-study mean of unseen {', '.join(baselines['oracle_studies'])} is an "
                'oracle taken from the test study itself)')
  summary = {
      'ae_mae': float(ae_mae),
      'global_mean_mae': float(overall),
      'study_mean_mae': float(study),
      'gain_over_global': float(1.0 - ae_mae / overall),
      'gain_over_study': float(gain_over_study),
      'beyond_study': bool(gain_over_study > SIMILAR),
  }
  pca = baselines.get('pca', {})
  if ae_pcc is not None and f'pca_{width}' in pca:
    same = pca[f'pca_{width}']
    reaches = ae_pcc >= same['pcc'] and ae_mae <= same['mae']
    verdict += (f"; AE PCC {ae_pcc:.3g} and MAE {ae_mae:.3g} vs PCA with {same['components']} "
                f"components (its width) PCC {same['pcc']:.3g}, MAE {same['mae']:.3g}: " +
                ('the AE reaches PCA of its width' if reaches else
                 'the AE falls short of PCA of its width'))
    summary.update(ae_pcc=float(ae_pcc), pca_width=int(width), pca_mae=same['mae'],
                   pca_pcc=same['pcc'], pcc_minus_pca=float(ae_pcc - same['pcc']),
                   gain_over_pca=float(1.0 - ae_mae / same['mae']), reaches_pca=bool(reaches))
  if pca:
    summary['pca'] = pca
  summary['verdict'] = verdict
  return summary


def uncorrected_genes(split: readers.Compendium, correction_path: str | os.PathLike,
                      annotation: pd.DataFrame,
                      universe: Sequence[str] | None) -> readers.Compendium:
  """`split` (a probe-level Compendium) before the study correction saved at
  `correction_path` (none if the file is absent), collapsed to the genes of `universe`.

  Study eta^2 must be measured here: after per-study centring every study's gene means are
  equal, so eta^2 is zero by construction.
  """
  if os.path.exists(correction_path):
    fitted = correction.StudyCorrection.load(correction_path)
    split = dataclasses.replace(split, values=fitted.inverse_transform(
        split.values, split.meta['study'].to_numpy()))
  return preprocess.collapse_to_genes(split, annotation, universe)


def panel_study_effects(values: np.ndarray, studies: ArrayLike, genes: ArrayLike,
                        panels: Mapping[str, Iterable[str]]) -> pd.DataFrame:
  """How much each panel's genes are "which study": one row per panel.

  values: (samples, genes) with columns named by `genes`; panels: {name: gene symbols}.
  Columns: genes (of the panel found in `genes`), median_eta2 (median study eta^2 of those
  genes) and mean_expression (their mean over samples and genes). The first row, 'all
  genes', is the reference; panels named `random_*` (`panels.reference_panels`) are also
  summarised in a last row 'random' whose *_sd columns give the sd across them.
  """
  eta2 = study_eta_squared(values, studies)
  position = {g: i for i, g in enumerate(np.asarray(genes, dtype=str))}
  rows = [{'panel': 'all genes', 'genes': len(position), 'median_eta2': np.median(eta2),
           'mean_expression': float(np.mean(values, dtype=np.float64))}]
  for name, panel in panels.items():
    columns = [position[g] for g in panel if g in position]
    rows.append({'panel': name, 'genes': len(columns), 'median_eta2': np.median(eta2[columns]),
                 'mean_expression': float(np.mean(values[:, columns], dtype=np.float64))})
  table = pd.DataFrame(rows, columns=['panel', 'genes', 'median_eta2', 'median_eta2_sd',
                                      'mean_expression', 'mean_expression_sd'])
  random = table[table['panel'].str.startswith('random_')]
  if len(random):
    table.loc[len(table)] = {
        'panel': 'random', 'genes': random['genes'].mean(),
        'median_eta2': random['median_eta2'].mean(), 'median_eta2_sd': random['median_eta2'].std(),
        'mean_expression': random['mean_expression'].mean(),
        'mean_expression_sd': random['mean_expression'].std()}
  return table
