"""The Concrete Autoencoder's modules (Abid, Balin & Zou, ICML 2019): a Concrete selector
layer of k units over the inputs and the decoder MLP that reconstructs every input."""

from flax import nnx
import jax
import jax.numpy as jnp

LEAKY_SLOPE = 0.2   # the paper's decoder activation: LeakyReLU(0.2)


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

  def probabilities(self) -> jax.Array:
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
