"""Trains the paper's AutoEncoder (method.md section 2) and reconstructs with it.

The AutoEncoder trains through the one training core (landmark.training.core): a jitted,
donated `lax.scan` epoch over device-resident data split over the mesh's 'batch' axis
(or over a streamed split's prefetched batches when the data are larger than memory,
landmark.data.splits), orbax checkpoints every `config.train.checkpoint_every_epochs`
epochs and at the end, exact resume, TensorBoard and a NaN stop. This module holds what
is the AE's own: the model and optimizer built from the config, its loss, its scaler and
the per-epoch held-out summary (the evaluation floor's `evaluate_reconstruction` scores
the trained model per gene).
"""

import dataclasses
import functools
import os
from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
import optax

from landmark import errors
from landmark.data import scalers
from landmark.data import splits
from landmark.models import autoencoder
from landmark.models import precision
from landmark.training import core
from landmark.training import sharding

# Held-out metrics of the per-epoch TensorBoard scalars (the core writes the training ones).
EVAL_MAE = 'eval/mae'
EVAL_PCC = 'eval/pcc'
DESCRIPTIONS = {
    EVAL_MAE: 'mean over genes of the absolute error of reconstructing the validation split, '
              'in the data units (log2 expression)',
    EVAL_PCC: 'mean over genes of the Pearson correlation between the validation split and its '
              'reconstruction, across samples (unitless, -1 to 1)',
}


def build_model(config: ml_collections.ConfigDict, n_features: int, key: jax.Array,
                studies: Sequence[str] = ()) -> autoencoder.AutoEncoder:
  """The AutoEncoder of `config.model` with parameters and dropout stream drawn from `key`,
  conditioned on `studies` (the training studies) when `config.model.study_conditional`.

  It computes in `config.model.compute_dtype` from float32 parameters.
  """
  init_key, dropout_key = jax.random.split(key)
  return autoencoder.AutoEncoder(
      n_features, tuple(config.model.hidden), config.model.bottleneck,
      config.model.activation, config.model.dropout,
      precision.compute_dtype(config.model.compute_dtype, 'config.model.compute_dtype'),
      config.model.output_activation,
      tuple(studies) if config.model.study_conditional else (),
      rngs=nnx.Rngs(params=init_key, dropout=dropout_key))


