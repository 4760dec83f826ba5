"""The paper at full scale: D-GEX's GEO compendium (129,158 x 22,268 HG-U133A profiles).

Needs `bgedv2_QNORM.gctx` from the D-GEX authors (GCTX, 11.5 GB; read in chunks):

  python main.py --config=configs/default.py:gctx=/data/bgedv2_QNORM.gctx --workdir=runs/paper
  python main.py --config=configs/default.py:gctx=/data/bgedv2_QNORM.gctx,bottleneck=50 \
      --workdir=runs/paper_b50

The AE trains, and DeepLIFT scores, from the file in sample chunks (`config.data.stream`,
landmark.data.streaming), so memory holds a few chunks, not the 11.5 GB; `stream=0` reads it
whole instead, with the paper's duplicate removal.

On GPUs, `bf16` computes the AutoEncoder and D-GEX in bfloat16 with float32 parameters
(DeepLIFT stays float32); `--mode=dry_run` estimates either setting's time and memory:

  python main.py --config=configs/default.py:gctx=/data/bgedv2_QNORM.gctx,bf16 \
      --workdir=runs/paper_bf16
  python main.py --config=configs/default.py:bf16 --workdir=runs/dry_bf16 --mode=dry_run
"""

from configs import common


def get_config(arg=None):
  arg = common.parse_arg(arg, gctx='bgedv2_QNORM.gctx', bottleneck=100, seed=0, bf16=False,
                         stream=True)
  config = common.base_config()
  config.seed = arg.seed
  config.data.studies = (arg.gctx,)
  config.data.samples_table = ()
  config.preprocess.log2 = 'never'         # the compendium is log2 and quantile-normalised
  config.data.stream = arg.stream          # train and score from the file, never all in RAM;
  if arg.stream:                           # so no duplicate removal (it needs every profile
    config.preprocess.dedup = False        # in memory) and no second quantile normalisation
    config.preprocess.quantile_normalize = False
  config.model.bottleneck = arg.bottleneck
  config.train.keep_checkpoints = 1        # the final checkpoint of each seed only (raise it to
                                           # keep earlier ones); deeplift.n_export (16) bounds
                                           # the DeepLIFT samples exported for checking
  config.dgex.hidden = (9000, 9000, 9000)  # D-GEX's best model
  if arg.bf16:
    config.model.compute_dtype = config.dgex.compute_dtype = 'bfloat16'
  return config
