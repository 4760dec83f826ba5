"""Cross-platform test in miniature: RNA-seq landmarks, microarray targets (issue #17, §2).

configs/quick.py's compendium and split (the demo run's: five HG-U133A studies, 252
training profiles, study-centred), on which ridge regression is fitted for each panel; the
36 lymphoblastoid lines of ../shared/data/rnaseq/, measured by RNA-seq and by array, are
what the fits are applied to and scored on (experiments/cross_platform.py). `landmarks`: the
demo run's DeepLIFT ranking, `runs/demo/landmarks.tsv` when a finished demo is there
(`make demo`), else the copy committed in experiments/results/demo/.

  python -m experiments.cross_platform --workdir=experiments/results/cross_platform
  python -m experiments.cross_platform --config=configs/cross_platform.py:random_sets=5 \
      --workdir=/tmp/cross_platform
  python -m experiments.cross_platform \
      --config=configs/cross_platform.py:landmarks=runs/mine/landmarks.tsv --workdir=runs/cp
"""

import os

import ml_collections

from configs import common
from configs import quick

DEMO_LANDMARKS = os.path.join(common.REPO, 'runs', 'demo', 'landmarks.tsv')
COMMITTED_LANDMARKS = os.path.join(common.REPO, 'experiments', 'results', 'demo',
                                   'landmarks.tsv')


def get_config(arg=None):
  default = DEMO_LANDMARKS if os.path.exists(DEMO_LANDMARKS) else COMMITTED_LANDMARKS
  arg = common.parse_arg(arg, random_sets=20, landmarks=default)
  config = quick.get_config()
  config.evaluate.random_sets = arg.random_sets   # random panels of L1000's size
  # Every panel chose 1, the end of quick.py's grid, on the validation split; with 10 and
  # 100 added it is an interior minimum.
  config.evaluate.ridge_grid = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
  config.cross_platform = ml_collections.ConfigDict()
  config.cross_platform.landmarks = arg.landmarks   # landmarks.tsv: genes by DeepLIFT rank
  config.cross_platform.rnaseq = common.data_path('rnaseq', 'pickrell_lcl_rnaseq_counts.tsv.gz')
  config.cross_platform.array = common.data_path('rnaseq', 'huang_lcl_array_rma.tsv.gz')
  return config