LOSSES = ('mae', 'mse')
SCHEDULES = ('constant', 'cosine')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ConfigError for a `config.model` / `config.train` choice training cannot use.

  A sigmoid output can only reach [0, 1], so it needs min-max scaled inputs; standardised
  inputs need the linear output.
  """
  choices = {'config.model.scale': (config.model.scale, tuple(scalers.SCALERS)),
             'config.model.activation': (config.model.activation, tuple(autoencoder.ACTIVATIONS)),
             'config.model.output_activation': (config.model.output_activation,
                                                tuple(autoencoder.OUTPUT_ACTIVATIONS)),
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


def build_optimizer(config: ml_collections.ConfigDict,
                    steps_per_epoch: int = 1) -> optax.GradientTransformation:
  """Adam with the hyperparameters of `config.train`, kept in its state (to log and resume).

  The learning rate rises linearly from 0 over the first `config.train.warmup_fraction` of
  the run's steps (`config.train.epochs` x `steps_per_epoch`), then stays (schedule
  'constant') or follows a cosine decay to 0 at the last step ('cosine'). Built once per
  setting, so a second run of the same setting reuses the compiled epoch.
  """
  train = config.train
  return _adam(train.learning_rate, train.b1, train.b2, train.eps, train.schedule,
               train.warmup_fraction, train.epochs * steps_per_epoch)


@functools.lru_cache(maxsize=64)
def _adam(peak, b1, b2, eps, schedule, warmup_fraction, steps):
  warmup = round(warmup_fraction * steps)
  decay_steps = max(steps - warmup, 1)
  learning_rate = {'constant': optax.constant_schedule(peak),
                   'cosine': optax.cosine_decay_schedule(peak, decay_steps)}[schedule]
  if warmup:
    learning_rate = optax.join_schedules(
        [optax.linear_schedule(0.0, peak, warmup), learning_rate], [warmup])
  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)


def loss_fn(model: autoencoder.AutoEncoder, x: jax.Array, mask: jax.Array, l2: float,
            rngs: nnx.Rngs | None = None, loss: str = 'mae',
            study_codes: jax.Array | None = None) -> jax.Array:
  """MAE (or MSE, `loss`) over the unmasked rows of `x` plus l2 * (sum of squared Dense
  kernels), Keras style; `study_codes` feed a study-conditional decoder."""
  residual = model(x, study_codes, rngs=rngs) - x
  error = jnp.mean(jnp.abs(residual) if loss == 'mae' else residual ** 2, axis=1)
  penalty = sum(jnp.sum(kernel ** 2) for kernel in model.kernels())
  return core.masked_mean(error, mask) + l2 * penalty


@dataclasses.dataclass(frozen=True)
class Reconstruction:
  """The AutoEncoder's training objective (landmark.training.core): `loss_fn` with the
  step's dropout masks drawn from the step's key."""
  l2: float
  loss: str = 'mae'

  def __call__(self, model, batch, mask, key, step):
    del step   # the AE's loss does not change over the run
    return loss_fn(model, batch['x'], mask, self.l2, nnx.Rngs(dropout=key), self.loss,
                   batch.get('study'))


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, x, study_codes):
  return nnx.merge(graphdef, state)(x, study_codes)


def reconstruct(model: autoencoder.AutoEncoder, x: np.ndarray, batch_size: int = 1024,
                study_codes: np.ndarray | None = None) -> jax.Array:
  """Dropout-free reconstruction of scaled `x` in fixed-size batches (the last padded);
  a study-conditional model needs each row's `study_codes` (model.study_codes)."""
  graphdef, state = nnx.split(nnx.view(model, deterministic=True))
  x = jnp.asarray(x, jnp.float32)
  codes = jnp.full(len(x), -1.0) if study_codes is None else jnp.asarray(study_codes, jnp.float32)
  batch_size = min(batch_size, len(x))
  outputs = []
  for start in range(0, len(x), batch_size):
    batch, batch_codes = x[start:start + batch_size], codes[start:start + batch_size]
    padding = batch_size - len(batch)
    outputs.append(_apply(graphdef, state, jnp.pad(batch, ((0, padding), (0, 0))),
                          jnp.pad(batch_codes, (0, padding), constant_values=-1))[:len(batch)])
  return jnp.concatenate(outputs)


@jax.jit
def _heldout_summary(reconstruction, x, offset, span):
  """Mean per-gene MAE and PCC of a scaled reconstruction against `x`, in x's units.

  The per-epoch summary, on device so that the held-out set never leaves it; the same
  values as the means of metrics.per_gene_mae / per_gene_pcc (a gene constant in either
  has PCC 0), which the evaluation floor's `evaluate_reconstruction` reports per gene.
  """
  prediction = reconstruction * span + offset
  centred_x = x - x.mean(axis=0)
  centred_p = prediction - prediction.mean(axis=0)
  norms = jnp.sum(centred_x ** 2, axis=0) * jnp.sum(centred_p ** 2, axis=0)
  pcc = jnp.where(norms > 0, jnp.sum(centred_x * centred_p, axis=0) / jnp.sqrt(norms), 0.0)
  return jnp.mean(jnp.abs(prediction - x)), jnp.mean(pcc)


def _score_heldout(graphdef, rest, heldout, batch_size, params):
  """EVAL_MAE and EVAL_PCC of the model with `params` on the scaled held-out set."""
  scaled, codes, *unscaled = heldout
  reconstruction = reconstruct(nnx.merge(graphdef, params, rest), scaled, batch_size, codes)
  mae, pcc = _heldout_summary(reconstruction, *unscaled)
  return {EVAL_MAE: mae, EVAL_PCC: pcc}


