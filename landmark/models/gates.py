"""PERSIST's modules (Covert et al., Nature Communications 2023): a learned gate per input
gene in front of a reconstruction MLP that predicts every gene from the gated inputs.

Each gate is a hard-concrete variable (Louizos, Welling & Kingma, ICLR 2018): a binary
concrete (relaxed Bernoulli) sample of location log α and temperature BETA, stretched to
(GAMMA, ZETA) and clipped to [0, 1], so a gate is exactly 0 or 1 with positive
probability and still has a gradient in between. Training draws logistic noise per row
and gene; evaluation uses the deterministic gate clip(sigmoid(log α) (ZETA - GAMMA) +
GAMMA, 0, 1), and a gate is open when that is above 0.
"""

from flax import nnx
import jax
import jax.numpy as jnp

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1   # Louizos et al.'s temperature and stretch
INIT_LOG_ALPHA = 2.0                    # every gate starts open (P(gate != 0) ~ 0.97)
INIT_SD = 0.01                          # jitter that breaks ties between the gates


class GateMask(nnx.Variable):
  """Which gates may open (1) and which stay shut (0); not trained."""


class HardConcreteGates(nnx.Module):
  """One hard-concrete gate per input; multiplies each input by its gate."""

  def __init__(self, n_inputs: int, *, rngs: nnx.Rngs):
    self.log_alpha = nnx.Param(
        INIT_LOG_ALPHA + INIT_SD * jax.random.normal(rngs.params(), (n_inputs,)))
    self.allowed = GateMask(jnp.ones(n_inputs))

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """x times a gate sample per row and input when `key` is given, else the deterministic gates."""
    if key is None:
      return x * self.deterministic()
    log_alpha = self.log_alpha[...]
    noise = jax.random.logistic(key, x.shape, log_alpha.dtype)
    relaxed = jax.nn.sigmoid((noise + log_alpha) / BETA)
    return x * jnp.clip(relaxed * (ZETA - GAMMA) + GAMMA, 0.0, 1.0) * self.allowed[...]

  def deterministic(self) -> jax.Array:
    """(n_inputs,) evaluation gates in [0, 1], 0 for those not allowed."""
    gates = jnp.clip(jax.nn.sigmoid(self.log_alpha[...]) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)
    return gates * self.allowed[...]

  def open_probability(self) -> jax.Array:
    """(n_inputs,) probability that a training sample of each gate is not 0 (the L0 norm's
    expectation per gate), 0 for those not allowed."""
    return jax.nn.sigmoid(self.log_alpha[...] - BETA * jnp.log(-GAMMA / ZETA)) * self.allowed[...]

  def open_count(self) -> jax.Array:
    """How many evaluation gates are open (above 0)."""
    return jnp.sum(self.deterministic() > 0)


class GatedReconstruction(nnx.Module):
  """Hard-concrete gates -> MLP (ReLU hidden layers, linear output) predicting every input."""

  def __init__(self, n_inputs: int, hidden: tuple[int, ...] = (512,), *, rngs: nnx.Rngs):
    self.gates = HardConcreteGates(n_inputs, rngs=rngs)
    widths = (n_inputs, *hidden, n_inputs)
    self.decoder = nnx.List([nnx.Linear(i, o, rngs=rngs) for i, o in zip(widths[:-1], widths[1:])])

  def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """The reconstruction of x from its gated inputs (sampled gates when `key` is given)."""
    h = self.gates(x, key)
    for layer in self.decoder[:-1]:
      h = jax.nn.relu(layer(h))
    return self.decoder[-1](h)
