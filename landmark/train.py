"""Trains the paper's AutoEncoder (method.md section 2) and evaluates its reconstructions.

`train_autoencoder` is resumable: it checkpoints every `config.train.checkpoint_every_epochs`
epochs and at the end, continues from the latest checkpoint in `<workdir>/checkpoints`, and
ends with exactly the parameters of an uninterrupted run, because every random draw is a
function of (seed, epoch, step), not of how many draws came before.

Batches: every epoch visits all samples once in a permutation drawn from (seed, epoch). The
last, partial batch is kept, padded to the full batch size with masked rows, so every step
has the same shapes (one compilation) and the loss of that batch is the mean over its real
rows, as in Keras.

Data parallelism (landmark.sharding, `config.mesh`): the device-resident training matrix
and every step's batch are split along the mesh's 'batch' axis, parameters and optimizer
state are replicated, and GSPMD partitions the jitted epoch (the gradient becomes an
all-reduce). The batch size must be a multiple of the number of devices.

Larger than memory (landmark.streaming): given a `streaming.SampleStream` instead of an
array, the scaler is fitted in one streaming pass and every epoch runs the jitted step
over the stream's batches, read, scaled and put on the devices by a background thread
while the previous step runs; the batches are a function of (seed, epoch), so resuming
is exact here too. The fraction of the epoch spent waiting for data is logged.
"""

import datetime
import functools
import os
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from landmark import checkpointing
from landmark import errors
from landmark import evaluate
from landmark import fileio
from landmark import metric_writing
from landmark import models
from landmark import sharding
from landmark import streaming

# Tags of the per-epoch TensorBoard scalars; also the keys of the returned history.
TRAIN_LOSS = 'train/loss'
EVAL_MAE = 'eval/mae'
EVAL_PCC = 'eval/pcc'
LEARNING_RATE = 'train/learning_rate'
SAMPLES_PER_SEC = 'train/samples_per_sec'
DATA_WAIT_FRACTION = 'train/data_wait_fraction'   # streamed runs only


def build_model(config, n_features, key):
  """The AutoEncoder of `config.model` with parameters and dropout stream drawn from `key`.

  It computes in `config.model.compute_dtype` from float32 parameters.
  """
  init_key, dropout_key = jax.random.split(key)
  return models.AutoEncoder(
      n_features, tuple(config.model.hidden), config.model.bottleneck,
      config.model.activation, config.model.dropout,
      models.compute_dtype(config.model.compute_dtype, 'config.model.compute_dtype'),
      config.model.output_activation, rngs=nnx.Rngs(params=init_key, dropout=dropout_key))


LOSSES = ('mae', 'mse')
SCHEDULES = ('constant', 'cosine')


def check_config(config) -> None:
  """Raises a ConfigError for a `config.model` / `config.train` choice training cannot use.

  A sigmoid output can only reach [0, 1], so it needs min-max scaled inputs; standardised
  inputs need the linear output.
  """
  choices = {'config.model.scale': (config.model.scale, tuple(models.SCALERS)),
             'config.model.activation': (config.model.activation, tuple(models.ACTIVATIONS)),
             'config.model.output_activation': (config.model.output_activation,
                                                tuple(models.OUTPUT_ACTIVATIONS)),
             'config.train.loss': (config.train.loss, LOSSES),
             'config.train.schedule': (config.train.schedule, SCHEDULES)}
  for field, (value, known) in choices.items():
    if value not in known:
      raise errors.ConfigError(field, f'{value!r} is not one of {", ".join(known)}')
  if config.model.scale == 'standard' and config.model.output_activation == 'sigmoid':
    raise errors.ConfigError('config.model.output_activation', 'a sigmoid output cannot '
                             'reach standardised values (scale "standard"); use "linear"')
  if not 0 <= config.train.warmup_fraction < 1:
    raise errors.ConfigError('config.train.warmup_fraction',
                             f'{config.train.warmup_fraction} is not in [0, 1)')


