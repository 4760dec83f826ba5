"""Saved inference models and `--mode=infer`, on a tiny real run started through main.py."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from configs import test as test_config
from landmark import errors
from landmark import metrics
from landmark import pipeline
from landmark.data import preprocess
from landmark.data import readers
from landmark.evaluation import panels as panels_lib
from landmark.inference import regression
from landmark.inference import saved_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny run of tests/test_pipeline.py with one seed and no random panels (only the
# named panels' models matter here), 240 profiles (24 in the test split) and a D-GEX that
# learns something in 2 epochs (Adam).
OVERRIDES = ('--config.deeplift.top_k=100', '--config.seeds=1', '--config.data.max_samples=240',
             '--config.evaluate.random_sets=0', '--config.evaluate.random_sets_nonlinear=0',
             '--config.dgex.optimizer=adam', '--config.dgex.learning_rate=1e-3')


def _config(**infer):
  """The run's config (as OVERRIDES set it) with `config.infer` fields."""
  config = test_config.get_config('epochs=2')
  config.deeplift.top_k, config.seeds, config.data.max_samples = 100, 1, 240
  config.evaluate.random_sets = config.evaluate.random_sets_nonlinear = 0
  config.dgex.optimizer, config.dgex.learning_rate = 'adam', 1e-3
  config.infer.update(infer)
  return config


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  result = subprocess.run([sys.executable, 'main.py', '--config=configs/test.py:epochs=2',
                           *OVERRIDES, f'--workdir={workdir}'],
                          capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr[-5000:]
  return workdir


@pytest.fixture(scope='module')
def held_out():
  """The run's gene-level test split, rebuilt as the run built it."""
  config = _config()
  splits = preprocess.prepare(readers.load_compendium(config.data), config, config.seed)
  annotation = readers.read_probe_annotation(config.data.annotation)
  return panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))


def _contents(workdir):
  """Every file of the run (path -> bytes) but the lock and what inference writes."""
  paths = [os.path.join(root, name) for root, _, names in os.walk(workdir) for name in names]
  return {p: open(p, 'rb').read() for p in sorted(paths)
          if not p.endswith('.lock') and f'{os.sep}infer{os.sep}' not in p}


def _write_table(path, values, features, samples):
  frame = pd.DataFrame(np.asarray(values).T, index=pd.Index(features, name='gene'),
                       columns=samples)
  frame.to_csv(path, sep='\t')
  return str(path)


def _landmark_file(path, held_out, saved, columns=None, transform=lambda v: v):
  """The test split's landmark genes (or the first `columns`) as a genes x samples TSV."""
  symbols = list(saved.landmarks.index)[:columns]
  values = transform(held_out.test[:, held_out.columns(symbols)])
  return _write_table(path, values, symbols, [f'S{i}' for i in range(len(values))])


@pytest.mark.parametrize('kind', ['linear', 'dgex'])
def test_a_reloaded_model_predicts_exactly_what_it_did(kind, real_slice, tmp_path):
  train, test = real_slice
  x, y = slice(0, 40), slice(40, 240)
  config = test_config.get_config()
  model = regression.fit_inference_model(kind, config, train[:, x], train[:, y], test[:, x],
                                   test[:, y])
  names = [f'g{j}' for j in range(240)]
  genes = pd.DataFrame({'entrez': '', 'ensembl': '', 'probes': ''},
                       index=pd.Index(names, name='symbol'))
  accuracy = metrics.gene_metrics(test[:, y], model.predict(test[:, x]), names[y], np.zeros(12))
  saved_models.save_model(str(tmp_path / kind), model, kind=kind, panel='p', config=config,
                       genes=genes, accuracy=accuracy, train_x=train[:, x], train_y=train[:, y],
                       test_x=test[:, x], test_y=test[:, y], identity='id',
                       quantile_reference='')
  saved = saved_models.load_model(str(tmp_path / kind))
  np.testing.assert_array_equal(saved.predict(test[:, x]), np.asarray(model.predict(test[:, x])))
  assert list(saved.targets.index) == names[y]


@pytest.mark.parametrize('kind', ['linear', 'dgex'])
def test_saved_models_reproduce_their_held_out_accuracy(workdir, held_out, kind):
  saved = saved_models.load_model(os.path.join(workdir, 'models', f'l1000_{kind}'))
  x, y = held_out.columns(saved.landmarks.index), held_out.columns(saved.targets.index)
  accuracy = metrics.gene_metrics(held_out.test[:, y], saved.predict(held_out.test[:, x]),
                                  saved.targets.index, held_out.test_studies, permutation=False)
  np.testing.assert_allclose(accuracy['mae'], saved.accuracy['mae'], rtol=1e-6)
  reported = pd.read_csv(os.path.join(workdir, 'panel_gene_metrics.tsv'), sep='\t')
  reported = reported[(reported['model'] == kind) & (reported['panel'] == 'l1000')]
  np.testing.assert_allclose(reported['mae'], saved.accuracy['mae'])
  assert sorted(os.listdir(os.path.join(workdir, 'models'))) == sorted(
      f'{panel}_{k}' for panel in ('deeplift', 'l1000', 'variance') for k in ('linear', 'dgex'))


