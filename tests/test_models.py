"""The AutoEncoder's architecture and modes, and the min-max and standard scalers."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import test as test_config
from landmark.data import scalers
from landmark.models import autoencoder
from landmark.training import core
from landmark.training import sharding
from landmark.training import train


def _model(n_inputs=40, hidden=(16,), bottleneck=4, dropout=0.5, seed=0):
  return autoencoder.AutoEncoder(n_inputs, hidden, bottleneck, dropout=dropout,
                            rngs=nnx.Rngs(seed))


def _inputs(n_samples=6, n_inputs=40, seed=1):
  return np.random.default_rng(seed).uniform(size=(n_samples, n_inputs)).astype(np.float32)


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def test_shapes_and_sigmoid_range():
  model = _model(hidden=(16, 8))
  model.eval()
  x = _inputs()
  codes, reconstruction = np.asarray(model.encode(x)), np.asarray(model(x))
  assert codes.shape == (6, 4) and reconstruction.shape == (6, 40)
  for values in (codes, reconstruction):
    assert np.all((values > 0) & (values < 1))
  widths = [tuple(kernel.shape) for kernel in model.kernels()]
  assert widths == [(40, 16), (16, 8), (8, 4), (4, 8), (8, 16), (16, 40)]


def test_encoder_layers_reproduce_encode():
  model = _model(hidden=(16, 8))
  model.eval()
  x = _inputs()
  activations = x.astype(np.float64)
  for kernel, bias in model.encoder_layers():
    activations = _sigmoid(activations @ kernel + bias)
  np.testing.assert_allclose(np.asarray(model.encode(x)), activations, rtol=0, atol=1e-6)


def test_linear_output_keeps_the_encoder_and_drops_only_the_last_sigmoid():
  sigmoid, linear = _model(hidden=(16,)), _model(hidden=(16,))
  linear.output_activation = 'linear'
  x = _inputs()
  for model in (sigmoid, linear):
    model.eval()
  np.testing.assert_array_equal(np.asarray(linear.encode(x)), np.asarray(sigmoid.encode(x)))
  np.testing.assert_allclose(_sigmoid(np.asarray(linear(x), np.float64)),
                             np.asarray(sigmoid(x)), rtol=0, atol=1e-6)
  built = autoencoder.AutoEncoder(40, (16,), 4, output_activation='linear', rngs=nnx.Rngs(0))
  assert built.output_activation == 'linear'


def test_dropout_only_in_training_mode():
  model = _model()
  x = _inputs()
  model.eval()
  np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))
  evaluated = np.asarray(model(x))
  model.train()
  first, second = np.asarray(model(x)), np.asarray(model(x))
  assert not np.array_equal(first, second)
  assert not np.array_equal(first, evaluated)


def test_no_dropout_on_bottleneck_or_output():
  """Without hidden layers the only activations are the bottleneck and the output."""
  model = _model(hidden=(), dropout=0.5)
  x = _inputs()
  model.eval()
  expected = np.asarray(model(x)), np.asarray(model.encode(x))
  model.train()
  np.testing.assert_array_equal(np.asarray(model(x)), expected[0])
  np.testing.assert_array_equal(np.asarray(model.encode(x)), expected[1])


def test_explicit_dropout_rngs_are_reproducible():
  model = _model()
  model.train()
  x = jnp.asarray(_inputs())
  first = model(x, rngs=nnx.Rngs(dropout=3))
  np.testing.assert_array_equal(first, model(x, rngs=nnx.Rngs(dropout=3)))
  assert not np.array_equal(first, model(x, rngs=nnx.Rngs(dropout=4)))


def _bf16_config():
  config = test_config.get_config()
  config.model.compute_dtype = 'bfloat16'
  return config


def test_bfloat16_model_has_float32_parameters_and_outputs(expression):
  """Same parameters as the float32 model; outputs float32, within bfloat16's precision."""
  x = jnp.asarray(expression, jnp.float32)
  key = jax.random.key(0)
  mixed = train.build_model(_bf16_config(), x.shape[1], key)
  full = train.build_model(test_config.get_config(), x.shape[1], key)
  for model in (mixed, full):
    model.eval()
  for kernel, reference in zip(mixed.kernels(), full.kernels()):
    assert kernel.dtype == jnp.float32
    np.testing.assert_array_equal(kernel, reference)
  for (kernel, bias), (ref_kernel, ref_bias) in zip(mixed.encoder_layers(),
                                                    full.encoder_layers()):
    assert kernel.dtype == bias.dtype == np.float32   # what DeepLIFT scores with
    np.testing.assert_array_equal(kernel, ref_kernel)
    np.testing.assert_array_equal(bias, ref_bias)
  for method in ('encode', '__call__'):
    low, high = getattr(mixed, method)(x), getattr(full, method)(x)
    assert low.dtype == jnp.float32
    assert not np.array_equal(low, high)                 # it did compute in bfloat16...
    np.testing.assert_allclose(low, high, rtol=0, atol=1e-2)   # ...to ~2-3 digits
    assert np.abs(low - high).mean() < 3e-3


