"""Target-gene inference: D-GEX against planted signals, baselines against numpy."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import common
from landmark.inference import regression
from landmark.models import dgex
from landmark.training import checkpointing
from landmark.training import core
from landmark.training import metric_writing
from landmark.training import sharding


def fit_dgex(*args, **kwargs):
  """regression.fit_dgex on one device, whatever the machine has: these batch sizes (10, 50) need
  not split over more, and more give the same fit (test_sharding.py, test_multihost.py)."""
  return regression.fit_dgex(*args, mesh=sharding.device_mesh(1), **kwargs)


def small_config(**overrides):
  config = common.base_config().dgex
  config.update(hidden=(64, 32), learning_rate=0.3, epochs=40, batch_size=10, dropout=0.1,
                lr_floor=0.2)
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def noisy_data():
  """Weak signal + strong noise on 40 training samples: D-GEX overfits and its lr decays."""
  rng = np.random.default_rng(1)
  x = rng.normal(size=(60, 10)).astype(np.float32)
  y = (0.5 * x[:, :5] + rng.normal(size=(60, 5))).astype(np.float32)
  return x[:40], y[:40], x[40:], y[40:]


@pytest.fixture(scope='module')
def noisy_fit(noisy_data):
  return fit_dgex(small_config(), *noisy_data, seed=3)


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_standardizer_round_trip():
  rng = np.random.default_rng(0)
  values = rng.normal(5.0, [0.0, 1.0, 3.0], size=(50, 3))
  scaler = regression.Standardizer.fit(values, epsilon=1e-3)
  z = scaler.transform(values)
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
  np.testing.assert_allclose(z.std(axis=0), values.std(axis=0) / (values.std(axis=0) + 1e-3))
  np.testing.assert_allclose(scaler.inverse_transform(z), values)


@pytest.mark.parametrize('dtype, rtol', [(np.float32, 1e-5), (np.float64, 1e-10)])
def test_linear_equals_lstsq_with_intercept(dtype, rtol):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(80, 6))
  y = x @ rng.normal(size=(6, 4)) + 3.0 + rng.normal(size=(80, 4))
  with jax.enable_x64(dtype == np.float64):
    model = regression.fit_linear(x.astype(dtype), y.astype(dtype))
    assert model.weights.dtype == dtype
    predictions = model.predict(x.astype(dtype))
  design = np.column_stack([x, np.ones(len(x))])
  coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
  np.testing.assert_allclose(model.weights, coefficients[:-1], rtol=rtol, atol=rtol)
  np.testing.assert_allclose(model.intercept, coefficients[-1], rtol=rtol, atol=rtol)
  np.testing.assert_allclose(predictions, design @ coefficients, rtol=rtol, atol=10 * rtol)


def test_linear_is_minimum_norm_with_more_landmarks_than_samples():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(20, 50)), rng.normal(size=(20, 3))
  with jax.enable_x64(True):
    model = regression.fit_linear(x, y)
  centred_x, centred_y = x - x.mean(axis=0), y - y.mean(axis=0)
  np.testing.assert_allclose(model.weights, np.linalg.pinv(centred_x) @ centred_y, rtol=1e-8,
                             atol=1e-12)


def test_ridge_equals_closed_form():
  rng = np.random.default_rng(1)
  x = rng.normal(2.0, 1.0, size=(30, 8))
  y = rng.normal(size=(30, 3))
  ridge = 5.0
  with jax.enable_x64(True):
    model = regression.fit_linear(x, y, ridge=ridge)
  centred_x, centred_y = x - x.mean(axis=0), y - y.mean(axis=0)
  weights = np.linalg.solve(centred_x.T @ centred_x + ridge * np.eye(8), centred_x.T @ centred_y)
  np.testing.assert_allclose(model.weights, weights, rtol=1e-10)
  np.testing.assert_allclose(model.intercept, y.mean(axis=0) - x.mean(axis=0) @ weights,
                             rtol=1e-10)
  unregularised = regression.fit_linear(x, y)
  assert np.linalg.norm(model.weights) < np.linalg.norm(unregularised.weights)


def test_ridge_picks_the_penalty_with_the_lowest_validation_error():
  """More landmarks than samples: every penalty equals fit_linear's closed form, and the
  validation split, not the training fit, decides which one is kept."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 80))
  y = x[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(scale=2.0, size=(50, 4))
  x_train, y_train, x_val, y_val = x[:30], y[:30], x[30:], y[30:]
  grid = (0.0, 0.01, 1.0, 100.0)
  with jax.enable_x64(True):
    chosen = regression.fit_ridge(x_train, y_train, x_val, y_val, grid)
    scale = np.mean(np.linalg.svd(x_train - x_train.mean(axis=0), compute_uv=False) ** 2)
    candidates = [regression.fit_linear(x_train, y_train, ridge=p * scale) for p in grid]
    errors = [np.mean(np.abs(m.predict(x_val) - y_val)) for m in candidates]
    best = candidates[int(np.argmin(errors))]
    np.testing.assert_allclose(chosen.weights, best.weights, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(chosen.predict(x_val), best.predict(x_val), rtol=1e-8)
  assert np.argmin(errors) != 0   # noise this strong: least squares is not the pick


def test_knn_equals_brute_force():
  rng = np.random.default_rng(2)
  x_train, y_train = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
  queries = rng.normal(size=(17, 5))
  model = regression.fit_knn(x_train.astype(np.float32), y_train.astype(np.float32), k=4)
  model.block_size = 5                        # several blocks, the last one padded
  distances = np.linalg.norm(queries[:, None, :] - x_train[None], axis=-1)
  nearest = np.argsort(distances, axis=1)[:, :4]
  np.testing.assert_allclose(model.predict(queries), y_train[nearest].mean(axis=1), rtol=1e-5)
  with pytest.raises(ValueError, match='k <= 40'):
    regression.fit_knn(x_train, y_train, k=41)


def test_initial_weight_ranges():
  model = dgex.DGEX(300, (200, 100), 50, 0.1, rngs=nnx.Rngs(0))
  for layer, (fan_in, fan_out) in zip(model.hidden, ((300, 200), (200, 100))):
    limit = np.sqrt(6 / (fan_in + fan_out))
    kernel = np.asarray(layer.kernel[...])
    assert 0.95 * limit < np.abs(kernel).max() <= limit
    assert not np.asarray(layer.bias[...]).any()
  output = np.abs(np.asarray(model.output.kernel[...]))
  assert 0.95e-4 < output.max() <= 1e-4
  assert not np.asarray(model.output.bias[...]).any()


def test_dgex_beats_linear_on_planted_nonlinear_map():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(600, 20)).astype(np.float32)
  projections = rng.normal(size=(20, 5)) * 2.0 / np.sqrt(20)
  y = np.sin(x @ projections) @ rng.normal(size=(5, 50)) + 0.05 * rng.normal(size=(600, 50))
  y = y.astype(np.float32)
  train, val, test = slice(0, 400), slice(400, 500), slice(500, 600)
  config = small_config(hidden=(128,), learning_rate=0.2, epochs=150, batch_size=50,
                        dropout=0.0, lr_floor=1e-5)
  model = fit_dgex(config, x[train], y[train], x[val], y[val])
  dgex_mae = np.abs(model.predict(x[test]) - y[test]).mean()
  linear_mae = np.abs(regression.fit_linear(x[train], y[train]).predict(x[test]) - y[test]).mean()
  assert dgex_mae < 0.5 * linear_mae


def test_bfloat16_dgex_has_float32_parameters_and_outputs(expression):
  """Same parameters as the float32 network; float32 predictions within bfloat16's precision."""
  x = jnp.asarray((expression - expression.mean(axis=0)) / (expression.std(axis=0) + 1e-3),
                  jnp.float32)[:, :300]
  key = jax.random.key(0)
  mixed, full = (dgex.build_dgex(small_config(hidden=(256, 128), compute_dtype=dtype), 300, 50,
                                 key) for dtype in ('bfloat16', 'float32'))
  mixed_params, full_params = (nnx.to_pure_dict(nnx.state(m, nnx.Param)) for m in (mixed, full))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(mixed_params))
  assert_trees_equal(mixed_params, full_params)
  low, high = mixed(x), full(x)
  assert low.dtype == jnp.float32
  assert not np.array_equal(low, high)
  np.testing.assert_allclose(low, high, rtol=0, atol=2e-2 * np.abs(high).max())


