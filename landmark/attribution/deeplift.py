"""DeepLIFT with the Rescale rule (Shrikumar et al. 2017) for dense networks, in pure JAX.

A network is given as `layers`, a sequence of `(W, b)` pairs applied as `x @ W + b`, and
`activations`, one name for every layer or one per layer. The contribution of input j to
output unit k is C[k, j] = m[k, j] * (x[j] - reference[j]), where the multiplier m is the
vector-Jacobian product of the network with each nonlinearity's gradient replaced by its
Rescale multiplier (f(z) - f(z0)) / (z - z0). It satisfies summation-to-delta:
sum_j C[k, j] = a_k(x) - a_k(reference).
"""

import dataclasses
import functools
import itertools
import os
import time
from typing import Any, Callable, Iterable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
from jax.typing import ArrayLike, DTypeLike
import numpy as np

from landmark import fileio
from landmark.training import sharding

ACTIVATIONS = {
    'sigmoid': jax.nn.sigmoid,
    'tanh': jnp.tanh,
    'relu': jax.nn.relu,
    'linear': lambda z: z,
}
REFERENCES = ('zeros', 'train_mean')
DEFAULT_EPS = 1e-6


def rescale_multiplier(f: Callable[[jax.Array], jax.Array], z: jax.Array, z0: jax.Array,
                       eps: float = DEFAULT_EPS) -> jax.Array:
  """(f(z) - f(z0)) / (z - z0), or f'(z) where |z - z0| < eps (no NaN from either branch)."""
  delta = z - z0
  small = jnp.abs(delta) < eps
  _, slope = jax.jvp(f, (z,), (jnp.ones_like(z),))
  secant = (f(z) - f(z0)) / jnp.where(small, jnp.ones_like(delta), delta)
  return jnp.where(small, slope, secant)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 3))
def _rescaled(f, z, z0, eps):
  """f(z) whose backward pass multiplies by the Rescale multiplier instead of f'(z)."""
  del z0, eps
  return f(z)


def _rescaled_fwd(f, z, z0, eps):
  return f(z), rescale_multiplier(f, z, z0, eps)


def _rescaled_bwd(f, eps, multiplier, cotangent):
  del f, eps
  return cotangent * multiplier, None  # The reference path gets no cotangent.


_rescaled.defvjp(_rescaled_fwd, _rescaled_bwd)


def _forward(layers, activations, eps, x, reference):
  """Network output at x, differentiable in x with Rescale multipliers as gradients."""
  a, a0 = x, reference
  for (w, b), name in zip(layers, activations):
    f = ACTIVATIONS[name]
    z, z0 = a @ w + b, a0 @ w + b
    a, a0 = _rescaled(f, z, z0, eps), f(z0)
  return a


def _sample_multipliers(layers, activations, eps, x, reference):
  """(units, inputs) multipliers of one sample: one-hot cotangents vmapped over units.

  The forward pass (and so every nonlinearity's multiplier) runs once per sample; vmapping
  the pullback over units turns the backward pass into a chain of matrix products.
  """
  output, pullback = jax.vjp(lambda x: _forward(layers, activations, eps, x, reference), x)
  one_hot = jnp.eye(output.shape[-1], dtype=output.dtype)
  (multipliers,) = jax.vmap(pullback)(one_hot)
  return multipliers


def _batch_multipliers(layers, activations, eps, x, reference):
  per_sample = functools.partial(_sample_multipliers, layers, activations, eps)
  return jax.vmap(per_sample, in_axes=(0, None))(x, reference)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _contributions(layers, activations, eps, x, reference):
  multipliers = _batch_multipliers(layers, activations, eps, x, reference)
  return multipliers * (x - reference)[:, None, :]


def rescale_multipliers(layers: Sequence[tuple[jax.Array, jax.Array]], activations: Sequence[str],
                        x: jax.Array, reference: jax.Array,
                        eps: float = DEFAULT_EPS) -> jax.Array:
  """(samples, units, inputs) Rescale multipliers m; contributions are m * (x - reference)."""
  return _batch_multipliers(layers, activations, eps, x, reference)


@dataclasses.dataclass(frozen=True)
class MultiplierRule:
  """A multiplier rule `fn(layers, activations, x, reference, *args)`, equal (and hashed) by
  value, so that passing a new but equal rule to a jitted function reuses its compilation
  (a fresh functools.partial would compile anew on every call)."""

  fn: Callable[..., jax.Array]
  args: tuple[Any, ...] = ()

  def __call__(self, layers, activations, x, reference):
    return self.fn(layers, activations, x, reference, *self.args)


