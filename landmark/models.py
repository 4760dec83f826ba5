"""The paper's AutoEncoder (method.md section 2) and the per-gene scalings it is trained on."""

import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from landmark import fileio

ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'tanh': jnp.tanh, 'relu': jax.nn.relu,
               'linear': lambda z: z}   # the names landmark.deeplift knows
OUTPUT_ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'linear': lambda z: z}
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(name, field):
  """The jnp dtype of a config's `compute_dtype` string; `field` names it in the error."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'{field} must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}')
  return COMPUTE_DTYPES[name]


class AutoEncoder(nnx.Module):
  """Dense encoder n_inputs -> *hidden -> bottleneck and a mirrored decoder back to n_inputs.

  `activation` follows every encoder layer, the bottleneck included, and every hidden
  decoder layer, so the encoder stays a stack of Dense + activation (what DeepLIFT
  scores); `output_activation` follows the last layer: the paper's sigmoid (inputs then
  min-max scaled to [0, 1]) or linear (for standardised inputs). Dropout follows the
  activation of every hidden layer of the encoder and decoder (the 500-unit layers at the
  paper's width) but neither the bottleneck, whose activations are the learned features,
  nor the output. It is active only in training mode (`model.train()`); `model.eval()`
  switches it off for scoring.
  Kernels start Glorot-uniform and biases zero: Keras's Dense defaults, as in the paper.
  Mixed precision: layers compute in `dtype` (e.g. bfloat16 on GPUs) from float32
  parameters, and `encode` and `__call__` return float32, so losses, metrics, gradients and
  checkpoints stay float32 whatever the compute dtype.
  """

  def __init__(self, n_inputs, hidden=(500,), bottleneck=100, activation='sigmoid',
               dropout=0.1, dtype=jnp.float32, output_activation='sigmoid', *,
               rngs: nnx.Rngs):
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
    self.output_activation = output_activation
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _stack(self, layers, x, rngs, last):
    """Applies `layers`, each hidden one followed by the activation and dropout and the last
    by `last`; float32 out."""
    act = ACTIVATIONS[self.activation]
    for layer in layers[:-1]:
      x = self.dropout(act(layer(x)), rngs=rngs)
    return last(layers[-1](x)).astype(jnp.float32)

  def encode(self, x, *, rngs=None):
    """Bottleneck activations: the learned sample features."""
    return self._stack(self.encoder, x, rngs, ACTIVATIONS[self.activation])

  def __call__(self, x, *, rngs=None):
    """Reconstruction of `x`; `rngs` (an nnx.Rngs) overrides the dropout stream."""
    return self._stack(self.decoder, self.encode(x, rngs=rngs), rngs,
                       OUTPUT_ACTIVATIONS[self.output_activation])

  def encoder_layers(self):
    """Encoder (W, b) pairs as float32 numpy arrays (the parameters, whatever the compute
    dtype, so DeepLIFT scores in float32), in the `act(x @ W + b)` convention."""
    return [(np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])) for layer in self.encoder]

  def kernels(self):
    """All Dense kernels (encoder then decoder): what the L2 penalty acts on."""
    return [layer.kernel[...] for layer in (*self.encoder, *self.decoder)]


class AffineScaler:
  """Per-feature scaling (x - offset) / span, fitted on the training split by a subclass.

  Values outside what the training split showed are not clipped (held-out data may map
  outside [0, 1] under min-max scaling); that is intended. `save` names the two arrays
  by `KEYS`, so a saved scaler.npz says what its numbers are.
  """

  KEYS = ('offset', 'span')

  def __init__(self, offset=None, span=None):
    self.offset = None if offset is None else np.asarray(offset, np.float32)
    self.span = None if span is None else np.asarray(span, np.float32)

  def transform(self, x):
    return ((np.asarray(x, np.float32) - self.offset) / self.span).astype(np.float32)

  def inverse_transform(self, x):
    return (np.asarray(x, np.float32) * self.span + self.offset).astype(np.float32)

  def save(self, path):
    """Writes the offset and span to an .npz file (atomically), named by `KEYS`."""
    with fileio.atomic_path(path) as tmp:
      with open(tmp, 'wb') as f:
        np.savez(f, **dict(zip(self.KEYS, (self.offset, self.span))))

  @classmethod
  def load(cls, path):
    with np.load(os.fspath(path)) as saved:
      return cls(*(saved[key] for key in cls.KEYS))


def nonzero_span(span):
  """`span` with zeros (constant features) replaced by 1, so they map to 0 and back."""
  return np.where(span > 0, span, 1.0).astype(np.float32)


class MinMaxScaler(AffineScaler):
  """Per-feature scaling to [0, 1] over the training split: (x - min) / (max - min).

  Constant features (max == min) get span 1, so they map to 0 and back without dividing by
  zero.
  """

  KEYS = ('minimum', 'span')

  @property
  def minimum(self):
    return self.offset

  def fit(self, x):
    x = np.asarray(x, np.float32)
    self.offset = x.min(axis=0)
    self.span = nonzero_span(x.max(axis=0) - self.offset)
    return self


class StandardScaler(AffineScaler):
  """Per-feature standardisation over the training split: (x - mean) / sd.

  Every gene then weighs the same in the loss whatever its spread, and the targets are
  unbounded, so it goes with a linear output layer. Constant features get sd 1.
  """

  KEYS = ('mean', 'std')

  @property
  def mean(self):
    return self.offset

  @property
  def std(self):
    return self.span

  def fit(self, x):
    x = np.asarray(x, np.float64)
    self.offset = x.mean(axis=0).astype(np.float32)
    self.span = nonzero_span(x.std(axis=0))
    return self


SCALERS = {'minmax': MinMaxScaler, 'standard': StandardScaler}
