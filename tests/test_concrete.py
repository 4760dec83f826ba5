"""Concrete Autoencoder mechanics: annealing, one-hot evaluation, deduplicated selection, seeding.

Whether it finds planted driver genes is tested through its selector (test_selectors.py).
"""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from landmark.models import concrete

from landmark.selection import concrete_selection
from landmark.training import metric_writing


def settings(**overrides):
  defaults = dict(hidden=(16,), epochs=150, batch_size=8, learning_rate=1e-2,
                  selector_learning_rate=1e-2, start_temperature=10.0, end_temperature=0.01)
  return ml_collections.ConfigDict({**defaults, **overrides})


PER_MODULE = 6


def module_data(n_samples=128, n_modules=4, seed=0):
  """Modules of PER_MODULE genes, noisy copies of the module's factor; the first is exact."""
  rng = np.random.default_rng(seed)
  factors = rng.normal(size=(n_samples, n_modules))
  genes = np.repeat(factors, PER_MODULE, axis=1)
  noise = rng.normal(size=genes.shape)
  noise[:, ::PER_MODULE] = 0
  return (genes + 0.5 * noise).astype(np.float32)


def test_temperature_anneals_exponentially():
  steps = np.arange(0, 101)
  t = np.asarray(concrete_selection.temperature(steps, 100, 10.0, 0.01))
  np.testing.assert_allclose(t[[0, -1]], [10.0, 0.01], rtol=1e-6)
  np.testing.assert_allclose(t[1:] / t[:-1], (0.01 / 10.0) ** 0.01, rtol=1e-6)


def test_evaluation_uses_the_argmax_input_of_every_unit():
  model = concrete.ConcreteAutoencoder(8, 3, (5,), rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8)), jnp.float32)
  chosen = np.asarray(jnp.argmax(model.selector.logits[...], axis=1))
  np.testing.assert_allclose(model.selector(x), x[:, chosen], rtol=1e-6)
  # At a tiny temperature a Gumbel-softmax sample is one-hot too (on a noisy argmax): each
  # unit passes one input through, found by its value in the first row.
  sample = model.selector(x, jax.random.key(1), temperature=1e-4)
  columns = [np.flatnonzero(np.isclose(x[0], value))[0] for value in np.asarray(sample[0])]
  np.testing.assert_allclose(sample, x[:, columns], rtol=1e-5)


def with_probabilities(rows):
  """A model whose selector has these selection probabilities (rows sum to 1)."""
  rows = np.asarray(rows, np.float32)
  model = concrete.ConcreteAutoencoder(rows.shape[1], rows.shape[0], (), rngs=nnx.Rngs(0))
  model.selector.logits[...] = jnp.log(rows)
  return model


def test_selection_ranks_units_and_fills_duplicates():
  model = with_probabilities([
      [0.05, 0.05, 0.60, 0.15, 0.05, 0.10],   # input 2
      [0.02, 0.02, 0.90, 0.02, 0.02, 0.02],   # input 2 again, more sure: ranked first
      [0.10, 0.05, 0.05, 0.05, 0.70, 0.05],   # input 4
  ])
  # Units by max probability: 1 (input 2), 2 (input 4), 0 (input 2 again, dropped). The
  # fill is the unselected input most probable under any unit: 3 (0.15; input 0 has 0.10).
  np.testing.assert_array_equal(concrete_selection.selected_inputs(model), [2, 4, 3])


def test_selection_without_duplicates_is_the_argmaxes():
  model = with_probabilities([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
  np.testing.assert_array_equal(concrete_selection.selected_inputs(model), [1, 0])


def test_training_is_seeded_and_keeps_each_module_exact_gene():
  x = module_data()
  first, again = (concrete_selection.fit(x, 4, settings(), seed=3) for _ in range(2))
  other = concrete_selection.fit(x, 4, settings(), seed=4)
  np.testing.assert_array_equal(first.selector.logits[...], again.selector.logits[...])
  assert not np.array_equal(first.selector.logits[...], other.selector.logits[...])
  # Annealed, every unit is nearly one-hot, and the units keep one gene per module, the
  # exact copy of its factor: any other choice reconstructs the module worse.
  for model in (first, other):
    assert np.asarray(model.selector.probabilities()).max(axis=1).min() > 0.9
    assert set(concrete_selection.selected_inputs(model)) == set(
        range(0, 4 * PER_MODULE, PER_MODULE))


def test_interrupted_and_resumed_fit_equals_uninterrupted(tmp_path, monkeypatch, crash_on_call):
  """A fit that crashes at its second convergence check (epoch 20 of 100) resumes from the
  checkpoint of epoch 19 and ends with the logits of an uninterrupted fit, bit for bit."""
  x, config = module_data(), settings(epochs=100)
  uninterrupted = concrete_selection.fit(x, 4, config, seed=3)
  crash_on_call(concrete_selection, '_max_probability', 2)
  with pytest.raises(KeyboardInterrupt):
    concrete_selection.fit(x, 4, config, seed=3, workdir=str(tmp_path))
  monkeypatch.undo()
  resumed = concrete_selection.fit(x, 4, config, seed=3, workdir=str(tmp_path))
  np.testing.assert_array_equal(resumed.selector.logits[...], uninterrupted.selector.logits[...])
  scalars = metric_writing.read_scalars(tmp_path / 'tensorboard')
  assert ([step for step, _ in scalars[concrete_selection.MAX_PROBABILITY]]
          == list(range(10, 101, 10)))


def test_bad_arguments():
  x = module_data()
  with pytest.raises(ValueError, match='k=0'):
    concrete_selection.fit(x, 0, settings())
  with pytest.raises(ValueError, match='epochs'):
    concrete_selection.fit(x, 2, settings(epochs=0))


def test_converges_with_many_more_inputs_than_samples():
  """Issue #16: with thousands of inputs the near-uniform logits must separate within the
  run's few steps. At one Adam rate (1e-2) for logits and decoder the mean max probability
  stays low after 300 steps; the selector's own, higher rate (the default
  selector_learning_rate) gets every unit past CONVERGED."""
  rng = np.random.default_rng(0)
  factors = rng.normal(size=(64, 8))
  x = np.concatenate([factors, 0.3 * rng.normal(size=(64, 2000))], axis=1)
  x[:, 8:] += np.repeat(factors, 250, axis=1)    # 2000 noisy copies of the 8 planted factors
  config = settings(hidden=(16,), epochs=150, batch_size=32, selector_learning_rate=0.3)
  model = concrete_selection.fit(x.astype(np.float32), 8, config, seed=0)
  assert float(np.asarray(model.selector.probabilities()).max(axis=1).mean()) > (
      concrete_selection.CONVERGED)
  slow = concrete_selection.fit(x.astype(np.float32), 8,
                                settings(**{**config, 'selector_learning_rate': 1e-2}), seed=0)
  assert float(np.asarray(slow.selector.probabilities()).max(axis=1).mean()) < 0.5