@functools.partial(jax.jit, static_argnums=(2, 3, 4), donate_argnums=(0,))
def _accumulate(total, layers, activations, multipliers_fn, signed, x, reference):
  """total + sum over samples and units of C (signed) or |C|, for one chunk of samples.

  Uses |m * dx| = |m| * |dx| to reduce over units before touching dx: one pass over the
  (samples, units, inputs) matmul output instead of two.
  """
  multipliers = multipliers_fn(layers, activations, x, reference)
  delta = x - reference
  if signed:
    return total + (delta * multipliers.sum(axis=1)).sum(axis=0)
  return total + (jnp.abs(delta) * jnp.abs(multipliers).sum(axis=1)).sum(axis=0)


def activation_names(activations: str | Sequence[str], n_layers: int) -> tuple[str, ...]:
  """One known activation name per layer (a single name applies to every layer)."""
  names = (activations,) * n_layers if isinstance(activations, str) else tuple(activations)
  if len(names) != n_layers:
    raise ValueError(f'{len(names)} activations given for {n_layers} layers')
  unknown = sorted(set(names) - set(ACTIVATIONS))
  if unknown:
    raise ValueError(f'Unknown activation(s) {unknown}; known: {sorted(ACTIVATIONS)}')
  return names


def float_dtype(x: ArrayLike) -> jnp.dtype:
  """The input's float dtype as JAX will use it (float64 only with jax_enable_x64)."""
  return jnp.promote_types(jnp.result_type(x), jnp.float32)


def cast_layers(layers: Iterable[tuple[ArrayLike, ArrayLike]],
                dtype: DTypeLike) -> tuple[tuple[jax.Array, jax.Array], ...]:
  """The (W, b) pairs as JAX arrays of `dtype`."""
  return tuple((jnp.asarray(w, dtype), jnp.asarray(b, dtype)) for w, b in layers)


def contributions(layers: Sequence[tuple[ArrayLike, ArrayLike]], activations: str | Sequence[str],
                  x: ArrayLike, reference: ArrayLike, eps: float = DEFAULT_EPS) -> jax.Array:
  """DeepLIFT Rescale contributions C[i, k, j] of input j to output unit k for sample i.

  Computed in x's float dtype; returns a (n_samples, n_units, n_inputs) jax.Array.
  """
  dtype = float_dtype(x)
  names = activation_names(activations, len(layers))
  return _contributions(cast_layers(layers, dtype), names, eps, jnp.asarray(x, dtype),
                        jnp.asarray(reference, dtype))


def make_reference(kind: str | os.PathLike, train_x: np.ndarray) -> np.ndarray:
  """The DeepLIFT reference input: 'zeros', 'train_mean' (over rows), or a .npy file path."""
  n_inputs = train_x.shape[1]
  if kind == 'zeros':
    return np.zeros(n_inputs, train_x.dtype)
  if kind == 'train_mean':
    return np.mean(train_x, axis=0, dtype=np.float64).astype(train_x.dtype)
  if not str(kind).endswith('.npy'):
    raise ValueError(f'DeepLIFT reference must be one of {REFERENCES} or a .npy path, got {kind!r}')
  if not os.path.isfile(kind):
    raise ValueError(f'{kind}: reference file not found')
  reference = np.load(kind)
  if reference.shape != (n_inputs,):
    raise ValueError(f'{kind}: reference has shape {reference.shape}, expected ({n_inputs},)')
  return reference.astype(train_x.dtype)


def _regroup(batches, rows):
  """Regroups a stream of (n_i, inputs) arrays into arrays of `rows` rows (the last shorter)."""
  pending, n_pending = [], 0
  for batch in batches:
    batch = np.asarray(batch)
    while len(batch):
      take = min(rows - n_pending, len(batch))
      pending.append(batch[:take])
      n_pending += take
      batch = batch[take:]
      if n_pending == rows:
        yield np.concatenate(pending)
        pending, n_pending = [], 0
  if n_pending:
    yield np.concatenate(pending)


def _pad_with_reference(chunk, rows, reference):
  """Pads to `rows` rows with copies of the reference, whose contributions are exactly zero."""
  if len(chunk) == rows:
    return chunk
  padding = np.broadcast_to(reference, (rows - len(chunk), chunk.shape[1]))
  return np.concatenate([chunk, padding])


