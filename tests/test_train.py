"""AutoEncoder training on a slice of the real studies: loss, resumption, events, evaluation."""

import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from landmark import errors
from landmark.data import readers
from landmark.data import scalers
from landmark.data import streaming
from landmark.evaluation import diagnostics
from landmark.evaluation import reconstruction
from landmark.models import autoencoder
from landmark.training import core
from landmark.training import metric_writing
from landmark.training import train

EPOCHS = 4


def _config(epochs=EPOCHS, **train_overrides):
  config = test_config.get_config(f'epochs={epochs}')
  config.train.update(train_overrides)
  return config


@pytest.fixture(scope='module')
def trained(real_slice, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  model, scaler, history = train.train_autoencoder(_config(), workdir, *real_slice)
  return workdir, model, scaler, history


def _params(model):
  return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_loss_is_mae_plus_l2_of_kernels():
  model = autoencoder.AutoEncoder(30, (12,), 3, rngs=nnx.Rngs(0))
  model.eval()
  x = np.random.default_rng(0).uniform(size=(5, 30)).astype(np.float32)
  mask = np.array([1, 1, 1, 0, 0], np.float32)
  l2 = 0.01
  reconstructed = np.asarray(model(x), np.float64)
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  kernels = [layer['kernel'] for part in ('encoder', 'decoder') for layer in params[part].values()]
  expected = (np.abs(reconstructed[:3] - x[:3]).mean()
              + l2 * sum(np.sum(np.asarray(k, np.float64) ** 2) for k in kernels))
  assert len(kernels) == 4
  np.testing.assert_allclose(float(train.loss_fn(model, x, mask, l2)), expected, rtol=1e-6)


def test_epoch_batches_visit_every_sample_once():
  key = jax.random.key(0)
  indices, mask = map(np.asarray, core.epoch_batches(key, 70, 32, 1))
  assert indices.shape == mask.shape == (3, 32)
  assert mask.sum() == 70 and np.all(mask.ravel()[:70] == 1)
  np.testing.assert_array_equal(np.sort(indices.ravel()[:70]), np.arange(70))
  again, _ = core.epoch_batches(key, 70, 32, 1)
  np.testing.assert_array_equal(indices, again)
  other, _ = core.epoch_batches(key, 70, 32, 2)
  assert not np.array_equal(indices, other)


def test_training_learns_real_data(real_slice, tmp_path):
  """The loss falls, and held-out samples are reconstructed better than by the gene means."""
  train_x, eval_x = real_slice
  config = _config(epochs=40, learning_rate=3e-3, checkpoint_every_epochs=100)
  _, _, history = train.train_autoencoder(config, str(tmp_path), train_x, eval_x)
  losses, heldout_mae = history[core.TRAIN_LOSS], history[train.EVAL_MAE]
  assert len(losses) == 40
  assert losses[-1] < 0.75 * losses[0]
  gene_mean_mae = np.abs(eval_x - train_x.mean(axis=0)).mean()
  assert heldout_mae[-1] < 0.85 * gene_mean_mae


def test_resume_equals_uninterrupted(real_slice, trained, tmp_path):
  _, model, _, history = trained
  train.train_autoencoder(_config(epochs=2), str(tmp_path), *real_slice)
  resumed, _, resumed_history = train.train_autoencoder(_config(), str(tmp_path), *real_slice)
  for expected, actual in zip(_params(model), _params(resumed)):
    np.testing.assert_array_equal(expected, actual)
  assert resumed_history[core.TRAIN_LOSS] == history[core.TRAIN_LOSS]
  # A finished run re-run loads its final checkpoint instead of training.
  reloaded, _, reloaded_history = train.train_autoencoder(_config(), str(tmp_path), *real_slice)
  for expected, actual in zip(_params(model), _params(reloaded)):
    np.testing.assert_array_equal(expected, actual)
  assert reloaded_history == resumed_history


def test_tensorboard_has_one_value_per_epoch(trained):
  workdir, _, _, history = trained
  scalars = metric_writing.read_scalars(os.path.join(workdir, 'tensorboard'))
  tags = {core.TRAIN_LOSS, train.EVAL_MAE, train.EVAL_PCC, core.LEARNING_RATE,
          core.SAMPLES_PER_SEC}
  assert tags <= set(scalars)
  for tag in tags:
    assert [step for step, _ in scalars[tag]] == list(range(1, EPOCHS + 1))
  np.testing.assert_allclose([value for _, value in scalars[core.TRAIN_LOSS]],
                             history[core.TRAIN_LOSS], rtol=1e-6)
  np.testing.assert_allclose([value for _, value in scalars[core.LEARNING_RATE]], 1e-3)


def test_model_and_scaler_are_saved_for_scoring(trained, real_slice):
  workdir, model, scaler, _ = trained
  loaded = scalers.MinMaxScaler.load(os.path.join(workdir, 'scaler.npz'))
  np.testing.assert_array_equal(loaded.minimum, real_slice[0].min(axis=0))
  x = loaded.transform(real_slice[1])
  np.testing.assert_array_equal(x, scaler.transform(real_slice[1]))
  # The model comes back in eval mode: no dropout, so its bottleneck is the plain forward pass
  # through the encoder's (W, b), the layers DeepLIFT scores.
  expected = x.astype(np.float64)
  for kernel, bias in model.encoder_layers():
    expected = 1 / (1 + np.exp(-(expected @ kernel + bias)))
  np.testing.assert_allclose(np.asarray(model.encode(x)), expected, rtol=1e-5, atol=1e-6)


def test_evaluate_reconstruction_matches_training_summary(trained, real_slice):
  workdir, model, scaler, history = trained
  summary = reconstruction.evaluate_reconstruction(model, scaler, real_slice[1], workdir,
                                                   permutation_block=256)
  table = pd.read_csv(os.path.join(workdir, 'ae_gene_metrics.tsv'), sep='\t')
  assert list(table.columns) == ['feature', 'mae', 'pcc', 'perm_p']
  assert len(table) == 1000 and summary['n_features'] == 1000
  assert os.path.getsize(os.path.join(workdir, 'ae_density.png')) > 0
  prediction = scaler.inverse_transform(np.asarray(model(scaler.transform(real_slice[1]))))
  np.testing.assert_allclose(table['mae'], np.abs(prediction - real_slice[1]).mean(axis=0),
                             rtol=1e-4)
  assert summary['n_pass'] == int((table['perm_p'] < 0.01).sum())
  np.testing.assert_allclose(summary['mean_mae'], history[train.EVAL_MAE][-1], rtol=1e-4)
  np.testing.assert_allclose(summary['mean_pcc'], history[train.EVAL_PCC][-1], rtol=1e-3,
                             atol=1e-4)


def test_mse_loss_is_mean_squared_error_plus_l2():
  model = autoencoder.AutoEncoder(30, (12,), 3, output_activation='linear', rngs=nnx.Rngs(0))
  model.eval()
  x = np.random.default_rng(0).normal(size=(5, 30)).astype(np.float32)
  mask = np.array([1, 1, 0, 1, 0], np.float32)
  reconstructed = np.asarray(model(x), np.float64)
  penalty = 0.01 * sum(np.sum(np.asarray(k, np.float64) ** 2) for k in model.kernels())
  expected = ((reconstructed - x) ** 2)[mask > 0].mean() + penalty
  np.testing.assert_allclose(float(train.loss_fn(model, x, mask, 0.01, loss='mse')), expected,
                             rtol=1e-6)


@pytest.mark.parametrize('field, value, message', [
    ('model.scale', 'robust', "'robust' is not one of minmax, standard"),
    ('model.output_activation', 'relu', "'relu' is not one of sigmoid, linear"),
    ('model.activation', 'gelu', "'gelu' is not one of sigmoid, tanh, relu, linear"),
    ('train.loss', 'huber', "'huber' is not one of mae, mse"),
    ('train.schedule', 'step', "'step' is not one of constant, cosine"),
    ('train.warmup_fraction', 1.0, r'1.0 is not in \[0, 1\)'),
    ('model.scale', 'standard', 'a sigmoid output cannot reach standardised values'),
])
def test_bad_model_and_train_choices_are_config_errors(field, value, message):
  config = _config()
  section, name = field.split('.')
  config[section][name] = value
  where = 'config.model.output_activation' if value == 'standard' else f'config.{field}'
  with pytest.raises(errors.ConfigError, match=f'^{where}: .*{message}'):
    train.check_config(config)


def _learning_rates(config, steps_per_epoch):
  """The learning rate of every step of `config`'s run (the state holds the last step's)."""
  optimizer = train.build_optimizer(config, steps_per_epoch)
  params = {'w': jnp.zeros(2)}
  state, rates = optimizer.init(params), []
  for _ in range(config.train.epochs * steps_per_epoch):
    _, state = optimizer.update({'w': jnp.ones(2)}, state, params)
    rates.append(float(state.hyperparams['learning_rate']))
  return np.array(rates)


def test_cosine_schedule_warms_up_then_decays_to_zero():
  rates = _learning_rates(_config(epochs=10, schedule='cosine', warmup_fraction=0.2,
                                  learning_rate=0.01), steps_per_epoch=5)
  np.testing.assert_allclose(rates[:11], np.linspace(0.0, 0.01, 11), rtol=1e-5, atol=1e-9)
  assert np.all(np.diff(rates[10:]) < 0) and rates[-1] < 1e-4
  constant = _learning_rates(_config(epochs=2, learning_rate=0.01), steps_per_epoch=3)
  np.testing.assert_allclose(constant, 0.01)


def test_standardised_linear_mse_training_scores_in_original_units(real_slice, tmp_path):
  config = _config(epochs=2, loss='mse', schedule='cosine', warmup_fraction=0.5)
  config.model.scale, config.model.output_activation = 'standard', 'linear'
  model, scaler, history = train.train_autoencoder(config, str(tmp_path), *real_slice)
  assert isinstance(scaler, scalers.StandardScaler)
  np.testing.assert_allclose(scaler.mean, real_slice[0].mean(axis=0), rtol=1e-5, atol=1e-5)
  loaded = scalers.StandardScaler.load(tmp_path / 'scaler.npz')
  np.testing.assert_array_equal(loaded.std, scaler.std)
  summary = reconstruction.evaluate_reconstruction(model, scaler, real_slice[1], str(tmp_path),
                                                   permutation_block=256)
  np.testing.assert_allclose(summary['mean_mae'], history[train.EVAL_MAE][-1], rtol=1e-4)
  np.testing.assert_allclose(summary['mean_pcc'], history[train.EVAL_PCC][-1], rtol=1e-3,
                             atol=1e-4)


def test_streamed_standard_scaler_equals_in_memory_fit(real_slice, tmp_path):
  values = real_slice[0]
  samples = [f's{i}' for i in range(len(values))]
  path = str(tmp_path / 'slice.gctx')
  readers.write_gctx(path, readers.Compendium(values, [f'p{j}' for j in range(values.shape[1])],
                                              samples, pd.DataFrame(index=pd.Index(samples))),
                     chunk_samples=7)
  streamed = streaming.SampleStream(path, chunk_samples=7).fit_scaler('standard')
  expected = scalers.StandardScaler().fit(values)
  np.testing.assert_allclose(streamed.mean, expected.mean, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(streamed.std, expected.std, rtol=1e-5)


def test_a_second_run_of_the_same_shapes_compiles_no_epoch(trained, real_slice, tmp_path):
  """The AutoEncoder's epoch is the core's one jitted function, cached by value: another
  seed's run (a sweep, the next AE seed) reuses its executable."""
  epochs_compiled = core.scanned_epoch()._cache_size()
  train.train_autoencoder(test_config.get_config(f'epochs={EPOCHS},seed=1'), str(tmp_path),
                          *real_slice)
  assert core.scanned_epoch()._cache_size() == epochs_compiled


def test_a_study_conditional_ae_keeps_the_study_out_of_its_bottleneck(tmp_path):
  """Planted: four studies differ by large offsets; two factors, the same in every study,
  carry the biology. Told each sample's study, the decoder adds the offset itself, so the
  2-unit bottleneck holds the factors instead of "which study"; the plain AE's is mostly
  study. Held-out rows of an unseen study get no study input and still decode."""
  rng = np.random.default_rng(0)
  n_per, n_studies, n_genes = 40, 4, 30
  codes = np.repeat(np.arange(n_studies), n_per)
  factors = rng.normal(size=(len(codes), 2))
  values = (rng.normal(0, 3, (n_studies, n_genes))[codes] + factors @ rng.normal(size=(2, n_genes))
            + 0.1 * rng.normal(size=(len(codes), n_genes))).astype(np.float32)
  samples = [f'x{i}' for i in range(len(codes))]
  split = readers.Compendium(values, [f'g{j}' for j in range(n_genes)], samples,
                             pd.DataFrame({'study': [f's{c}' for c in codes]},
                                          index=pd.Index(samples, name='sample')))
  eta = {}
  for conditional in (False, True):
    config = test_config.get_config('epochs=150')
    config.model.update(hidden=(16,), bottleneck=2, scale='standard', activation='tanh',
                        output_activation='linear', dropout=0.0, study_conditional=conditional)
    config.train.update(loss='mse', l2=0.0, learning_rate=1e-2, log_every_epochs=150)
    model, scaler, _ = train.train_autoencoder(config, str(tmp_path / str(conditional)), split,
                                               split)
    assert model.studies == (('s0', 's1', 's2', 's3') if conditional else ())
    eta[conditional] = float(diagnostics.study_eta_squared(
        np.asarray(model.encode(scaler.transform(values))), codes).mean())
    unseen = train.reconstruct(model, scaler.transform(values[:5]),
                               study_codes=np.full(5, -1.0))
    assert np.isfinite(np.asarray(unseen)).all()
  assert eta[False] > 0.5 and eta[True] < 0.5 * eta[False], eta
