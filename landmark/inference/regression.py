"""Inferring target genes from landmark genes (method.md §4).

D-GEX (Chen et al. 2016): a tanh MLP trained with SGD + momentum on per-gene standardised
data, keeping the epoch with the best validation MAE. Baselines: L1000's linear regression
(least squares with an intercept) and D-GEX's KNN regression. Every model's `predict`
takes and returns values in the data's original units.
"""

import dataclasses
import functools
from typing import Sequence

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from numpy.typing import ArrayLike
import optax

from landmark.models import dgex
from landmark.training import core
from landmark.training import sharding


@dataclasses.dataclass
class Standardizer:
  """Per-gene z-score with `std + epsilon` (D-GEX), fitted on the training split."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, values: ArrayLike, epsilon: float = 1e-3) -> 'Standardizer':
    """Per-gene mean and std + epsilon of the training split `values` (samples, genes)."""
    values = np.asarray(values)
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64) + epsilon
    return cls(mean.astype(values.dtype), std.astype(values.dtype))

  def transform(self, values: ArrayLike) -> np.ndarray:
    """(values - mean) / std: data units to the standardised units the network sees."""
    return (np.asarray(values) - self.mean) / self.std

  def inverse_transform(self, values: ArrayLike) -> np.ndarray:
    """values * std + mean: standardised units (e.g. predictions) back to data units."""
    return np.asarray(values) * self.std + self.mean


def _blocks(array, block_size):
  """Zero-pads the leading axis to a multiple of `block_size` and splits it into blocks.

  Fixed block shapes mean one compilation per array size; padded rows are masked out.
  """
  array = np.asarray(array)
  n_blocks = -(-len(array) // block_size)
  padded = np.zeros((n_blocks * block_size, *array.shape[1:]), array.dtype)
  padded[:len(array)] = array
  return padded.reshape(n_blocks, block_size, *array.shape[1:])


@dataclasses.dataclass(frozen=True)
class SquaredError:
  """D-GEX's training objective (landmark.training.core): mean squared error over the
  standardised targets of the batch's real rows, dropout masks from the step's key."""

  def __call__(self, model, batch, mask, key, step):
    del step
    predictions = model(batch['x'], rngs=nnx.Rngs(dropout=key))
    return core.masked_mean(jnp.mean((predictions - batch['y']) ** 2, axis=1), mask)


@functools.partial(jax.jit, static_argnums=0)
def _mean_abs_error(graphdef, params, x_blocks, y_blocks, mask_blocks, y_std):
  """MAE in original units (|standardised error| * std) over blocks of standardised rows."""
  model = nnx.merge(graphdef, params)

  def block_error(block: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
    x, y, mask = block
    return jnp.sum(jnp.abs(model(x) - y) * y_std, axis=1) @ mask

  total = jnp.sum(jax.lax.map(block_error, (x_blocks, y_blocks, mask_blocks)))
  return total / (jnp.sum(mask_blocks) * y_std.size)


@functools.partial(jax.jit, static_argnums=0)
def _forward_blocks(graphdef, params, x_blocks):
  model = nnx.merge(graphdef, params)
  return jax.lax.map(lambda x: model(x), x_blocks)


def next_learning_rate(learning_rate: float, train_mae: float, previous_train_mae: float,
                       decay: float, floor: float) -> float:
  """D-GEX's schedule: multiply by `decay` when the training MAE rose; never below `floor`."""
  if train_mae > previous_train_mae:
    learning_rate *= decay
  return max(learning_rate, floor)


@dataclasses.dataclass
class DGEXModel:
  """A trained D-GEX network (best-validation parameters) with its scalers and history."""
  graphdef: nnx.GraphDef  # of the network in eval mode
  params: dict            # a pure dict (nnx.to_pure_dict)
  x_scaler: Standardizer
  y_scaler: Standardizer
  history: dict          # per-epoch numpy arrays: train_mae, val_mae, learning_rate
  best_epoch: int        # 0-based epoch whose parameters `params` are
  block_size: int = 1024

  def predict(self, x: ArrayLike) -> np.ndarray:
    """Targets inferred from landmarks `x`, both in the data's original units."""
    x = self.x_scaler.transform(x).astype(np.float32)
    blocks = _forward_blocks(self.graphdef, self.params, _blocks(x, min(self.block_size, len(x))))
    predictions = np.asarray(blocks).reshape(-1, blocks.shape[-1])[:len(x)]
    return self.y_scaler.inverse_transform(predictions)