def test_bfloat16_fit_follows_float32_fit():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 20)).astype(np.float32)
  y = np.sin(x @ rng.normal(size=(20, 5)) * 2 / np.sqrt(20)) @ rng.normal(size=(5, 50))
  y = (y + 0.05 * rng.normal(size=(500, 50))).astype(np.float32)
  fits = {dtype: fit_dgex(small_config(hidden=(128,), learning_rate=0.2, epochs=15,
                                       batch_size=50, dropout=0.0, lr_floor=1e-5,
                                       compute_dtype=dtype),
                          x[:400], y[:400], x[400:], y[400:])
          for dtype in ('bfloat16', 'float32')}
  mixed, full = fits['bfloat16'], fits['float32']
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(mixed.params))
  assert mixed.history['train_mae'][-1] < 0.85 * mixed.history['train_mae'][0]
  for key in ('train_mae', 'val_mae'):
    np.testing.assert_allclose(mixed.history[key], full.history[key], rtol=1e-2)
  predictions = mixed.predict(x[400:])
  assert predictions.dtype == np.float32
  np.testing.assert_allclose(predictions, full.predict(x[400:]), rtol=0, atol=5e-2)


def test_next_learning_rate_rule():
  assert regression.next_learning_rate(1e-3, 0.5, 0.4, 0.9, 1e-5) == pytest.approx(9e-4)
  assert regression.next_learning_rate(1e-3, 0.4, 0.5, 0.9, 1e-5) == 1e-3
  assert regression.next_learning_rate(1e-3, 0.4, 0.4, 0.9, 1e-5) == 1e-3   # equal is no rise
  assert regression.next_learning_rate(1e-3, 0.4, np.inf, 0.9, 1e-5) == 1e-3  # first epoch
  assert regression.next_learning_rate(1.05e-5, 0.5, 0.4, 0.9, 1e-5) == 1e-5


