"""Study effects: do study correction or DeepLIFT's reference give landmarks that carry more
than "which study"?

The paper's method (configs/quick.py) on every cell of study_correction {none, center,
combat} x DeepLIFT reference {zeros, train_mean} x AE seeds, leave-one-study-out: the
normalisation, correction, AE and DeepLIFT are fitted without the held-out study. Each
DeepLIFT panel, L1000, the top-variance genes and `evaluate.random_sets` random panels (of
L1000's size) infer the other genes of the held-out study with ridge regression (penalty
chosen on the validation split) and D-GEX; judged by per-gene PCC and per-study-centred MAE.

  python -m experiments.study_effects --config=configs/study_effects.py --workdir=runs/study_effects
  python -m experiments.study_effects --config=configs/study_effects.py:holdout=chowdary,seeds=1 \
      --workdir=runs/study_effects_chowdary
  # models run separately share the AEs: ridge over every seed first, D-GEX on seed 0 later
  python -m experiments.study_effects --config=configs/study_effects.py:models=ridge ...
  python -m experiments.study_effects --config=configs/study_effects.py:models=dgex,seeds=1 ...
"""

import ml_collections

from configs import common
from configs import quick


def get_config(arg=None):
  arg = common.parse_arg(arg, holdout=common.HGU133A_STUDIES,
                         correction=('none', 'center', 'combat'),
                         reference=('zeros', 'train_mean'), models=('ridge', 'dgex'), seeds=3,
                         epochs=100)
  config = quick.get_config(f'epochs={arg.epochs}')
  config.preprocess.split = 'leave_study_out'
  config.evaluate.models = arg.models
  config.study_effects = ml_collections.ConfigDict()
  config.study_effects.holdouts = arg.holdout
  config.study_effects.corrections = arg.correction
  config.study_effects.references = arg.reference
  config.study_effects.seeds = arg.seeds    # AE (and D-GEX) seeds 0 .. seeds-1
  return config
