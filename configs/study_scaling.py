"""Study scaling: does panel quality grow with the number of training studies?

configs/quick.py's method on the 17-study compendium (configs/compendium.py). The held-out
studies are fixed: fold 3 of `configs/compendium.py:folds=5` (GSE781, GSE3585, borovecki,
GSE38666: 105 profiles of kidney, heart, blood and ovary), out of every draw. Each draw
orders the other 13 studies at random (`draw_seed`); its first n train, for each n of
`sizes`, so a draw's sets are nested. Normalisation, study correction, the AE and DeepLIFT
are fitted on the n studies; DeepLIFT's top genes, L1000, peel-off and
`evaluate.random_sets` random panels (all of L1000's size in D-GEX's universe) infer the
other genes of the held-out studies with ridge regression (experiments/study_scaling.py).

  python -m experiments.study_scaling --config=configs/study_scaling.py \
      --workdir=runs/study_scaling --budget_minutes=100
  python -m experiments.study_scaling --config=configs/study_scaling.py \
      --workdir=runs/study_scaling --summarize_only
  # a smoke test: two sizes, one draw, 2 epochs, 3 random panels
  python -m experiments.study_scaling \
      --config=configs/study_scaling.py:sizes=2+4,draws=1,epochs=2,random_sets=3 \
      --workdir=/tmp/study_scaling_smoke
"""

import ml_collections

from configs import common
from configs import quick

HOLDOUT = ('GSE781', 'GSE3585', 'borovecki', 'GSE38666')   # fold 3 of compendium.py:folds=5


def get_config(arg=None):
  arg = common.parse_arg(arg, sizes=(2, 4, 8, 12), draws=3, draw_seed=0, holdout=HOLDOUT,
                         models=('ridge',), random_sets=20, epochs=0)
  config = quick.get_config()
  config.train.epochs = arg.epochs or config.train.epochs           # 0: quick.py's
  config.data.studies = common.compendium_studies()
  config.data.samples_table = common.compendium_samples_tables()
  config.preprocess.split = 'leave_study_out'
  config.preprocess.holdout_study = '+'.join(arg.holdout)
  config.evaluate.models = arg.models
  config.evaluate.random_sets = arg.random_sets
  config.selectors.peel_off_restarts = 1    # as in the leave-one-study-out selector runs
  config.study_scaling = ml_collections.ConfigDict()
  config.study_scaling.sizes = arg.sizes    # training studies per draw
  config.study_scaling.draws = arg.draws    # random orders of the training pool
  config.study_scaling.draw_seed = arg.draw_seed
  return config