def _training_losses(config, x, steps=30):
  """Losses of `steps` full-batch training steps (epochs of the training core, one step
  each); asserts they and the parameters are float32."""
  model = train.build_model(config, x.shape[1], jax.random.key(0))
  optimizer = train.build_optimizer(config)
  mesh = sharding.device_mesh(1)
  state = core.new_state(nnx.view(model, deterministic=False), optimizer, jax.random.key(1), mesh)
  data = core.device_data({'x': x}, mesh)
  objective = train.Reconstruction(config.train.l2, config.train.loss)
  losses = []
  for epoch in range(1, steps + 1):
    state, loss = core.train_epoch(state, objective, optimizer, data, epoch, len(x), len(x), mesh)
    assert loss.dtype == jnp.float32
    losses.append(float(loss))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
  return np.array(losses)


def test_bfloat16_training_follows_float32_training(expression):
  x = jnp.asarray(expression, jnp.float32)
  mixed = _training_losses(_bf16_config(), x)
  full = _training_losses(test_config.get_config(), x)
  assert mixed[-1] < 0.92 * mixed[0]
  np.testing.assert_allclose(mixed, full, rtol=0, atol=2e-3)


def test_unknown_compute_dtype_is_one_line_error():
  config = test_config.get_config()
  config.model.compute_dtype = 'float16'
  with pytest.raises(ValueError, match=r"config.model.compute_dtype must be one of "
                                       r"\['bfloat16', 'float32'\], got 'float16'"):
    train.build_model(config, 10, jax.random.key(0))


def _train_values():
  x = np.random.default_rng(0).normal(8.0, 2.0, size=(30, 5)).astype(np.float32)
  x[:, 2] = 7.5  # a gene constant over the training split
  return x


def test_scaler_maps_training_range_to_unit_interval():
  x = _train_values()
  scaled = scalers.MinMaxScaler().fit(x).transform(x)
  varying = [0, 1, 3, 4]
  np.testing.assert_allclose(scaled[:, varying].min(axis=0), 0.0, atol=1e-6)
  np.testing.assert_allclose(scaled[:, varying].max(axis=0), 1.0, atol=1e-6)
  expected = (x[:, 0] - x[:, 0].min()) / (x[:, 0].max() - x[:, 0].min())
  np.testing.assert_allclose(scaled[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_scaler_round_trip_and_constant_gene():
  x = _train_values()
  scaler = scalers.MinMaxScaler().fit(x)
  held_out = np.random.default_rng(1).normal(8.0, 3.0, size=(7, 5)).astype(np.float32)
  for values in (x, held_out):
    scaled = scaler.transform(values)
    assert np.all(np.isfinite(scaled))
    np.testing.assert_allclose(scaler.inverse_transform(scaled), values, rtol=1e-6, atol=1e-5)
  np.testing.assert_array_equal(scaler.transform(x)[:, 2], 0.0)


def test_scaler_save_load(tmp_path):
  x = _train_values()
  scaler = scalers.MinMaxScaler().fit(x)
  scaler.save(tmp_path / 'scaler.npz')
  loaded = scalers.MinMaxScaler.load(tmp_path / 'scaler.npz')
  np.testing.assert_array_equal(loaded.minimum, scaler.minimum)
  np.testing.assert_array_equal(loaded.span, scaler.span)
  np.testing.assert_array_equal(loaded.transform(x), scaler.transform(x))


def test_standard_scaler_standardises_the_training_split_and_round_trips():
  x = _train_values()
  scaler = scalers.StandardScaler().fit(x)
  scaled = scaler.transform(x)
  varying = [0, 1, 3, 4]
  np.testing.assert_allclose(scaled[:, varying].mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(scaled[:, varying].std(axis=0), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(scaled[:, 2], 0.0)   # constant gene: sd 1, maps to 0
  np.testing.assert_allclose(scaler.std, np.where(np.arange(5) == 2, 1.0, x.std(axis=0)),
                             rtol=1e-5)
  held_out = np.random.default_rng(1).normal(8.0, 3.0, size=(7, 5)).astype(np.float32)
  np.testing.assert_allclose(scaler.inverse_transform(scaler.transform(held_out)), held_out,
                             rtol=1e-6, atol=1e-5)


def test_standard_scaler_save_load(tmp_path):
  x = _train_values()
  scaler = scalers.StandardScaler().fit(x)
  scaler.save(tmp_path / 'scaler.npz')
  with np.load(tmp_path / 'scaler.npz') as saved:
    assert sorted(saved.files) == ['mean', 'std']
  loaded = scalers.StandardScaler.load(tmp_path / 'scaler.npz')
  np.testing.assert_array_equal(loaded.mean, scaler.mean)
  np.testing.assert_array_equal(loaded.transform(x), scaler.transform(x))