def build_optimizer(config_dgex: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """D-GEX's SGD with momentum, or Adam for small compendia where SGD takes too few steps.

  The learning rate is an injected hyperparameter so the decay rule changes it without
  recompiling the epoch; built once per setting, so every fit of the same shapes reuses
  one compiled epoch.
  """
  if config_dgex.optimizer not in ('sgd', 'adam'):
    raise ValueError(f"dgex.optimizer must be 'sgd' or 'adam', got {config_dgex.optimizer!r}")
  return _optimizer(config_dgex.optimizer, config_dgex.learning_rate, config_dgex.momentum)


@functools.lru_cache(maxsize=16)
def _optimizer(name, learning_rate, momentum):
  if name == 'sgd':
    return optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum)
  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


TRAIN_MAE = 'eval/train_mae'     # TensorBoard tags of the per-epoch MAEs, in original units
VAL_MAE = 'eval/val_mae'
DESCRIPTIONS = {
    TRAIN_MAE: 'MAE of the targets of a fixed subset of training samples, without dropout, in '
               'the data units (log2 expression); a rise decays the learning rate',
    VAL_MAE: 'MAE of the targets of the validation split, in the data units (log2 expression); '
             'its lowest epoch gives the kept parameters',
}


def fit_dgex(config_dgex: ml_collections.ConfigDict, x_train: np.ndarray, y_train: np.ndarray,
             x_val: np.ndarray, y_val: np.ndarray, seed: int = 0, workdir: str | None = None,
             checkpoints: bool = True, train_monitor: int = 5000,
             mesh: jax.sharding.Mesh | None = None) -> 'DGEXModel':
  """Trains D-GEX through the training core; returns the parameters of the epoch with the
  lowest validation MAE.

  The training MAE that drives the learning-rate decay (`next_learning_rate`, applied
  between epochs) is measured after each epoch, without dropout, on a fixed subset of
  `train_monitor` training samples (as D-GEX does); both MAEs are in the data's original
  units. With a `workdir`, the fit writes TensorBoard curves there and, unless
  `checkpoints` is off, checkpoints that a rerun resumes from. Each training batch is split
  over the 'batch' axis of `mesh` (default: all devices; landmark.training.sharding); the
  batch size is rounded up to a multiple of the device count.
  """
  n_train, epochs = len(x_train), config_dgex.epochs
  if epochs < 1:
    raise ValueError(f'dgex.epochs must be at least 1, got {epochs}')
  mesh = mesh or sharding.device_mesh()
  x_scaler = Standardizer.fit(x_train, config_dgex.std_epsilon)
  y_scaler = Standardizer.fit(y_train, config_dgex.std_epsilon)
  x_train, x_val = (x_scaler.transform(x).astype(np.float32) for x in (x_train, x_val))
  y_train, y_val = (y_scaler.transform(y).astype(np.float32) for y in (y_train, y_val))
  batch_size = sharding.round_up(min(config_dgex.batch_size, n_train), mesh.size)

  model = dgex.build_dgex(config_dgex, x_train.shape[1], y_train.shape[1],
                     jax.random.fold_in(jax.random.key(seed), core.INIT_STREAM))
  eval_graphdef = nnx.graphdef(model)
  monitor = np.sort(np.random.default_rng(seed).permutation(n_train)[:train_monitor])
  eval_sets = {
      tag: sharding.replicate(mesh, (_blocks(x, batch_size), _blocks(y, batch_size),
                                     _blocks(np.ones(len(x), np.float32), batch_size)))
      for tag, (x, y) in ((TRAIN_MAE, (x_train[monitor], y_train[monitor])),
                          (VAL_MAE, (x_val, y_val)))}
  y_std = sharding.replicate(mesh, np.asarray(y_scaler.std, np.float32))

  def score(params: dict) -> dict[str, jax.Array]:
    return {tag: _mean_abs_error(eval_graphdef, params, *blocks, y_std)
            for tag, blocks in eval_sets.items()}

  def learning_rate_rule(history: dict[str, list]) -> float:
    train_mae = history[TRAIN_MAE]
    previous = train_mae[-2] if len(train_mae) > 1 else np.inf
    return next_learning_rate(history[core.LEARNING_RATE][-1], train_mae[-1], previous,
                              config_dgex.lr_decay, config_dgex.lr_floor)

  loop = core.Loop(epochs, batch_size, name='D-GEX', diverged_field='config.dgex.learning_rate',
                   checkpoint_every=int(checkpoints))
  result = core.fit(nnx.view(model, deterministic=False), SquaredError(),
                    build_optimizer(config_dgex), {'x': x_train, 'y': y_train}, loop, seed=seed,
                    mesh=mesh, workdir=workdir, evaluate=score, select_best=VAL_MAE,
                    learning_rate_rule=learning_rate_rule,
                    config_text=config_dgex.to_json_best_effort(indent=2),
                    descriptions=DESCRIPTIONS)
  history = {name: np.asarray(result.history[tag], np.float32) for name, tag in
             (('train_mae', TRAIN_MAE), ('val_mae', VAL_MAE),
              ('learning_rate', core.LEARNING_RATE))}
  logging.info('D-GEX: best validation MAE %.4f at epoch %d', history['val_mae'].min(),
               result.best_epoch)
  return DGEXModel(eval_graphdef, result.best_params, x_scaler, y_scaler, history,
                   result.best_epoch - 1)


