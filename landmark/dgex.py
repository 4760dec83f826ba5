"""Inferring target genes from landmark genes (method.md §4).

D-GEX (Chen et al. 2016): a tanh MLP trained with SGD + momentum on per-gene standardised
data, keeping the epoch with the best validation MAE. Baselines: L1000's linear regression
(least squares with an intercept) and D-GEX's KNN regression. Every model's `predict`
takes and returns values in the data's original units.
"""

import dataclasses
import functools
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from landmark import models
from landmark import sharding

OUTPUT_INIT_RANGE = 1e-4          # D-GEX's `irange` of the linear output layer
HISTORY_KEYS = ('train_mae', 'val_mae', 'learning_rate')


@dataclasses.dataclass
class Standardizer:
  """Per-gene z-score with `std + epsilon` (D-GEX), fitted on the training split."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, values, epsilon=1e-3):
    values = np.asarray(values)
    mean = values.mean(axis=0, dtype=np.float64)
    std = values.std(axis=0, dtype=np.float64) + epsilon
    return cls(mean.astype(values.dtype), std.astype(values.dtype))

  def transform(self, values):
    return (np.asarray(values) - self.mean) / self.std

  def inverse_transform(self, values):
    return np.asarray(values) * self.std + self.mean


def _symmetric_uniform(limit):
  """Initializer drawing from U(-limit, limit)."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -limit, limit)
  return init


class DGEX(nnx.Module):
  """MLP landmarks -> targets: tanh hidden layers with dropout, linear output.

  Layers compute in `dtype` (bfloat16 on GPUs, say) from float32 parameters; predictions
  are float32, so the loss, its gradients and the MAEs are too.
  """

  def __init__(self, n_landmarks, hidden, n_targets, dropout, dtype=jnp.float32, *, rngs):
    widths = (n_landmarks, *hidden)
    # glorot_uniform is U(±sqrt(6 / (fan_in + fan_out))), D-GEX's hidden-layer range.
    self.hidden = nnx.List([
        nnx.Linear(fan_in, fan_out, kernel_init=nnx.initializers.glorot_uniform(),
                   bias_init=nnx.initializers.zeros_init(), dtype=dtype,
                   param_dtype=jnp.float32, rngs=rngs)
        for fan_in, fan_out in zip(widths[:-1], widths[1:])])
    self.dropout = nnx.Dropout(dropout)
    self.output = nnx.Linear(widths[-1], n_targets,
                             kernel_init=_symmetric_uniform(OUTPUT_INIT_RANGE),
                             bias_init=nnx.initializers.zeros_init(), dtype=dtype,
                             param_dtype=jnp.float32, rngs=rngs)

  def __call__(self, x, dropout_key=None):
    """Dropout is applied only when a key is given (training)."""
    for index, layer in enumerate(self.hidden):
      x = jnp.tanh(layer(x))
      if dropout_key is not None:
        x = self.dropout(x, deterministic=False, rngs=jax.random.fold_in(dropout_key, index))
    return self.output(x).astype(jnp.float32)


def build_dgex(config_dgex, n_landmarks, n_targets, key):
  """The D-GEX network of `config_dgex` (widths, dropout, compute dtype), drawn from `key`."""
  dtype = models.compute_dtype(config_dgex.compute_dtype, 'dgex.compute_dtype')
  return DGEX(n_landmarks, tuple(config_dgex.hidden), n_targets, config_dgex.dropout, dtype,
              rngs=nnx.Rngs(params=key))


def _blocks(array, block_size):
  """Zero-pads the leading axis to a multiple of `block_size` and splits it into blocks.

  Fixed block shapes mean one compilation per array size; padded rows are masked out.
  """
  array = np.asarray(array)
  n_blocks = -(-len(array) // block_size)
  padded = np.zeros((n_blocks * block_size, *array.shape[1:]), array.dtype)
  padded[:len(array)] = array
  return padded.reshape(n_blocks, block_size, *array.shape[1:])


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(3, 4))
def train_step(graphdef, optimizer, split, params, opt_state, x, y, batch, mask, dropout_key,
               step):
  """One SGD step on the rows `batch` of (x, y), split by the sharding `split`.

  Rows with mask 0 are padding. Parameters are replicated, so GSPMD turns the gradient
  into an all-reduce over the devices of the batch.
  """
  x_batch, y_batch = (jax.lax.with_sharding_constraint(rows[batch], split) for rows in (x, y))

  def loss_fn(params):
    predictions = nnx.merge(graphdef, params)(x_batch, jax.random.fold_in(dropout_key, step))
    squared_error = jnp.mean((predictions - y_batch) ** 2, axis=1)
    return jnp.sum(squared_error * mask) / jnp.sum(mask)

  grads = jax.grad(loss_fn)(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnums=0)
