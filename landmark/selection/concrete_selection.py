"""Concrete Autoencoder (Abid, Balin & Zou, ICML 2019): learns which k inputs to keep.

A selector layer of k units, each a Concrete (Gumbel-softmax) distribution over the inputs,
feeds the k chosen values to a decoder MLP that reconstructs every input. In training each
unit draws a relaxed one-hot sample (one draw per unit per batch, as in the paper's code)
at a temperature annealed exponentially from `start_temperature` to `end_temperature`; as
the temperature falls the samples sharpen into one-hot choices. At evaluation every unit
is the one-hot of its argmax. Genes are standardised (per-gene z-score, as D-GEX does) so
that each weighs the same in the mean squared reconstruction error.
"""

import dataclasses
import functools

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from landmark.inference import regression
from landmark.models import concrete
from landmark.training import core
from landmark.training import sharding

CONVERGED = 0.9     # mean max selection probability below which `fit` warns


def temperature(step: int | jax.Array, total_steps: int, start: float,
                end: float) -> float | jax.Array:
  """Exponential annealing: `start` at step 0, `end` at step total_steps."""
  return start * (end / start) ** (step / total_steps)


@dataclasses.dataclass(frozen=True)
class AnnealedReconstruction:
  """The Concrete AE's training objective (landmark.training.core): mean squared
  reconstruction error of the batch's real rows, the selector sampling its Gumbel noise
  from the step's key at temperature(step)."""
  total_steps: int
  start_temperature: float
  end_temperature: float

  def __call__(self, model, batch, mask, key, step):
    x = batch['x']
    reconstruction = model(x, key, temperature(step, self.total_steps, self.start_temperature,
                                               self.end_temperature))
    return core.masked_mean(jnp.mean((reconstruction - x) ** 2, axis=1), mask)


MAX_PROBABILITY = 'eval/max_probability'   # TensorBoard tag of the convergence measure


@functools.partial(jax.jit, static_argnums=0)
def _max_probability(graphdef, params):
  return nnx.merge(graphdef, params).selector.probabilities().max(axis=1).mean()


def fit(x: np.ndarray, k: int, config: ml_collections.ConfigDict, seed: int = 0,
        workdir: str | None = None) -> concrete.ConcreteAutoencoder:
  """Trains a Concrete Autoencoder selecting k of x's columns; returns the model.

  x: (samples, inputs) training matrix, standardised here per column. config: hidden,
  epochs, batch_size, learning_rate (Adam, the decoder's), selector_learning_rate (Adam,
  the selector's logits), start_temperature, end_temperature. Trains
  through the one training core (with a `workdir`: TensorBoard curves and resumable
  checkpoints there). Logs the mean over units of the largest selection probability
  (MAX_PROBABILITY), the paper's convergence measure (near 1 when every unit has settled
  on one input), and warns if it ends below CONVERGED: the logits must separate before the
  temperature falls, which takes more steps the more inputs there are. Glorot-initialised
  logits over n inputs are nearly uniform (probabilities ~1/n), and a unit is converged only
  once its best logit leads the rest by about log(9 n) (11.4 for n = 9,403); Adam moves a
  logit by at most about its rate per step, so at the decoder's 1e-2 a few thousand steps
  of noisy gradients do not get there (experiments/results/concrete_convergence.md). Hence
  the selector's own, higher rate.
  """
  if not 1 <= k <= x.shape[1]:
    raise ValueError(f'Concrete Autoencoder: need 1 <= k <= {x.shape[1]} inputs, got k={k}')
  if config.epochs < 1:
    raise ValueError(f'Concrete Autoencoder: epochs must be at least 1, got {config.epochs}')
  data = regression.Standardizer.fit(x).transform(x).astype(np.float32)
  mesh = sharding.device_mesh()
  batch_size = sharding.round_up(min(config.batch_size, len(data)), mesh.size)
  model = concrete.ConcreteAutoencoder(
      x.shape[1], k, tuple(config.hidden),
      rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), core.INIT_STREAM)))
  graphdef = nnx.graphdef(model)
  objective = AnnealedReconstruction(config.epochs * -(-len(data) // batch_size),
                                     config.start_temperature, config.end_temperature)
  optimizer = core.adam_with_part_rate(config.learning_rate, 'selector',
                                       config.selector_learning_rate)
  every = max(1, config.epochs // 10)
  loop = core.Loop(config.epochs, batch_size, name=f'Concrete AE (k={k})',
                   diverged_field='selectors.concrete.learning_rate', eval_every=every,
                   log_every=every)
  result = core.fit(model, objective, optimizer, {'x': data}, loop, seed=seed,
                    mesh=mesh, workdir=workdir,
                    evaluate=lambda params: {MAX_PROBABILITY: _max_probability(graphdef, params)},
                    config_text=config.to_json_best_effort(indent=2),
                    descriptions={MAX_PROBABILITY: 'mean over the k selector units of their '
                                  'largest selection probability (0-1; near 1: converged)'})
  max_probability = result.history[MAX_PROBABILITY][-1]
  if max_probability < CONVERGED:
    logging.warning('Concrete AE (k=%d) did not converge: mean max probability %.3f < %.2f; '
                    'its selection is close to arbitrary (train for more steps)', k,
                    max_probability, CONVERGED)
  return result.model()


def selected_inputs(model: concrete.ConcreteAutoencoder) -> np.ndarray:
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
