"""The panel designer: greedy ridge on all 17 real studies, no AutoEncoder.

`config.method = 'greedy_ridge_standardised'` designs the panel directly from the prepared
data: greedy forward selection under ridge regression on per-study-centred, unit-sd genes
(landmark.selection.greedy_ridge, in JAX; one pass over the profiles), its penalty chosen
on held-out groups of training studies. The run writes `panel.tsv` (rank, symbol, Entrez,
probes, each gene's explained-variance gain), `panel.gmt`, the saved inference models
(`models/`, for `--mode=infer`) and `report.md`, which compares the panel with L1000's
landmarks and random panels of the same size (ridge and D-GEX), verdict first. It chooses
among every annotated gene of the array (`panel.universe='all'`; `dgex` for D-GEX's 10,463).

By default the 17 studies are split at random (80/10/10 profiles); `folds=N,fold=i` holds out
whole studies instead (fold i of N, as in configs/compendium.py), the honest test of a panel
meant for new studies:

  python main.py --config=configs/panel.py --workdir=runs/panel
  python main.py --config=configs/panel.py:k=470 --workdir=runs/panel470
  python main.py --config=configs/panel.py:folds=5,fold=0 --workdir=runs/panel_fold0
  python main.py --config=configs/panel.py --config.panel.universe=dgex --workdir=runs/panel_dgex
"""

from configs import common
from configs import compendium


def get_config(arg=None):
  arg = common.parse_arg(arg, k=943, dgex_epochs=40, seed=0, folds=0, fold=-1,
                         method='greedy_ridge_standardised')
  config = compendium.get_config(f'dgex_epochs={arg.dgex_epochs},seed={arg.seed},'
                                 f'folds={arg.folds},fold={arg.fold}')
  config.method = arg.method
  config.panel.k = arg.k
  config.selector = ''   # the run's own panel is the selector's
  return config
