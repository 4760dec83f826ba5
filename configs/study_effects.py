"""Study effects: do study correction or DeepLIFT's reference give landmarks that carry more
than "which study"?

The paper's method (configs/quick.py) on every cell of study_correction {none, center,
combat} x DeepLIFT reference {zeros, train_mean} x AE seeds. A cell's held-out studies are
one study (leave one study out; the default, on the five HG-U133A studies) or, with
`folds=N`, one fold of a k-fold split grouped by study (`preprocess.split='study_kfold'`,
held-outs `fold_0` .. `fold_<N-1>`); `studies=compendium` takes all 17 studies
(configs/compendium.py). The normalisation, correction, AE and DeepLIFT are fitted without
the held-out studies. Each DeepLIFT panel, L1000, the top-variance genes and
`evaluate.random_sets` random panels (of L1000's size) infer the other genes of the
held-out studies with ridge regression (penalty chosen on the validation split) and
D-GEX; judged by per-gene PCC and per-study-centred MAE. The AE's settings are
configs/quick.py's (`epochs=N` overrides its epochs).

  python -m experiments.study_effects --config=configs/study_effects.py --workdir=runs/study_effects
  python -m experiments.study_effects --config=configs/study_effects.py:holdout=chowdary,seeds=1 \
      --workdir=runs/study_effects_chowdary
  # models run separately share the AEs: ridge over every seed first, D-GEX later
  python -m experiments.study_effects --config=configs/study_effects.py:models=ridge ...
  python -m experiments.study_effects --config=configs/study_effects.py:models=dgex ...
  # 17 studies, grouped 5-fold CV by study:
  python -m experiments.study_effects \
      --config=configs/study_effects.py:studies=compendium,folds=5,models=ridge \
      --workdir=runs/study_effects_17
"""

import ml_collections

from configs import common
from configs import quick
from landmark.errors import ConfigError

STUDY_SETS = {'hgu133a': common.HGU133A_STUDIES, 'compendium': common.COMPENDIUM_STUDIES}


def get_config(arg=None):
  arg = common.parse_arg(arg, studies='hgu133a', folds=0, holdout=(),
                         correction=('none', 'center', 'combat'),
                         reference=('zeros', 'train_mean'), models=('ridge', 'dgex'), seeds=3,
                         epochs=0, dgex_epochs=0)
  if arg.studies not in STUDY_SETS:
    raise ConfigError('config argument studies', f'{arg.studies!r} is not one of '
                      f'{sorted(STUDY_SETS)}')
  config = quick.get_config()
  if arg.studies == 'compendium':
    config.data.studies = common.compendium_studies()
    config.data.samples_table = common.compendium_samples_tables()
  config.train.epochs = arg.epochs or config.train.epochs           # 0: quick.py's
  config.dgex.epochs = arg.dgex_epochs or config.dgex.epochs
  if arg.folds:
    config.preprocess.split = 'study_kfold'
    config.preprocess.folds = arg.folds
    holdouts = tuple(f'fold_{i}' for i in range(arg.folds))
  else:
    config.preprocess.split = 'leave_study_out'
    holdouts = STUDY_SETS[arg.studies]
  config.evaluate.models = arg.models
  config.study_effects = ml_collections.ConfigDict()
  config.study_effects.holdouts = arg.holdout or holdouts    # studies, or fold_<i> with folds
  config.study_effects.corrections = arg.correction
  config.study_effects.references = arg.reference
  config.study_effects.seeds = arg.seeds    # AE (and D-GEX) seeds 0 .. seeds-1
  return config