def _mean_abs_error(graphdef, params, x_blocks, y_blocks, mask_blocks, y_std):
  """MAE in original units (|standardised error| * std) over blocks of standardised rows."""
  model = nnx.merge(graphdef, params)

  def block_error(block):
    x, y, mask = block
    return jnp.sum(jnp.abs(model(x) - y) * y_std, axis=1) @ mask

  total = jnp.sum(jax.lax.map(block_error, (x_blocks, y_blocks, mask_blocks)))
  return total / (jnp.sum(mask_blocks) * y_std.size)


@functools.partial(jax.jit, static_argnums=0)
def _forward_blocks(graphdef, params, x_blocks):
  model = nnx.merge(graphdef, params)
  return jax.lax.map(lambda x: model(x), x_blocks)


def next_learning_rate(learning_rate, train_mae, previous_train_mae, decay, floor):
  """D-GEX's schedule: multiply by `decay` when the training MAE rose; never below `floor`."""
  if train_mae > previous_train_mae:
    learning_rate *= decay
  return max(learning_rate, floor)


def _with_learning_rate(opt_state, learning_rate):
  """Replaces the injected learning rate (same dtype, shape and sharding: no recompilation).

  The new value is placed on the current one's devices, all hosts' in a multi-host run,
  where a host-local array could not be checkpointed.
  """
  current = opt_state.hyperparams['learning_rate']
  hyperparams = {**opt_state.hyperparams, 'learning_rate': jax.device_put(
      np.asarray(learning_rate, current.dtype), current.sharding)}
  return opt_state._replace(hyperparams=hyperparams)


@dataclasses.dataclass
class DGEXModel:
  """A trained D-GEX network (best-validation parameters) with its scalers and history."""
  graphdef: nnx.GraphDef
  params: nnx.State
  x_scaler: Standardizer
  y_scaler: Standardizer
  history: dict          # per-epoch numpy arrays: train_mae, val_mae, learning_rate
  best_epoch: int        # 0-based epoch whose parameters `params` are
  block_size: int = 1024

  def predict(self, x):
    x = self.x_scaler.transform(x).astype(np.float32)
    blocks = _forward_blocks(self.graphdef, self.params, _blocks(x, min(self.block_size, len(x))))
    predictions = np.asarray(blocks).reshape(-1, blocks.shape[-1])[:len(x)]
    return self.y_scaler.inverse_transform(predictions)


def build_optimizer(config_dgex):
  """D-GEX's SGD with momentum, or Adam for small compendia where SGD takes too few steps.

  The learning rate is an injected hyperparameter so the decay rule changes it without
  recompiling the step.
  """
  if config_dgex.optimizer == 'sgd':
    return optax.inject_hyperparams(optax.sgd)(learning_rate=config_dgex.learning_rate,
                                               momentum=config_dgex.momentum)
  if config_dgex.optimizer == 'adam':
    return optax.inject_hyperparams(optax.adam)(learning_rate=config_dgex.learning_rate)
  raise ValueError(f"dgex.optimizer must be 'sgd' or 'adam', got {config_dgex.optimizer!r}")


