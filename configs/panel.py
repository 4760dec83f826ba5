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

`gctx=PATH` designs from a GCTX compendium left on disk instead (`data.stream`): its values
already log2 and normalised, the study of each profile in the column field `study_field`.
The greedy pass streams every training profile (no `data.stream_eval_samples` cut; the
evaluation reads that many into memory):

  python main.py --config=configs/panel.py:gctx=/data/compendium.gctx,study_field=study \
      --workdir=runs/panel_gctx
"""

from configs import common
from configs import compendium


def get_config(arg=None):
  arg = common.parse_arg(arg, k=943, dgex_epochs=40, seed=0, folds=0, fold=-1,
                         method='greedy_ridge_standardised', gctx='', study_field='')
  config = compendium.get_config(f'dgex_epochs={arg.dgex_epochs},seed={arg.seed},'
                                 f'folds={arg.folds},fold={arg.fold}')
  config.method = arg.method
  config.panel.k = arg.k
  config.selector = ''   # the run's own panel is the selector's
  if arg.gctx:
    config.data.studies, config.data.samples_table = (arg.gctx,), ()
    config.data.stream, config.data.study_field = True, arg.study_field
    config.preprocess.log2, config.preprocess.quantile_normalize = 'never', False
    config.preprocess.dedup, config.preprocess.study_correction = False, 'none'
  return config
