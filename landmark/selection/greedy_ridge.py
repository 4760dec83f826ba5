"""Greedy forward selection under ridge regression, in JAX, from one pass over the data.

The selection of `selectors.greedy_ridge`: the training rows centred within their study
(with `standardise`, every gene then scaled to unit sd), and the loss of a chosen set S
ridge regression's loss in predicting every gene from the genes of S,
    L(S) = min_B ||X - X_S B||² + λ ||B||²,
each step adding the gene that lowers it most. Stacking [X; 0] over [X_S; √λ I] makes L a
least-squares residual, so the drop for candidate j is |Xᵀu_j|² / d_j: u_j is the sample
part of j's stacked column after projecting out the chosen ones, d_j that residual's
squared norm. Both are kept for every gene by rank-one updates, in the cheaper of two spaces:

  sample space (rows < genes)   u_j = P x_j, P = I - Σ q qᵀ (rows x rows). A step is one
                                (2 x paths, rows) @ X matmul: one read of X serves every path.
  gene space (rows >= genes)    from the genes x genes cross-product C = XᵀX alone, so after
                                the one pass neither cost nor memory grows with the rows. A
                                step is one C @ (genes, paths) product, plus O(step x genes).

`Moments` is what the pass over the rows leaves (`accumulate`, from any chunks: a stream's or
a matrix's): per-study counts and, by space, the study-centred rows or each validation
group's centred cross-product. Paths (held-out group x penalty) run together, vmapped.
float64 (`dtype`) gives the exact selection on CPU; float32 is for accelerators and for
compendia whose float64 cross-product would not fit.
"""

import dataclasses
import functools
import time
from typing import Iterable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pandas as pd

from landmark import progress
from landmark.training import core
from landmark.training import sharding

DTYPES = ('auto', 'float32', 'float64')
ALL_ROWS = -1        # a path's held-out group when it fits on every row
STEPS_PER_CALL = 64  # greedy steps per jitted call: progress is logged between calls
PROGRESS_SECONDS = 10.0   # the pass logs its progress this often


def resolve_dtype(dtype: str) -> np.dtype:
  """'auto': float64 on CPU (exact), float32 on accelerators."""
  if dtype == 'auto':
    dtype = 'float64' if jax.default_backend() == 'cpu' else 'float32'
  return np.dtype(dtype)


def resolve_space(space: str, n_rows: int, n_genes: int) -> str:
  """'auto': sample space when the rows are fewer than the genes, else gene space."""
  if space == 'auto':
    return 'samples' if n_rows < n_genes else 'genes'
  return space


def validation_groups(studies: Sequence[str], n_folds: int) -> np.ndarray:
  """The validation group of each of `studies` (sorted, unique names): dealt in turn into
  `n_folds` groups, so with no more studies than folds each study is a group of its own."""
  return np.arange(len(studies)) % n_folds


@dataclasses.dataclass
class Moments:
  """One pass over the training rows: all that the greedy paths and their validation need.

  `studies` (sorted names) with their `counts` and validation `groups`; `rows` (samples,
  genes): the study-centred rows and `row_groups` their groups (sample space), or `cross`
  (groups, genes, genes): each group's study-centred cross-product Σ xxᵀ (gene space; its
  genes zero-padded to a multiple of the mesh's devices).
  """

  studies: np.ndarray
  counts: np.ndarray
  groups: np.ndarray
  dtype: np.dtype
  n_genes: int
  rows: np.ndarray | None = None
  row_groups: np.ndarray | None = None
  cross: jax.Array | None = None

  @property
  def n_groups(self) -> int:
    return int(self.groups.max()) + 1

  def group_rows(self) -> np.ndarray:
    """Training rows in each validation group."""
    return np.bincount(self.groups, self.counts, self.n_groups)


@functools.partial(jax.jit, donate_argnums=(0,))
def _add_cross(cross, rows):
  """cross + rowsᵀ rows, accumulated in cross's dtype (rows split over the mesh's batch
  axis: the contraction's partial sums are reduced across it)."""
  return cross + jnp.einsum('ri,rj->ij', rows, rows, preferred_element_type=cross.dtype)


@functools.partial(jax.jit, donate_argnums=(0,))
def _centre_cross(cross, offsets):
  """cross - offsetsᵀ offsets: shifted cross-products to study-centred ones (offsets: each
  study's mean less the shift, times √rows)."""
  return cross - offsets.T @ offsets


