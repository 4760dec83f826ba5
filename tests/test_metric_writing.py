"""TensorBoard events written with tensorboardX and read back with tensorboard."""

import os

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt

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


def test_hparams_text_and_image_land_in_the_run_itself(tmp_path):
  """Hyperparameters, text and a saved PNG go into the run beside its curves (not a subrun)."""
  figure, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  figure.savefig(tmp_path / 'density.png')
  plt.close(figure)
  logdir = tmp_path / 'run'
  with metric_writing.MetricWriter(logdir) as writer:
    writer.write_scalars(1, {'eval/mae': 0.3})
    writer.write_hparams({'hidden': (500,), 'learning_rate': 1e-3, 'activation': 'sigmoid'},
                         {'hparams/eval_mae': 0.25})
    writer.write_text(0, 'config', '`bottleneck: 100`')
    writer.write_image(0, 'figures/density', str(tmp_path / 'density.png'))
  assert [name for name in os.listdir(logdir) if os.path.isdir(logdir / name)] == []
  run = metric_writing.read_events(logdir)
  assert {'eval/mae', 'hparams/eval_mae'} <= set(run.Tags()['scalars'])
  assert run.Scalars('hparams/eval_mae')[0].value == 0.25
  hparams = b''.join(run.PluginTagToContent('hparams').values())
  assert b'learning_rate' in hparams and b'hparams/eval_mae' in hparams and b'(500,)' in hparams
  assert run.Tensors('config/text_summary')[0].tensor_proto.string_val[0] == b'`bottleneck: 100`'
  image = run.Images('figures/density')[0]
  assert image.width > 0 and image.height > 0