@dataclasses.dataclass
class LinearModel:
  """y = x @ weights + intercept, fitted with ridge penalty `penalty` (0 = least squares)."""
  weights: jax.Array
  intercept: jax.Array
  penalty: float = 0.0

  def predict(self, x: ArrayLike) -> np.ndarray:
    """x @ weights + intercept: targets inferred from landmarks `x`."""
    return np.asarray(jnp.asarray(x, self.weights.dtype) @ self.weights + self.intercept)


def _centred_svd(x, y):
  """The SVD of centred `x` and the centred `y` projected on its left singular vectors.

  Returns (x_mean, y_mean, s, vt, uᵀy_c, keep); `keep` drops the singular values that
  numpy's pinv and lstsq treat as zero, so that an unpenalised fit is minimum-norm.
  """
  x, y = jnp.asarray(x), jnp.asarray(y)
  x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
  u, s, vt = jnp.linalg.svd(x - x_mean, full_matrices=False)
  keep = s > s[0] * max(x.shape) * jnp.finfo(x.dtype).eps
  return x_mean, y_mean, s, vt, u.T @ (y - y_mean), keep


def _shrinkage(s, keep, penalty):
  """diag(s / (s² + penalty)) of the ridge solution W = V diag(.) Uᵀ y_c (pinv at 0)."""
  return jnp.where(keep, s / (s ** 2 + penalty), 0.0)


def fit_linear(x: ArrayLike, y: ArrayLike, ridge: float = 0.0) -> LinearModel:
  """Least squares with an unpenalised intercept and an optional ridge term.

  Solved through the SVD of centred x: the closed form (x_cᵀx_c + ridge I)⁻¹x_cᵀy_c, and
  the minimum-norm solution when ridge is 0 and x is rank deficient (fewer samples than
  landmarks). Runs in float64 when jax_enable_x64 is on.
  """
  x_mean, y_mean, s, vt, projected_y, keep = _centred_svd(x, y)
  weights = vt.T @ (_shrinkage(s, keep, ridge)[:, None] * projected_y)
  return LinearModel(weights, y_mean - x_mean @ weights, float(ridge))


