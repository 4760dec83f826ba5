"""Input attributions of a dense network: DeepLIFT Rescale, gradient x input, integrated gradients.

The network is described as in `landmark.attribution.deeplift`: `layers`, (W, b) pairs applied as
`act(x @ W + b)`, and `activations`, one name for all layers or one per layer. All three
methods attribute output unit k to input j as A[k, j] = M[k, j] * (x[j] - reference[j]) and
differ only in the multipliers M:

  deeplift              Rescale multipliers (f(z) - f(z0)) / (z - z0) in the backward pass;
  gradient_x_input      the Jacobian at x (with a zero reference, the textbook gradient x input);
  integrated_gradients  the Jacobian averaged along the straight path from the reference to x
                        (Sundararajan et al. 2017), by the trapezoid or midpoint rule, so that
                        sum_j A[k, j] -> f_k(x) - f_k(reference) as `steps` grows.

The Jacobian is DeepLIFT's backward pass with an infinite threshold, where every Rescale
multiplier is the derivative f'(z); so all three share one batched backward pass and one
streaming loop, and comparing them isolates the multiplier rule.
"""

# The batched backward pass, its streaming and its argument checks are deeplift's own.
# pylint: disable=protected-access

import functools
import math
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
import numpy as np

from landmark.attribution import deeplift

METHODS = ('deeplift', 'gradient_x_input', 'integrated_gradients')
PATH_RULES = ('trapezoid', 'midpoint')


def path_points(steps: int, rule: str = 'trapezoid') -> tuple[np.ndarray, np.ndarray]:
  """Positions alpha in [0, 1] on the path and their quadrature weights (summing to 1).

  `steps` intervals: the trapezoid rule evaluates the steps + 1 interval ends (half weight
  at 0 and 1), the midpoint rule the steps interval centres. Both err by O(1 / steps^2).
  """
  if steps < 1:
    raise ValueError(f'integrated gradients needs steps >= 1, got {steps}')
  if rule == 'trapezoid':
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2
  elif rule == 'midpoint':
    alphas = (np.arange(steps) + 0.5) / steps
    weights = np.full(steps, 1.0 / steps)
  else:
    raise ValueError(f'Unknown path rule {rule!r}; known: {PATH_RULES}')
  return alphas, weights


def _jacobians(layers, activations, x, reference):
  """(samples, units, inputs) Jacobians: Rescale multipliers whose threshold is infinite."""
  return deeplift.rescale_multipliers(layers, activations, x, reference, eps=math.inf)


def _path_jacobians(layers, activations, x, reference, path):
  """Jacobians averaged along the straight path from the reference to x (quadrature `path`)."""
  def add_point(total: jax.Array,
                point: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
    alpha, weight = point
    on_path = reference + alpha * (x - reference)
    return total + weight * _jacobians(layers, activations, on_path, reference), None

  n_units = layers[-1][0].shape[1]
  start = jnp.zeros((x.shape[0], n_units, x.shape[1]), x.dtype)
  alphas, weights = (jnp.asarray(p, x.dtype) for p in path)
  return jax.lax.scan(add_point, start, (alphas, weights))[0]


def multipliers_fn(method: str, steps: int = 32, rule: str = 'trapezoid',
                   eps: float = deeplift.DEFAULT_EPS) -> deeplift.MultiplierRule:
  """The deeplift.MultiplierRule `(layers, activations, x, reference) -> M` of `method`;
  attributions are M * (x - ref)."""
  if method == 'deeplift':
    return deeplift.MultiplierRule(deeplift.rescale_multipliers, (eps,))
  if method == 'gradient_x_input':
    return deeplift.MultiplierRule(_jacobians)
  if method == 'integrated_gradients':
    alphas, weights = path_points(steps, rule)
    return deeplift.MultiplierRule(_path_jacobians, ((tuple(alphas), tuple(weights)),))
  raise ValueError(f'Unknown attribution method {method!r}; known: {METHODS}')


@functools.partial(jax.jit, static_argnums=(0, 2))
def _attributions(multipliers, layers, activations, x, reference):
  return multipliers(layers, activations, x, reference) * (x - reference)[:, None, :]


def attributions(method: str, layers: Sequence[tuple[ArrayLike, ArrayLike]],
                 activations: str | Sequence[str], x: ArrayLike, reference: ArrayLike,
                 steps: int = 32, rule: str = 'trapezoid',
                 eps: float = deeplift.DEFAULT_EPS) -> jax.Array:
  """A[i, k, j]: attribution of input j to output unit k for sample i, a jax.Array.

  `steps` and `rule` apply to integrated gradients, `eps` to DeepLIFT. Computed in x's
  float dtype (float64 only with jax_enable_x64).
  """
  dtype = deeplift.float_dtype(x)
  names = deeplift.activation_names(activations, len(layers))
  return _attributions(multipliers_fn(method, steps, rule, eps),
                       deeplift.cast_layers(layers, dtype), names, jnp.asarray(x, dtype),
                       jnp.asarray(reference, dtype))


def score_inputs(method: str, layers: Sequence[tuple[ArrayLike, ArrayLike]],
                 activations: str | Sequence[str], batches: np.ndarray | Iterable[ArrayLike],
                 reference: ArrayLike, aggregate: str = 'abs', max_chunk_mb: float = 1024.,
                 steps: int = 32, rule: str = 'trapezoid', eps: float = deeplift.DEFAULT_EPS,
                 num_samples: int | None = None) -> np.ndarray:
  """Mean over samples and output units of |A| ('abs') or A ('signed'), per input.

  DeepLIFT's streaming (`deeplift.score_inputs`) with `method`'s multipliers; integrated
  gradients holds two tensors per sample (the running path sum and one point's Jacobians).
  """
  return deeplift.score_inputs(
      layers, activations, batches, reference, aggregate, max_chunk_mb, eps, num_samples,
      multipliers=multipliers_fn(method, steps, rule, eps),
      tensors_per_sample=2 if method == 'integrated_gradients' else 1)
