"""PERSIST selection: hard-concrete gates, the lambda bisection to exactly k open gates, the
rule when it cannot land there, planted drivers, seeding and resumption through the core."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from landmark.errors import ConfigError
from landmark.models import gates
from landmark.selection import persist
from landmark.training import metric_writing

N_DRIVERS = 5
EPOCHS, FINETUNE_EPOCHS = 150, 30


def settings(**overrides):
  defaults = dict(hidden=(32,), epochs=EPOCHS, finetune_epochs=FINETUNE_EPOCHS, batch_size=64,
                  learning_rate=1e-2, gate_learning_rate=0.1, bisection_steps=8,
                  lambda_min=1e-3, lambda_max=1e2)
  return ml_collections.ConfigDict({**defaults, **overrides})


def driver_data(n_samples=500, n_genes=100, seed=0):
  """N_DRIVERS standard normal drivers measured exactly; every other gene is the sum of two
  of them with random signs (through 2 tanh for every second gene) plus noise as large as
  that signal. Returns log2-like values (samples, genes) and the drivers' columns."""
  rng = np.random.default_rng(seed)
  drivers = rng.normal(size=(n_samples, N_DRIVERS))
  mix = np.zeros((N_DRIVERS, n_genes - N_DRIVERS))
  for target in range(n_genes - N_DRIVERS):
    mix[rng.choice(N_DRIVERS, 2, replace=False), target] = rng.choice([-1, 1], 2)
  signal = drivers @ mix
  signal[:, ::2] = 2 * np.tanh(signal[:, ::2])
  targets = signal + signal.std(axis=0) * rng.normal(size=signal.shape)
  order = rng.permutation(n_genes)
  values = np.concatenate([drivers, targets], axis=1)[:, order]
  return (8 + values).astype(np.float32), np.argsort(order)[:N_DRIVERS]


@pytest.fixture(scope='module')
def drivers():
  values, columns = driver_data()
  return values, set(columns.tolist()), persist.select(values, N_DRIVERS, settings(), seed=0)


def test_gates_are_hard_concrete():
  model = gates.GatedReconstruction(4, (3,), rngs=nnx.Rngs(0))
  model.gates.log_alpha[...] = jnp.array([20.0, -20.0, 0.0, 0.0])
  x = jnp.ones((1000, 4))
  # Deterministic: clip(sigmoid(log α) * 1.2 - 0.1, 0, 1), so log α = 0 gives 0.5.
  np.testing.assert_allclose(model.gates(x[:2]), [[1.0, 0.0, 0.5, 0.5]] * 2, atol=1e-6)
  assert int(model.gates.open_count()) == 3
  # Sampled: exactly 0 or 1 at extreme log α; at log α = 0 exactly 0 with probability
  # P(logistic noise < β log(-γ/ζ)) = sigmoid(-1.6) ~ 0.17, exactly 1 as often, else between.
  sample = np.asarray(model.gates(x, jax.random.key(0)))
  assert np.all(sample[:, 0] == 1.0) and np.all(sample[:, 1] == 0.0)
  assert np.mean(sample[:, 2] == 0.0) == pytest.approx(0.168, abs=0.04)
  assert np.mean(sample[:, 3] == 1.0) == pytest.approx(0.168, abs=0.04)
  assert not np.array_equal(sample[:, 2], sample[:, 3])   # noise per row and gate
  np.testing.assert_allclose(model.gates.open_probability()[2], 1 / (1 + np.exp(-1.5985)),
                             atol=1e-4)
  # A gate not allowed is shut, sampled or not, and costs nothing.
  model.gates.allowed[...] = jnp.array([0.0, 1.0, 1.0, 1.0])
  assert float(model.gates(x, jax.random.key(0))[:, 0].max()) == 0.0
  assert int(model.gates.open_count()) == 2 and float(model.gates.open_probability()[0]) == 0.0


def test_persist_finds_the_planted_drivers(drivers):
  values, planted, selection = drivers
  assert set(selection.columns.tolist()) == planted   # all 5 measured over data seeds 0-2,
                                                      # selection seeds 0-1
  # Not given away: a low price keeps many more gates open (the first bisection fit).
  assert selection.trials[0][1] > 4 * N_DRIVERS


