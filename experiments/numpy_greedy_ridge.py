"""The numpy greedy ridge that the package's JAX one replaced: the selector benchmark's baseline.

`selection(train, studies, alphas, k, validation_k, n_folds, standardise)` is
`selectors.greedy_ridge` as it was: sample space in float64 numpy (a samples x samples Gram,
a samples x genes residual updated in place by BLAS), the penalty validated by a second
pass of paths per held-out group. Kept unchanged, as the benchmark keeps PyTorch's step, to
measure the new path against (experiments/benchmark.py, section `selector`) and as the
independent implementation the tests compare the new one with.
"""

import time

from absl import logging
import numpy as np
from scipy import linalg
from scipy.linalg import blas

from landmark import progress


def _study_centred(x, studies):
  """x in float64 with each study's per-gene mean subtracted (`studies` None: one study)."""
  x = np.array(x, np.float64)
  labels = np.zeros(len(x)) if studies is None else np.asarray(studies)
  for study in np.unique(labels):
    x[labels == study] -= x[labels == study].mean(axis=0)
  return x


def _penalty_scale(x):
  """The mean squared column norm of x: the squared singular value of an average one-gene
  panel, so a relative penalty means the same at any sample count and scale."""
  return float(np.mean(np.einsum('ij,ij->j', x, x)))


def ridge_path(x: np.ndarray, k: int, penalty: float) -> np.ndarray:
  """The k columns of x (samples, genes) that greedy forward selection under ridge takes,
  in the order taken.

  The error of a chosen set S is ridge regression's loss in predicting every column of x
  (the chosen ones included) from those in S, without intercept (x is centred):
      L(S) = min_B ||x - x_S B||² + penalty ||B||²,
  the least-squares residual of [x; 0] regressed on [x_S; sqrt(penalty) I]. Each step adds
  the gene that lowers L most. In that stacked space the drop for gene j is |xᵀu_j|² / d_j:
  u_j is the sample part of j's stacked column minus its projection on the chosen ones (the
  other part is orthogonal to [x; 0]) and d_j that residual's squared norm, |x_j|² + penalty
  less its squared projections. Both are updated for all genes by rank-one updates, each
  step O(samples x genes) (BLAS in place, float64). The penalty keeps scoring genes by what
  they add beyond the sample count, where without it every residual would vanish.
  """
  x = np.asarray(x, np.float64)
  gram = x @ x.T
  residual = np.array(x, order='F')                        # u_j, a column per gene
  explained = np.einsum('ij,ij->j', gram @ x, x)            # |xᵀu_j|² = u_jᵀ (x xᵀ) u_j
  unexplained = np.einsum('ij,ij->j', x, x) + penalty       # d_j
  chosen = np.zeros(x.shape[1], bool)
  order = []
  for _ in range(k):
    best = int(np.argmax(np.where(chosen, -np.inf, explained / unexplained)))
    q = residual[:, best] / np.sqrt(unexplained[best])      # new basis vector's sample part
    gamma, projected = q @ x, (gram @ q) @ residual
    explained += gamma * (gamma * (q @ gram @ q) - 2 * projected)
    unexplained -= gamma ** 2
    residual = blas.dger(-1.0, q, gamma, a=residual, overwrite_a=True)   # in place
    chosen[best] = True
    order.append(best)
  return np.array(order, dtype=int)


def _ridge_error(train, test, chosen, targets, penalty):
  """Squared error on `test` of ridge (fitted on `train`) predicting the columns `targets`
  from the columns `chosen`."""
  panel = train[:, chosen]
  # B = (x_Sᵀx_S + λI)⁻¹x_Sᵀy = x_Sᵀ(x_S x_Sᵀ + λI)⁻¹y: a samples x samples solve.
  dual = linalg.solve(panel @ panel.T + penalty * np.eye(len(panel)), train[:, targets],
                      assume_a='pos')
  predicted = (test[:, chosen] @ panel.T) @ dual
  return float(np.sum((test[:, targets] - predicted) ** 2))


def _gene_scale(x):
  """Per-gene standard deviations of (centred) x, 1 where a gene does not vary."""
  sd = x.std(axis=0)
  return np.where(sd > 0, sd, 1.0)


def _alpha_on_held_out_studies(train, studies, alphas, k, n_folds, standardise):
  """The relative penalty of `alphas` whose greedy k-gene panels, each chosen without one
  group of training studies, predict that group best. The studies, sorted, are dealt into
  at most `n_folds` groups (leave one study out when there are no more studies than that);
  each study is centred on its own mean and, with `standardise`, every gene scaled by its
  sd in the fitted studies. All penalties are scored on the same targets, the genes outside
  every penalty's panel, so that no penalty gains by taking hard genes out of its targets:
  squared error summed over those genes and the groups held out in turn."""
  labels = np.asarray(studies)
  names = np.unique(labels)
  if len(names) < 2:
    raise ValueError('greedy_ridge: choosing among several ridge penalties '
                     '(config.selectors.greedy_ridge_alphas) needs the training rows of at '
                     'least two studies (context.studies); give one penalty instead')
  group_of = {name: i % n_folds for i, name in enumerate(names)}
  groups = np.array([group_of[label] for label in labels])
  n_groups = min(n_folds, len(names))
  errors = np.zeros(len(alphas))
  started = time.monotonic()
  for done, group in enumerate(range(n_groups), start=1):
    held = groups == group
    fit = _study_centred(train[~held], labels[~held])
    scale = _gene_scale(fit) if standardise else 1.0
    fit, test = fit / scale, _study_centred(train[held], labels[held]) / scale
    penalties = [alpha * _penalty_scale(fit) for alpha in alphas]
    panels = [ridge_path(fit, k, penalty) for penalty in penalties]
    targets = np.setdiff1d(np.arange(train.shape[1]), np.concatenate(panels))
    for i, (panel, penalty) in enumerate(zip(panels, penalties)):
      errors[i] += _ridge_error(fit, test, panel, targets, penalty)
    logging.info('greedy_ridge: validation fold %d of %d done (%d held-out samples, %d '
                 'common targets)%s', done, n_groups, held.sum(), len(targets),
                 progress.eta(started, done, n_groups))
  logging.info('greedy_ridge: held-out squared error %s for relative penalties %s '
               '(%d genes)', np.round(errors, 1).tolist(), list(alphas), k)
  return alphas[int(np.argmin(errors))]


def selection(train: np.ndarray, studies: np.ndarray | None, alphas: tuple[float, ...], k: int,
              validation_k: int, n_folds: int, standardise: bool) -> np.ndarray:
  """The k columns of `train` the old `greedy_ridge` selector took, in order."""
  alpha = alphas[0]
  if len(alphas) > 1:
    alpha = _alpha_on_held_out_studies(train, studies, alphas, min(validation_k,
                                       train.shape[1] // 2), n_folds, standardise)
  x = _study_centred(train, studies)
  if standardise:
    x /= _gene_scale(x)
  return ridge_path(x, k, alpha * _penalty_scale(x))
