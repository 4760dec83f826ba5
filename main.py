"""Entry point: finds landmark genes as a config says (the same as the `landmark` command).

  python main.py --config=configs/quick.py --workdir=/tmp/landmark_quick
  python main.py --config=configs/default.py:bottleneck=50 --workdir=runs/b50 --mode=train
"""

from landmark import cli

if __name__ == '__main__':
  cli.run()