def accumulate(chunks: Iterable[np.ndarray], row_studies: Sequence[str], n_genes: int,
               n_folds: int = 1, space: str = 'auto', dtype: str = 'auto',
               mesh: Mesh | None = None) -> Moments:
  """The `Moments` of rows arriving as `chunks` (rows x genes, in order), one pass.

  `row_studies` is the study of every row, in the same order; the studies are dealt into
  `n_folds` validation groups (`validation_groups`). Sample space keeps the rows (float64,
  centred at the end). Gene space accumulates, per group and in `dtype`, the cross-product
  of the rows shifted by the first chunk's mean (so that float32 sums lose little to
  cancellation), their rows split over `mesh`'s batch axis, and corrects it to study
  centring from the per-study sums (float64) at the end.
  """
  dtype = resolve_dtype(dtype)
  row_studies = np.asarray(row_studies).astype(str)
  names, study_of_row, counts = np.unique(row_studies, return_inverse=True, return_counts=True)
  groups = validation_groups(names, n_folds)
  n_rows = len(row_studies)
  space = resolve_space(space, n_rows, n_genes)
  mesh = mesh or sharding.device_mesh(1)
  sums = np.zeros((len(names), n_genes), np.float64)
  shift, done, started = None, 0, time.monotonic()
  logged = started
  rows = np.empty((n_rows, n_genes), np.float64) if space == 'samples' else None
  padded = sharding.round_up(n_genes, mesh.size)
  with jax.enable_x64(dtype == np.float64):
    cross = None
    if space == 'genes':
      cross = [jax.device_put(jnp.zeros((padded, padded), dtype), _gene_rows(mesh))
               for _ in range(int(groups.max()) + 1)]
    for chunk in chunks:
      chunk = np.asarray(chunk, np.float64 if rows is not None else dtype)
      if chunk.shape[1] != n_genes:
        raise ValueError(f'a chunk of {chunk.shape[1]} genes, expected {n_genes}')
      labels = study_of_row[done:done + len(chunk)]
      if len(labels) < len(chunk):
        raise ValueError(f'more rows than the {n_rows} study labels')
      if shift is None:
        shift = chunk.mean(axis=0, dtype=np.float64)
      shifted = chunk - shift.astype(chunk.dtype)
      for study in np.unique(labels):
        sums[study] += shifted[labels == study].sum(axis=0, dtype=np.float64)
      if rows is not None:
        rows[done:done + len(chunk)] = chunk
      else:
        for group in np.unique(groups[labels]):
          part = shifted[groups[labels] == group]
          part = np.pad(part, ((0, sharding.round_up(len(part), mesh.size) - len(part)),
                               (0, padded - n_genes)))
          cross[group] = _add_cross(cross[group], jax.device_put(
              part, NamedSharding(mesh, P(sharding.BATCH_AXIS))))
        # One chunk in flight: the reader's prefetch overlaps the product, and the chunks
        # do not queue up in memory behind an asynchronous dispatch.
        jax.block_until_ready(cross)
      done += len(chunk)
      if time.monotonic() - logged > PROGRESS_SECONDS:
        logged = time.monotonic()
        logging.info('greedy_ridge: %d of %d rows read (%.0f rows/s)%s', done, n_rows,
                     done / (logged - started), progress.eta(started, done, n_rows))
    if done != n_rows:
      raise ValueError(f'{done} rows read for {n_rows} study labels')
    means = sums / counts[:, None]   # each study's mean, less the shift
    if rows is not None:
      rows -= shift + means[study_of_row]
      return Moments(names, counts, groups, dtype, n_genes, rows=rows.astype(dtype),
                     row_groups=groups[study_of_row])
    for group in range(len(cross)):
      in_group = groups == group
      offsets = np.pad(means[in_group] * np.sqrt(counts[in_group])[:, None],
                       ((0, 0), (0, padded - n_genes)))
      cross[group] = _centre_cross(cross[group], jnp.asarray(offsets, dtype))
    return Moments(names, counts, groups, dtype, n_genes,
                   cross=jax.device_put(jnp.stack(cross), _gene_rows(mesh, stacked=True)))


def in_memory(values: np.ndarray, row_studies: Sequence[str] | None, n_folds: int = 1,
              space: str = 'auto', dtype: str = 'auto', mesh: Mesh | None = None,
              chunk_rows: int = 4096) -> Moments:
  """The `Moments` of an in-memory (rows, genes) matrix (`row_studies` None: one study)."""
  values = np.asarray(values)
  studies = np.zeros(len(values), str) if row_studies is None else row_studies
  chunks = (values[i:i + chunk_rows] for i in range(0, len(values), chunk_rows))
  return accumulate(chunks, studies, values.shape[1], n_folds, space, dtype, mesh)


