"""Entry point: finds landmark genes as a config says.

  python main.py --config=configs/quick.py --workdir=/tmp/landmark_quick
  python main.py --config=configs/default.py:bottleneck=50 --workdir=runs/b50 --mode=train
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from landmark import pipeline
from landmark import sharding

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, events and results.')
_MODE = flags.DEFINE_enum('mode', 'all', pipeline.MODES, 'Which part of the pipeline to run.')
config_flags.DEFINE_config_file('config', None, 'Configuration file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  sharding.initialize(FLAGS.config)   # before the first use of a device
  logging.info('JAX %s, process %d of %d, devices: %s', jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  pipeline.run(FLAGS.config, _WORKDIR.value, _MODE.value)


if __name__ == '__main__':
  app.run(main)
