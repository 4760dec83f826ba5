"""Trustworthy reruns: run identity, the workdir lock, damaged checkpoints, diverging training."""

import glob
import json
import os

from flax import nnx
import jax
import numpy as np
import pytest

from configs import test as test_config
from landmark import errors
from landmark import run_identity
from landmark import validation
from landmark.attribution import ranking
from landmark.training import checkpointing
from landmark.training import core
from landmark.training import train


def _config(**train_overrides):
  config = test_config.get_config('epochs=3')
  config.train.update(train_overrides)
  return config


def test_identical_config_is_current_and_a_change_is_named(tmp_path):
  workdir = str(tmp_path)
  identity = run_identity.RunIdentity(_config(), workdir)
  for stage in identity.stages():
    identity.mark_done(stage)
  assert identity.check({}, overwrite=False) == {}
  changed = run_identity.RunIdentity(_config(learning_rate=0.01), workdir)
  assert changed.is_current('data') and not changed.is_current('train/seed_0')
  with pytest.raises(errors.RunIdentityError, match=r'train\.learning_rate: 0\.001 -> 0\.01'):
    changed.check({}, overwrite=False)
  stale = changed.check({}, overwrite=True)
  assert set(stale) == set(identity.stages()) - {'data'}
  changed.forget(list(stale))
  assert set(changed.records()) == {'data'}


def test_a_changed_input_file_makes_every_stage_stale(tmp_path):
  study = tmp_path / 'study.tsv'
  study.write_text('probe\ta\nx\t1\n')
  config = _config()
  config.data.studies = (str(study),)
  identity = run_identity.RunIdentity(config, str(tmp_path / 'run'))
  for stage in identity.stages():
    identity.mark_done(stage)
  study.write_text('probe\ta\nx\t2\n')
  stale = run_identity.RunIdentity(config, str(tmp_path / 'run')).stale({})
  assert set(stale) == set(identity.stages())
  assert 'file:data.studies[0]' in stale['data'][0]


def test_fields_that_change_no_result_do_not_make_a_stage_stale(tmp_path):
  identity = run_identity.RunIdentity(_config(), str(tmp_path))
  for stage in identity.stages():
    identity.mark_done(stage)
  config = _config(checkpoint_every_epochs=7, log_every_epochs=2)
  config.deeplift.max_chunk_mb = 12.0
  assert run_identity.RunIdentity(config, str(tmp_path)).stale({}) == {}


def test_a_record_older_than_an_added_field_reads_as_its_old_value(tmp_path):
  """A run recorded before `model.study_conditional` existed trained an unconditional AE:
  it is current while the field is False, stale (and named) once it is True."""
  identity = run_identity.RunIdentity(_config(), str(tmp_path))
  before = {f: v for f, v in identity.identity('train/seed_0').items()
            if f != 'model.study_conditional'}
  assert run_identity.matches(before, identity.identity('train/seed_0'))
  assert identity.stale({'train/seed_0': before}) == {}
  conditional = _config()
  conditional.model.study_conditional = True
  now = run_identity.RunIdentity(conditional, str(tmp_path)).identity('train/seed_0')
  assert not run_identity.matches(before, now)
  assert run_identity.differences(before, now) == ['model.study_conditional: false -> true']
  assert not run_identity.matches(None, now) and run_identity.matches(None, None)


def test_a_kept_result_is_current_only_under_the_identity_it_was_made_with(tmp_path):
  """An experiment's kept table (results.json) is reused under its identity, and under one
  that only adds a field at its old value; another value, or a missing table, is not."""
  directory = str(tmp_path)
  identity = run_identity.results_identity(_config())
  before = {f: v for f, v in identity.items() if f != 'model.study_conditional'}
  (tmp_path / 'metrics.tsv').write_text('target\tpcc\n')
  run_identity.record_result(directory, 'metrics.tsv', before)
  assert run_identity.result_is_current(directory, 'metrics.tsv', identity)
  assert not run_identity.result_is_current(directory, 'metrics.tsv',
                                            {**identity, 'model.study_conditional': True})
  assert not run_identity.result_is_current(
      directory, 'metrics.tsv', run_identity.results_identity(_config(learning_rate=0.01)))
  assert not run_identity.result_is_current(directory, 'random.tsv', identity)
  (tmp_path / 'metrics.tsv').unlink()
  assert not run_identity.result_is_current(directory, 'metrics.tsv', identity)


def test_a_damaged_record_stops_with_its_path(tmp_path):
  directory = str(tmp_path)
  (tmp_path / 'metrics.tsv').write_text('target\tpcc\n')
  readers = {run_identity.STAGES_FILE: lambda: run_identity.records(directory),
             run_identity.RESULTS_FILE:
                 lambda: run_identity.result_is_current(directory, 'metrics.tsv', {})}
  for name, read in readers.items():
    (tmp_path / name).write_text('{"data": ')
    with pytest.raises(errors.RunIdentityError, match=f'{name}.*unreadable'):
      read()