def _gene_rows(mesh, stacked=False):
  """A cross-product's gene rows split over the mesh (its columns whole on every device)."""
  return NamedSharding(mesh, P(None, sharding.BATCH_AXIS, None) if stacked
                       else P(sharding.BATCH_AXIS, None))


@dataclasses.dataclass
class Fit:
  """What the rows of a path's fit give it: per gene its sum of squares and scale."""

  squares: np.ndarray   # (genes,) Σ x² of the study-centred fit rows (unscaled)
  scale: np.ndarray     # (genes,) sd over the fit rows with `standardise`, else 1
  rows: int             # fit rows


def fit_of(moments: Moments, held_out: int, standardise: bool) -> Fit:
  """The fit on every row outside validation group `held_out` (ALL_ROWS: every row)."""
  if moments.rows is not None:
    keep = moments.row_groups != held_out
    squares = np.einsum('ij,ij->j', moments.rows[keep], moments.rows[keep], dtype=np.float64)
  else:
    with jax.enable_x64(moments.dtype == np.float64):
      diagonals = np.asarray(jnp.diagonal(moments.cross, axis1=1, axis2=2),
                             np.float64)[:, :moments.n_genes]
    squares = diagonals.sum(axis=0) - (diagonals[held_out] if held_out != ALL_ROWS else 0)
  n = int(moments.group_rows().sum() - (moments.group_rows()[held_out]
                                        if held_out != ALL_ROWS else 0))
  sd = np.sqrt(np.maximum(squares, 0) / n)
  scale = np.where(sd > 0, sd, 1.0) if standardise else np.ones_like(sd)
  return Fit(squares, scale, n)


def penalty_scale(fit: Fit) -> float:
  """The mean squared gene norm of the (scaled) fit matrix: the squared singular value of an
  average one-gene panel, so a relative penalty means the same at any row count and scale."""
  return float(np.mean(fit.squares / fit.scale ** 2))


@dataclasses.dataclass
class Paths:
  """Greedy paths: (paths, k) genes in the order taken and the loss drop of each step as a
  fraction of the fit's total sum of squares (its explained-variance gain)."""

  order: np.ndarray
  gain: np.ndarray


def greedy_paths(moments: Moments, held_out: Sequence[int], alphas: Sequence[float], k: int,
                 standardise: bool, mesh: Mesh | None = None) -> tuple[Paths, list[Fit]]:
  """The greedy path of every (held-out group, relative penalty) pair, run together.

  Path p = h * len(alphas) + a fits on the rows outside group `held_out[h]` (ALL_ROWS: all
  of them) at penalty alphas[a] x `penalty_scale`. Returns the paths and each held-out
  group's `Fit`. Candidates are split over `mesh` (genes over its batch axis).
  """
  mesh = mesh or sharding.device_mesh(1)
  fits = [fit_of(moments, h, standardise) for h in held_out]
  n = moments.n_genes
  padded = sharding.round_up(n, mesh.size)
  scales = np.stack([np.repeat(f.scale[None], len(alphas), 0) for f in fits]).reshape(-1, n)
  penalties = np.array([a * penalty_scale(f) for f in fits for a in alphas])
  totals = np.array([np.sum(f.squares / f.scale ** 2) for f in fits for _ in alphas])
  scales = np.pad(scales, ((0, 0), (0, padded - n)), constant_values=1.0)
  with jax.enable_x64(moments.dtype == np.float64):
    dtype = moments.dtype
    if moments.rows is not None:
      x = jax.device_put(np.pad(moments.rows, ((0, 0), (0, padded - n))),
                         NamedSharding(mesh, P(None, sharding.BATCH_AXIS)))
      masks = np.stack([np.repeat((moments.row_groups != h)[None], len(alphas), 0)
                        for h in held_out]).reshape(-1, len(moments.rows)).astype(dtype)
      init, step = _sample_init, _sample_step
      data = (x, jnp.asarray(masks))
    else:
      cross = moments.cross
      if cross.shape[-1] != padded:   # accumulated for another mesh
        cross = jax.device_put(
            jnp.pad(cross[:, :n, :n], ((0, 0), (0, padded - n), (0, padded - n))),
            _gene_rows(mesh, stacked=True))
      data = (cross, jnp.asarray(np.repeat(np.asarray(held_out), len(alphas))))
      init, step = _gene_init, _gene_step
    scales, penalties = jnp.asarray(scales, dtype), jnp.asarray(penalties, dtype)
    state = init(*data, scales, penalties, k, n)
    started = time.monotonic()
    for first in range(0, k, STEPS_PER_CALL):
      state = _jitted_step(step)(state, *data, scales, penalties, first,
                                 min(STEPS_PER_CALL, k - first))
      done = min(first + STEPS_PER_CALL, k)
      if k > STEPS_PER_CALL:
        jax.block_until_ready(state)
        elapsed = time.monotonic() - started
        logging.info('greedy_ridge: %d paths at step %d of %d (%.1f steps/s)%s', len(penalties),
                     done, k, done / max(elapsed, 1e-9), progress.eta(started, done, k))
    order, drop = np.asarray(state['order']), np.asarray(state['drop'], np.float64)
  return Paths(order, drop / totals[:, None]), fits