def test_fit_history_follows_decay_rule(noisy_fit):
  history = noisy_fit.history
  train_mae, learning_rate = history['train_mae'], history['learning_rate']
  assert learning_rate[0] == np.float32(0.3)
  rises = train_mae[1:-1] > train_mae[:-2]
  expected = np.where(rises, np.maximum(learning_rate[1:-1] * 0.9, 0.2), learning_rate[1:-1])
  np.testing.assert_allclose(learning_rate[2:], expected, rtol=1e-6)
  assert rises.any() and learning_rate.min() == np.float32(0.2)   # decays, then the floor


def test_best_validation_epoch_is_kept(noisy_data, noisy_fit):
  history = noisy_fit.history
  assert noisy_fit.best_epoch == np.argmin(history['val_mae'])
  assert noisy_fit.best_epoch < len(history['val_mae']) - 1 - 5   # overfits: not the last
  _, _, x_val, y_val = noisy_data
  val_mae = np.abs(noisy_fit.predict(x_val) - y_val).mean()        # in original units
  np.testing.assert_allclose(val_mae, history['val_mae'].min(), rtol=1e-5)
  # Training is deterministic, so a fit stopped at the best epoch ends on those parameters.
  truncated = fit_dgex(small_config(epochs=noisy_fit.best_epoch + 1), *noisy_data, seed=3)
  assert_trees_equal(truncated.params, noisy_fit.params)


