"""Landmark selectors on planted signals: each must find the genes the data were built from."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pandas as pd
import pytest
from scipy import stats

from configs import common
from landmark.attribution import deeplift
from landmark.attribution import ranking
from landmark.errors import ConfigError
from landmark.evaluation import panels
from landmark.selection import greedy_ridge
from landmark.selection import selectors

N_DRIVERS = 10


def make_config(**selector_overrides):
  config = common.base_config()
  config.selectors = ml_collections.ConfigDict(dict(
      ig_steps=16, ig_rule='trapezoid', pca_variance=0.9, pca_components=0,
      peel_off_restarts=4, stratified_aggregate='mean', greedy_ridge_alphas=(1e-2, 1e-1, 1.0),
      greedy_ridge_validation_k=943, greedy_ridge_validation_folds=3, greedy_ridge_dtype='auto',
      concrete=dict(hidden=(64,), epochs=200, batch_size=50, learning_rate=1e-2,
                    selector_learning_rate=1e-2, start_temperature=10.0, end_temperature=0.01),
      persist=dict(hidden=(16,), epochs=20, finetune_epochs=5, batch_size=32, learning_rate=1e-2,
                   gate_learning_rate=0.1, bisection_steps=3, lambda_min=1e-3, lambda_max=1e2)))
  config.selectors.update(selector_overrides)
  return config


def symbols(n):
  return np.array([f'G{j:03d}' for j in range(n)])


def planted_drivers(n_samples=1000, n_genes=300, noise=2.0, seed=0):
  """N_DRIVERS standard normal drivers; every other gene mixes 3 of them (linearly or through
  tanh) plus noise of `noise` times its signal's sd. Only the drivers are measured without
  noise, so k = N_DRIVERS genes explain the data best when they are the drivers.

  Returns log2-like values (samples, genes) and the drivers' columns.
  """
  rng = np.random.default_rng(seed)
  drivers = rng.normal(size=(n_samples, N_DRIVERS))
  n_targets = n_genes - N_DRIVERS
  mix = np.zeros((N_DRIVERS, n_targets))
  for target in range(n_targets):
    chosen = rng.choice(N_DRIVERS, 3, replace=False)
    mix[chosen, target] = rng.choice([-1, 1], 3) * rng.uniform(0.5, 1.5, 3)
  signal = drivers @ mix
  signal[:, ::2] = 2 * np.tanh(signal[:, ::2])
  targets = signal + noise * signal.std(axis=0) * rng.normal(size=signal.shape)
  order = rng.permutation(n_genes)
  values = np.concatenate([drivers, targets], axis=1)[:, order]
  return (8 + values).astype(np.float32), np.argsort(order)[:N_DRIVERS]


def planted_modules(sizes, n_loners=0, n_background=0, n_samples=500, seed=0):
  """Modules of co-expressed genes, high-variance loners and a low-variance background.

  Module m's genes are its factor (standard normal) plus noise: sd 0.1 for its centre, 0.6
  to 1.0 for the others. Loners are independent with sd 2 (the most variable genes);
  background genes are independent with sd 0.1. Columns are shuffled. Returns values,
  each column's module (-1 loner, -2 background) and the columns of the module centres.
  """
  rng = np.random.default_rng(seed)
  columns, module = [], []
  for m, size in enumerate(sizes):
    factor = rng.normal(size=n_samples)
    noise_sd = np.concatenate([[0.1], rng.uniform(0.6, 1.0, size - 1)])
    columns.append(factor[:, None] + noise_sd * rng.normal(size=(n_samples, size)))
    module += [m] * size
  columns.append(2.0 * rng.normal(size=(n_samples, n_loners)))
  columns.append(0.1 * rng.normal(size=(n_samples, n_background)))
  module = np.array(module + [-1] * n_loners + [-2] * n_background)
  starts = np.cumsum([0, *sizes[:-1]])
  order = rng.permutation(len(module))
  values = (8 + np.concatenate(columns, axis=1)[:, order]).astype(np.float32)
  return values, module[order], np.argsort(order)[starts]


def train_encoder(x, sizes=(64, 16), steps=1500, seed=0):
  """A sigmoid autoencoder x -> *sizes -> x (MAE, full-batch Adam); returns its encoder layers."""
  widths = (x.shape[1], *sizes, *sizes[-2::-1], x.shape[1])
  keys = jax.random.split(jax.random.key(seed), len(widths) - 1)
  params = []
  for key, n_in, n_out in zip(keys, widths[:-1], widths[1:]):
    limit = np.sqrt(6 / (n_in + n_out))
    params.append((jax.random.uniform(key, (n_in, n_out), minval=-limit, maxval=limit),
                   jnp.zeros(n_out)))
  optimizer = optax.adam(1e-2)

  def loss(params):
    a = x
    for w, b in params:
      a = jax.nn.sigmoid(a @ w + b)
    return jnp.abs(a - x).mean()

  def step(carry, _):
    params, opt_state = carry
    updates, opt_state = optimizer.update(jax.grad(loss)(params), opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  if steps:
    train = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), length=steps)[0][0])
    params = train(params)
  return [(np.asarray(w), np.asarray(b)) for w, b in params[:len(sizes)]]


def annotation_for(genes):
  """A probe annotation with one probe 'p_<gene>' per gene."""
  table = pd.DataFrame({'probe': [f'p_{g}' for g in genes], 'genbank': '', 'symbol': genes,
                        'entrez': [str(1000 + j) for j in range(len(genes))], 'title': ''})
  table.attrs['source'] = 'test annotation'
  return table


@pytest.fixture(scope='module')
def drivers_context():
  """Planted drivers; the universe leaves out 5 non-driver genes that the AE still sees."""
  values, drivers = planted_drivers()
  genes = symbols(values.shape[1])
  outside = np.setdiff1d(np.arange(len(genes)), drivers)[:5]
  inside = np.setdiff1d(np.arange(len(genes)), outside)
  scaled = (values - values.min(axis=0)) / np.ptp(values, axis=0)
  encoder = selectors.TrainedEncoder(train_encoder(jnp.asarray(scaled)), 'sigmoid', scaled,
                                     np.array([f'p_{g}' for g in genes]), annotation_for(genes))
  context = selectors.SelectionContext(genes[inside], values[:, inside], [], make_config(),
                                       encoder)
  return context, set(genes[drivers]), set(genes[outside])


ATTRIBUTION_SELECTORS = ('deeplift_ae', 'gradient_x_input', 'integrated_gradients')


@pytest.mark.parametrize('name', ATTRIBUTION_SELECTORS)
def test_attribution_selectors_rank_the_drivers_first(drivers_context, name):
  context, drivers, outside = drivers_context
  top = selectors.select(name, context, 2 * N_DRIVERS)
  assert len(drivers & set(top)) >= 7  # 8 to 10 measured over encoder seeds 0-5.
  ranked = selectors.select(name, context, len(context.genes))
  assert len(ranked) == len(context.genes) and not outside & set(ranked)
  # Not given away by the data: an untrained encoder of the same shape finds few drivers.
  untrained = dataclasses.replace(context.encoder,
                                  layers=train_encoder(context.encoder.x, steps=0))
  blind = dataclasses.replace(context, encoder=untrained)
  assert len(drivers & set(selectors.select(name, blind, 2 * N_DRIVERS))) < 3


def test_deeplift_ae_is_the_papers_ranking(drivers_context):
  context, _, _ = drivers_context
  encoder = context.encoder
  reference = encoder.x.mean(axis=0)  # config.deeplift.reference is 'train_mean'
  scores = deeplift.score_inputs(encoder.layers, 'sigmoid', encoder.x, reference)
  expected = ranking.rank_genes(scores, encoder.probes, encoder.annotation).symbol
  expected = [g for g in expected if g in set(context.genes)]
  assert selectors.select('deeplift_ae', context, len(context.genes)) == expected


def test_concrete_ae_selects_the_drivers(drivers_context):
  context, drivers, _ = drivers_context
  chosen = selectors.select('concrete_ae', context, N_DRIVERS, seed=0)
  assert len(chosen) == N_DRIVERS
  assert len(drivers & set(chosen)) >= 7  # 8 to 10 measured over seeds 0-5.


@pytest.fixture(scope='module')
def modules_context():
  sizes = (12, 10, 8, 6)
  values, module, _ = planted_modules(sizes, n_loners=10, n_background=60)
  context = selectors.SelectionContext(symbols(values.shape[1]), values, [], make_config())
  return context, module, len(sizes)


def test_variance_picks_the_high_variance_genes(modules_context):
  context, module, _ = modules_context
  n_loners = np.sum(module == -1)
  assert set(selectors.select('variance', context, n_loners)) == set(context.genes[module == -1])


def test_pca_loadings_pick_the_module_genes(modules_context):
  context, module, n_modules = modules_context
  def ranked(**settings):
    configured = dataclasses.replace(context, config=make_config(**settings))
    return selectors.select('pca_loadings', configured, len(context.genes))

  by_count = ranked(pca_components=n_modules)
  assert set(by_count[:np.sum(module >= 0)]) == set(context.genes[module >= 0])
  # The squared loading norm is the variance the top components capture of each gene.
  eigenvalues, vectors = np.linalg.eigh(np.cov(context.train, rowvar=False))
  eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
  captured = vectors[:, :n_modules] ** 2 @ eigenvalues[:n_modules]
  assert by_count[:50] == list(context.genes[np.argsort(-captured)[:50]])
  # pca_variance keeps the fewest components explaining more than that fraction.
  explained = np.cumsum(eigenvalues) / eigenvalues.sum()
  assert ranked(pca_variance=explained[n_modules - 1] - 1e-4) == by_count
  assert ranked(pca_variance=explained[n_modules - 1] + 1e-4) != by_count


@pytest.mark.parametrize('seed', [0, 1])
def test_peel_off_takes_each_module_centre_largest_first(seed):
  sizes = (5, 14, 8, 11, 6)
  values, _, centres = planted_modules(sizes)
  context = selectors.SelectionContext(symbols(values.shape[1]), values, [], make_config())
  expected = context.genes[centres[np.argsort(sizes)[::-1]]]
  assert selectors.select('peel_off', context, len(sizes), seed) == list(expected)


def test_random_is_seeded_and_uniform():
  context = selectors.SelectionContext(symbols(300), np.zeros((2, 300), np.float32), [],
                                       make_config())
  assert selectors.select('random', context, 30, 7) == selectors.select('random', context, 30, 7)
  assert selectors.select('random', context, 30, 7) != selectors.select('random', context, 30, 8)
  counts = pd.Series(np.concatenate([selectors.select('random', context, 30, seed)
                                     for seed in range(2000)])).value_counts()
  counts = counts.reindex(context.genes, fill_value=0).to_numpy()
  assert stats.chisquare(counts).pvalue > 1e-3


def test_l1000_is_the_list_inside_the_universe_in_order():
  listed = ['G005', 'NOT_MEASURED', 'G001', 'G005', 'G007', 'ALSO_NOT']
  context = selectors.SelectionContext(symbols(10), np.zeros((2, 10), np.float32), listed,
                                       make_config())
  assert selectors.select('l1000', context, 2) == ['G005', 'G001']
  assert selectors.select('l1000', context, 8) == ['G005', 'G001', 'G007']


@pytest.fixture(scope='module')
def small_context():
  """40 genes, 60 samples and an untrained encoder: enough to run every selector quickly."""
  values, _, _ = planted_modules((10, 10, 10), n_background=10, n_samples=60)
  genes = symbols(values.shape[1])
  scaled = (values - values.min(axis=0)) / np.ptp(values, axis=0)
  encoder = selectors.TrainedEncoder(train_encoder(jnp.asarray(scaled), (8, 4), steps=0),
                                     'sigmoid', scaled, np.array([f'p_{g}' for g in genes]),
                                     annotation_for(genes))
  return selectors.SelectionContext(genes, values, list(genes[::-3]), make_config(), encoder,
                                    studies=np.repeat(['a', 'b', 'c'], 20))


# concrete_ae (slow to compile) keeps it in test_concrete_ae_selects_the_drivers.
@pytest.mark.parametrize('name', sorted(set(selectors.SELECTORS) - {'concrete_ae'}))
def test_every_selector_keeps_the_contract(small_context, name):
  k = 8
  chosen = selectors.select(name, small_context, k, seed=0)
  assert len(chosen) == k and len(set(chosen)) == k
  assert all(isinstance(g, str) for g in chosen) and set(chosen) <= set(small_context.genes)
  if name not in selectors.K_SPECIFIC:  # A ranking: its k best are a prefix of its 2k best.
    assert selectors.select(name, small_context, 2 * k, seed=0)[:k] == chosen
  if name not in selectors.STOCHASTIC:
    assert selectors.select(name, small_context, k, seed=1) == chosen


def test_bad_requests(small_context):
  with pytest.raises(ValueError, match="Unknown selector 'lasso'.*deeplift_ae"):
    selectors.select('lasso', small_context, 5)
  with pytest.raises(ValueError, match='k must be in'):
    selectors.select('variance', small_context, 0)
  with pytest.raises(ValueError, match='k must be in'):
    selectors.select('variance', small_context, len(small_context.genes) + 1)
  no_encoder = selectors.SelectionContext(small_context.genes, small_context.train, [],
                                          small_context.config)
  with pytest.raises(ValueError, match='needs a trained AutoEncoder'):
    selectors.select('integrated_gradients', no_encoder, 5)


def test_reference_panels_are_the_selectors_panels():
  values, _, _ = planted_modules((10, 10, 10), n_background=10, n_samples=60)
  genes = symbols(values.shape[1])
  data = panels.GeneSplits(genes, values, values, values, np.zeros(len(values)))
  l1000 = ['G039', 'NOT_MEASURED', 'G003', 'G017', 'G003']
  ranked = ['ALSO_NOT', *genes[::-1]]
  made = panels.reference_panels(data, ranked, l1000, k=5, n_random=3, seed=10)
  assert list(made) == ['deeplift', 'l1000', 'variance', 'random_0', 'random_1', 'random_2']
  context = selectors.SelectionContext(genes, values, l1000, make_config())
  assert made['l1000'] == ['G039', 'G003', 'G017']   # k is cut to L1000's 3 genes
  assert made['deeplift'] == list(genes[::-1][:3])
  assert made['variance'] == selectors.select('variance', context, 3)
  for i in range(3):
    assert made[f'random_{i}'] == selectors.select('random', context, 3, 10 + i)
  assert len({tuple(made[f'random_{i}']) for i in range(3)}) == 3


@pytest.mark.parametrize('n_genes, n_samples, k', [(8, 30, 3), (12, 6, 10)])
def test_greedy_ridge_is_the_brute_force_greedy(n_genes, n_samples, k, brute_force_greedy):
  rng = np.random.default_rng(n_genes)
  values = (rng.normal(size=(n_samples, 3)) @ rng.normal(size=(3, n_genes))
            + rng.normal(size=(n_samples, n_genes)) * rng.uniform(0.2, 2.0, n_genes) + 8)
  studies = np.arange(n_samples) % 2
  values[studies == 1] += rng.normal(scale=5.0, size=n_genes)   # a study offset per gene
  context = selectors.SelectionContext(symbols(n_genes), values, [],
                                       make_config(greedy_ridge_alphas=(0.1,)), studies=studies)
  centred = values - np.stack([values[studies == s].mean(axis=0) for s in (0, 1)])[studies]
  penalty = 0.1 * np.mean(np.sum(centred ** 2, axis=0))
  expected = brute_force_greedy(centred, k, penalty)
  assert selectors.select('greedy_ridge', context, k) == list(context.genes[expected])
  # Without the study labels the offsets are structure to explain: another selection.
  pooled = dataclasses.replace(context, studies=None)
  assert selectors.select('greedy_ridge', pooled, k) != list(context.genes[expected])


def test_greedy_ridge_finds_the_drivers_under_study_offsets():
  values, drivers = planted_drivers()
  studies = np.repeat(np.arange(4), len(values) // 4)
  offsets = np.random.default_rng(1).normal(scale=3.0, size=(4, values.shape[1]))
  offsets[:, drivers] = 0.0   # only the targets shift between studies
  context = selectors.SelectionContext(symbols(values.shape[1]), values + offsets[studies], [],
                                       make_config(greedy_ridge_validation_k=N_DRIVERS),
                                       studies=studies)
  genes = set(context.genes[drivers])
  assert set(selectors.select('greedy_ridge', context, N_DRIVERS)) == genes
  # Pooled (at the penalty chosen above), the study offsets draw the choices away from them.
  pooled = dataclasses.replace(context, studies=None,
                               config=make_config(greedy_ridge_alphas=(1e-2,)))
  assert len(genes & set(selectors.select('greedy_ridge', pooled, N_DRIVERS))) < 5


def chosen_alpha(values, studies, alphas, k, n_folds, standardise, space='auto'):
  moments = greedy_ridge.in_memory(values, studies.astype(str), n_folds, space, 'float64')
  return greedy_ridge.select(moments, k, alphas, k, standardise)[1]


@pytest.mark.parametrize('space', ['samples', 'genes'])
def test_greedy_ridge_penalty_is_chosen_leaving_studies_out(space):
  values, drivers = planted_drivers(n_samples=400)
  studies = np.repeat(np.arange(4), 100)
  # A penalty of 10 mean squared gene norms shrinks every prediction towards zero.
  for alphas in [(10.0, 1e-2), (1e-2, 10.0)]:
    for n_folds in (2, 4):   # pairs of studies held out; each study alone
      for standardise in (False, True):
        assert chosen_alpha(values, studies, alphas, N_DRIVERS, n_folds, standardise,
                            space) == 1e-2
  # The held-out error is that of an explicit ridge fit in gene space, in either space.
  moments = greedy_ridge.in_memory(values, (np.arange(400) >= 300).astype(str), 2, space,
                                   'float64')
  fit = greedy_ridge.fit_of(moments, 1, standardise=True)
  centred = [values[:300] - values[:300].mean(axis=0), values[300:] - values[300:].mean(axis=0)]
  train, test = (c / fit.scale for c in centred)
  assert fit.scale == pytest.approx(centred[0].std(axis=0))
  chosen, penalty = drivers, 50.0
  targets = np.setdiff1d(np.arange(values.shape[1]), chosen)
  b = np.linalg.solve(train[:, chosen].T @ train[:, chosen] + penalty * np.eye(len(chosen)),
                      train[:, chosen].T @ train[:, targets])
  assert greedy_ridge.held_out_error(moments, 1, fit, chosen, targets, penalty) == (
      pytest.approx(np.sum((test[:, targets] - test[:, chosen] @ b) ** 2), rel=1e-6))
  one_study = selectors.SelectionContext(symbols(values.shape[1]), values, [], make_config(),
                                         studies=np.zeros(len(values)))
  with pytest.raises(ValueError, match='at least two studies'):
    selectors.select('greedy_ridge', one_study, 5)


def test_greedy_ridge_standardised_is_the_brute_force_greedy_on_unit_sd_genes(
    brute_force_greedy):
  rng = np.random.default_rng(3)
  values = (rng.normal(size=(30, 3)) @ rng.normal(size=(3, 8))
            + rng.normal(size=(30, 8)) * rng.uniform(0.2, 2.0, 8) + 8)
  studies = np.arange(30) % 2
  context = selectors.SelectionContext(symbols(8), values, [],
                                       make_config(greedy_ridge_alphas=(0.1,)), studies=studies)
  centred = values - np.stack([values[studies == s].mean(axis=0) for s in (0, 1)])[studies]
  scaled = centred / centred.std(axis=0)
  expected = brute_force_greedy(scaled, 3, 0.1 * np.mean(np.sum(scaled ** 2, axis=0)))
  assert selectors.select('greedy_ridge_standardised', context, 3) == list(context.genes[expected])


def test_greedy_ridge_standardised_finds_drivers_of_small_variance():
  """Drivers measured on a twentieth of the targets' scale: in log2 units the greedy prefers
  the variable targets (taking one out of the loss removes its large error); on unit-sd genes
  the selection does not depend on any gene's scale and finds the drivers."""
  values, drivers = planted_drivers()
  values[:, drivers] = 8 + (values[:, drivers] - 8) / 20
  studies = np.repeat(np.arange(4), len(values) // 4)
  context = selectors.SelectionContext(symbols(values.shape[1]), values, [],
                                       make_config(greedy_ridge_validation_k=N_DRIVERS),
                                       studies=studies)
  genes = set(context.genes[drivers])
  assert set(selectors.select('greedy_ridge_standardised', context, N_DRIVERS)) == genes
  assert len(genes & set(selectors.select('greedy_ridge', context, N_DRIVERS))) < N_DRIVERS // 2


def test_greedy_ridge_penalties_are_compared_on_common_targets(monkeypatch):
  """Each penalty's held-out error counts the same genes: those outside every panel."""
  values, _ = planted_drivers(n_samples=200)
  studies = np.repeat(np.arange(4), 50)
  errors = []
  original = greedy_ridge.held_out_error
  def recording(moments, held_out, fit, chosen, targets, penalty):
    errors.append((set(chosen), tuple(targets)))
    return original(moments, held_out, fit, chosen, targets, penalty)
  monkeypatch.setattr(greedy_ridge, 'held_out_error', recording)
  chosen_alpha(values, studies, (1e-2, 10.0), N_DRIVERS, 2, True)
  assert len(errors) == 4   # 2 groups x 2 penalties
  for (panel_a, targets_a), (panel_b, targets_b) in zip(errors[::2], errors[1::2]):
    assert targets_a == targets_b
    assert not (panel_a | panel_b) & set(targets_a)
    assert len(targets_a) == values.shape[1] - len(panel_a | panel_b)


def test_aggregate_ranks():
  # Gene 0 is second in every study; gene 1 first in one study and last in the other four.
  ranks = np.array([[2, 1, 3], [1, 3, 2], [1, 3, 2], [1, 3, 2], [1, 3, 2]])
  assert list(selectors.aggregate_ranks(ranks, 'mean')) == [1.2, 2.6, 2.2]
  assert list(selectors.aggregate_ranks(ranks, 'median')) == [1, 3, 2]
  assert list(selectors.aggregate_ranks(ranks, 'trimmed_mean')) == [1, 3, 2]  # drops 1 each end
  assert selectors.aggregate_ranks(np.array([[1.], [2.], [3.], [10.]]), 'trimmed_mean') == 2.5
  with pytest.raises(ValueError, match='Unknown rank aggregate'):
    selectors.aggregate_ranks(ranks, 'max')


@pytest.fixture(scope='module')
def one_study_gene_context():
  """A linear one-unit encoder on 12 genes in 5 studies: gene G000 varies (sd 1) in every
  study, gene G001 hugely (sd 20) in study 0 only, the others less (sd 0.2 to 0.6)."""
  rng = np.random.default_rng(0)
  studies = np.repeat(np.arange(5), 20)
  sd = np.tile(rng.uniform(0.2, 0.6, 12), (5, 1))
  sd[:, 0], sd[:, 1] = 1.0, [20.0, 0.01, 0.01, 0.01, 0.01]
  values = (rng.normal(size=(100, 12)) * sd[studies]).astype(np.float32)
  genes = symbols(12)
  encoder = selectors.TrainedEncoder([(np.ones((12, 1), np.float32), np.zeros(1, np.float32))],
                                     'linear', values, np.array([f'p_{g}' for g in genes]),
                                     annotation_for(genes))
  return selectors.SelectionContext(genes, values, [], make_config(), encoder, studies=studies)


@pytest.mark.parametrize('method', ['deeplift', 'gradient_x_input'])
@pytest.mark.parametrize('aggregate', selectors.STRATIFIED_AGGREGATES)
def test_stratified_attribution_prefers_genes_that_matter_in_every_study(
    one_study_gene_context, method, aggregate):
  context = dataclasses.replace(one_study_gene_context,
                                config=make_config(stratified_aggregate=aggregate))
  pooled = selectors.select('deeplift_ae' if method == 'deeplift' else method, context, 2)
  assert pooled == ['G001', 'G000']   # pooled over the samples, study 0 decides
  stratified = selectors.select(f'{method}_stratified', context, 12)
  assert stratified[0] == 'G000' and stratified.index('G001') >= 6
  no_studies = dataclasses.replace(context, studies=None)
  with pytest.raises(ValueError, match='needs the study of each encoder.x row'):
    selectors.select(f'{method}_stratified', no_studies, 2)


def test_selectors_config_is_checked():
  context = selectors.SelectionContext(symbols(4), np.zeros((4, 4)), [],
                                       make_config(stratified_aggregate='max'))
  with pytest.raises(ConfigError, match=r"^config.selectors.stratified_aggregate: must be one "
                     r"of \('mean', 'median', 'trimmed_mean'\), got 'max'$"):
    selectors.select('deeplift_stratified', context, 2)
  with pytest.raises(ConfigError, match='^config.selectors.greedy_ridge_alphas: '):
    selectors.check_config(make_config(greedy_ridge_alphas=(0.1, 0.0)).selectors)
  config = make_config()
  config.selectors.persist.bisection_steps = 0
  with pytest.raises(ConfigError, match='^config.selectors.persist.bisection_steps: '):
    selectors.check_config(config.selectors)
  selectors.check_config(common.base_config().selectors)