@functools.cache
def _jitted_step(step):
  """`step` jitted, its state donated and updated in place (built on first use: the XLA:CPU
  option that lets the loop do so needs the backend, which is not queried at import)."""
  return jax.jit(step, static_argnums=(6,), donate_argnums=(0,),
                 compiler_options=core.compiler_options())


def _pick(state, t):
  """Each path's best unchosen candidate at step t, its drop recorded, marked chosen."""
  ratio = jnp.where(state['chosen'], -jnp.inf, state['explained'] / state['unexplained'])
  best = jnp.argmax(ratio, axis=1)
  state['order'] = state['order'].at[:, t].set(best.astype(jnp.int32))
  state['drop'] = state['drop'].at[:, t].set(jnp.take_along_axis(ratio, best[:, None], 1)[:, 0])
  state['chosen'] = state['chosen'].at[jnp.arange(len(best)), best].set(True)
  return state, best


def _start(explained, unexplained, n, k):
  paths, padded = explained.shape
  return {'explained': explained, 'unexplained': unexplained,
          'chosen': jnp.broadcast_to(jnp.arange(padded) >= n, (paths, padded)),
          'order': jnp.zeros((paths, k), jnp.int32),
          'drop': jnp.zeros((paths, k), explained.dtype)}


@jax.jit(static_argnums=(4, 5))
def _sample_init(x, masks, scales, penalties, k, n):
  """Sample space: each path's rows x rows Gram K = X_p X_pᵀ, |X_pᵀx_j|² and |x_j|² + λ
  (X_p: the centred rows, those outside the fit zeroed, genes divided by the path's scale)."""
  def one(mask, scale):
    xp = mask[:, None] * x / scale
    gram = xp @ xp.T
    return gram, jnp.einsum('ij,ij->j', gram @ xp, xp), jnp.einsum('ij,ij->j', xp, xp)
  gram, explained, squares = jax.lax.map(lambda a: one(*a), (masks, scales))
  state = _start(explained, squares + penalties[:, None], n, k)
  state['gram'] = gram
  state['projector'] = jnp.broadcast_to(jnp.eye(len(x), dtype=x.dtype), gram.shape)
  return state


def _sample_step(state, x, masks, scales, penalties, first, steps):
  """`steps` greedy steps of every path in sample space; one read of x per step for all."""
  del penalties
  def body(t, state):
    state, best = _pick(state, t)
    column = masks * x[:, best].T / jnp.take_along_axis(scales, best[:, None], 1)
    residual = jnp.einsum('pij,pj->pi', state['projector'], column)          # u_b
    q = residual / jnp.sqrt(jnp.take_along_axis(state['unexplained'], best[:, None], 1))
    gram_q = jnp.einsum('pij,pj->pi', state['gram'], q)
    projected_q = jnp.einsum('pij,pj->pi', state['projector'], gram_q)      # P K q
    both = jnp.concatenate([q, projected_q]) @ x / jnp.concatenate([scales, scales])
    gamma, projected = both[:len(q)], both[len(q):]                        # qᵀx_j, (Kq)ᵀu_j
    q_gram_q = jnp.sum(q * gram_q, axis=1, keepdims=True)
    state['explained'] = state['explained'] + gamma * (gamma * q_gram_q - 2 * projected)
    state['unexplained'] = state['unexplained'] - gamma ** 2
    state['projector'] = state['projector'] - jnp.einsum('pi,pj->pij', q, q)
    return state
  return jax.lax.fori_loop(first, first + steps, body, state)


