"""Concrete Autoencoder (Abid, Balin & Zou, ICML 2019): learns which k inputs to keep.

A selector layer of k units, each a Concrete (Gumbel-softmax) distribution over the inputs,
feeds the k chosen values to a decoder MLP that reconstructs every input. In training each
unit draws a relaxed one-hot sample (one draw per unit per batch, as in the paper's code)
at a temperature annealed exponentially from `start_temperature` to `end_temperature`; as
the temperature falls the samples sharpen into one-hot choices. At evaluation every unit
is the one-hot of its argmax. Genes are standardised (per-gene z-score, as D-GEX does) so
that each weighs the same in the mean squared reconstruction error.
"""

import functools

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from landmark import dgex
from landmark import train

LEAKY_SLOPE = 0.2   # the paper's decoder activation: LeakyReLU(0.2)
CONVERGED = 0.9     # mean max selection probability below which `fit` warns


class ConcreteSelector(nnx.Module):
  """k units, each with logits over the n inputs; outputs the k (softly) selected values."""

  def __init__(self, n_inputs, k, *, rngs: nnx.Rngs):
    self.logits = nnx.Param(nnx.initializers.glorot_normal()(rngs.params(), (k, n_inputs)))

  def __call__(self, x, key=None, temperature=1.0):
    """Gumbel-softmax samples at `temperature` when `key` is given, else argmax one-hots."""
    logits = self.logits[...]
    if key is None:
      weights = jax.nn.one_hot(jnp.argmax(logits, axis=1), logits.shape[1], dtype=x.dtype)
    else:
      gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
      weights = jax.nn.softmax((logits + gumbel) / temperature, axis=1)
    return x @ weights.T

  def probabilities(self):
    """(k, n_inputs): each unit's selection probabilities, softmax of its logits."""
    return jax.nn.softmax(self.logits[...], axis=1)


class ConcreteAutoencoder(nnx.Module):
  """Concrete selector of k inputs -> decoder MLP (LeakyReLU hidden layers, linear output)."""

  def __init__(self, n_inputs, k, hidden=(512,), *, rngs: nnx.Rngs):
    self.selector = ConcreteSelector(n_inputs, k, rngs=rngs)
    widths = (k, *hidden, n_inputs)
    self.decoder = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in zip(widths[:-1], widths[1:])])

  def __call__(self, x, key=None, temperature=1.0):
    h = self.selector(x, key, temperature)
    for layer in self.decoder[:-1]:
      h = jax.nn.leaky_relu(layer(h), LEAKY_SLOPE)
    return self.decoder[-1](h)


def temperature(step, total_steps, start, end):
  """Exponential annealing: `start` at step 0, `end` at step total_steps."""
  return start * (end / start) ** (step / total_steps)


def make_train_epoch(graphdef, optimizer, total_steps, start_temperature, end_temperature):
  """A jitted pure epoch (params, opt_state, data, indices, mask, epoch, key) -> updated, losses.

  `indices` and `mask` are the epoch's batches (`train.epoch_batches`); the steps run in one
  `lax.scan` on device-resident data. Global step s samples its Gumbel noise from
  fold_in(key, s) and runs at temperature(s), so a run is a function of its seed alone.
  """

  def train_epoch(params, opt_state, data, indices, mask, epoch, noise_key):
    first_step = epoch * indices.shape[0]

    def train_step(carry, batch):
      params, opt_state = carry
      rows, row_mask, step = batch
      x = data[rows]

      def loss_fn(params):
        model = nnx.merge(graphdef, params)
        reconstruction = model(x, jax.random.fold_in(noise_key, step),
                               temperature(step, total_steps, start_temperature, end_temperature))
        error = jnp.mean((reconstruction - x) ** 2, axis=1)
        return jnp.sum(error * row_mask) / jnp.sum(row_mask)

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    steps = first_step + jnp.arange(indices.shape[0])
    (params, opt_state), losses = jax.lax.scan(train_step, (params, opt_state),
                                               (indices, mask, steps))
    return params, opt_state, losses

  return jax.jit(train_epoch, donate_argnums=(0, 1))


@functools.partial(jax.jit, static_argnums=0)
def _max_probability(graphdef, params):
  return nnx.merge(graphdef, params).selector.probabilities().max(axis=1).mean()


def fit(x, k, config, seed=0):
  """Trains a Concrete Autoencoder selecting k of x's columns; returns the model.

  x: (samples, inputs) training matrix, standardised here per column. config: hidden,
  epochs, batch_size, learning_rate (Adam), start_temperature, end_temperature. Logs
  the mean over units of the largest selection probability, the paper's convergence
  measure (near 1 when every unit has settled on one input), and warns if it ends below
  CONVERGED: the logits must separate before the temperature falls, which takes more
  steps the more inputs there are.
  """
  if not 1 <= k <= x.shape[1]:
    raise ValueError(f'Concrete Autoencoder: need 1 <= k <= {x.shape[1]} inputs, got k={k}')
  if config.epochs < 1:
    raise ValueError(f'Concrete Autoencoder: epochs must be at least 1, got {config.epochs}')
  data = jnp.asarray(dgex.Standardizer.fit(x).transform(x), jnp.float32)
  n_samples, batch_size = len(data), min(config.batch_size, len(data))
  key = jax.random.key(seed)
  init_key, shuffle_key, noise_key = jax.random.split(key, 3)
  model = ConcreteAutoencoder(x.shape[1], k, tuple(config.hidden), rngs=nnx.Rngs(params=init_key))
  graphdef, params = nnx.split(model)
  optimizer = optax.adam(config.learning_rate)
  opt_state = optimizer.init(params)
  steps_per_epoch = -(-n_samples // batch_size)
  train_epoch = make_train_epoch(graphdef, optimizer, config.epochs * steps_per_epoch,
                                 config.start_temperature, config.end_temperature)
  log_every = max(1, config.epochs // 10)
  for epoch in range(config.epochs):
    indices, mask = train.epoch_batches(shuffle_key, n_samples, batch_size, epoch)
    params, opt_state, losses = train_epoch(params, opt_state, data, indices, mask, epoch,
                                            noise_key)
    if (epoch + 1) % log_every == 0 or epoch + 1 == config.epochs:
      max_probability = float(_max_probability(graphdef, params))
      logging.info('Concrete AE (k=%d) epoch %d/%d: loss %.4f, mean max probability %.3f',
                   k, epoch + 1, config.epochs, float(losses.mean()), max_probability)
  if max_probability < CONVERGED:
    logging.warning('Concrete AE (k=%d) did not converge: mean max probability %.3f < %.2f; '
                    'its selection is close to arbitrary (train for more steps)', k,
                    max_probability, CONVERGED)
  return nnx.merge(graphdef, params)


def selected_inputs(model):
  """Column indices of the k selected inputs, best first.

  Each unit selects its argmax input; units are ranked by their largest probability.
  Where units share an input it counts once, and the list is filled back to k with the
  not yet selected inputs of highest probability under any unit.
  """
  probabilities = np.asarray(model.selector.probabilities())
  k = probabilities.shape[0]
  chosen = []
  for unit in np.argsort(-probabilities.max(axis=1), kind='stable'):
    best = int(probabilities[unit].argmax())
    if best not in chosen:
      chosen.append(best)
  if len(chosen) < k:
    logging.info('Concrete AE: %d of %d units share an input; filling by probability',
                 k - len(chosen), k)
    taken = set(chosen)
    for column in np.argsort(-probabilities.max(axis=0), kind='stable'):
      if len(chosen) == k:
        break
      if int(column) not in taken:
        chosen.append(int(column))
  return np.array(chosen)
