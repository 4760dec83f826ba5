"""DeepLIFT Rescale: summation-to-delta, an independent NumPy implementation, streaming, a
planted signal."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from landmark.attribution import attributions
from landmark.attribution import deeplift


def random_layers(sizes, seed=0, gain=2.0):
  rng = np.random.default_rng(seed)
  return [(gain * rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), rng.normal(size=n_out))
          for n_in, n_out in zip(sizes[:-1], sizes[1:])]


NUMPY_ACTIVATIONS = {
    'sigmoid': (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z))**2),
    'tanh': (np.tanh, lambda z: 1 - np.tanh(z)**2),
    'relu': (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    'linear': (lambda z: z, np.ones_like),
}


def numpy_forward(layers, activations, x):
  a = x
  for (w, b), name in zip(layers, activations):
    a = NUMPY_ACTIVATIONS[name][0](a @ w + b)
  return a


def numpy_deeplift(layers, activations, x, reference, eps=1e-6):
  """Rescale rule written from the formulas: store z and z0, multipliers, chain rule back."""
  result = []
  for row in x:
    a, a0, multipliers = row, reference, []
    for (w, b), name in zip(layers, activations):
      f, slope = NUMPY_ACTIVATIONS[name]
      z, z0 = a @ w + b, a0 @ w + b
      with np.errstate(divide='ignore', invalid='ignore'):
        secant = (f(z) - f(z0)) / (z - z0)
      multipliers.append(np.where(np.abs(z - z0) < eps, slope(z), secant))
      a, a0 = f(z), f(z0)
    back = np.diag(multipliers[-1])  # (units, units): one row per output unit
    for layer in range(len(layers) - 1, 0, -1):
      back = (back @ layers[layer][0].T) * multipliers[layer - 1]
    result.append((back @ layers[0][0].T) * (row - reference))
  return np.stack(result)


def summation_error(layers, x, reference, dtype):
  c = np.asarray(deeplift.contributions(layers, 'sigmoid', x.astype(dtype),
                                        reference.astype(dtype)))
  assert c.dtype == dtype and c.shape == (len(x), layers[-1][0].shape[1], x.shape[1])
  delta = (numpy_forward(layers, ('sigmoid',) * 2, x)
           - numpy_forward(layers, ('sigmoid',) * 2, reference))
  return np.abs(c.sum(axis=-1) - delta).max() / np.abs(delta).max()


def test_summation_to_delta_float32(expression):
  layers = random_layers((2000, 64, 16))
  reference = deeplift.make_reference('train_mean', expression)
  assert summation_error(layers, expression, reference, np.float32) < 1e-4


def test_summation_to_delta_float64(expression, x64):
  layers = random_layers((2000, 64, 16))
  reference = deeplift.make_reference('train_mean', expression)
  assert summation_error(layers, expression, reference, np.float64) < 1e-9


def test_matches_numpy_implementation_mixed_activations(x64):
  rng = np.random.default_rng(1)
  layers = random_layers((12, 9, 8, 7, 5), seed=1)
  activations = ('tanh', 'relu', 'sigmoid', 'linear')
  x, reference = rng.uniform(-1, 1, size=(6, 12)), rng.uniform(-1, 1, size=12)
  expected = numpy_deeplift(layers, activations, x, reference)
  np.testing.assert_allclose(deeplift.contributions(layers, activations, x, reference), expected,
                             rtol=0, atol=1e-10)
  # The secants matter here: gradient x input (every multiplier a derivative) differs.
  gradient_times_delta = numpy_deeplift(layers, activations, x, reference, eps=np.inf)
  assert not np.allclose(expected, gradient_times_delta, atol=1e-3)


def test_reference_row_is_zero_and_tiny_delta_is_finite(x64):
  rng = np.random.default_rng(2)
  layers = random_layers((30, 10, 4), seed=2)
  reference = rng.uniform(size=30)
  x = np.stack([reference, reference + 1e-9])
  c = np.asarray(deeplift.contributions(layers, 'sigmoid', x, reference))
  assert np.all(c[0] == 0)
  assert np.all(np.isfinite(c))
  # With |dz| below eps the multiplier is the derivative: C = Jacobian * dx.
  jacobian = jax.jacobian(lambda v: jax_forward(layers, v))(jnp.asarray(reference))
  np.testing.assert_allclose(c[1], jacobian * 1e-9, rtol=1e-6, atol=1e-22)


def jax_forward(layers, x):
  for w, b in layers:
    x = jax.nn.sigmoid(x @ w + b)
  return x


def test_rescale_multiplier_fallback_is_safe():
  z = jnp.array([0.3, 0.3, -2.0])
  z0 = jnp.array([0.3, 0.3 + 1e-8, 1.0])
  m = deeplift.rescale_multiplier(jax.nn.sigmoid, z, z0)
  s = jax.nn.sigmoid(z)
  np.testing.assert_allclose(m[:2], s[:2] * (1 - s[:2]), rtol=1e-6)
  np.testing.assert_allclose(m[2], (jax.nn.sigmoid(-2.0) - jax.nn.sigmoid(1.0)) / -3.0, rtol=1e-6)
  grad = jax.grad(lambda z: deeplift.rescale_multiplier(jax.nn.sigmoid, z, z0).sum())(z)
  assert np.all(np.isfinite(grad))


def test_vmap_over_units_equals_loop_over_units(expression):
  layers = random_layers((2000, 32, 6), seed=3)
  x, reference = expression[:5], expression.mean(axis=0)
  together = np.asarray(deeplift.contributions(layers, 'sigmoid', x, reference))
  for unit in range(6):
    (w, b) = layers[-1]
    one_unit = layers[:-1] + [(w[:, unit:unit + 1], b[unit:unit + 1])]
    alone = np.asarray(deeplift.contributions(one_unit, 'sigmoid', x, reference))[:, 0]
    np.testing.assert_allclose(together[:, unit], alone, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('aggregate', ['abs', 'signed'])
def test_streaming_scores_equal_all_at_once(expression, aggregate, x64):
  layers = random_layers((2000, 32, 8), seed=4)
  reference = deeplift.make_reference('train_mean', expression)
  c = np.asarray(deeplift.contributions(layers, 'sigmoid', expression, reference))
  expected = (np.abs(c) if aggregate == 'abs' else c).mean(axis=(0, 1))
  uneven = np.split(expression, [3, 4, 11, 12])  # 3, 1, 7, 1, 5 rows
  # 0.3 MB holds 2 samples of 8 x 2000 float64: 9 chunks, the last one padded.
  scores = deeplift.score_inputs(layers, 'sigmoid', uneven, reference, aggregate, max_chunk_mb=0.3)
  np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-15)
  whole = deeplift.score_inputs(layers, 'sigmoid', expression, reference, aggregate)
  np.testing.assert_allclose(whole, expected, rtol=1e-10, atol=1e-15)


def test_make_reference(tmp_path):
  x = np.random.default_rng(5).uniform(size=(10, 4)).astype(np.float32)
  np.testing.assert_allclose(deeplift.make_reference('train_mean', x), x.mean(axis=0), rtol=1e-6)
  assert np.all(deeplift.make_reference('zeros', x) == 0)
  path = tmp_path / 'ref.npy'
  np.save(path, np.arange(4.0))
  np.testing.assert_array_equal(deeplift.make_reference(str(path), x), np.arange(4.0))
  np.save(path, np.arange(5.0))
  with pytest.raises(ValueError, match='ref.npy.*shape'):
    deeplift.make_reference(str(path), x)
  with pytest.raises(ValueError, match='median'):
    deeplift.make_reference('median', x)


def test_export_for_checking(tmp_path, expression):
  layers = random_layers((2000, 16, 4), seed=6)
  reference = expression.mean(axis=0)
  deeplift.export_for_checking(tmp_path, layers, 'sigmoid', expression, reference, n=3)
  encoder, sample = np.load(tmp_path / 'encoder.npz'), np.load(tmp_path / 'sample.npz')
  assert list(encoder['activations']) == ['sigmoid', 'sigmoid']
  assert encoder['W2'].dtype == np.float32 and encoder['W2'].shape == (16, 4)
  recomputed = numpy_deeplift([(encoder['W1'], encoder['b1']), (encoder['W2'], encoder['b2'])],
                              ('sigmoid',) * 2, sample['x'], sample['reference'])
  assert sample['contributions'].shape == (3, 4, 2000)
  np.testing.assert_allclose(sample['contributions'], recomputed, rtol=1e-3, atol=1e-6)


def test_deeplift_flops():
  assert deeplift.deeplift_flops((22268, 500, 100), 1) == 101 * 2 * (22268 * 500 + 500 * 100)


def planted_data(n_samples=1000, n_genes=500, n_drivers=5, noise=0.1, seed=0):
  """Drivers are uniform; every other gene is sigmoid of a random mix of them, plus noise."""
  rng = np.random.default_rng(seed)
  drivers = rng.uniform(size=(n_samples, n_drivers))
  mix = rng.normal(size=(n_drivers, n_genes - n_drivers)) * 3.0
  targets = 1 / (1 + np.exp(-(drivers - 0.5) @ mix))
  targets += noise * rng.normal(size=targets.shape)
  genes = np.concatenate([drivers, targets], axis=1)
  order = rng.permutation(n_genes)
  genes, driver_columns = genes[:, order], np.argsort(order)[:n_drivers]
  low, high = genes.min(axis=0), genes.max(axis=0)
  return ((genes - low) / (high - low)).astype(np.float32), driver_columns


def train_autoencoder(x, sizes=(500, 64, 16), steps=1000, seed=0):
  """A small sigmoid autoencoder (MAE loss, Adam); returns its encoder layers."""
  key = jax.random.key(seed)
  widths = list(sizes) + list(sizes[-2::-1])
  params = []
  for n_in, n_out in zip(widths[:-1], widths[1:]):
    key, subkey = jax.random.split(key)
    limit = np.sqrt(6 / (n_in + n_out))
    params.append((jax.random.uniform(subkey, (n_in, n_out), minval=-limit, maxval=limit),
                   jnp.zeros(n_out)))
  optimizer = optax.adam(1e-2)

  def loss(params, x):
    a = x
    for w, b in params:
      a = jax.nn.sigmoid(a @ w + b)
    return jnp.abs(a - x).mean()

  @jax.jit
  def step(params, opt_state, x):
    grads = jax.grad(loss)(params, x)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  opt_state = optimizer.init(params)
  x = jnp.asarray(x)
  for _ in range(steps):
    params, opt_state = step(params, opt_state, x)
  return params[:len(sizes) - 1]


def driver_ranks(encoder, x, drivers):
  scores = deeplift.score_inputs(encoder, 'sigmoid', x, x.mean(axis=0))
  rank = np.empty(len(scores), int)
  rank[np.argsort(-scores)] = np.arange(1, len(scores) + 1)
  return rank[drivers]


def test_planted_drivers_rank_at_the_top():
  x, drivers = planted_data()
  untrained = train_autoencoder(x, steps=0)
  assert np.sum(driver_ranks(untrained, x, drivers) <= 25) < 5  # Not given away by the data.
  trained = train_autoencoder(x)
  assert np.all(driver_ranks(trained, x, drivers) <= 25)


def test_scoring_again_with_equal_settings_compiles_nothing():
  rng = np.random.default_rng(0)
  layers = [(rng.normal(size=(12, 5)).astype(np.float32), np.zeros(5, np.float32))]
  x = rng.uniform(size=(8, 12)).astype(np.float32)
  reference = np.zeros(12, np.float32)
  first = deeplift.score_inputs(layers, 'sigmoid', x, reference)
  compiled = deeplift._accumulate._cache_size()
  second = deeplift.score_inputs(layers, 'sigmoid', x + 0.5, reference)
  assert deeplift._accumulate._cache_size() == compiled
  assert not np.array_equal(first, second)
  for method in ('deeplift', 'gradient_x_input', 'integrated_gradients'):
    attributions.score_inputs(method, layers, 'sigmoid', x, reference)
    compiled = deeplift._accumulate._cache_size()
    attributions.score_inputs(method, layers, 'sigmoid', x + 0.5, reference)
    assert deeplift._accumulate._cache_size() == compiled, method