def test_interrupted_and_resumed_fit_equals_uninterrupted(noisy_data, tmp_path, monkeypatch,
                                                          crash_on_call):
  """A fit that crashes in epoch 6 resumes from its epoch-5 checkpoint and ends exactly as an
  uninterrupted one; its TensorBoard curves hold each epoch once."""
  config = small_config(epochs=12)
  uninterrupted = fit_dgex(config, *noisy_data, seed=5)
  crash_on_call(regression, '_mean_abs_error', 2 * 5 + 1)   # two MAEs (train, val) an epoch
  with pytest.raises(KeyboardInterrupt):
    fit_dgex(config, *noisy_data, seed=5, workdir=str(tmp_path))
  monkeypatch.undo()
  manager = checkpointing.make_manager(tmp_path / 'checkpoints')
  assert manager.all_steps() == [5]
  manager.close()
  resumed = fit_dgex(config, *noisy_data, seed=5, workdir=str(tmp_path))
  assert_trees_equal(resumed.params, uninterrupted.params)
  assert resumed.best_epoch == uninterrupted.best_epoch
  assert_trees_equal(resumed.history, uninterrupted.history)
  scalars = metric_writing.read_scalars(tmp_path / 'tensorboard')
  assert ({regression.TRAIN_MAE, regression.VAL_MAE, core.TRAIN_LOSS, core.LEARNING_RATE}
          <= set(scalars))
  assert [step for step, _ in scalars[regression.VAL_MAE]] == list(range(1, 13))
  np.testing.assert_allclose([value for _, value in scalars[regression.VAL_MAE]],
                             uninterrupted.history['val_mae'], rtol=1e-6)


def test_real_smoke_run(real_config):
  """Linear, KNN and D-GEX on the 17 real GSE781 samples: finite predictions, right shapes."""
  study = pd.read_csv(common.data_path('hgu133a', 'GSE781.tsv.gz'), sep='\t', index_col='probe')
  log2 = np.log2(np.maximum(study.to_numpy(np.float32), 1.0)).T   # MAS5 -> log2, floor 1
  column = {probe: index for index, probe in enumerate(study.index)}
  landmarks = pd.read_csv(real_config.data.dgex_landmarks, sep='\t')['probes']
  landmarks = [column[probe] for probe in landmarks if probe in column]
  targets = pd.read_csv(real_config.data.dgex_targets, sep='\t')['probes'].str.split(',').str[0]
  targets = [column[probe] for probe in targets if probe in column][:200]
  assert len(landmarks) > 900 and len(targets) == 200
  x, y = log2[:, landmarks], log2[:, targets]
  config = common.base_config()
  config.dgex.update(hidden=(64,), epochs=3)
  config.evaluate.knn_neighbors = 3
  for kind in ('linear', 'knn', 'dgex'):
    model = regression.fit_inference_model(kind, config, x[:12], y[:12], x[12:], y[12:])
    predictions = model.predict(x[12:])
    assert predictions.shape == (5, 200) and np.isfinite(predictions).all()
    assert 0 < predictions.mean() < 16                               # log2 units
  with pytest.raises(ValueError, match='Unknown inference model'):
    regression.fit_inference_model('svm', config, x[:12], y[:12], x[12:], y[12:])


def test_refitting_the_same_shapes_compiles_nothing(noisy_data):
  """One compiled epoch and one compiled MAE serve every fit of the same shapes, and the
  learning-rate rule (a new injected value between epochs) does not recompile within a fit."""
  compiled = (core.scanned_epoch(), regression._mean_abs_error)
  before = [f._cache_size() for f in compiled]
  fit_dgex(small_config(epochs=3), *noisy_data, seed=0)
  after_first = [f._cache_size() for f in compiled]
  fit_dgex(small_config(epochs=3), *noisy_data, seed=1)
  assert [f._cache_size() for f in compiled] == after_first
  assert all(0 <= a - b <= 1 for a, b in zip(after_first, before))
