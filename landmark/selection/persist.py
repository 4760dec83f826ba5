"""PERSIST-style selection (Covert et al., Nature Communications 2023): k genes kept by
learned gates under a sparsity price tuned until k gates stay open.

A hard-concrete gate per gene feeds a reconstruction MLP predicting every gene
(landmark.models.gates). The objective, on per-gene standardised training data, is the
mean squared reconstruction error plus λ/n times the expected number of open gates (n
genes): multiplied by n, the summed squared error over the genes plus λ per open gate, so
λ is how many genes' worth of variance a gene must explain to keep its gate open.

Selection, on the training data only:
1. Bisection on log λ over [lambda_min, lambda_max]: each step fits afresh (same seed, so
   the same initial parameters and noise) at the midpoint λ and counts the open
   evaluation gates; more than k raises λ, fewer lowers it; exactly k stops.
2. The rule for exactly k genes: of the fits made, the one with the fewest open gates
   that are still at least k (if every fit has fewer than k, the one with the most);
   its k gates of highest log α (the highest probability of being open) are the genes.
   When the bisection has landed on k open gates, these are exactly the open ones.
3. A short fine-tune of that fit, at its λ, with only those k gates allowed to open; the
   genes are ranked by their final log α, best first.
Every fit trains through the one training core and logs the open gates (OPEN_GATES).
"""

import dataclasses
import functools
import json
import os

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from landmark.errors import ConfigError
from landmark.inference import regression
from landmark.models import gates
from landmark.training import core
from landmark.training import sharding

OPEN_GATES = 'eval/open_gates'   # TensorBoard tag: open evaluation gates
FIELD = 'config.selectors.persist'