def test_a_checkpoint_of_another_config_is_stale(tmp_path):
  identity = run_identity.RunIdentity(_config(), str(tmp_path))
  other = run_identity.RunIdentity(_config(l2=0.5), str(tmp_path))
  stale = identity.stale({'train/seed_0': other.identity('train/seed_0'),
                          'train/seed_1': identity.identity('train/seed_1')})
  assert list(stale) == ['train/seed_0'] and 'train.l2: 0.5 -> 1e-06' in stale['train/seed_0']
  assert 'no run identity' in identity.stale({'train/seed_1': None})['train/seed_1'][0]


def test_a_second_run_into_a_busy_workdir_stops_at_once(tmp_path):
  with run_identity.lock(str(tmp_path)):
    with pytest.raises(errors.RunIdentityError, match=f'pid {os.getpid()}'):
      with run_identity.lock(str(tmp_path)):
        pass
  with run_identity.lock(str(tmp_path)):   # released on exit
    pass


@pytest.mark.parametrize('field, value', [('seeds', 0), ('train.epochs', -1),
                                          ('model.bottleneck', 0), ('deeplift.top_k', 0),
                                          ('train.learning_rate', float('inf')),
                                          ('model.scale', 'zscore'), ('train.loss', 'huber'),
                                          ('train.schedule', 'step')])
def test_config_checks_name_the_field(field, value):
  config = _config()
  section, _, name = field.rpartition('.')
  (config[section] if section else config)[name] = value
  with pytest.raises(errors.ConfigError, match=f'config.{field}'):
    validation.check_config(config)


def test_all_equal_scores_rank_nothing():
  annotation = ranking_annotation()
  with pytest.raises(errors.NumericalError, match='all 3 importance scores equal'):
    ranking.rank_genes(np.zeros(3), ['p1', 'p2', 'p3'], annotation)


def ranking_annotation():
  import pandas as pd
  return pd.DataFrame({'probe': ['p1', 'p2', 'p3'], 'symbol': ['A', 'B', 'C'],
                       'entrez': ['1', '', '3']})


def test_landmarks_read_back_keep_empty_entrez_cells(tmp_path):
  ranked = ranking.rank_genes(np.array([0.3, 0.2, 0.1]), ['p1', 'p2', 'p3'], ranking_annotation())
  ranking.write_landmarks(tmp_path / 'landmarks.tsv', ranked)
  back = ranking.read_landmarks(tmp_path / 'landmarks.tsv')
  assert back['entrez'].tolist() == ['1', '', '3']
  ranking.l1000_overlap(['A'], _l1000_table(tmp_path), back)   # failed on NaN cells


def _l1000_table(tmp_path):
  path = tmp_path / 'l1000.tsv'
  path.write_text('probe\tentrez\tsymbol\ttitle\np1\t1\tA\ta gene\n')
  return str(path)


def _params(model):
  return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def _damage(step_dir, how):
  files = sorted(glob.glob(os.path.join(step_dir, '**', '*'), recursive=True), key=os.path.getsize)
  data_file = [f for f in files if os.path.isfile(f)][-1]
  if how == 'random_bytes':
    with open(data_file, 'r+b') as f:
      f.seek(os.path.getsize(data_file) // 2)
      f.write(np.random.default_rng(0).bytes(256))
  elif how == 'truncated':
    with open(data_file, 'r+b') as f:
      f.truncate(os.path.getsize(data_file) // 3)
  else:   # emptied
    for entry in os.listdir(step_dir):
      path = os.path.join(step_dir, entry)
      if os.path.isdir(path):
        import shutil
        shutil.rmtree(path)
      else:
        os.remove(path)


@pytest.mark.parametrize('how', ['random_bytes', 'truncated', 'emptied'])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_step(real_slice, tmp_path, how):
  config = _config(checkpoint_every_epochs=1, keep_checkpoints=2)
  uninterrupted, _, _ = train.train_autoencoder(config, str(tmp_path / 'whole'), *real_slice)
  workdir = str(tmp_path / 'damaged')
  train.train_autoencoder(config, workdir, *real_slice)
  checkpoints = os.path.join(workdir, 'checkpoints')
  _damage(os.path.join(checkpoints, '3'), how)
  resumed, _, history = train.train_autoencoder(config, workdir, *real_slice)
  assert os.path.isdir(os.path.join(checkpoints + '.rejected', '3'))
  assert history['epoch'] == [1, 2, 3]
  for expected, actual in zip(_params(uninterrupted), _params(resumed)):
    np.testing.assert_array_equal(expected, actual)
  manager = checkpointing.make_manager(checkpoints)
  assert manager.all_steps() == [2, 3]   # epoch 3 saved anew; the good epoch 2 kept
  manager.close()


def test_a_diverging_run_stops_and_saves_nothing_of_it(real_slice, tmp_path):
  config = _config(learning_rate=1e30, checkpoint_every_epochs=1)
  with pytest.raises(errors.NumericalError,
                     match='config.train.learning_rate: AutoEncoder training diverged'):
    train.train_autoencoder(config, str(tmp_path), *real_slice)
  manager = checkpointing.make_manager(str(tmp_path / 'checkpoints'))
  steps = manager.all_steps()
  manager.close()
  for step in steps:
    metadata = checkpointing.latest_metadata(str(tmp_path / 'checkpoints'))
    assert all(np.isfinite(metadata['history'][core.TRAIN_LOSS]))
  assert json.dumps(steps)   # whatever was saved before the divergence is finite
