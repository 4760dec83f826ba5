"""The paper's AutoEncoder (method.md section 2) and the per-gene scaling it is trained on."""

import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from landmark import fileio

ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'tanh': jnp.tanh, 'relu': jax.nn.relu}
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name, field):
  """The jnp dtype of a config's `compute_dtype` string; `field` names it in the error."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'{field} must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}')
  return COMPUTE_DTYPES[name]


class AutoEncoder(nnx.Module):
  """Dense encoder n_inputs -> *hidden -> bottleneck and a mirrored decoder back to n_inputs.

  The activation follows every layer, the output included (the paper: sigmoid everywhere,
  so inputs are min-max scaled to [0, 1]). Dropout follows the activation of every hidden
  layer of the encoder and decoder (the 500-unit layers at the paper's width) but neither
  the bottleneck, whose activations are the learned features, nor the output. It is active
  only in training mode (`model.train()`); `model.eval()` switches it off for scoring.
  Kernels start Glorot-uniform and biases zero: Keras's Dense defaults, as in the paper.
  Mixed precision: layers compute in `dtype` (e.g. bfloat16 on GPUs) from float32
  parameters, and `encode` and `__call__` return float32, so losses, metrics, gradients and
  checkpoints stay float32 whatever the compute dtype.
  """

  def __init__(self, n_inputs, hidden=(500,), bottleneck=100, activation='sigmoid',
               dropout=0.1, dtype=jnp.float32, *, rngs: nnx.Rngs):
    encoder_widths = (n_inputs, *hidden, bottleneck)
    decoder_widths = encoder_widths[::-1]

    def dense(widths):
      init = nnx.initializers.glorot_uniform()
      return nnx.List([nnx.Linear(i, o, kernel_init=init, dtype=dtype, param_dtype=jnp.float32,
                                  rngs=rngs)
                       for i, o in zip(widths[:-1], widths[1:])])

    self.encoder = dense(encoder_widths)
    self.decoder = dense(decoder_widths)
    self.activation = activation
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _stack(self, layers, x, rngs):
    """Applies `layers`, each followed by the activation and, if hidden, dropout; float32 out."""
    act = ACTIVATIONS[self.activation]
    for layer in layers[:-1]:
      x = self.dropout(act(layer(x)), rngs=rngs)
    return act(layers[-1](x)).astype(jnp.float32)

  def encode(self, x, *, rngs=None):
    """Bottleneck activations: the learned sample features."""
    return self._stack(self.encoder, x, rngs)

  def __call__(self, x, *, rngs=None):
    """Reconstruction of `x`; `rngs` (an nnx.Rngs) overrides the dropout stream."""
    return self._stack(self.decoder, self.encode(x, rngs=rngs), rngs)

  def encoder_layers(self):
    """Encoder (W, b) pairs as float32 numpy arrays (the parameters, whatever the compute
    dtype, so DeepLIFT scores in float32), in the `act(x @ W + b)` convention."""
    return [(np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])) for layer in self.encoder]

  def kernels(self):
    """All Dense kernels (encoder then decoder): what the L2 penalty acts on."""
    return [layer.kernel[...] for layer in (*self.encoder, *self.decoder)]


class MinMaxScaler:
  """Per-feature scaling to [0, 1] over the training split: (x - min) / (max - min).

  Constant features (max == min) get span 1, so they map to 0 and back without dividing by
  zero. Values outside the training range map outside [0, 1]; that is intended (held-out
  data is not clipped).
  """

  def __init__(self, minimum=None, span=None):
    self.minimum = None if minimum is None else np.asarray(minimum, np.float32)
    self.span = None if span is None else np.asarray(span, np.float32)

  def fit(self, x):
    x = np.asarray(x, np.float32)
    self.minimum = x.min(axis=0)
    span = x.max(axis=0) - self.minimum
    self.span = np.where(span > 0, span, 1.0).astype(np.float32)
    return self

  def transform(self, x):
    return ((np.asarray(x, np.float32) - self.minimum) / self.span).astype(np.float32)

  def inverse_transform(self, x):
    return (np.asarray(x, np.float32) * self.span + self.minimum).astype(np.float32)

  def save(self, path):
    """Writes `minimum` and `span` to an .npz file (atomically)."""
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        np.savez(f, minimum=self.minimum, span=self.span)

  @classmethod
  def load(cls, path):
    with np.load(os.fspath(path)) as saved:
      return cls(saved['minimum'], saved['span'])