def _fit_product(cross, held_out, y):
  """C_p y_p for every path p: the fit's cross-product (every group's but the held-out
  one's) times the path's vector. Each group's C is read once for all paths, as a
  (genes, genes) @ (genes, paths) product."""
  groups, genes, _ = cross.shape
  per_group = (cross.reshape(groups * genes, genes) @ y.T).reshape(groups, genes, -1)
  per_group = per_group.transpose(0, 2, 1)   # (groups, paths, genes); C row-major as stored
  paths = jnp.arange(len(held_out))
  held = per_group[jnp.maximum(held_out, 0), paths]
  return per_group.sum(axis=0) - jnp.where((held_out >= 0)[:, None], held, 0)


def _fit_columns(cross, held_out, best):
  """Column `best[p]` of path p's fit cross-product, read as its row (C is symmetric; a
  column gather would transpose C every step)."""
  total = jnp.sum(cross[:, best, :], axis=0)
  held = cross[jnp.maximum(held_out, 0), best, :]
  return total - jnp.where((held_out >= 0)[:, None], held, 0)


@jax.jit(static_argnums=(4, 5))
def _gene_init(cross, held_out, scales, penalties, k, n):
  """Gene space: |X_pᵀx_j|² = Σ_i C_p[i, j]² and |x_j|² + λ from the scaled C_p."""
  def one(held, scale):
    fit = jnp.sum(cross, axis=0) - jnp.where(held >= 0, cross[jnp.maximum(held, 0)], 0)
    fit = fit / scale[:, None] / scale[None, :]
    return jnp.sum(fit ** 2, axis=0), jnp.diagonal(fit)
  explained, squares = jax.lax.map(lambda a: one(*a), (held_out, scales))
  state = _start(explained, squares + penalties[:, None], n, k)
  paths, padded = explained.shape
  state['coefficients'] = jnp.zeros((paths, k, padded), cross.dtype)   # V: q̃_tᵀz̃_j
  state['targets'] = jnp.zeros((paths, k, padded), cross.dtype)        # W: [X; 0]ᵀq̃_t
  return state


def _gene_step(state, cross, held_out, scales, penalties, first, steps):
  """`steps` greedy steps of every path in gene space; C read once per step for all."""
  paths = jnp.arange(len(penalties))
  def body(t, state):
    state, best = _pick(state, t)
    root = jnp.sqrt(state['unexplained'][paths, best])[:, None]
    column = (_fit_columns(cross, held_out, best) / scales
              / scales[paths, best][:, None])                              # C_p[:, b]
    on_best = state['coefficients'][paths, :, best]                        # V[:, b]
    v = (column + penalties[:, None] * (jnp.arange(scales.shape[1]) == best[:, None])
         - jnp.einsum('pt,ptj->pj', on_best, state['coefficients'])) / root
    w = (column - jnp.einsum('pt,ptj->pj', on_best, state['targets'])) / root
    cw = _fit_product(cross, held_out, w / scales) / scales                  # C_p w
    projected = cw - jnp.einsum('ptj,pt->pj', state['coefficients'],
                                jnp.einsum('ptj,pj->pt', state['targets'], w))
    ww = jnp.sum(w * w, axis=1, keepdims=True)
    state['explained'] = state['explained'] - 2 * v * projected + v ** 2 * ww
    state['unexplained'] = state['unexplained'] - v ** 2
    state['coefficients'] = state['coefficients'].at[:, t].set(v)
    state['targets'] = state['targets'].at[:, t].set(w)
    return state
  return jax.lax.fori_loop(first, first + steps, body, state)


