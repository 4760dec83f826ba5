"""Per-gene metrics against numpy/scipy references, a dense permutation test and planted
signals."""

import numpy as np
import pytest
from scipy import stats

from landmark import metrics


def brute_force_p_values(y_true, y_pred):
  """The permutation test written out densely in float64 with np.corrcoef."""
  n_genes = y_true.shape[1]
  corr = np.corrcoef(y_pred.T, y_true.T)[:n_genes, n_genes:]   # corr[j, k] = r(ĝ_j, g_k)
  own = np.diag(corr)
  others = ~np.eye(n_genes, dtype=bool)
  return np.array([(1 + np.sum(corr[j, others[j]] >= own[j])) / n_genes for j in range(n_genes)])


def test_per_gene_mae_and_pcc_match_numpy_and_scipy():
  rng = np.random.default_rng(0)
  y_true = rng.normal(size=(25, 7)).astype(np.float32)
  y_pred = (0.6 * y_true + rng.normal(size=(25, 7))).astype(np.float32)
  y_true[:, 2] = 3.5     # constant truth
  y_pred[:, 5] = -1.0    # constant prediction
  mae = metrics.per_gene_mae(y_true, y_pred)
  np.testing.assert_allclose(mae, np.abs(y_true.astype(np.float64) - y_pred).mean(axis=0),
                             rtol=1e-12)
  pcc = metrics.per_gene_pcc(y_true, y_pred)
  for j in (0, 1, 3, 4, 6):
    np.testing.assert_allclose(pcc[j], stats.pearsonr(y_true[:, j], y_pred[:, j]).statistic,
                               atol=1e-6)
  assert pcc[2] == 0.0 and pcc[5] == 0.0
  assert np.isfinite(pcc).all()


def test_per_gene_metrics_reject_mismatched_shapes():
  with pytest.raises(ValueError, match='one shape'):
    metrics.per_gene_mae(np.zeros((4, 3)), np.zeros((4, 2)))


def test_near_perfect_predictions_of_independent_genes_all_pass():
  rng = np.random.default_rng(1)
  n_genes = 150
  y_true = rng.normal(size=(60, n_genes))
  y_pred = y_true + 0.01 * rng.normal(size=y_true.shape)
  noise_gene = 17
  y_pred[:, noise_gene] = rng.normal(size=60)
  p = metrics.permutation_test(y_true, y_pred, block_size=64)
  others = np.arange(n_genes) != noise_gene
  np.testing.assert_array_equal(p[others], 1.0 / n_genes)    # beats all 149 other genes
  assert metrics.permutation_pass(p[others], alpha=0.01).all()
  assert p[noise_gene] > 0.05 and not metrics.permutation_pass(p[noise_gene], alpha=0.01)


@pytest.mark.parametrize('block_size', [3, 13, 100])
def test_blockwise_permutation_test_equals_dense_computation(block_size):
  rng = np.random.default_rng(2)
  shared = rng.normal(size=(40, 2))
  y_true = 2 * shared @ rng.normal(size=(2, 13)) + rng.normal(size=(40, 13))  # correlated genes
  y_pred = 0.1 * y_true + rng.normal(size=y_true.shape)                       # weak predictions
  p = metrics.permutation_test(y_true, y_pred, block_size=block_size)
  np.testing.assert_array_equal(p, brute_force_p_values(y_true, y_pred))
  assert len(np.unique(p)) > 3     # a non-trivial spread of p-values, not all 1/13


def test_constant_prediction_ties_with_every_gene():
  rng = np.random.default_rng(3)
  y_true = rng.normal(size=(30, 9))
  y_pred = y_true.copy()
  y_pred[:, 4] = 2.0
  p = metrics.permutation_test(y_true, y_pred, block_size=4)
  assert p[4] == 1.0
  np.testing.assert_array_equal(np.delete(p, 4), 1 / 9)


def test_gene_metrics_table_agrees_with_the_functions():
  rng = np.random.default_rng(5)
  y_true = rng.normal(size=(20, 6))
  y_pred = y_true + rng.normal(size=y_true.shape)
  studies = np.repeat(['a', 'b'], 10)
  table = metrics.gene_metrics(y_true, y_pred, [f'T{i}' for i in range(6)], studies, block_size=4)
  assert table.index.tolist() == [f'T{i}' for i in range(6)]
  np.testing.assert_array_equal(table['pcc'], metrics.per_gene_pcc(y_true, y_pred))
  np.testing.assert_array_equal(table['p_value'], metrics.permutation_test(y_true, y_pred))
  # A prediction off by a constant per study has zero centred MAE.
  offset = y_true + np.where(studies == 'a', 3.0, -1.0)[:, None]
  shifted = metrics.gene_metrics(y_true, offset, range(6), studies, permutation=False)
  np.testing.assert_allclose(shifted['mae_centred'], 0.0, atol=1e-12)
  np.testing.assert_allclose(shifted['mae'], 2.0)
  assert 'p_value' not in shifted