def check_config(settings: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a `config.selectors.persist` field that cannot work."""
  hidden = tuple(settings.hidden)
  if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in hidden):
    raise ConfigError(f'{FIELD}.hidden', f'needs integers >= 1, got {hidden}')
  for name in ('epochs', 'finetune_epochs', 'batch_size', 'bisection_steps'):
    value = settings[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ConfigError(f'{FIELD}.{name}', f'must be an integer >= 1, got {value!r}')
  for name in ('learning_rate', 'gate_learning_rate', 'lambda_min', 'lambda_max'):
    value = settings[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < np.inf:
      raise ConfigError(f'{FIELD}.{name}', f'must be positive and finite, got {value!r}')
  if settings.lambda_max <= settings.lambda_min:
    raise ConfigError(f'{FIELD}.lambda_max', f'must be above lambda_min '
                      f'({settings.lambda_min!r}), got {settings.lambda_max!r}')


@dataclasses.dataclass(frozen=True)
class SparseReconstruction:
  """PERSIST's training objective (landmark.training.core): per row, the mean squared
  reconstruction error over the genes plus λ/n times the expected number of open gates,
  averaged over the batch's real rows. λ arrives as batch['penalty'] (the same on every
  row): as data rather than a field, so fits at different λ share one compiled epoch."""

  def __call__(self, model, batch, mask, key, step):
    del step
    x = batch['x']
    error = jnp.mean((model(x, key) - x) ** 2, axis=1)
    price = batch['penalty'] * jnp.sum(model.gates.open_probability()) / x.shape[1]
    return core.masked_mean(error + price, mask)


@functools.partial(jax.jit, static_argnums=0)
def _open_gates(graphdef, params, rest):
  return nnx.merge(graphdef, params, rest).gates.open_count()


def choose_fit(open_gates: list[int], k: int) -> int:
  """Index of the fit whose genes are taken: the fewest open gates that are at least k, or
  if every fit has fewer, the most (ties: the earlier fit)."""
  counts = np.asarray(open_gates)
  if np.any(counts >= k):
    return int(np.argmin(np.where(counts >= k, counts, np.iinfo(counts.dtype).max)))
  return int(np.argmax(counts))


def top_gates(log_alpha: np.ndarray, k: int) -> np.ndarray:
  """The k inputs of highest log α, best first (ties: lower index first)."""
  return np.argsort(-np.asarray(log_alpha), kind='stable')[:k]


@dataclasses.dataclass
class Selection:
  """What `select` found: the k chosen columns, best first; the λ of the fit they come
  from; (λ, open gates) of every bisection fit, in order; the fine-tuned model."""
  columns: np.ndarray
  penalty: float
  trials: list[tuple[float, int]]
  model: gates.GatedReconstruction


def _fit(model, data, penalty, epochs, batch_size, config, *, seed, mesh, stage, workdir,
         identity):
  """Trains `model` at price `penalty` for `epochs` (in `<workdir>/<stage>`); the trained model."""
  graphdef, _, rest = nnx.split(model, nnx.Param, ...)
  every = max(1, epochs // 10)
  loop = core.Loop(epochs, batch_size, name=f'PERSIST {stage} (lambda={penalty:.4g})',
                   diverged_field=f'{FIELD}.learning_rate', eval_every=every, log_every=every,
                   checkpoint_every=every)
  rows = {'x': data, 'penalty': np.full(len(data), penalty, np.float32)}
  workdir = None if workdir is None else os.path.join(workdir, stage)
  optimizer = core.adam_with_part_rate(config.learning_rate, 'gates', config.gate_learning_rate)
  return core.fit(model, SparseReconstruction(), optimizer, rows, loop,
                  seed=seed, mesh=mesh, workdir=workdir,
                  identity={**identity, 'stage': stage, 'lambda': penalty},
                  evaluate=lambda params: {OPEN_GATES: _open_gates(graphdef, params, rest)},
                  descriptions={OPEN_GATES: 'genes whose gate is open at evaluation (count)'}
                  ).model()


def select(x: np.ndarray, k: int, config: ml_collections.ConfigDict, seed: int = 0,
           workdir: str | None = None) -> Selection:
  """Selects k of x's columns (samples, genes) as in the module docstring.

  config: `config.selectors.persist` (hidden, epochs, finetune_epochs, batch_size,
  learning_rate, gate_learning_rate, bisection_steps, lambda_min, lambda_max). With a
  `workdir`, each fit
  keeps its TensorBoard curves and resumable checkpoints in `<workdir>/bisection_<i>` or
  `<workdir>/finetune`, so a rerun resumes where an interrupted one stopped.
  """
  check_config(config)
  if not 1 <= k <= x.shape[1]:
    raise ValueError(f'PERSIST: need 1 <= k <= {x.shape[1]} inputs, got k={k}')
  data = regression.Standardizer.fit(x).transform(x).astype(np.float32)
  mesh = sharding.device_mesh()
  batch_size = sharding.round_up(min(config.batch_size, len(data)), mesh.size)
  identity = {'k': k, 'seed': seed, 'shape': list(x.shape),
              'settings': json.loads(config.to_json())}
  fit = functools.partial(_fit, data=data, batch_size=batch_size, config=config, seed=seed,
                          mesh=mesh, workdir=workdir, identity=identity)
  low, high = np.log(config.lambda_min), np.log(config.lambda_max)
  trials = []
  for step in range(config.bisection_steps):
    penalty = float(np.exp((low + high) / 2))
    model = gates.GatedReconstruction(
        x.shape[1], tuple(config.hidden),
        rngs=nnx.Rngs(params=jax.random.fold_in(jax.random.key(seed), core.INIT_STREAM)))
    model = fit(model, penalty=penalty, epochs=config.epochs, stage=f'bisection_{step}')
    open_gates = int(model.gates.open_count())
    logging.info('PERSIST (k=%d): lambda %.4g leaves %d gates open', k, penalty, open_gates)
    trials.append((penalty, open_gates))
    if choose_fit([n for _, n in trials], k) == step:   # the rule's choice so far
      chosen = model
    if open_gates == k:
      break
    if open_gates > k:
      low = np.log(penalty)
    else:
      high = np.log(penalty)
  penalty, open_gates = trials[choose_fit([n for _, n in trials], k)]
  columns = top_gates(chosen.gates.log_alpha[...], k)
  if open_gates != k:
    logging.warning('PERSIST (k=%d): no lambda in %d bisection steps left exactly %d gates '
                    'open; taking the %d of highest probability at lambda %.4g (%d open)', k,
                    len(trials), k, k, penalty, open_gates)
  chosen.gates.allowed[...] = jnp.zeros(x.shape[1]).at[columns].set(1.0)
  model = fit(chosen, penalty=penalty, epochs=config.finetune_epochs, stage='finetune',
              identity={**identity, 'genes': columns.tolist()})
  final = np.asarray(model.gates.log_alpha[...])[columns]
  return Selection(columns[np.argsort(-final, kind='stable')], penalty, trials, model)
