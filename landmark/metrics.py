"""Per-gene metrics of a prediction against the truth: MAE, PCC and the permutation test.

Arrays of expression are (samples, genes): metrics are computed per gene (column) over
samples. This module is floor 0, below data, and imports nothing of landmark, because the
floors above measure per-gene error with it: inference scores its saved models, selection
standardises profiles, evaluation scores the AutoEncoder and the panels.
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike
import pandas as pd

COLUMN_CHUNK = 1024   # genes standardised at once: bounds float64 temporaries on big matrices


def _check_pair(y_true, y_pred):
  y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
  if y_true.ndim != 2 or y_true.shape != y_pred.shape:
    raise ValueError(f'y_true and y_pred must be (samples, genes) of one shape, '
                     f'got {y_true.shape} and {y_pred.shape}')
  if y_true.shape[0] < 2:
    raise ValueError(f'need at least 2 samples per gene, got {y_true.shape[0]}')
  return y_true, y_pred


def _column_chunks(n_columns):
  return (slice(start, start + COLUMN_CHUNK) for start in range(0, n_columns, COLUMN_CHUNK))


def standardise(x: ArrayLike) -> np.ndarray:
  """Columns centred and scaled to unit norm (float64), so PCC(a, b) = a_std · b_std.

  A constant column (max == min, tested exactly) becomes all zeros: its PCC with anything
  is then 0.0 instead of NaN.
  """
  x = np.asarray(x, dtype=np.float64)
  centred = x - x.mean(axis=0)
  norm = np.sqrt(np.sum(centred**2, axis=0))
  constant = np.ptp(x, axis=0) == 0
  return np.where(constant, 0.0, centred / np.where(constant, 1.0, norm))


def per_gene_mae(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
  """MAE_j = mean over samples of |g_j - ĝ_j| for every gene j, accumulated in float64."""
  y_true, y_pred = _check_pair(y_true, y_pred)
  mae = np.empty(y_true.shape[1])
  for chunk in _column_chunks(y_true.shape[1]):
    mae[chunk] = np.mean(np.abs(y_true[:, chunk].astype(np.float64) - y_pred[:, chunk]), axis=0)
  return mae


def per_gene_pcc(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
  """PCC_j = Pearson r(g_j, ĝ_j) over samples for every gene j, in float64.

  Where either column has zero variance (constant over samples) r is undefined; it is
  returned as 0.0 (no linear association) so that means and tests stay NaN-free.
  """
  y_true, y_pred = _check_pair(y_true, y_pred)
  pcc = np.empty(y_true.shape[1])
  for chunk in _column_chunks(y_true.shape[1]):
    pcc[chunk] = np.sum(standardise(y_true[:, chunk]) * standardise(y_pred[:, chunk]), axis=0)
  return np.clip(pcc, -1.0, 1.0)


def _standardise_float32(x):
  out = np.empty(x.shape, dtype=np.float32)
  for chunk in _column_chunks(x.shape[1]):
    out[:, chunk] = standardise(x[:, chunk])
  return out


@jax.jit
def _exceedance_counts(pred_block, true_std, start):
  """#{k != j: PCC(ĝ_j, g_k) >= PCC(ĝ_j, g_j)} for predicted genes j = start + column.

  pred_block (samples, block) and true_std (samples, genes) hold standardised columns, so
  one matmul gives the block's correlations with every true gene. PCC_j is read from the
  same matmul, so the comparison with its own reference is exact (the -1 drops k = j).
  Padding columns past the last gene come back as garbage and are dropped by the caller.
  """
  corr = jnp.matmul(pred_block.T, true_std, precision=jax.lax.Precision.HIGHEST)
  own = jnp.minimum(start + jnp.arange(pred_block.shape[1]), true_std.shape[1] - 1)
  own_corr = jnp.take_along_axis(corr, own[:, None], axis=1)
  return jnp.sum(corr >= own_corr, axis=1) - 1


def permutation_test(y_true: ArrayLike, y_pred: ArrayLike, block_size: int = 2048) -> np.ndarray:
  """Permutation p-value per gene: is ĝ_j closer to g_j than to the other true genes?

  The reference distribution of gene j is {PCC(ĝ_j, g_k): k != j} over all other genes
  (columns) of y_true, and p_j = (1 + #{k != j: PCC(ĝ_j, g_k) >= PCC_j}) / (1 + #k), so the
  smallest p is 1 / n_genes. A gene passes when p_j < alpha (`permutation_pass`).

  Columns are standardised once (float64, stored as float32); each block of `block_size`
  predicted genes is correlated with all true genes in one jitted float32 matmul at highest
  precision, so memory is O(block_size x genes), never a dense genes x genes matrix.
  Constant columns correlate 0.0 with everything (see `per_gene_pcc`).
  """
  y_true, y_pred = _check_pair(y_true, y_pred)
  n_genes = y_true.shape[1]
  if n_genes < 2:
    raise ValueError('the permutation test needs at least 2 genes')
  block_size = min(block_size, n_genes)
  true_std = jnp.asarray(_standardise_float32(y_true))
  counts = np.empty(n_genes, dtype=np.int64)
  for start in range(0, n_genes, block_size):
    stop = min(start + block_size, n_genes)
    block = np.zeros((y_pred.shape[0], block_size), dtype=np.float32)
    block[:, :stop - start] = standardise(y_pred[:, start:stop])
    counts[start:stop] = np.asarray(_exceedance_counts(block, true_std, start))[:stop - start]
  return (1.0 + counts) / n_genes


def permutation_pass(p_values: ArrayLike, alpha: float = 0.01) -> np.ndarray:
  """Genes that pass the permutation test: p < alpha (the paper's alpha is 0.01)."""
  return np.asarray(p_values) < alpha


def centre_by_group(values: ArrayLike, groups: ArrayLike) -> np.ndarray:
  """`values` minus each group's (study's) per-gene mean: what is left within studies."""
  values, groups = np.asarray(values, dtype=np.float64), np.asarray(groups)
  centred = np.empty_like(values)
  for group in np.unique(groups):
    rows = groups == group
    centred[rows] = values[rows] - values[rows].mean(axis=0)
  return centred


def gene_metrics(y_true: ArrayLike, y_pred: ArrayLike, targets: ArrayLike, studies: ArrayLike,
                 block_size: int = 2048, permutation: bool = True) -> pd.DataFrame:
  """Per-target table (index target): mae, pcc, mae_centred and the permutation p_value.

  mae_centred is the MAE after centring truth and prediction within each study (`studies`
  labels the rows): a held-out study's offset from the training studies dominates plain
  MAE in leave-one-study-out runs and says nothing about the landmarks. `permutation=False`
  skips the permutation test (the costly part) and leaves p_value out.
  """
  metrics = {
      'mae': per_gene_mae(y_true, y_pred),
      'pcc': per_gene_pcc(y_true, y_pred),
      'mae_centred': per_gene_mae(centre_by_group(y_true, studies),
                                  centre_by_group(y_pred, studies)),
  }
  if permutation:
    metrics['p_value'] = permutation_test(y_true, y_pred, block_size=block_size)
  return pd.DataFrame(metrics, index=pd.Index(np.asarray(targets, dtype=str), name='target'))