@pytest.mark.parametrize('kind', ['linear', 'dgex'])
def test_infer_on_the_test_split_reproduces_the_held_out_accuracy(workdir, held_out, kind,
                                                                   tmp_path):
  """Through main.py: the test split's landmarks in a file, inferred, scored against truth.

  Each input profile is mapped by rank onto the training landmarks' mean quantiles, which
  moves a test profile whose own quantiles differ: here, on 100 landmarks, by 0.21 log2
  units on average, costing linear regression 6% of MAE and 0.05 of PCC, D-GEX 0.4% and
  0.02 (on the quick run's 923 L1000 genes, 0.1% and 0.009 for linear regression). The
  other ways to place landmarks on the training scale miss by far more (interpolating the
  whole-array reference doubles the MAE), as does a wrong gene order.
  """
  saved = saved_models.load_model(os.path.join(workdir, 'models', f'l1000_{kind}'))
  path = _landmark_file(tmp_path / 'landmarks.tsv', held_out, saved)
  before = _contents(workdir)
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/test.py', f'--workdir={workdir}',
       '--mode=infer', f'--config.infer.input={path}', '--config.infer.panel=l1000',
       f'--config.infer.model={kind}'], capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 0, result.stderr[-5000:]
  assert 'Found 100 of the 100 landmark genes' in result.stderr
  assert _contents(workdir) == before
  output = os.path.join(workdir, 'infer', f'l1000_{kind}')
  profiles = readers.read_any(os.path.join(output, 'profiles.gctx'))
  inferred = profiles.select_features(saved.targets.index).values
  accuracy = metrics.gene_metrics(held_out.test[:, held_out.columns(saved.targets.index)],
                                  inferred, saved.targets.index, held_out.test_studies,
                                  permutation=False)
  assert accuracy['mae'].mean() == pytest.approx(saved.accuracy['mae'].mean(), rel=0.1)
  assert accuracy['pcc'].mean() == pytest.approx(saved.accuracy['pcc'].mean(), abs=0.08)
  measured = profiles.select_features(saved.landmarks.index).values
  np.testing.assert_array_equal(saved.predict(measured), inferred)
  table = pd.read_csv(os.path.join(output, 'profiles.tsv'), sep='\t', index_col=0)
  np.testing.assert_array_equal(table.index, profiles.features)
  np.testing.assert_allclose(table[profiles.samples].to_numpy().T, profiles.values)
  assert table['inferred'].sum() == len(saved.targets)
  assert not table.loc[saved.landmarks.index, 'inferred'].any()
  accuracy = pd.read_csv(os.path.join(output, 'gene_accuracy.tsv'), sep='\t', index_col=0)
  assert list(accuracy.index) == list(saved.targets.index)
  assert accuracy['in_training_range'].between(0, 1).all()


def _infer(workdir, tmp_path, **infer):
  config = _config(output=str(tmp_path / 'out'), **infer)
  return pipeline.run(config, workdir, 'infer')


def test_input_ids_are_found_as_probes_symbols_entrez_or_ensembl(workdir, held_out, tmp_path):
  saved = saved_models.load_model(os.path.join(workdir, 'models', 'l1000_linear'))
  values = held_out.test[:, held_out.columns(saved.landmarks.index)]
  samples = [f'S{i}' for i in range(len(values))]
  outputs = {}
  for feature_type, ids in (('symbol', saved.landmarks.index),
                            ('entrez', saved.landmarks['entrez'].str.split('///').str[0]),
                            ('ensembl', saved.landmarks['ensembl'] + '.7')):
    path = _write_table(tmp_path / f'{feature_type}.tsv', values, ids, samples)
    summary = _infer(workdir, tmp_path / feature_type, input=path, model='linear')
    assert summary['feature_type'] == feature_type and summary['landmarks']['found'] == 100
    outputs[feature_type] = pd.read_csv(tmp_path / feature_type / 'out' / 'profiles.tsv',
                                        sep='\t', index_col=0)
  pd.testing.assert_frame_equal(outputs['symbol'], outputs['entrez'])
  pd.testing.assert_frame_equal(outputs['symbol'], outputs['ensembl'])


def test_a_gene_is_the_mean_of_its_probes_or_else_found_by_its_l1000_probe():
  landmarks = pd.DataFrame({'entrez': ['1', '2'], 'ensembl': ['E1', 'E2'],
                            'probes': ['p1,p2', 'p3'], 'l1000_probe': ['p2', 'p9']},
                           index=pd.Index(['A', 'B'], name='symbol'))
  measured = readers.Compendium([[1.0, 3.0, 5.0, 7.0]], ['p1', 'p2', 'p9', 'other'], ['S'],
                             pd.DataFrame(index=['S']))
  values, feature_type = saved_models.landmark_columns(measured, landmarks)
  assert feature_type == 'probe'
  np.testing.assert_array_equal(values, [[2.0, 5.0]])
  values, _ = saved_models.landmark_columns(measured.take_features([0, 3]), landmarks)
  np.testing.assert_array_equal(values, [[1.0, np.nan]])