def test_bisection_closes_the_gates_to_exactly_k(drivers):
  _, _, selection = drivers
  counts = [n for _, n in selection.trials]
  assert counts[-1] == N_DRIVERS and all(n != N_DRIVERS for n in counts[:-1])
  assert selection.penalty == selection.trials[-1][0]
  # The fine-tune allows only the k genes and ends with exactly those open.
  open_columns = np.flatnonzero(np.asarray(selection.model.gates.deterministic()) > 0)
  assert set(open_columns.tolist()) == set(selection.columns.tolist())
  # Ranked by final log α, best first.
  log_alpha = np.asarray(selection.model.gates.log_alpha[...])[selection.columns]
  assert np.all(np.diff(log_alpha) <= 0)


def test_the_rule_for_exactly_k():
  # The fit with the fewest open gates still >= k; if all have fewer, the one with the most.
  assert persist.choose_fit([100, 0, 7, 3, 9], 5) == 2
  assert persist.choose_fit([100, 0, 7, 7], 5) == 2
  assert persist.choose_fit([0, 2, 4, 1], 5) == 2
  np.testing.assert_array_equal(persist.top_gates(np.array([0.5, 2.0, -1.0, 2.0]), 3), [1, 3, 0])


def test_k_gates_when_the_bisection_cannot_land_on_k():
  """Two steps try lambda 0.32 (more than k gates open) and 5.6 (fewer): the genes are the
  first fit's k gates of highest log α, and the fine-tune keeps exactly those."""
  values, _ = driver_data()
  selection = persist.select(values, 3, settings(bisection_steps=2), seed=0)
  assert [n for _, n in selection.trials][1] < 3 < selection.trials[0][1]
  assert selection.penalty == selection.trials[0][0] and len(set(selection.columns)) == 3
  allowed = np.flatnonzero(np.asarray(selection.model.gates.allowed[...]))
  assert set(allowed.tolist()) == set(selection.columns.tolist())


def test_selection_is_seeded(drivers):
  values, _, first = drivers
  again = persist.select(values, N_DRIVERS, settings(), seed=0)
  other = persist.select(values, N_DRIVERS, settings(), seed=1)
  np.testing.assert_array_equal(again.columns, first.columns)
  assert again.trials == first.trials
  np.testing.assert_array_equal(again.model.gates.log_alpha[...], first.model.gates.log_alpha[...])
  assert not np.array_equal(other.model.gates.log_alpha[...], first.model.gates.log_alpha[...])


def test_interrupted_and_resumed_selection_equals_uninterrupted(drivers, tmp_path, monkeypatch,
                                                                crash_on_call):
  """A selection that crashes in its second bisection fit (at that fit's third open-gate
  count, epoch 45 of 150) resumes it from its checkpoint of epoch 30, the first fit
  restored whole, and ends as an uninterrupted one, bit for bit."""
  values, _, uninterrupted = drivers
  crash_on_call(persist, '_open_gates', 13)
  with pytest.raises(KeyboardInterrupt):
    persist.select(values, N_DRIVERS, settings(), seed=0, workdir=str(tmp_path))
  monkeypatch.undo()
  resumed = persist.select(values, N_DRIVERS, settings(), seed=0, workdir=str(tmp_path))
  np.testing.assert_array_equal(resumed.columns, uninterrupted.columns)
  assert resumed.trials == uninterrupted.trials
  np.testing.assert_array_equal(resumed.model.gates.log_alpha[...],
                                uninterrupted.model.gates.log_alpha[...])
  curves = metric_writing.read_scalars(tmp_path / 'bisection_1' / 'tensorboard')
  assert [step for step, _ in curves[persist.OPEN_GATES]] == list(range(15, EPOCHS + 1, 15))
  finetune = metric_writing.read_scalars(tmp_path / 'finetune' / 'tensorboard')
  assert finetune[persist.OPEN_GATES][-1] == (FINETUNE_EPOCHS, N_DRIVERS)


@pytest.mark.parametrize('field, value, message', [
    ('epochs', 0, 'must be an integer >= 1, got 0'),
    ('hidden', (32, 0), r'needs integers >= 1, got \(32, 0\)'),
    ('learning_rate', 0.0, 'must be positive and finite, got 0.0'),
    ('lambda_max', 1e-4, r'must be above lambda_min \(0.001\), got 0.0001'),
])
def test_bad_settings_name_the_field(field, value, message):
  values, _ = driver_data(n_samples=20, n_genes=10)
  with pytest.raises(ConfigError, match=f'^config.selectors.persist.{field}: {message}$'):
    persist.select(values, 2, settings(**{field: value}))
  with pytest.raises(ValueError, match='k=11'):
    persist.select(values, 11, settings())