def build_optimizer(config, steps_per_epoch: int = 1):
  """Adam with the hyperparameters of `config.train`, kept in its state (to log and resume).

  The learning rate rises linearly from 0 over the first `config.train.warmup_fraction` of
  the run's steps (`config.train.epochs` x `steps_per_epoch`), then stays (schedule
  'constant') or follows a cosine decay to 0 at the last step ('cosine').
  """
  peak = config.train.learning_rate
  steps = config.train.epochs * steps_per_epoch
  warmup = round(config.train.warmup_fraction * steps)
  decay_steps = max(steps - warmup, 1)
  learning_rate = {'constant': optax.constant_schedule(peak),
                   'cosine': optax.cosine_decay_schedule(peak, decay_steps)}[config.train.schedule]
  if warmup:
    learning_rate = optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), learning_rate], [warmup])
  return optax.inject_hyperparams(optax.adam)(
      learning_rate=learning_rate, b1=config.train.b1, b2=config.train.b2, eps=config.train.eps)


def loss_fn(model, x, mask, l2, rngs=None, loss='mae'):
  """MAE (or MSE, `loss`) over the unmasked rows of `x` plus l2 * (sum of squared Dense
  kernels), Keras style."""
  residual = model(x, rngs=rngs) - x
  error = jnp.mean(jnp.abs(residual) if loss == 'mae' else residual ** 2, axis=1)
  mean_error = jnp.sum(error * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return mean_error + l2 * sum(jnp.sum(kernel ** 2) for kernel in model.kernels())


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_batches(key, n_samples, batch_size, epoch):
  """Sample indices (steps, batch_size) and row mask of one epoch, from (key, epoch)."""
  steps = -(-n_samples // batch_size)
  order = jax.random.permutation(jax.random.fold_in(key, epoch), n_samples)
  padded = jnp.zeros(steps * batch_size, order.dtype).at[:n_samples].set(order)
  mask = jnp.arange(steps * batch_size) < n_samples
  return padded.reshape(steps, batch_size), mask.reshape(steps, batch_size).astype(jnp.float32)


def make_train_step(graphdef, rest, optimizer, l2, loss='mae'):
  """The pure step (params, opt_state, x, mask, dropout_key) -> (params, opt_state, loss)."""

  def train_step(params, opt_state, x, mask, dropout_key):
    def batch_loss(params):
      model = nnx.merge(graphdef, params, rest)
      return loss_fn(model, x, mask, l2, nnx.Rngs(dropout=dropout_key), loss)

    value, grads = jax.value_and_grad(batch_loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return train_step


def make_train_epoch(train_step, batch_size, mesh=None, n_samples=None):
  """A jitted epoch (params, opt_state, data, epoch, shuffle_key, dropout_key) -> updated, loss.

  One dispatch runs the whole epoch: `lax.scan` of `train_step` over the batches of
  `epoch_batches`, each gathered from the device-resident `data` (its first `n_samples`
  rows, default all; the rest pad it to a multiple of the device count); global step s
  draws its dropout masks from fold_in(dropout_key, s). `data` and each batch are split
  over `mesh` (default: all devices), everything else is replicated. Parameters and
  optimizer state are donated (updated in place) and the step's temporaries are allocated
  once per epoch. Returns the epoch's training loss: the mean over samples of the
  per-batch losses.
  """
  mesh = mesh or sharding.device_mesh()
  split, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)

  def train_epoch(params, opt_state, data, epoch, shuffle_key, dropout_key):
    n_rows = n_samples or data.shape[0]
    indices, mask = epoch_batches(shuffle_key, n_rows, batch_size, epoch)

    def body(carry, batch):
      params, opt_state, step = carry
      index, batch_mask = batch
      x = jax.lax.with_sharding_constraint(data[index], split)
      batch_mask = jax.lax.with_sharding_constraint(batch_mask, split)
      params, opt_state, loss = train_step(params, opt_state, x, batch_mask,
                                           jax.random.fold_in(dropout_key, step))
      return (params, opt_state, step + 1), loss

    first_step = (epoch - 1) * indices.shape[0]
    (params, opt_state, _), losses = jax.lax.scan(body, (params, opt_state, first_step),
                                                  (indices, mask))
    return params, opt_state, jnp.sum(losses * mask.sum(axis=1)) / n_rows

  return jax.jit(train_epoch, donate_argnums=(0, 1), compiler_options=_compiler_options(),
                 in_shardings=(whole, whole, split, whole, whole, whole), out_shardings=whole)


def make_stream_epoch(train_step, stream, batch_size, seed, mesh=None):
  """An epoch (params, opt_state, epoch, dropout_key) -> (params, opt_state, metrics) over `stream`.

  The jitted, buffer-donating `train_step` runs once per batch of `stream.batches(seed,
  epoch, batch_size)`, placed on `mesh` (default: all devices) by the stream's background
  thread; one step is kept in flight, so the host never runs further ahead. Global step s
  draws its dropout masks from fold_in(dropout_key, s), as in `make_train_epoch`. `metrics`
  holds the epoch's loss (mean over samples of the per-batch losses) and the fraction of
  the epoch's wall time spent waiting for a batch.
  """
  mesh = mesh or sharding.device_mesh()
  split, whole = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  step_fn = jax.jit(
      lambda params, opt_state, x, mask, key, step: train_step(
          params, opt_state, x, mask, jax.random.fold_in(key, step)),
      donate_argnums=(0, 1), compiler_options=_compiler_options(),
      in_shardings=(whole, whole, split, split, whole, whole), out_shardings=whole)
  steps = stream.steps_per_epoch(batch_size)
  batch_rows = np.minimum(batch_size, len(stream) - batch_size * np.arange(steps))

  def place(batch):
    return tuple(sharding.put_batch(mesh, array) for array in batch)

  def run_epoch(params, opt_state, epoch, dropout_key):
    started = time.perf_counter()
    batches = stream.batches(seed, epoch, batch_size, place)
    losses = []
    for step, (x, mask) in enumerate(batches, start=(epoch - 1) * steps):
      if losses:
        losses[-1].block_until_ready()
      params, opt_state, loss = step_fn(params, opt_state, x, mask, dropout_key, np.int32(step))
      losses.append(loss)
    loss = np.sum(np.asarray(jax.device_get(losses), np.float64) * batch_rows) / len(stream)
    return params, opt_state, {TRAIN_LOSS: loss, DATA_WAIT_FRACTION:
                               batches.wait_seconds / (time.perf_counter() - started)}

  return run_epoch


def _compiler_options():
  """XLA:CPU options for the training epoch (other backends need none).

  Region-based copy insertion lets the scanned step update the donated kernels in place;
  without it XLA:CPU copies both 22,268 x 500 kernels every step (measured with
  experiments/benchmark.py).
  """
  if jax.default_backend() != 'cpu':
    return None
  return {'xla_cpu_copy_insertion_use_region_analysis': True}


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x):
  return nnx.merge(graphdef, state)(x)


def reconstruct(model, x, batch_size=1024):
  """Dropout-free reconstruction of scaled `x` in fixed-size batches (the last padded)."""
  graphdef, state = nnx.split(nnx.view(model, deterministic=True))
  x = jnp.asarray(x, jnp.float32)
  batch_size = min(batch_size, len(x))
  outputs = []
  for start in range(0, len(x), batch_size):
    batch = x[start:start + batch_size]
    padding = batch_size - len(batch)
    outputs.append(_apply(graphdef, state, jnp.pad(batch, ((0, padding), (0, 0))))[:len(batch)])
  return jnp.concatenate(outputs)


@jax.jit
def _heldout_summary(reconstruction, x, offset, span):
  """Mean per-gene MAE and PCC of a scaled reconstruction against `x`, in x's units.

  The per-epoch summary, on device so that the held-out set never leaves it; the same
  values as the means of evaluate.per_gene_mae / per_gene_pcc (a gene constant in either
  has PCC 0), which `evaluate_reconstruction` reports per gene.
  """
  prediction = reconstruction * span + offset
  centred_x = x - x.mean(axis=0)
  centred_p = prediction - prediction.mean(axis=0)
  norms = jnp.sum(centred_x ** 2, axis=0) * jnp.sum(centred_p ** 2, axis=0)
  pcc = jnp.where(norms > 0, jnp.sum(centred_x * centred_p, axis=0) / jnp.sqrt(norms), 0.0)
  return jnp.mean(jnp.abs(prediction - x)), jnp.mean(pcc)


def train_autoencoder(config, workdir, train_x, eval_x, identity=None):
  """Trains (or resumes, or reloads) the AutoEncoder on `train_x`; returns (model, scaler, history).

  `train_x` and `eval_x` are float32 (samples x features) in the data's original units;
  `eval_x` (may be None) is scored every `config.train.log_every_epochs` epochs. `train_x`
  may instead be a `streaming.SampleStream` (unscaled rows of a GCTX). The scaler is
  fitted on `train_x` and saved to `<workdir>/scaler.npz`. `history` maps the tags above
  (and 'epoch') to per-epoch lists. The returned model is in eval mode. Training runs on
  the mesh of `config.mesh` (landmark.sharding). `identity` (landmark.run_identity) is
  saved in every checkpoint; a checkpoint saved under another identity is never resumed.
  A NaN or infinite training loss stops the run with a NumericalError, saving nothing.
  """
  check_config(config)
  mesh = sharding.make_mesh(config)
  sharding.check_divisible(mesh, config.train.batch_size, 'config.train.batch_size')
  streamed = isinstance(train_x, streaming.SampleStream)
  scaler = fit_scaler(config.model.scale, train_x)
  if sharding.is_primary():
    scaler.save(os.path.join(workdir, 'scaler.npz'))

  key = jax.random.key(config.seed)
  model = build_model(config, train_x.shape[1], jax.random.fold_in(key, 0))
  steps_per_epoch = (train_x.steps_per_epoch(config.train.batch_size) if streamed
                     else -(-len(train_x) // config.train.batch_size))
  optimizer = build_optimizer(config, steps_per_epoch)
  train_graphdef, params, rest = nnx.split(nnx.view(model, deterministic=False), nnx.Param, ...)
  eval_graphdef = nnx.split(nnx.view(model, deterministic=True), nnx.Param, ...)[0]
  params = nnx.to_pure_dict(params)
  state = sharding.replicate(mesh, {'params': params, 'opt_state': optimizer.init(params),
                                    'rng': jax.random.key_data(key)})

  manager = checkpointing.make_manager(
      os.path.join(workdir, 'checkpoints'), save_every=config.train.checkpoint_every_epochs,
      keep=config.train.keep_checkpoints)
  start_epoch, history = 0, {'epoch': []}
  restored = checkpointing.restore(manager, checkpointing.abstract(state))
  if restored:
    start_epoch, state, metadata = restored
    if metadata.get('identity') != identity:
      raise errors.RunIdentityError(manager.directory, 'these checkpoints were saved under another '
                                    'config or other data; rerun with --overwrite')
    history = metadata['history']
    logging.info('Restored the checkpoint of epoch %d from %s.', start_epoch, workdir)

  epochs = config.train.epochs
  if start_epoch < epochs:
    train_step = make_train_step(train_graphdef, rest, optimizer, config.train.l2,
                                 config.train.loss)
    key = jax.random.wrap_key_data(state['rng'])
    dropout_key = jax.random.fold_in(key, 2)
    if streamed:
      run_epoch = make_stream_epoch(train_step, train_x.with_transform(scaler.transform),
                                    config.train.batch_size, config.seed, mesh)
    else:
      shuffle_key = jax.random.fold_in(key, 1)
      train_epoch = make_train_epoch(train_step, config.train.batch_size, mesh, len(train_x))
      data = sharding.put_batch(mesh, sharding.pad_rows(scaler.transform(train_x), mesh.size))

      def run_epoch(params, opt_state, epoch, dropout_key):
        params, opt_state, loss = train_epoch(params, opt_state, data, epoch, shuffle_key,
                                              dropout_key)
        return params, opt_state, {TRAIN_LOSS: loss}
    if eval_x is not None and len(eval_x):
      heldout = (jnp.asarray(scaler.transform(eval_x)), jnp.asarray(eval_x, jnp.float32),
                 jnp.asarray(scaler.offset), jnp.asarray(scaler.span))
    else:
      heldout = None
    writer = metric_writing.MetricWriter(os.path.join(workdir, 'tensorboard'),
                                         purge_step=start_epoch + 1)
    epoch_seconds = []
    for epoch in range(start_epoch + 1, epochs + 1):
      started = time.perf_counter()
      params, opt_state, metrics = run_epoch(state['params'], state['opt_state'], epoch,
                                             dropout_key)
      state = {'params': params, 'opt_state': opt_state, 'rng': state['rng']}
      metrics = jax.device_get({**metrics,
                                LEARNING_RATE: opt_state.hyperparams['learning_rate']})
      epoch_seconds.append(time.perf_counter() - started)
      metrics = {tag: float(value) for tag, value in metrics.items()}
      _stop_if_diverged(metrics[TRAIN_LOSS], epoch, history, manager.directory)
      metrics[SAMPLES_PER_SEC] = len(train_x) / epoch_seconds[-1]
      if heldout and (epoch % config.train.log_every_epochs == 0 or epoch == epochs):
        model = nnx.merge(eval_graphdef, params, rest)
        summary = _heldout_summary(reconstruct(model, heldout[0], config.train.batch_size),
                                   *heldout[1:])
        metrics[EVAL_MAE], metrics[EVAL_PCC] = map(float, jax.device_get(summary))
      writer.write_scalars(epoch, metrics)
      history['epoch'].append(epoch)
      for tag, value in metrics.items():
        history.setdefault(tag, []).append(value)
      _log_epoch(epoch, epochs, metrics, np.median(epoch_seconds) * (epochs - epoch))
      checkpointing.save(manager, epoch, state, {'history': history, 'identity': identity},
                         force=epoch == epochs)
    writer.close()
  manager.close()
  return nnx.merge(eval_graphdef, state['params'], rest), scaler, history


def _stop_if_diverged(loss, epoch, history, checkpoints):
  """Raises NumericalError on a NaN/inf training loss, before the epoch is saved."""
  if np.isfinite(loss):
    return
  finite = [(e, l) for e, l in zip(history['epoch'], history.get(TRAIN_LOSS, [])) if np.isfinite(l)]
  last = f'last finite loss {finite[-1][1]:.5g} at epoch {finite[-1][0]}' if finite else 'no finite loss before it'
  raise errors.NumericalError(
      'config.train.learning_rate', f'training diverged at epoch {epoch}: loss {loss} ({last}); '
      f'try a lower learning rate (checkpoints so far are kept in {checkpoints})')


def fit_scaler(scale: str, train_x) -> models.AffineScaler:
  """The `config.model.scale` scaler ('minmax' or 'standard') fitted on `train_x`.

  A `streaming.SampleStream` is fitted from its cached column statistics, plus one more
  pass for the standard deviations.
  """
  if not isinstance(train_x, streaming.SampleStream):
    return models.SCALERS[scale]().fit(train_x)
  if scale == 'minmax':
    return streaming.fit_scaler(train_x)
  mean = train_x.stats().mean
  squares = sum(np.sum((chunk - mean) ** 2, axis=0, dtype=np.float64)
                for chunk in train_x.arrays())
  return models.StandardScaler(mean, models.nonzero_span(np.sqrt(squares / len(train_x))))


def _log_epoch(epoch, epochs, metrics, eta_seconds):
  heldout = (f'  eval MAE {metrics[EVAL_MAE]:.4f} PCC {metrics[EVAL_PCC]:.4f}'
             if EVAL_MAE in metrics else '')
  logging.info('epoch %d/%d  loss %.5f%s  %.0f samples/s  ETA %s', epoch, epochs,
               metrics[TRAIN_LOSS], heldout, metrics[SAMPLES_PER_SEC],
               datetime.timedelta(seconds=round(eta_seconds)))


def evaluate_reconstruction(model, scaler, x, workdir, permutation_block=2048, features=None,
                            alpha=0.01):
  """Per-gene MAE, PCC and permutation p-value of reconstructing held-out `x` (original units).

  Writes `<workdir>/ae_gene_metrics.tsv` (feature, mae, pcc, perm_p) and the density plot
  `<workdir>/ae_density.png` (Fig. 2a) from process 0 (`sharding.is_primary`); returns a
  summary dict.
  """
  x = np.asarray(x, np.float32)
  prediction = scaler.inverse_transform(np.asarray(reconstruct(model, scaler.transform(x))))
  mae = evaluate.per_gene_mae(x, prediction)
  pcc = evaluate.per_gene_pcc(x, prediction)
  perm_p = evaluate.permutation_test(x, prediction, block_size=permutation_block)
  features = np.arange(x.shape[1]) if features is None else np.asarray(features)
  if sharding.is_primary():
    table = pd.DataFrame({'feature': features, 'mae': mae, 'pcc': pcc, 'perm_p': perm_p})
    fileio.write_table(os.path.join(workdir, 'ae_gene_metrics.tsv'), table, index=False)
    evaluate.plot_density(os.path.join(workdir, 'ae_density.png'),
                          {'MAE': mae, 'PCC': pcc}, 'per-gene value on held-out samples')
  return {'n_samples': len(x), 'n_features': x.shape[1], 'mean_mae': float(np.mean(mae)),
          'mean_pcc': float(np.mean(pcc)), 'n_pass': int(np.sum(perm_p < alpha)),
          'alpha': alpha}