def test_linear_units_are_converted_or_refused(workdir, held_out, tmp_path):
  saved = saved_models.load_model(os.path.join(workdir, 'models', 'l1000_linear'))
  log2 = _landmark_file(tmp_path / 'log2.tsv', held_out, saved)
  linear = _landmark_file(tmp_path / 'linear.tsv', held_out, saved, transform=np.exp2)
  with pytest.raises(errors.DataError, match=r"linear.tsv: values reach .*: linear, not log2"):
    _infer(workdir, tmp_path / 'refused', input=linear, model='linear', input_scale='log2')
  assert not os.path.exists(tmp_path / 'refused')
  summaries = [_infer(workdir, tmp_path / name, input=path, model='linear')
               for name, path in (('log2', log2), ('linear', linear))]
  assert [s['input_scale']['used'] for s in summaries] == ['log2', 'linear']
  profiles = [readers.read_any(str(tmp_path / name / 'out' / 'profiles.gctx')).values
              for name in ('log2', 'linear')]
  np.testing.assert_allclose(profiles[0], profiles[1], rtol=1e-6)


@pytest.mark.parametrize('problem, message', [
    ('too_few', r'landmarks.tsv: 60 of the 100 landmark genes of l1000_dgex found \(60.0%\), '
                r'below config.infer.min_landmark_fraction 0.8'),
    ('zscores', r'zscores.tsv: every gene has a median near 0 .* look like per-gene z-scores'),
    ('same_gene', r'same_gene.tsv: 1 landmark genes appear more than once among its ensembl '
                  r'IDs, e.g. \w+ as \[.*\]: give each gene once'),
    ('same_id', r'same_id.tsv: 1 duplicate feature IDs'),
])
def test_bad_input_is_refused_in_one_line_and_writes_nothing(workdir, held_out, tmp_path,
                                                             problem, message):
  saved = saved_models.load_model(os.path.join(workdir, 'models', 'l1000_dgex'))
  symbols = list(saved.landmarks.index)
  values = held_out.test[:, held_out.columns(symbols)]
  samples = [f'S{i}' for i in range(len(values))]
  if problem == 'too_few':
    path = _landmark_file(tmp_path / 'landmarks.tsv', held_out, saved, columns=60)
  elif problem == 'zscores':
    path = _write_table(tmp_path / 'zscores.tsv', (values - np.median(values, axis=0))
                        / values.std(axis=0), symbols, samples)
  elif problem == 'same_gene':
    ids = list(saved.landmarks['ensembl'])
    path = _write_table(tmp_path / 'same_gene.tsv', values[:, [*range(100), 0]],
                        [*ids, ids[0] + '.2'], samples)
  else:
    path = _write_table(tmp_path / 'same_id.tsv', values[:, [*range(100), 0]],
                        [*symbols, symbols[0]], samples)
  before = _contents(workdir)
  with pytest.raises(errors.DataError, match=message) as error:
    _infer(workdir, tmp_path, input=path, model='dgex')
  assert '\n' not in str(error.value)
  assert not os.path.exists(tmp_path / 'out') and _contents(workdir) == before


def test_a_missing_model_names_the_saved_ones(workdir, tmp_path):
  with pytest.raises(errors.ConfigError, match=(
      r"config.infer.panel: .* has no saved ridge model of panel 'l1000' .*; saved: "
      'deeplift_dgex, deeplift_linear, l1000_dgex, l1000_linear, variance_dgex, '
      'variance_linear')):
    _infer(workdir, tmp_path, input=str(tmp_path / 'x.tsv'), model='ridge')
  with pytest.raises(errors.ConfigError, match='has no saved dgex model.*it holds none'):
    pipeline.run(_config(input='x.tsv'), str(tmp_path / 'empty'), 'infer')
  assert not os.path.exists(tmp_path / 'empty')


def test_centring_moves_each_batch_to_the_training_mean(workdir, held_out):
  saved = saved_models.load_model(os.path.join(workdir, 'models', 'l1000_linear'))
  preprocessing = {**saved.manifest['preprocess'], 'study_correction': 'center'}
  centred = dataclasses.replace(saved, manifest={**saved.manifest, 'preprocess': preprocessing})
  symbols = saved.landmarks.index
  values = held_out.test[:, held_out.columns(symbols)]
  batches = np.array(['a', 'b'] * (len(values) // 2))
  measured = readers.Compendium(values, symbols, [f'S{i}' for i in range(len(values))],
                             pd.DataFrame({'plate': batches, 'well': np.arange(len(values))}),
                             source='input.tsv')
  config = _config(batch_column='plate')
  x, report, _ = saved_models.map_input(measured, centred, config.infer)
  for batch in ('a', 'b'):
    np.testing.assert_allclose(x[batches == batch].mean(axis=0),
                               saved.reference['landmark_mean'], atol=1e-4)
  assert report['study_correction']['batches'] == {'a': len(values) // 2, 'b': len(values) // 2}
  with pytest.raises(errors.DataError, match="input.tsv: batch '0' has 1 sample"):
    saved_models.map_input(measured, centred, _config(batch_column='well').infer)