def train_autoencoder(config: ml_collections.ConfigDict, workdir: str,
                      train_x: splits.Split | np.ndarray,
                      eval_x: splits.Split | np.ndarray | None,
                      identity: dict | None = None
                      ) -> tuple[autoencoder.AutoEncoder, scalers.AffineScaler, dict]:
  """Trains (or resumes, or reloads) the AutoEncoder on `train_x`; returns (model, scaler, history).

  `train_x` and `eval_x` are splits (landmark.data.splits: in memory, or for `train_x` a
  stream of a GCTX's rows) or float32 (samples x features) arrays, in the data's original
  units; `eval_x` (may be None) is scored every `config.train.log_every_epochs` epochs. A
  study-conditional model (`config.model.study_conditional`) is told each row's study
  from the splits' `meta['study']` (held-out studies it never saw get none). The scaler
  is fitted on `train_x` and saved to `<workdir>/scaler.npz`. Training runs through the
  one training core (landmark.training.core) on the mesh of `config.mesh`, checkpointing
  to `<workdir>/checkpoints` under `identity` (landmark.run_identity); `history` maps the
  core's tags and EVAL_MAE / EVAL_PCC (and 'epoch') to per-epoch lists. The returned model
  is in eval mode. A NaN or infinite training loss stops the run with a NumericalError,
  saving nothing.
  """
  check_config(config)
  mesh = sharding.make_mesh(config)
  sharding.check_divisible(mesh, config.train.batch_size, 'config.train.batch_size')
  train_x = splits.as_split(train_x)
  if config.model.study_conditional and not train_x.resident:
    raise errors.ConfigError('config.model.study_conditional', 'a study-conditional '
                             'AutoEncoder needs the training split in memory (data.stream off)')
  scaler = train_x.fit_scaler(config.model.scale)
  if sharding.is_primary():
    scaler.save(os.path.join(workdir, 'scaler.npz'))

  model = build_model(config, train_x.shape[1],
                      jax.random.fold_in(jax.random.key(config.seed), core.INIT_STREAM),
                      sorted(set(train_x.meta['study'].astype(str))))
  steps_per_epoch = train_x.steps_per_epoch(config.train.batch_size)
  eval_graphdef, _, rest = nnx.split(nnx.view(model, deterministic=True), nnx.Param, ...)
  score_heldout = None
  eval_x = None if eval_x is None else splits.as_split(eval_x)
  if eval_x is not None and eval_x.shape[0]:
    heldout = (jnp.asarray(scaler.transform(eval_x.values)),
               jnp.asarray(model.study_codes(eval_x.meta['study'])),
               jnp.asarray(eval_x.values, jnp.float32), jnp.asarray(scaler.offset),
               jnp.asarray(scaler.span))
    score_heldout = functools.partial(_score_heldout, eval_graphdef, rest, heldout,
                                      config.train.batch_size)
  data = train_x.with_transform(scaler.transform).training_data()
  if model.studies:
    data = {**data, 'study': model.study_codes(train_x.meta['study'])}
  loop = core.Loop(config.train.epochs, config.train.batch_size, name='AutoEncoder',
                   eval_every=config.train.log_every_epochs,
                   checkpoint_every=config.train.checkpoint_every_epochs,
                   keep_checkpoints=config.train.keep_checkpoints)
  result = core.fit(nnx.view(model, deterministic=False),
                    Reconstruction(config.train.l2, config.train.loss),
                    build_optimizer(config, steps_per_epoch), data, loop, seed=config.seed,
                    mesh=mesh, workdir=workdir, identity=identity, evaluate=score_heldout,
                    config_text=config.to_json_best_effort(indent=2), descriptions=DESCRIPTIONS)
  return nnx.merge(eval_graphdef, result.state.params, rest), scaler, result.history
