"""Cross-study test (the paper's GTEx analysis, here within HG-U133A): leave one study out.

Normalisation, AE, DeepLIFT and the inference models are fitted without the held-out
study; its profiles are mapped onto the saved training quantiles and scored. As a sweep,
every study is held out in turn:

  python main.py --config=configs/cross_study.py --workdir=runs/cross_study --mode=sweep
  python main.py --config=configs/cross_study.py:holdout=chowdary --workdir=runs/lso_chowdary

On GTEx, use configs/default.py with `--config.preprocess.split=leave_study_out` on a
compendium combining the GEO GCTX and the GTEx file (RPKM -> log2 via preprocess.log2),
with `--config.preprocess.holdout_study=<the GTEx file's study name>`.
"""

import ml_collections

from configs import common
from configs import quick


def get_config(arg=None):
  arg = common.parse_arg(arg, holdout='', epochs=100, seed=0)
  config = quick.get_config(f'epochs={arg.epochs},seed={arg.seed}')
  config.preprocess.split = 'leave_study_out'
  config.preprocess.holdout_study = arg.holdout
  config.sweep = ml_collections.ConfigDict()
  config.sweep.parameter = 'preprocess.holdout_study'
  config.sweep.grid = (arg.holdout,) if arg.holdout else common.HGU133A_STUDIES
  return config
