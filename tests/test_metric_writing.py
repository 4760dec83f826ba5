"""TensorBoard events written with tensorboardX and read back with tensorboard."""

import os

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt
from tensorboard.backend.event_processing import event_accumulator

from landmark.training import metric_writing
def test_scalars_round_trip(tmp_path):
  with metric_writing.MetricWriter(tmp_path) as writer:
    for step in range(1, 4):
      writer.write_scalars(step, {'train/loss': 1.0 / step, 'eval/mae': 0.5 * step})
  scalars = metric_writing.read_scalars(tmp_path)
  assert set(scalars) == {'train/loss', 'eval/mae'}
  assert scalars['eval/mae'] == [(1, 0.5), (2, 1.0), (3, 1.5)]
  assert [step for step, _ in scalars['train/loss']] == [1, 2, 3]


def test_resumed_writer_replaces_steps_of_crashed_run(tmp_path):
  with metric_writing.MetricWriter(tmp_path) as writer:
    for step in range(1, 6):
      writer.write_scalars(step, {'loss': float(step)})
  with metric_writing.MetricWriter(tmp_path, purge_step=4) as writer:
    for step in range(4, 7):
      writer.write_scalars(step, {'loss': 10.0 * step})
  assert metric_writing.read_scalars(tmp_path)['loss'] == [
      (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]


def test_hparams_and_figure(tmp_path):
  with metric_writing.MetricWriter(tmp_path) as writer:
    writer.write_hparams({'hidden': (500,), 'learning_rate': 1e-3, 'activation': 'sigmoid'},
                         {'hparams/eval_mae': 0.25})
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    writer.write_figure(1, 'density', figure)
  hparams = event_accumulator.EventAccumulator(str(tmp_path / 'hparams'))
  hparams.Reload()
  assert 'hparams/eval_mae' in hparams.Tags()['scalars']
  assert hparams.Scalars('hparams/eval_mae')[0].value == 0.25
  assert any('hparams' in tag for tag in hparams.PluginTagToContent('hparams'))
  main = event_accumulator.EventAccumulator(str(tmp_path))
  main.Reload()
  assert main.Tags()['images'] == ['density']
  assert os.path.isdir(tmp_path / 'hparams')