def fit_dgex(config_dgex, x_train, y_train, x_val, y_val, seed=0, writer=None,
             checkpoint_manager=None, train_monitor=5000, mesh=None):
  """Trains D-GEX; returns the parameters of the epoch with the lowest validation MAE.

  The training MAE that drives the learning-rate decay is measured after each epoch,
  without dropout, on a fixed subset of `train_monitor` training samples (as D-GEX does);
  both MAEs are in the data's original units. `writer` (anything with
  `write_scalars(step, scalars)`) gets the per-epoch metrics; `checkpoint_manager` (an
  orbax CheckpointManager) saves the training state after every epoch and a fit resumes
  from its latest step. Each training batch is split over the 'batch' axis of `mesh`
  (default: all devices; landmark.sharding), so `dgex.batch_size` must be a multiple of
  the device count; parameters, optimizer state and the training data are replicated.
  """
  n_train, epochs = len(x_train), config_dgex.epochs
  if epochs < 1:
    raise ValueError(f'dgex.epochs must be at least 1, got {epochs}')
  mesh = mesh or sharding.device_mesh()
  sharding.check_divisible(mesh, config_dgex.batch_size, 'dgex.batch_size')
  x_scaler = Standardizer.fit(x_train, config_dgex.std_epsilon)
  y_scaler = Standardizer.fit(y_train, config_dgex.std_epsilon)
  x_train, x_val = (x_scaler.transform(x).astype(np.float32) for x in (x_train, x_val))
  y_train, y_val = (y_scaler.transform(y).astype(np.float32) for y in (y_train, y_val))
  batch_size = sharding.round_up(min(config_dgex.batch_size, n_train), mesh.size)

  init_key, dropout_key = jax.random.split(jax.random.key(seed))
  graphdef, params = nnx.split(build_dgex(config_dgex, x_train.shape[1], y_train.shape[1],
                                         init_key))
  optimizer = build_optimizer(config_dgex)
  params, opt_state = sharding.replicate(mesh, (params, optimizer.init(params)))
  state = {
      'params': params,
      'opt_state': opt_state,
      'best': jax.tree.map(jnp.copy, params),
      'history': {key: np.full(epochs, np.nan, np.float32) for key in HISTORY_KEYS},
  }
  start_epoch = 0
  if checkpoint_manager is not None and checkpoint_manager.latest_step() is not None:
    start_epoch = checkpoint_manager.latest_step()
    abstract_state = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    state = checkpoint_manager.restore(start_epoch, args=ocp.args.StandardRestore(abstract_state))
    logging.info('D-GEX: resumed from the checkpoint after epoch %d', start_epoch)
  params, opt_state, best = state['params'], state['opt_state'], state['best']
  history = {key: np.array(state['history'][key]) for key in HISTORY_KEYS}

  monitor = np.sort(np.random.default_rng(seed).permutation(n_train)[:train_monitor])
  eval_sets = {
      name: sharding.replicate(mesh, (_blocks(x, batch_size), _blocks(y, batch_size),
                                      _blocks(np.ones(len(x), np.float32), batch_size)))
      for name, (x, y) in (('train', (x_train[monitor], y_train[monitor])),
                           ('val', (x_val, y_val)))}
  y_std = sharding.replicate(mesh, np.asarray(y_scaler.std, np.float32))
  x_train_device, y_train_device = sharding.replicate(mesh, (x_train, y_train))
  split = sharding.batch_sharding(mesh)
  masks = _blocks(np.ones(n_train, np.float32), batch_size)
  steps_per_epoch = len(masks)

  epoch_seconds = []
  try:
    for epoch in range(start_epoch, epochs):
      started = time.perf_counter()
      learning_rate = float(opt_state.hyperparams['learning_rate'])
      order = np.random.default_rng([seed, epoch]).permutation(n_train)
      for index, (batch, mask) in enumerate(zip(_blocks(order, batch_size), masks)):
        params, opt_state = train_step(
            graphdef, optimizer, split, params, opt_state, x_train_device, y_train_device,
            sharding.put_batch(mesh, batch), sharding.put_batch(mesh, mask), dropout_key,
            epoch * steps_per_epoch + index)
      train_mae = float(_mean_abs_error(graphdef, params, *eval_sets['train'], y_std))
      val_mae = float(_mean_abs_error(graphdef, params, *eval_sets['val'], y_std))
      if not np.isfinite([train_mae, val_mae]).all():
        raise FloatingPointError(f'D-GEX diverged at epoch {epoch + 1}: train MAE {train_mae}, '
                                 f'val MAE {val_mae} (lower dgex.learning_rate)')
      history['train_mae'][epoch] = train_mae
      history['val_mae'][epoch] = val_mae
      history['learning_rate'][epoch] = learning_rate
      if np.argmin(history['val_mae'][:epoch + 1]) == epoch:
        best = jax.tree.map(jnp.copy, params)
      previous_train_mae = history['train_mae'][epoch - 1] if epoch else np.inf
      opt_state = _with_learning_rate(opt_state, next_learning_rate(
          learning_rate, train_mae, previous_train_mae, config_dgex.lr_decay,
          config_dgex.lr_floor))

      if checkpoint_manager is not None:
        checkpoint_manager.save(epoch + 1, args=ocp.args.StandardSave({
            'params': params, 'opt_state': opt_state, 'best': best, 'history': history}))
      if writer is not None:
        writer.write_scalars(epoch + 1, {'dgex/train_mae': train_mae, 'dgex/val_mae': val_mae,
                                         'dgex/learning_rate': learning_rate})
      epoch_seconds.append(time.perf_counter() - started)
      logging.info('D-GEX epoch %d/%d: train MAE %.4f, val MAE %.4f, lr %.3g, %.0f samples/s, '
                   'ETA %.0f s', epoch + 1, epochs, train_mae, val_mae, learning_rate,
                   n_train / epoch_seconds[-1], (epochs - epoch - 1) * np.median(epoch_seconds))
  finally:
    if checkpoint_manager is not None:
      checkpoint_manager.wait_until_finished()

  best_epoch = int(np.argmin(history['val_mae']))
  logging.info('D-GEX: best validation MAE %.4f at epoch %d', history['val_mae'][best_epoch],
               best_epoch + 1)
  return DGEXModel(graphdef, best, x_scaler, y_scaler, history, best_epoch)


