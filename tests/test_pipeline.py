"""The whole run, started through main.py, on the real compendium with the tiny test config."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
import landmark
from landmark import errors
from landmark import pipeline
from landmark import sweep
from landmark.attribution import deeplift
from landmark.data import readers
from landmark.evaluation import evaluate
from landmark.training import metric_writing

SEED_FILES = ('scaler.npz', 'ae_gene_metrics.tsv', 'ae_density.png', 'ae_summary.json',
              'landmarks.tsv', 'l1000_overlap.json', 'deeplift/encoder.npz', 'deeplift/sample.npz')
EXPECTED_FILES = ('config.json', 'data_summary.json', 'quantile_reference.npy', 'ae_summary.json',
                  'landmarks.tsv', 'l1000_overlap.json', 'panel_deeplift.tsv', 'panels.tsv',
                  'panels.gmt',
                  *(f'seed_{seed}/{name}' for seed in (0, 1) for name in SEED_FILES),
                  'panel_summary.tsv', 'panel_comparisons.tsv',
                  'panel_gene_metrics.tsv', 'fig3_linear.png', 'fig3_dgex.png',
                  'go_deeplift.tsv', 'go_deeplift.png', 'go_l1000.png', 'headline_linear.png',
                  'headline_dgex.png', 'clustering.tsv', 'report.md')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOTTLENECK, EPOCHS = 6, 2   # set on the command line: configs/test.py has 8 and 3
PANEL_SIZE = 100   # deeplift.top_k: the 17 panel fits on the paper's 943 genes crawl on a busy CPU
SELECTOR = 'greedy_ridge_standardised'   # config.selector: its panel is scored beside DeepLIFT's


def _main(workdir, *flags):
  return subprocess.run(
      [sys.executable, 'main.py', f'--config=configs/test.py:epochs={EPOCHS}',
       f'--config.model.bottleneck={BOTTLENECK}', f'--config.deeplift.top_k={PANEL_SIZE}',
       f'--config.selector={SELECTOR}', f'--workdir={workdir}', *flags],
      capture_output=True, text=True, cwd=REPO)


@pytest.fixture(scope='module')
def main_run(tmp_path_factory):
  """One whole run, started as a user starts it: (workdir, main.py's log).

  Every test of this module reads its results, so the run happens once.
  """
  workdir = str(tmp_path_factory.mktemp('run'))
  result = _main(workdir)
  assert result.returncode == 0, result.stderr[-5000:]
  return workdir, result.stderr


@pytest.fixture(scope='module')
def workdir(main_run):
  return main_run[0]


def test_run_writes_every_result(workdir):
  for name in EXPECTED_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  for seed in (0, 1):
    assert os.listdir(os.path.join(workdir, f'seed_{seed}', 'checkpoints'))
    assert any(f.startswith('events')
               for f in os.listdir(os.path.join(workdir, f'seed_{seed}', 'tensorboard')))
  report = open(os.path.join(workdir, 'report.md')).read()
  assert 'DeepLIFT vs L1000' in report and 'fig3_linear.png' in report


def test_tensorboard_holds_curves_config_hparams_dgex_and_figures(workdir):
  """What a user opening TensorBoard on the run finds, read back from the event files."""
  seed_run = metric_writing.read_events(os.path.join(workdir, 'seed_0', 'tensorboard'))
  assert {'train/loss', 'eval/mae', 'eval/pcc', 'hparams/test_pcc'} <= set(
      seed_run.Tags()['scalars'])
  assert {'config/text_summary', 'tags/text_summary'} <= set(seed_run.Tags()['tensors'])
  config_text = seed_run.Tensors('config/text_summary')[0].tensor_proto.string_val[0].decode()
  assert f'"bottleneck": {BOTTLENECK}' in config_text
  tags_text = seed_run.Tensors('tags/text_summary')[0].tensor_proto.string_val[0].decode()
  assert 'eval/mae' in tags_text and 'log2 expression' in tags_text
  hparams = b''.join(seed_run.PluginTagToContent('hparams').values())   # HParams dashboard
  assert b'model.bottleneck' in hparams and b'hparams/test_pcc' in hparams
  for panel in ('deeplift', 'l1000'):   # every named panel's D-GEX fit has its curves
    curves = metric_writing.read_scalars(
        os.path.join(workdir, pipeline.DGEX_CURVES, f'{panel}_dgex', 'tensorboard'))
    assert [step for step, _ in curves['eval/val_mae']] == list(range(1, EPOCHS + 1))
  run = metric_writing.read_events(os.path.join(workdir, pipeline.TENSORBOARD))
  figures = {name[:-len('.png')] for name in os.listdir(workdir) if name.endswith('.png')}
  assert {f'figures/{name}' for name in figures} == set(run.Tags()['images'])
  assert {'report/text_summary', 'config/text_summary'} <= set(run.Tags()['tensors'])


def test_landmarks_rank_every_gene(workdir):
  seeds = [pd.read_csv(os.path.join(workdir, f'seed_{seed}', 'landmarks.tsv'), sep='\t')
           for seed in (0, 1)]
  for ranking in seeds:
    assert list(ranking.columns) == ['rank', 'symbol', 'entrez', 'probes', 'score']
    assert len(ranking) > 10000 and ranking['symbol'].is_unique
    np.testing.assert_array_equal(ranking['rank'], np.arange(1, len(ranking) + 1))
    assert (np.diff(ranking['score']) <= 0).all()
  assert seeds[0]['symbol'].head(100).tolist() != seeds[1]['symbol'].head(100).tolist()
  consensus = pd.read_csv(os.path.join(workdir, 'landmarks.tsv'), sep='\t')
  mean_rank = sum(r.set_index('symbol')['rank'] for r in seeds) / 2
  np.testing.assert_allclose(consensus.set_index('symbol')['mean_rank'],
                             mean_rank.reindex(consensus['symbol']))
  assert (np.diff(consensus['mean_rank']) >= 0).all()


def test_ae_summary_is_the_mean_over_seeds(workdir):
  per_seed = [json.load(open(os.path.join(workdir, f'seed_{seed}', 'ae_summary.json')))
              for seed in (0, 1)]
  summary = json.load(open(os.path.join(workdir, 'ae_summary.json')))
  assert summary['seeds'] == [0, 1]
  for figure in ('mean_mae', 'mean_pcc'):
    values = [s[figure] for s in per_seed]
    assert summary[figure] == pytest.approx(np.mean(values))
    assert summary[f'{figure}_sd'] == pytest.approx(np.std(values, ddof=1))


def test_pca_baselines_stand_beside_the_ae(workdir):
  """ae_summary.json, the report and each seed's TensorBoard hold PCA of the AE's width."""
  baselines = json.load(open(os.path.join(workdir, 'ae_summary.json')))['baselines']
  assert set(baselines['pca']) == {f'pca_{BOTTLENECK}', 'pca_10', 'pca_50'}
  assert baselines['pca_width'] == BOTTLENECK
  assert baselines['pca_pcc'] == baselines['pca'][f'pca_{BOTTLENECK}']['pcc']
  assert f'PCA with {BOTTLENECK} components (its width)' in baselines['verdict']
  report = open(os.path.join(workdir, 'report.md')).read()
  assert f'| PCA, {BOTTLENECK} components (pca_{BOTTLENECK}) |' in report
  scalars = metric_writing.read_scalars(os.path.join(workdir, 'seed_1', 'tensorboard'))
  assert [step for step, _ in scalars[f'baseline/pca_{BOTTLENECK}_pcc']] == [1, EPOCHS]


def test_panels_compare_on_common_targets(workdir):
  summary = pd.read_csv(os.path.join(workdir, 'panel_summary.tsv'), sep='\t')
  fixed = summary[~summary['panel'].str.startswith('random_')]
  assert set(fixed['panel']) == {'deeplift', 'deeplift_seed_0', 'deeplift_seed_1', 'l1000',
                                 'variance', SELECTOR}
  assert fixed.groupby('model')['targets'].nunique().eq(1).all()
  genes = pd.read_csv(os.path.join(workdir, 'panels.tsv'), sep='\t')
  assert not genes.duplicated().any()
  assert genes.groupby('panel').size().eq(PANEL_SIZE).all()
  counts = summary.groupby('model')['panel'].count()
  assert counts['linear'] == 6 + 4 and counts['dgex'] == 6 + 3   # configs/test.py
  assert summary['pcc_mean'].between(-1, 1).all() and (summary['mae_mean'] > 0).all()
  comparisons = pd.read_csv(os.path.join(workdir, 'panel_comparisons.tsv'), sep='\t')
  assert comparisons['null_z'].notna().all()
  assert set(comparisons[comparisons['set_a'] == SELECTOR]['set_b']) == {'l1000'}
  report = open(os.path.join(workdir, 'report.md')).read()
  assert f"**linear: the {SELECTOR} panel's mean target PCC" in report


def _forward(layers, activation, x):
  functions = {'sigmoid': lambda z: 1 / (1 + np.exp(-z)), 'tanh': np.tanh}
  for w, b in layers:
    x = functions[activation](x @ w + b)
  return x


def test_summation_to_delta_on_the_trained_real_autoencoder(workdir):
  """sum_j C_jk = a_k(x) - a_k(x0): float32 export to 1e-4 relative, float64 to 1e-9."""
  encoder = np.load(os.path.join(workdir, 'seed_0', 'deeplift', 'encoder.npz'))
  sample = np.load(os.path.join(workdir, 'seed_0', 'deeplift', 'sample.npz'))
  n_layers = sum(k.startswith('W') for k in encoder.files)
  activation = str(encoder['activations'][0])
  layers = [(encoder[f'W{i}'].astype(np.float64), encoder[f'b{i}'].astype(np.float64))
            for i in range(1, n_layers + 1)]
  x, reference = sample['x'].astype(np.float64), sample['reference'].astype(np.float64)
  delta = _forward(layers, activation, x) - _forward(layers, activation, reference[None])
  assert sample['contributions'].shape == (16, layers[-1][0].shape[1], x.shape[1])
  error32 = np.abs(sample['contributions'].astype(np.float64).sum(axis=2) - delta).max()
  assert error32 < 1e-4 * np.abs(delta).max()
  jax.config.update('jax_enable_x64', True)
  try:
    contributions = np.asarray(deeplift.contributions(layers, activation, x, reference))
  finally:
    jax.config.update('jax_enable_x64', False)
  assert contributions.dtype == np.float64
  assert np.abs(contributions.sum(axis=2) - delta).max() < 1e-9


def _contents(workdir):
  """Every file of a run (path -> bytes), the lock file aside."""
  paths = (os.path.join(root, name) for root, _, names in os.walk(workdir) for name in names)
  return {p: open(p, 'rb').read() for p in sorted(paths) if not p.endswith('.lock')}


def test_failed_run_keeps_earlier_results(workdir, tmp_path):
  before = _contents(workdir)
  broken = tmp_path / 'broken.tsv'
  broken.write_text('probe\tS1\tS2\n1007_s_at\t1.0\tnan\n1053_at\t2.0\t3.0\n')
  config = test_config.get_config(f'epochs={EPOCHS}')
  config.deeplift.top_k = 1   # the file holds 2 genes
  config.data.studies = (str(broken),)
  config.data.samples_table = ()
  with pytest.raises(errors.RunIdentityError, match='its data results were made under another'):
    pipeline.run(config, workdir)
  with pytest.raises(readers.DataError, match='broken.tsv: 1 NaN/inf'):
    pipeline.run(config, workdir, overwrite=True)
  assert _contents(workdir) == before


def test_the_same_command_again_reuses_everything(main_run):
  workdir, _ = main_run
  before = _contents(workdir)
  for mode in ('all', 'evaluate'):
    result = _main(workdir, f'--mode={mode}')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'epoch 1/' not in result.stderr and 'is current' in result.stderr
  assert _contents(workdir) == before


def test_a_changed_config_is_refused_in_one_line(main_run):
  workdir, _ = main_run
  before = _contents(workdir)
  result = _main(workdir, '--config.train.learning_rate=0.01')
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      f'error: {workdir}: its train/seed_0 results were made under another config or other '
      'data (train.learning_rate: 0.001 -> 0.01); rerun with --overwrite to recompute them and '
      'what follows, or use another --workdir')
  assert _contents(workdir) == before


def test_main_parses_config_overrides(main_run):
  workdir, log = main_run
  assert 'devices' in log
  config = json.load(open(os.path.join(workdir, 'config.json')))
  assert config['model']['bottleneck'] == BOTTLENECK and config['deeplift']['top_k'] == PANEL_SIZE
  assert config['train']['epochs'] == config['dgex']['epochs'] == EPOCHS
  encoder = np.load(os.path.join(workdir, 'seed_0', 'deeplift', 'encoder.npz'))
  assert encoder['W2'].shape[1] == BOTTLENECK   # W2: hidden -> bottleneck, as overridden


def test_report_opens_with_the_verdict_and_links_only_files_it_wrote(workdir):
  report = open(os.path.join(workdir, 'report.md')).read()
  assert report.index('## Verdict') < report.index('## What differs from the paper') < \
      report.index('## Details')
  assert 'than L1000 by' in report and 'than random panels by' in report
  links = re.findall(r'\]\(([^)\s]+)\)', report)
  assert {'headline_linear.png', 'headline_dgex.png', 'fig3_linear.png', 'go_l1000.png',
          'seed_0/ae_density.png', 'landmarks.tsv'} <= set(links)
  for link in links:
    assert os.path.getsize(os.path.join(workdir, link)) > 0, link
  assert '| rank | symbol | entrez | mean_rank | in_L1000 |' in report


def test_study_effects_are_measured_before_correction(workdir):
  effects = pd.read_csv(os.path.join(workdir, 'panel_study_effects.tsv'), sep='\t')
  assert effects.set_index('panel').loc['all genes', 'median_eta2'] > 0.05


def test_compare_panels_gives_the_calibrated_verdicts(workdir):
  table = landmark.compare_panels(workdir)
  summary = pd.read_csv(os.path.join(workdir, 'panel_summary.tsv'), sep='\t')
  assert set(table['model']) == {'linear', 'dgex'}
  assert table['z'].notna().all() and table['null_sd'].gt(0).all()
  linear = summary[summary['model'] == 'linear'].set_index('panel')
  row = table.set_index(['model', 'panel', 'metric', 'versus']).loc[
      ('linear', 'deeplift', 'mean target PCC', 'random panels')]
  assert row['z'] == pytest.approx(linear.loc['deeplift', 'pcc_z_random'])
  versus_l1000 = table[(table['versus'] == 'L1000')]
  assert 'l1000' not in set(versus_l1000['panel'])
  assert versus_l1000['verdict'].str.contains('than L1000 by .* random-panel SDs: ').all()


def test_every_figure_renders_on_the_run(workdir, tmp_path):
  """Each figure function on the small run's outputs (and a slice of a real labelled study)."""
  out = tmp_path / 'figures'
  ae = pd.read_csv(os.path.join(workdir, 'seed_0', 'ae_gene_metrics.tsv'), sep='\t')
  evaluate.plot_density(out / 'density.png', {'MAE': ae['mae'], 'PCC': ae['pcc']}, 'AE')
  genes = pd.read_csv(os.path.join(workdir, 'panel_gene_metrics.tsv'), sep='\t',
                      index_col=['model', 'panel', 'target']).sort_index()
  evaluate.plot_comparison(out / 'comparison.png', genes.loc[('linear', 'deeplift')],
                           genes.loc[('linear', 'l1000')], ('deeplift', 'l1000'), 'linear')
  summary = pd.read_csv(os.path.join(workdir, 'panel_summary.tsv'), sep='\t')
  evaluate.plot_panels_vs_random(out / 'headline.png', summary[summary['model'] == 'dgex'],
                                 'dgex')
  go = pd.read_csv(os.path.join(workdir, 'go_l1000.tsv'), sep='\t')
  evaluate.plot_enrichment(out / 'go.png', go, 'l1000')
  evaluate.plot_enrichment(out / 'go_none.png', go.assign(p_adjusted=1.0), 'l1000')
  expression = pd.read_csv(test_config.common.data_path('hgu133a', 'nakayama.tsv.gz'), sep='\t',
                           index_col='probe', nrows=500).T
  labels = pd.read_csv(test_config.common.data_path('hgu133a', 'samples.tsv'), sep='\t',
                       index_col='sample').loc[expression.index, 'label'].to_numpy()
  values = np.log2(np.maximum(expression.to_numpy(np.float64), 1.0))
  evaluate.plot_representations(out / 'clustering.png', {
      'expression': values, 'pca_5': evaluate.pca_features(values, 5),
      'projection': values @ np.random.default_rng(0).normal(size=(500, 8))}, labels, 'nakayama')
  member = sweep.member_results(workdir)
  for name, grid in (('numeric', [8, 64, 512]), ('categorical', ['tanh', 'sigmoid'])):
    sweep.plot(out / f'sweep_{name}.png', pd.DataFrame([{'value': v, **member} for v in grid]),
               'value')
  names = ('density', 'comparison', 'headline', 'go', 'go_none', 'clustering', 'sweep_numeric',
           'sweep_categorical')
  for name in names:
    with open(out / f'{name}.png', 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n', name
    assert (out / f'{name}.png').stat().st_size > 1000, name
