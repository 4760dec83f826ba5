"""The paper's AutoEncoder (method.md section 2): a Flax NNX module."""

from typing import Sequence

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'tanh': jnp.tanh, 'relu': jax.nn.relu,
               'linear': lambda z: z}   # the names landmark.attribution.deeplift knows
OUTPUT_ACTIVATIONS = {'sigmoid': jax.nn.sigmoid, 'linear': lambda z: z}


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
  Study-conditional (`studies`, the training studies' names): the decoder also receives
  the one-hot of the sample's study, so the bottleneck need not encode which study a
  profile came from; a study outside `studies` (code -1) gets no study input. The encoder,
  and so what DeepLIFT scores, is unchanged.
  """

  def __init__(self, n_inputs: int, hidden: Sequence[int] = (500,), bottleneck: int = 100,
               activation: str = 'sigmoid', dropout: float = 0.1, dtype=jnp.float32,
               output_activation: str = 'sigmoid', studies: Sequence[str] = (), *,
               rngs: nnx.Rngs):
    encoder_widths = (n_inputs, *hidden, bottleneck)
    decoder_widths = (bottleneck + len(studies), *encoder_widths[-2::-1])

    def dense(widths: Sequence[int]) -> nnx.List:
      init = nnx.initializers.glorot_uniform()
      return nnx.List([nnx.Linear(i, o, kernel_init=init, dtype=dtype, param_dtype=jnp.float32,
                                  rngs=rngs)
                       for i, o in zip(widths[:-1], widths[1:])])

    self.encoder = dense(encoder_widths)
    self.decoder = dense(decoder_widths)
    self.activation = activation
    self.output_activation = output_activation
    self.studies = tuple(studies)
    self.dropout = nnx.Dropout(dropout, rngs=rngs)

  def _stack(self, layers, x, rngs, last):
    """Applies `layers`, each hidden one followed by the activation and dropout and the last
    by `last`; float32 out."""
    act = ACTIVATIONS[self.activation]
    for layer in layers[:-1]:
      x = self.dropout(act(layer(x)), rngs=rngs)
    return last(layers[-1](x)).astype(jnp.float32)

  def encode(self, x: jax.Array, *, rngs: nnx.Rngs | None = None) -> jax.Array:
    """Bottleneck activations: the learned sample features."""
    return self._stack(self.encoder, x, rngs, ACTIVATIONS[self.activation])

  def __call__(self, x: jax.Array, study_codes: jax.Array | None = None, *,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    """Reconstruction of `x`; a study-conditional model needs each row's `study_codes`
    (`study_codes()`); `rngs` (an nnx.Rngs) overrides the dropout stream."""
    features = self.encode(x, rngs=rngs)
    if self.studies:
      if study_codes is None:
        raise ValueError('a study-conditional AutoEncoder needs the study of every sample')
      features = jnp.concatenate(
          [features, jax.nn.one_hot(study_codes, len(self.studies), dtype=features.dtype)], 1)
    return self._stack(self.decoder, features, rngs, OUTPUT_ACTIVATIONS[self.output_activation])

  def study_codes(self, study_labels: Sequence[str]) -> np.ndarray:
    """Each label's index in `studies` (float32, as data batches hold it); -1 for a study
    the model was not trained on."""
    index = {study: code for code, study in enumerate(self.studies)}
    return np.array([index.get(str(label), -1) for label in study_labels], np.float32)

  def encoder_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encoder (W, b) pairs as float32 numpy arrays (the parameters, whatever the compute
    dtype, so DeepLIFT scores in float32), in the `act(x @ W + b)` convention."""
    return [(np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])) for layer in self.encoder]

  def kernels(self) -> list[jax.Array]:
    """All Dense kernels (encoder then decoder): what the L2 penalty acts on."""
    return [layer.kernel[...] for layer in (*self.encoder, *self.decoder)]