@dataclasses.dataclass
class LinearModel:
  """y = x @ weights + intercept, fitted with ridge penalty `penalty` (0 = least squares)."""
  weights: jax.Array
  intercept: jax.Array
  penalty: float = 0.0

  def predict(self, x):
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


def fit_linear(x, y, ridge=0.0):
  """Least squares with an unpenalised intercept and an optional ridge term.

  Solved through the SVD of centred x: the closed form (x_cᵀx_c + ridge I)⁻¹x_cᵀy_c, and
  the minimum-norm solution when ridge is 0 and x is rank deficient (fewer samples than
  landmarks). Runs in float64 when jax_enable_x64 is on.
  """
  x_mean, y_mean, s, vt, projected_y, keep = _centred_svd(x, y)
  weights = vt.T @ (_shrinkage(s, keep, ridge)[:, None] * projected_y)
  return LinearModel(weights, y_mean - x_mean @ weights, float(ridge))


def fit_ridge(x, y, x_val, y_val, relative_penalties):
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

  def block_predictions(queries):
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

  def predict(self, x):
    x = np.asarray(x, self.x.dtype)
    blocks = _knn_blocks(self.k, self.x, self.y, _blocks(x, min(self.block_size, len(x))))
    return np.asarray(blocks).reshape(-1, blocks.shape[-1])[:len(x)]


def fit_knn(x, y, k=10):
  if not 0 < k <= len(x):
    raise ValueError(f'knn needs 0 < k <= {len(x)} training samples, got k={k}')
  return KNNModel(jnp.asarray(x), jnp.asarray(y), k)


def fit_inference_model(kind, config, x_train, y_train, x_val, y_val, seed=0, writer=None,
                        checkpoint_manager=None):
  """Fits one of config.evaluate.models ('linear', 'ridge', 'dgex', 'knn') on the training split.

  D-GEX uses the validation split to pick its best epoch, ridge to pick its penalty.
  """
  if kind == 'linear':
    return fit_linear(x_train, y_train, ridge=config.evaluate.ridge)
  if kind == 'ridge':
    return fit_ridge(x_train, y_train, x_val, y_val, config.evaluate.ridge_grid)
  if kind == 'knn':
    return fit_knn(x_train, y_train, k=config.evaluate.knn_neighbors)
  if kind == 'dgex':
    return fit_dgex(config.dgex, x_train, y_train, x_val, y_val, seed=seed, writer=writer,
                    checkpoint_manager=checkpoint_manager, mesh=sharding.make_mesh(config))
  raise ValueError(f"Unknown inference model {kind!r}; expected 'linear', 'ridge', 'dgex' or "
                   "'knn'")
