"""The demo's method (configs/quick.py) on all 17 real studies: 580 profiles, 22,215 probes.

The five HG-U133A studies of ../shared/data/hgu133a and the twelve of hgu133a_more, read
on their shared non-control probes. They were processed as real GEO downloads are (MAS5
linear, RMA and GCRMA-like log2 with values below zero, some without AFFX controls); the
preprocessing takes each study's scale from its values (log2 of the linear ones), then
normalises them jointly and centres each study, as in quick.py.

  python main.py --config=configs/compendium.py --workdir=runs/compendium
  python main.py --config=configs/compendium.py --workdir=runs/compendium --mode=prepare

`folds=N` splits by study instead (`preprocess.split='study_kfold'`): the studies are
dealt into N test folds (drawn from `preprocess.fold_seed`, not `seed`), and each fold's
normalisation, study correction, AE and DeepLIFT see only the other folds' studies. As a
sweep, every fold is the test set in turn; `fold=i` runs one:

  python main.py --config=configs/compendium.py:folds=5 --workdir=runs/compendium_kfold \
      --mode=sweep
  python main.py --config=configs/compendium.py:folds=5,fold=2 --workdir=runs/compendium_fold2
"""

import ml_collections

from configs import common
from configs import quick
from landmark.errors import ConfigError


def get_config(arg=None):
  arg = common.parse_arg(arg, epochs=100, dgex_epochs=40, seed=0, folds=0, fold=-1)
  config = quick.get_config(f'epochs={arg.epochs},dgex_epochs={arg.dgex_epochs},seed={arg.seed}')
  config.data.studies = common.compendium_studies()
  config.data.samples_table = common.compendium_samples_tables()
  if not arg.folds:
    if arg.fold >= 0:
      raise ConfigError('config argument fold', 'needs folds=N (the number of folds)')
    return config
  config.preprocess.split = 'study_kfold'
  config.preprocess.folds = arg.folds
  config.preprocess.fold = max(arg.fold, 0)
  config.sweep = ml_collections.ConfigDict()
  config.sweep.parameter = 'preprocess.fold'
  config.sweep.grid = (arg.fold,) if arg.fold >= 0 else tuple(range(arg.folds))
  return config