def held_out_error(moments: Moments, held_out: int, fit: Fit, chosen: np.ndarray,
                   targets: np.ndarray, penalty: float) -> float:
  """Squared error on group `held_out`'s rows of ridge (penalty `penalty`, fitted on the
  other groups' rows) predicting genes `targets` from genes `chosen`, in `fit`'s units.

  Sample space solves in the fit rows' dual, B = X_Sᵀ(X_S X_Sᵀ + λI)⁻¹X_T (rows x rows);
  gene space needs only cross-products: with F the fit rows' and T the held-out rows',
  tr(T_TT) - 2 tr(BᵀT_ST) + tr(BᵀT_SS B), B = (F_SS + λI)⁻¹F_ST.
  """
  if moments.rows is not None:
    in_held = moments.row_groups == held_out
    scaled = moments.rows.astype(np.float64) / fit.scale
    train, test = scaled[~in_held], scaled[in_held]
    panel = train[:, chosen]
    dual = np.linalg.solve(panel @ panel.T + penalty * np.eye(len(panel)), train[:, targets])
    predicted = (test[:, chosen] @ panel.T) @ dual
    return float(np.sum((test[:, targets] - predicted) ** 2))
  index = np.concatenate([chosen, targets])
  with jax.enable_x64(moments.dtype == np.float64):
    cross = np.array(moments.cross[:, index][:, :, index], np.float64)
  cross /= fit.scale[index][:, None] * fit.scale[index][None, :]
  test, train = cross[held_out], cross.sum(axis=0) - cross[held_out]
  s = len(chosen)
  b = np.linalg.solve(train[:s, :s] + penalty * np.eye(s), train[:s, s:])
  return float(np.trace(test[s:, s:]) - 2 * np.sum(b * test[:s, s:])
               + np.sum(b * (test[:s, :s] @ b)))


def select(moments: Moments, k: int, alphas: Sequence[float], validation_k: int,
           standardise: bool, mesh: Mesh | None = None) -> tuple[Paths, float, np.ndarray]:
  """The greedy path to k genes on every row, at the relative penalty of `alphas` whose
  `validation_k`-gene panels, each chosen without one validation group of training studies,
  predict that group best (`held_out_error`). Returns that path, its penalty and every
  penalty's held-out error (empty with one penalty: nothing to choose).

  All penalties are scored on the same targets per group, the genes outside every penalty's
  panel, so that no penalty gains by taking hard genes out of its targets: squared error
  summed over those genes and the groups held out in turn. The final paths of every penalty
  run beside the validation paths when k <= validation_k, sharing their reads of the data.
  """
  alphas = [float(a) for a in alphas]
  if len(alphas) == 1:
    paths, _ = greedy_paths(moments, [ALL_ROWS], alphas, k, standardise, mesh)
    return paths, alphas[0], np.zeros(0)
  if moments.n_groups < 2:
    raise ValueError('greedy_ridge: choosing among several ridge penalties '
                     '(config.selectors.greedy_ridge_alphas) needs the training rows of at '
                     'least two studies; give one penalty instead')
  validation_k = min(validation_k, moments.n_genes // 2)
  held = list(range(moments.n_groups))
  together = k <= validation_k
  paths, fits = greedy_paths(moments, held + [ALL_ROWS] * together, alphas, validation_k,
                             standardise, mesh)
  order = paths.order.reshape(-1, len(alphas), validation_k)
  errors = np.zeros(len(alphas))
  for h, fit in zip(held, fits):
    targets = np.setdiff1d(np.arange(moments.n_genes), order[h].ravel())
    for a, alpha in enumerate(alphas):
      errors[a] += held_out_error(moments, h, fit, order[h, a], targets,
                                  alpha * penalty_scale(fit))
    logging.info('greedy_ridge: validation group %d of %d scored (%d held-out rows, %d common '
                 'targets)', h + 1, len(held), moments.group_rows()[h], len(targets))
  best = int(np.argmin(errors))
  logging.info('greedy_ridge: held-out squared error %s for relative penalties %s (%d genes): '
               '%g chosen', np.round(errors, 1).tolist(), alphas, validation_k, alphas[best])
  if together:
    path = len(held) * len(alphas) + best
    return Paths(paths.order[path:path + 1, :k], paths.gain[path:path + 1, :k]), \
        alphas[best], errors
  final, _ = greedy_paths(moments, [ALL_ROWS], [alphas[best]], k, standardise, mesh)
  return final, alphas[best], errors


def panel_table(moments: Moments, genes: Sequence[str], k: int,
                settings: ml_collections.ConfigDict, standardise: bool,
                mesh: Mesh | None = None) -> pd.DataFrame:
  """The k genes `select` takes under `settings` (config.selectors' greedy_ridge_* fields),
  best first: symbol and gain (the fraction of the training sum of squares its step
  explained), with the relative penalty used in `.attrs['alpha']`."""
  paths, alpha, _ = select(moments, k, tuple(settings.greedy_ridge_alphas),
                           settings.greedy_ridge_validation_k, standardise, mesh)
  table = pd.DataFrame({'symbol': np.asarray(genes)[paths.order[0]], 'gain': paths.gain[0]})
  table.attrs['alpha'] = alpha
  return table