def fit_ridge(x: ArrayLike, y: ArrayLike, x_val: ArrayLike, y_val: ArrayLike,
              relative_penalties: Sequence[float]) -> LinearModel:
  """Ridge regression with its penalty chosen by mean validation MAE over all targets.

  Penalties are `relative_penalties` times the mean squared singular value of the centred
  training landmarks, so one grid suits any panel size and scale (0 = minimum-norm least
  squares). One SVD serves the whole grid: W(λ) = V diag(s / (s² + λ)) Uᵀ y_c.
  """
  x_mean, y_mean, s, vt, projected_y, keep = _centred_svd(x, y)
  projected_val = (jnp.asarray(x_val, x_mean.dtype) - x_mean) @ vt.T
  scale = jnp.mean(s ** 2)
  errors = [float(jnp.mean(jnp.abs(projected_val @ (_shrinkage(s, keep, p * scale)[:, None]
                                                    * projected_y) + y_mean - y_val)))
            for p in relative_penalties]
  best = int(np.argmin(errors))
  logging.info('ridge: relative penalty %g (validation MAE %.4f; grid %s)',
               relative_penalties[best], errors[best], np.round(errors, 4).tolist())
  penalty = float(relative_penalties[best] * scale)
  weights = vt.T @ (_shrinkage(s, keep, penalty)[:, None] * projected_y)
  return LinearModel(weights, y_mean - x_mean @ weights, penalty)


@functools.partial(jax.jit, static_argnums=0)
def _knn_blocks(k, train_x, train_y, query_blocks):
  """Mean target of the k training rows nearest (Euclidean) to each query row."""
  train_sq_norms = jnp.sum(train_x ** 2, axis=1)

  def block_predictions(queries: jax.Array) -> jax.Array:
    sq_distances = train_sq_norms - 2 * queries @ train_x.T   # + |q|², constant per row
    _, nearest = jax.lax.top_k(-sq_distances, k)
    return jnp.mean(train_y[nearest], axis=1)

  return jax.lax.map(block_predictions, query_blocks)


@dataclasses.dataclass
class KNNModel:
  """K-nearest-neighbour regression on the landmarks, evaluated in blocks of query rows."""
  x: jax.Array
  y: jax.Array
  k: int
  block_size: int = 1024

  def predict(self, x: ArrayLike) -> np.ndarray:
    """Mean targets of the k nearest training rows to each row of landmarks `x`."""
    x = np.asarray(x, self.x.dtype)
    blocks = _knn_blocks(self.k, self.x, self.y, _blocks(x, min(self.block_size, len(x))))
    return np.asarray(blocks).reshape(-1, blocks.shape[-1])[:len(x)]


def fit_knn(x: ArrayLike, y: ArrayLike, k: int = 10) -> KNNModel:
  """D-GEX's KNN baseline on training landmarks `x` and targets `y` (k checked here)."""
  if not 0 < k <= len(x):
    raise ValueError(f'knn needs 0 < k <= {len(x)} training samples, got k={k}')
  return KNNModel(jnp.asarray(x), jnp.asarray(y), k)


def fit_inference_model(kind: str, config: ml_collections.ConfigDict, x_train: np.ndarray,
                        y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int = 0,
                        workdir: str | None = None) -> LinearModel | KNNModel | DGEXModel:
  """Fits one of config.evaluate.models ('linear', 'ridge', 'dgex', 'knn') on the training split.

  D-GEX uses the validation split to pick its best epoch, ridge to pick its penalty; with a
  `workdir` D-GEX writes its TensorBoard curves there (no checkpoints: nothing of a fit
  made under another config can be resumed).
  """
  if kind == 'linear':
    return fit_linear(x_train, y_train, ridge=config.evaluate.ridge)
  if kind == 'ridge':
    return fit_ridge(x_train, y_train, x_val, y_val, config.evaluate.ridge_grid)
  if kind == 'knn':
    return fit_knn(x_train, y_train, k=config.evaluate.knn_neighbors)
  if kind == 'dgex':
    return fit_dgex(config.dgex, x_train, y_train, x_val, y_val, seed=seed, workdir=workdir,
                    checkpoints=False,
                    mesh=sharding.make_mesh(config))
  raise ValueError(f"Unknown inference model {kind!r}; expected 'linear', 'ridge', 'dgex' or "
                   "'knn'")
