"""Input attributions of a dense network: DeepLIFT Rescale, gradient x input, integrated gradients.

The network is described as in `landmark.deeplift`: `layers`, (W, b) pairs applied as
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

# The batched backward pass and the chunking helpers are deeplift's own, shared here.
# pylint: disable=protected-access

import functools
import itertools
import math
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from landmark import deeplift

METHODS = ('deeplift', 'gradient_x_input', 'integrated_gradients')
PATH_RULES = ('trapezoid', 'midpoint')
AGGREGATES = ('abs', 'signed')


def path_points(steps, rule='trapezoid'):
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
  return deeplift._batch_multipliers(layers, activations, math.inf, x, reference)


def _multipliers(method, layers, activations, eps, x, reference, path):
  """(samples, units, inputs) multipliers M of `method`; attributions are M * (x - reference)."""
  if method == 'deeplift':
    return deeplift._batch_multipliers(layers, activations, eps, x, reference)
  if method == 'gradient_x_input':
    return _jacobians(layers, activations, x, reference)

  def add_point(total, point):
    alpha, weight = point
    on_path = reference + alpha * (x - reference)
    return total + weight * _jacobians(layers, activations, on_path, reference), None

  n_units = layers[-1][0].shape[1]
  start = jnp.zeros((x.shape[0], n_units, x.shape[1]), x.dtype)
  return jax.lax.scan(add_point, start, path)[0]


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _attributions(method, layers, activations, eps, x, reference, path):
  multipliers = _multipliers(method, layers, activations, eps, x, reference, path)
  return multipliers * (x - reference)[:, None, :]


@functools.partial(jax.jit, static_argnums=(1, 3, 4, 5), donate_argnums=(0,))
def _accumulate(total, method, layers, activations, eps, signed, x, reference, path):
  """total + sum over samples and units of A (signed) or |A|, for one chunk of samples.

  |M * dx| = |M| * |dx|, so units are summed before dx is touched.
  """
  multipliers = _multipliers(method, layers, activations, eps, x, reference, path)
  delta = x - reference
  if signed:
    return total + (delta * multipliers.sum(axis=1)).sum(axis=0)
  return total + (jnp.abs(delta) * jnp.abs(multipliers).sum(axis=1)).sum(axis=0)


def _prepare(method, layers, activations, dtype, steps, rule):
  """Validated arguments in `dtype`: (activation names, layers, path as device arrays)."""
  if method not in METHODS:
    raise ValueError(f'Unknown attribution method {method!r}; known: {METHODS}')
  names = deeplift._activation_names(activations, len(layers))
  layers = deeplift._cast_layers(layers, dtype)
  path = path_points(steps, rule) if method == 'integrated_gradients' else (np.zeros(0),) * 2
  return names, layers, tuple(jnp.asarray(p, dtype) for p in path)


def attributions(method, layers, activations, x, reference, steps=32, rule='trapezoid',
                 eps=deeplift.DEFAULT_EPS):
  """A[i, k, j]: attribution of input j to output unit k for sample i, a jax.Array.

  `steps` and `rule` apply to integrated gradients, `eps` to DeepLIFT. Computed in x's
  float dtype (float64 only with jax_enable_x64).
  """
  dtype = deeplift._float_dtype(x)
  names, layers, path = _prepare(method, layers, activations, dtype, steps, rule)
  return _attributions(method, layers, names, eps, jnp.asarray(x, dtype),
                       jnp.asarray(reference, dtype), path)


def score_inputs(method, layers, activations, batches, reference, aggregate='abs',
                 max_chunk_mb=1024., steps=32, rule='trapezoid', eps=deeplift.DEFAULT_EPS,
                 num_samples=None):
  """Mean over samples and output units of |A| ('abs') or A ('signed'), per input.

  `batches` is any iterable of (n_i, n_inputs) arrays (or one 2-D array). Samples are
  regrouped into chunks whose multiplier tensors (two of them for integrated gradients: the
  running path sum and one point's Jacobians) stay below `max_chunk_mb`; a short last chunk
  is padded with copies of the reference, whose attributions are exactly zero for every
  method. Sums accumulate on device and are fetched once. `num_samples`, when known, gives
  the log an ETA.
  """
  if aggregate not in AGGREGATES:
    raise ValueError(f'aggregate must be one of {AGGREGATES}, got {aggregate!r}')
  if isinstance(batches, np.ndarray) and batches.ndim == 2:
    batches = (batches,)
  batches = iter(batches)
  first = next(batches, None)
  if first is None:
    raise ValueError('score_inputs got no samples')
  dtype = deeplift._float_dtype(first)
  names, layers, path = _prepare(method, layers, activations, dtype, steps, rule)
  reference = np.asarray(reference, dtype)
  n_inputs, n_units = reference.shape[0], layers[-1][0].shape[1]
  tensors = 2 if method == 'integrated_gradients' else 1
  bytes_per_sample = tensors * n_units * n_inputs * np.dtype(dtype).itemsize
  chunk_rows = max(1, int(max_chunk_mb * 2**20 // bytes_per_sample))
  total = jnp.zeros(n_inputs, dtype)
  n_seen, start = 0, time.monotonic()
  for chunk in deeplift._regroup(itertools.chain([first], batches), chunk_rows):
    rows = min(chunk_rows, 1 << (len(chunk) - 1).bit_length())
    x = jax.device_put(deeplift._pad_with_reference(
        chunk.astype(dtype, copy=False), rows, reference))
    total.block_until_ready()  # At most one chunk in flight; the next one is already copied.
    if n_seen:
      _log_progress(method, n_seen, num_samples, time.monotonic() - start)
    total = _accumulate(total, method, layers, names, eps, aggregate == 'signed', x, reference,
                        path)
    n_seen += len(chunk)
  return np.asarray(total) / (n_seen * n_units)


def _log_progress(method, n_done, num_samples, elapsed):
  rate = n_done / elapsed
  eta = f', ETA {(num_samples - n_done) / rate:.0f} s' if num_samples else ''
  logging.log_every_n_seconds(logging.INFO, '%s: %d%s samples, %.1f samples/s%s', 10, method,
                              n_done, f'/{num_samples}' if num_samples else '', rate, eta)
