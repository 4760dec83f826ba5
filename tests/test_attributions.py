"""Gradient x input and integrated gradients: Jacobians, completeness, streaming, DeepLIFT
parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from landmark.attribution import attributions
from landmark.attribution import deeplift

FORWARD = {'sigmoid': jax.nn.sigmoid, 'tanh': jnp.tanh, 'relu': jax.nn.relu, 'linear': lambda z: z}


def random_layers(sizes, seed=0, gain=2.0):
  rng = np.random.default_rng(seed)
  return [(gain * rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), rng.normal(size=n_out))
          for n_in, n_out in zip(sizes[:-1], sizes[1:])]


def forward(layers, activations, x):
  """The network written out plainly, for jax.jacobian."""
  for (w, b), name in zip(layers, activations):
    x = FORWARD[name](x @ w + b)
  return x


def jacobians(layers, activations, points):
  """(points, units, inputs) Jacobians by jax.jacobian, one point at a time."""
  return np.stack([jax.jacobian(lambda v: forward(layers, activations, v))(jnp.asarray(p))
                   for p in points])


ACTIVATIONS = ('tanh', 'sigmoid', 'sigmoid')


@pytest.fixture
def network(x64):
  rng = np.random.default_rng(1)
  layers = random_layers((12, 9, 7, 5), seed=1)
  return layers, rng.uniform(-1, 1, size=(4, 12)), rng.uniform(-1, 1, size=12)


def test_gradient_x_input_is_jacobian_times_delta(network):
  layers, x, reference = network
  expected = jacobians(layers, ACTIVATIONS, x) * (x - reference)[:, None, :]
  got = attributions.attributions('gradient_x_input', layers, ACTIVATIONS, x, reference)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
  # A zero reference gives the textbook gradient x input.
  zero = attributions.attributions('gradient_x_input', layers, ACTIVATIONS, x, np.zeros(12))
  np.testing.assert_allclose(zero, jacobians(layers, ACTIVATIONS, x) * x[:, None, :], atol=1e-14)


@pytest.mark.parametrize('rule', attributions.PATH_RULES)
def test_integrated_gradients_is_the_quadrature_of_jacobians(network, rule):
  layers, x, reference = network
  alphas, weights = attributions.path_points(3, rule)
  expected = []
  for row in x:
    points = reference + alphas[:, None] * (row - reference)
    expected.append(np.einsum('s,skj->kj', weights, jacobians(layers, ACTIVATIONS, points)))
  expected = np.stack(expected) * (x - reference)[:, None, :]
  got = attributions.attributions('integrated_gradients', layers, ACTIVATIONS, x, reference,
                                  steps=3, rule=rule)
  np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('rule', attributions.PATH_RULES)
def test_integrated_gradients_completeness_converges(network, rule):
  """sum_j A[k, j] -> f_k(x) - f_k(reference), with O(1 / steps^2) error."""
  layers, x, reference = network
  delta = np.asarray(forward(layers, ACTIVATIONS, x) - forward(layers, ACTIVATIONS, reference))
  errors = []
  for steps in (2, 8, 32):
    a = attributions.attributions('integrated_gradients', layers, ACTIVATIONS, x, reference,
                                  steps=steps, rule=rule)
    errors.append(np.abs(np.asarray(a).sum(axis=-1) - delta).max())
  assert errors[0] > 1e-4  # The test network is curved enough for the rule to matter.
  for coarse, fine in zip(errors[:-1], errors[1:]):
    assert fine < coarse / 10  # Quadratic convergence would divide by 16.
  assert errors[-1] < 1e-3 * np.abs(delta).max()


def test_methods_agree_on_a_linear_network(x64):
  rng = np.random.default_rng(2)
  layers = random_layers((10, 6, 3), seed=2)
  x, reference = rng.normal(size=(3, 10)), rng.normal(size=10)
  weight = layers[0][0] @ layers[1][0]
  expected = weight.T[None] * (x - reference)[:, None, :]
  for method in attributions.METHODS:
    got = attributions.attributions(method, layers, 'linear', x, reference, steps=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_deeplift_method_is_deeplift(expression, x64):
  layers = random_layers((2000, 32, 8), seed=3)
  reference = deeplift.make_reference('train_mean', expression)
  np.testing.assert_array_equal(
      attributions.attributions('deeplift', layers, 'sigmoid', expression[:5], reference),
      deeplift.contributions(layers, 'sigmoid', expression[:5], reference))
  uneven = np.split(expression, [3, 4, 11])
  for aggregate in ('abs', 'signed'):
    np.testing.assert_allclose(
        attributions.score_inputs('deeplift', layers, 'sigmoid', uneven, reference, aggregate,
                                  max_chunk_mb=0.2),
        deeplift.score_inputs(layers, 'sigmoid', expression, reference, aggregate),
        rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize('method', attributions.METHODS)
@pytest.mark.parametrize('aggregate', ('abs', 'signed'))
def test_streaming_scores_equal_all_at_once(expression, method, aggregate, x64):
  layers = random_layers((2000, 16, 4), seed=4)
  reference = deeplift.make_reference('train_mean', expression)
  a = np.asarray(attributions.attributions(method, layers, 'sigmoid', expression, reference,
                                           steps=4))
  expected = (np.abs(a) if aggregate == 'abs' else a).mean(axis=(0, 1))
  uneven = np.split(expression, [3, 4, 11, 12])  # 3, 1, 7, 1, 5 rows
  # 0.1 MB holds 3 samples of 4 x 1000 float64 (one for integrated gradients): padded chunks.
  scores = attributions.score_inputs(method, layers, 'sigmoid', uneven, reference, aggregate,
                                     max_chunk_mb=0.1, steps=4)
  np.testing.assert_allclose(scores, expected, rtol=1e-10, atol=1e-15)


def test_path_points():
  alphas, weights = attributions.path_points(4, 'trapezoid')
  np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
  np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
  alphas, weights = attributions.path_points(4, 'midpoint')
  np.testing.assert_allclose(alphas, [0.125, 0.375, 0.625, 0.875])
  np.testing.assert_allclose(weights, [0.25] * 4)
  with pytest.raises(ValueError, match='steps'):
    attributions.path_points(0)
  with pytest.raises(ValueError, match='simpson'):
    attributions.path_points(4, 'simpson')


def test_bad_arguments():
  layers = random_layers((5, 3))
  x = np.zeros((2, 5), np.float32)
  with pytest.raises(ValueError, match='occlusion'):
    attributions.score_inputs('occlusion', layers, 'sigmoid', x, x[0])
  with pytest.raises(ValueError, match='aggregate'):
    attributions.score_inputs('deeplift', layers, 'sigmoid', x, x[0], aggregate='max')
  with pytest.raises(ValueError, match='no samples'):
    attributions.score_inputs('deeplift', layers, 'sigmoid', [], x[0])
