"""A tiny AutoEncoder for the tests: seconds on a laptop CPU.

  python main.py --config=configs/test.py --workdir=/tmp/landmark_test
  python main.py --config=configs/test.py:epochs=5 --workdir=/tmp/landmark_test5
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, epochs=3, seed=0)
  config = common.base_config()
  config.seed = arg.seed
  config.seeds = 2
  config.data.max_samples = 64
  config.model.hidden = (32,)
  config.model.bottleneck = 8
  config.train.epochs = arg.epochs
  config.train.batch_size = 32
  config.train.checkpoint_every_epochs = 1
  config.dgex.hidden = (32,)
  config.dgex.batch_size = 32
  config.dgex.epochs = arg.epochs
  config.evaluate.random_sets = 4
  return config