def score_inputs(layers: Sequence[tuple[ArrayLike, ArrayLike]], activations: str | Sequence[str],
                 batches: np.ndarray | Iterable[ArrayLike], reference: ArrayLike,
                 aggregate: str = 'abs', max_chunk_mb: float = 1024., eps: float = DEFAULT_EPS,
                 num_samples: int | None = None, multipliers: MultiplierRule | None = None,
                 tensors_per_sample: int = 1,
                 mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Mean over samples and output units of |C| ('abs') or C ('signed'), per input.

  `batches` is any iterable of (n_i, n_inputs) arrays (or one 2-D array). Samples are
  regrouped into chunks whose `tensors_per_sample` (samples, units, inputs) tensors stay
  below `max_chunk_mb`; a short last chunk is padded with copies of the reference, whose
  contributions are exactly zero. Sums accumulate on device and are fetched once.
  `num_samples`, when known, gives the log an ETA. `multipliers`, a MultiplierRule,
  replaces the Rescale rule (other attribution methods; landmark.attribution.attributions).
  Each chunk is split over the 'batch' axis of `mesh` (default: all devices), so its rows
  are a multiple of the device count; the network and the reference are replicated.
  """
  if aggregate not in ('abs', 'signed'):
    raise ValueError(f"aggregate must be 'abs' or 'signed', got {aggregate!r}")
  if isinstance(batches, np.ndarray) and batches.ndim == 2:
    batches = (batches,)
  batches = iter(batches)
  first = next(batches, None)
  if first is None:
    raise ValueError('score_inputs got no samples')
  multipliers = multipliers or MultiplierRule(rescale_multipliers, (eps,))
  dtype = float_dtype(first)
  names = activation_names(activations, len(layers))
  mesh = mesh or sharding.device_mesh()
  layers = sharding.replicate(mesh, cast_layers(layers, dtype))
  reference = np.asarray(reference, dtype)
  reference_device = sharding.replicate(mesh, reference)
  n_inputs, n_units = reference.shape[0], layers[-1][0].shape[1]
  bytes_per_sample = tensors_per_sample * n_units * n_inputs * np.dtype(dtype).itemsize
  chunk_rows = int(max_chunk_mb * 2**20 // bytes_per_sample) // mesh.size * mesh.size
  chunk_rows = max(mesh.size, chunk_rows)
  total = sharding.replicate(mesh, np.zeros(n_inputs, dtype))
  n_seen, start = 0, time.monotonic()
  for chunk in _regroup(itertools.chain([first], batches), chunk_rows):
    rows = sharding.round_up(min(chunk_rows, _next_power_of_two(len(chunk))), mesh.size)
    x = sharding.put_batch(mesh, _pad_with_reference(chunk.astype(dtype, copy=False), rows,
                                                     reference))
    total.block_until_ready()  # At most one chunk in flight; the next one is already copied.
    if n_seen:
      _log_progress(n_seen, num_samples, time.monotonic() - start)
    total = _accumulate(total, layers, names, multipliers, aggregate == 'signed', x,
                        reference_device)
    n_seen += len(chunk)
  return np.asarray(total) / (n_seen * n_units)


def _next_power_of_two(n):
  return 1 << (n - 1).bit_length()


def _log_progress(n_done, num_samples, elapsed):
  rate = n_done / elapsed
  eta = f', ETA {(num_samples - n_done) / rate:.0f} s' if num_samples else ''
  logging.log_every_n_seconds(logging.INFO,
                              'Attribution scores: %d%s samples, %.1f samples/s%s', 10,
                              n_done, f'/{num_samples}' if num_samples else '', rate, eta)


def deeplift_flops(layer_sizes: Sequence[int], n_samples: int) -> int:
  """Matmul FLOPs of scoring n_samples: one forward pass plus a backward pass per output unit."""
  per_pass = sum(2 * d_in * d_out for d_in, d_out in zip(layer_sizes[:-1], layer_sizes[1:]))
  return n_samples * (1 + layer_sizes[-1]) * per_pass


def export_for_checking(directory: str | os.PathLike,
                        layers: Sequence[tuple[ArrayLike, ArrayLike]],
                        activations: str | Sequence[str], x: np.ndarray | jax.Array,
                        reference: ArrayLike, n: int = 16, eps: float = DEFAULT_EPS) -> None:
  """Writes encoder.npz and sample.npz (float32) so Captum or SHAP can recompute C.

  Only process 0 of a multi-host run writes (`sharding.is_primary`); the others skip the
  work, which runs on the local device alone.
  """
  if not sharding.is_primary():
    return
  names = activation_names(activations, len(layers))
  layers32 = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
  x32 = np.asarray(x[:n], np.float32)
  reference32 = np.asarray(reference, np.float32)
  weights = {}
  for i, (w, b) in enumerate(layers32, start=1):
    weights[f'W{i}'], weights[f'b{i}'] = w, b
  with fileio.atomic_path(os.path.join(directory, 'encoder.npz')) as tmp:
    np.savez(tmp, activations=np.array(names), **weights)
  with fileio.atomic_path(os.path.join(directory, 'sample.npz')) as tmp:
    np.savez(tmp, x=x32, reference=reference32,
             contributions=np.asarray(contributions(layers32, names, x32, reference32, eps)))
