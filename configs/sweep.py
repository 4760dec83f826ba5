"""Bottleneck-size sweep of the paper's method on the five real HG-U133A studies.

Each member is the demo run (configs/quick.py) with one bottleneck size, in its own
sub-workdir; a finished member is skipped, so an interrupted sweep resumes:

  python main.py --config=configs/sweep.py --workdir=runs/sweep --mode=sweep
  python main.py --config=configs/sweep.py:bottleneck=25+100+400,epochs=50 --workdir=runs/s50 \
      --mode=sweep
  tensorboard --logdir=runs/sweep   # HParams tab: members side by side
"""

import ml_collections

from configs import quick
from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, bottleneck=(25, 50, 100, 200, 400), epochs=100, seed=0)
  config = quick.get_config(f'epochs={arg.epochs},seed={arg.seed}')
  config.evaluate.models = ('linear',)      # landmark quality by L1000's own method
  config.sweep = ml_collections.ConfigDict()
  config.sweep.parameter = 'model.bottleneck'
  config.sweep.grid = arg.bottleneck
  return config
