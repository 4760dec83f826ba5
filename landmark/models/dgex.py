"""D-GEX's network (Chen et al. 2016): a tanh MLP from landmarks to targets, in Flax NNX."""

from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike
import ml_collections

from landmark.models import precision

OUTPUT_INIT_RANGE = 1e-4          # D-GEX's `irange` of the linear output layer


def _symmetric_uniform(limit):
  """Initializer drawing from U(-limit, limit)."""
  def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
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

  def __call__(self, x, *, rngs: nnx.Rngs | None = None):
    """Predictions of standardised targets; dropout is active in training mode
    (`nnx.view(model, deterministic=False)`), drawing its masks from `rngs`."""
    for layer in self.hidden:
      x = self.dropout(jnp.tanh(layer(x)), rngs=rngs)
    return self.output(x).astype(jnp.float32)


def build_dgex(config_dgex: ml_collections.ConfigDict, n_landmarks: int, n_targets: int,
               key: jax.Array) -> DGEX:
  """The D-GEX network of `config_dgex` (widths, dropout, compute dtype), drawn from `key`,
  in eval mode (dropout off)."""
  dtype = precision.compute_dtype(config_dgex.compute_dtype, 'dgex.compute_dtype')
  model = DGEX(n_landmarks, tuple(config_dgex.hidden), n_targets, config_dgex.dropout, dtype,
               rngs=nnx.Rngs(params=key))
  return nnx.view(model, deterministic=True)
