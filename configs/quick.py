"""The embedded default: the paper's method on the five real HG-U133A studies (314 profiles).

Runs on a laptop CPU in minutes; `make demo` launches it:

  python main.py --config=configs/quick.py --workdir=runs/demo
  python main.py --config=configs/quick.py:epochs=20 --workdir=runs/demo20
  python main.py --config=configs/quick.py --config.model.bottleneck=50 --workdir=runs/b50
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, epochs=100, dgex_epochs=100, seed=0)
  config = common.base_config()
  config.seed = arg.seed
  config.train.epochs = arg.epochs
  config.train.batch_size = 32             # 252 training profiles: 8 steps an epoch
  config.dgex.hidden = (1000,)
  config.dgex.epochs = arg.dgex_epochs
  return config
