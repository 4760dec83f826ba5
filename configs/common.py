"""Pieces every config shares: argument parsing, data paths and the paper's defaults."""

import os

import ml_collections

from landmark.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get('LANDMARK_DATA', os.path.join(REPO, '..', 'shared', 'data'))
HGU133A_STUDIES = ('bladderbatch', 'GSE781', 'chowdary', 'nakayama', 'borovecki')
HGU133A_MORE_STUDIES = ('GSE1297', 'GSE3585', 'GSE6956', 'GSE1145', 'GSE14924', 'GSE16759',
                        'GSE20164', 'GSE24739', 'GSE38666', 'GSE4183', 'GSE3325', 'bronchialIL13')
COMPENDIUM_STUDIES = HGU133A_STUDIES + HGU133A_MORE_STUDIES
_BOOLEANS = {'true': True, 'false': False, '1': True, '0': False, 'yes': True, 'no': False}


def data_path(*parts):
  """Absolute path of a file under ../shared/data (or $LANDMARK_DATA)."""
  return os.path.normpath(os.path.join(SHARED_DATA, *parts))


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses big_vision-style 'key=value,flag' strings into a ConfigDict of defaults.

  Commas separate the items, each a `key=value` or a bare `key` (sets a bool to True).
  Values are cast to the type of their default; a tuple default takes its items joined
  by '+' ('bottleneck=25+50+100'), so a comma always starts a new argument. Booleans take
  true/false, 1/0 or yes/no. An unknown key or a value that does not cast raises a
  ConfigError naming the argument.
  """
  parsed = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, equals, value = item.partition('=')
    where = f'config argument {key}'
    if key not in defaults:
      raise ConfigError(where, f'unknown; known: {", ".join(sorted(defaults))}')
    default = defaults[key]
    if not equals:
      if not isinstance(default, bool):
        raise ConfigError(where, f'needs a value ({key}=...); only booleans stand alone')
      parsed[key] = True
    elif isinstance(default, tuple):
      kind = type(default[0]) if default else str
      items = value.split('+')
      if not all(items):
        raise ConfigError(where, f'{value!r} has an empty item (items are joined by +)')
      parsed[key] = tuple(_cast(where, item, kind) for item in items)
    else:
      parsed[key] = _cast(where, value, type(default))
  return parsed


def _cast(where: str, value: str, kind: type):
  """`value` as a `kind` (bool, int, float or str); a ConfigError at `where` if it is not."""
  if kind is bool:
    if value.lower() not in _BOOLEANS:
      raise ConfigError(where, f'{value!r} is not a bool (true/false, 1/0, yes/no)')
    return _BOOLEANS[value.lower()]
  try:
    return kind(value)
  except ValueError:
    article = 'an' if kind.__name__[0] in 'aeiou' else 'a'
    raise ConfigError(where, f'{value!r} is not {article} {kind.__name__}') from None


def hgu133a_studies():
  """The five real HG-U133A studies shipped in ../shared/data/hgu133a."""
  return tuple(data_path('hgu133a', f'{name}.tsv.gz') for name in HGU133A_STUDIES)


def compendium_studies():
  """All 17 real studies: ../shared/data/hgu133a and hgu133a_more (580 profiles)."""
  return hgu133a_studies() + tuple(data_path('hgu133a_more', f'{name}.tsv.gz')
                                   for name in HGU133A_MORE_STUDIES)


def compendium_samples_tables():
  """The sample tables of the 17 studies of `compendium_studies`."""
  return (data_path('hgu133a', 'samples.tsv'), data_path('hgu133a_more', 'samples.tsv'))


def base_config():
  """The paper's method with its published defaults (method.md); configs override parts."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.seeds = 3                         # AEs trained (seeds seed, seed+1, ...): landmarks by
                                           # mean DeepLIFT rank, figures as mean ± sd over seeds

  config.data = ml_collections.ConfigDict()
  config.data.studies = hgu133a_studies()   # files; format picked from the extension
  config.data.samples_table = (data_path('hgu133a', 'samples.tsv'),)  # tables of sample,
                                           # study, label, ...; () = none
  config.data.annotation = data_path('annotation', 'gpl96_probes.tsv')
  config.data.l1000_landmarks = data_path('annotation', 'l1000_landmarks.tsv')
  config.data.dgex_landmarks = data_path('annotation', 'dgex_landmark_genes.tsv')
  config.data.dgex_targets = data_path('annotation', 'dgex_target_genes.tsv')
  config.data.go_gmt = data_path('genesets', 'go_mf.gmt')
  config.data.max_samples = 0              # 0 = all; otherwise a fixed random subset of N
  config.data.stream = False               # train and score from one GCTX left on disk
                                           # (landmark.data.streaming); val/test read into memory
  config.data.chunk_samples = 512          # stream: consecutive samples per HDF5 read
  config.data.shuffle_buffer_chunks = 4    # stream: chunks pooled and shuffled together
  config.data.prefetch = 4                 # stream: batches read ahead on a background thread
  config.data.stream_eval_samples = 20000  # stream: training rows read into memory for the
                                           # panel and clustering stages (0 = all)
  config.data.study_field = ''             # stream: the GCTX column-metadata field naming
                                           # each profile's study ('' = the file is one study)

  config.preprocess = ml_collections.ConfigDict()
  config.preprocess.log2 = 'auto'          # 'auto' (max > linear_threshold), 'always', 'never'
  config.preprocess.linear_threshold = 100.0
  config.preprocess.log2_floor = 1.0       # linear values below the floor are raised to it
  config.preprocess.nan_policy = 'error'   # 'error' or 'impute' (per-feature mean)
  config.preprocess.constant_samples = 'error'  # or 'drop': samples whose values are all equal
  config.preprocess.quantile_normalize = True
  config.preprocess.drop_control_probes = True   # AFFX-* hybridisation controls are not genes
  config.preprocess.feature_list = ''      # optional TSV of probes/genes to keep ('' = all)
  config.preprocess.dedup = True
  config.preprocess.dedup_clusters = 100
  config.preprocess.dedup_threshold = 1.0  # Euclidean distance in log2 units (D-GEX)
  config.preprocess.study_correction = 'none'   # 'none' (the paper), 'center', 'combat'
  config.preprocess.split = 'random'       # 'random', 'leave_study_out' or 'study_kfold'
  config.preprocess.holdout_study = ''     # for split='leave_study_out'
  config.preprocess.folds = 5              # split='study_kfold': whole studies dealt into
  config.preprocess.fold = 0               # `folds` test folds; `fold` is the test set,
  config.preprocess.fold_seed = 0          # the assignment drawn from `fold_seed` (not `seed`,
                                           # so runs of different seeds share their folds)
  config.preprocess.val_fraction = 0.1
  config.preprocess.test_fraction = 0.1

  config.model = ml_collections.ConfigDict()
  config.model.hidden = (500,)             # encoder widths before the bottleneck; decoder mirrors
  config.model.bottleneck = 100
  config.model.activation = 'sigmoid'
  config.model.dropout = 0.1
  config.model.scale = 'minmax'            # per-gene [0, 1] scaling fitted on the train split,
                                           # or 'standard' (z-score; needs a linear output)
  config.model.output_activation = 'sigmoid'   # or 'linear'; hidden layers use `activation`
  config.model.study_conditional = False   # decoder also gets the sample's study (one-hot)
  config.model.compute_dtype = 'float32'   # or 'bfloat16' (GPUs); parameters stay float32

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 100
  config.train.batch_size = 256
  config.train.learning_rate = 1e-3        # Adam with Keras defaults
  config.train.schedule = 'constant'       # or 'cosine': decay to 0 at the last step
  config.train.warmup_fraction = 0.0       # of all steps: linear warmup from 0 first
  config.train.b1 = 0.9
  config.train.b2 = 0.999
  config.train.eps = 1e-7
  config.train.loss = 'mae'                # reconstruction loss, 'mae' or 'mse'
  config.train.l2 = 1e-6                   # alpha * sum ||W||^2 added to the loss
  config.train.checkpoint_every_epochs = 10
  config.train.keep_checkpoints = 2
  config.train.log_every_epochs = 1

  config.mesh = ml_collections.ConfigDict()   # data parallelism (landmark.training.sharding)
  config.mesh.devices = 0                  # devices on the 'batch' axis; 0 = all
  config.mesh.distributed = False          # jax.distributed.initialize() first (multi-host)
  # Where the processes of a multi-host run meet: '' / -1 = auto-detected on SLURM, Open MPI
  # and TPU pods; elsewhere (say, processes started by hand) give all three (README).
  config.mesh.coordinator_address = ''     # host:port of process 0's coordinator service
  config.mesh.num_processes = -1           # processes in the run
  config.mesh.process_id = -1              # this process's rank, 0 .. num_processes - 1

  config.dry_run = ml_collections.ConfigDict()   # --mode=dry_run: full shapes, random data
  config.dry_run.samples = 111009          # the paper's compendium after duplicate removal
  config.dry_run.features = 22268
  config.dry_run.steps = 2                 # timed training steps (AE and D-GEX)
  config.dry_run.dgex_landmarks = 943      # D-GEX's full shapes: L1000 landmarks ->
  config.dry_run.dgex_targets = 9520       # its target genes (an upper bound on the panels')

  config.deeplift = ml_collections.ConfigDict()
  config.deeplift.reference = 'train_mean' # 'train_mean', 'zeros', or a path to a .npy
  config.deeplift.aggregate = 'abs'        # mean |C| ('abs') or signed mean ('signed')
  config.deeplift.samples = 'train'        # which split is scored
  config.deeplift.max_chunk_mb = 1024.0    # memory bound on one chunk's contributions
  config.deeplift.top_k = 943
  config.deeplift.n_export = 16

  config.dgex = ml_collections.ConfigDict()
  config.dgex.hidden = (3000,)
  config.dgex.dropout = 0.1
  config.dgex.optimizer = 'sgd'            # D-GEX's SGD with momentum; 'adam' for small data
  config.dgex.learning_rate = 3e-4
  config.dgex.momentum = 0.5
  config.dgex.lr_decay = 0.9               # multiply lr when the training MAE rises
  config.dgex.lr_floor = 1e-5
  config.dgex.batch_size = 200
  config.dgex.epochs = 200
  config.dgex.std_epsilon = 1e-3
  config.dgex.compute_dtype = 'float32'    # or 'bfloat16' (GPUs); parameters stay float32

  config.method = 'deeplift'   # how the run designs its panel: 'deeplift' (the paper:
                                 # AutoEncoders, then DeepLIFT) or a selector that needs no
                                 # AutoEncoder (e.g. 'greedy_ridge_standardised': configs/panel.py)
  config.panel = ml_collections.ConfigDict()   # a selector method's panel (config.method)
  config.panel.k = 943                     # genes in panel.tsv (the report compares panels of
                                           # L1000's size in the universe)
  config.panel.universe = 'all'            # 'all' annotated genes of the data, or 'dgex'
                                           # (D-GEX's 10,463 genes)

  config.selector = ''   # a landmark selector (selection/selectors.py) whose panel the run scores
                         # beside the paper's DeepLIFT panel, e.g. 'greedy_ridge_standardised'
  config.selectors = ml_collections.ConfigDict()   # landmark selectors beside the paper's
  config.selectors.ig_steps = 32           # integrated gradients: path intervals
  config.selectors.ig_rule = 'trapezoid'   # or 'midpoint'
  config.selectors.pca_variance = 0.9      # top PCs explaining more than this fraction...
  config.selectors.pca_components = 0      # ...unless > 0: exactly this many PCs
  config.selectors.peel_off_restarts = 4   # k-means initialisations
  config.selectors.stratified_aggregate = 'mean'   # *_stratified: a gene's rank over the
                                           # training studies: 'mean', 'median', 'trimmed_mean'
  config.selectors.greedy_ridge_alphas = (1.0, 10.0, 100.0, 1000.0)   # ridge penalties x mean
                                           # squared gene norm; several: chosen on held-out
                                           # groups of training studies (on 17 studies the
                                           # grid (0.1, 1, 10) chose its edge, 10)
  config.selectors.greedy_ridge_validation_k = 943   # panel size of that validation
  config.selectors.greedy_ridge_validation_folds = 3   # groups of training studies held out
                                           # in turn by that validation
  config.selectors.greedy_ridge_dtype = 'auto'   # 'auto' (float64 on CPU, float32 on
                                           # accelerators), 'float32' or 'float64'
  config.selectors.concrete = ml_collections.ConfigDict()
  config.selectors.concrete.hidden = (512,)
  config.selectors.concrete.epochs = 1000
  config.selectors.concrete.batch_size = 64
  config.selectors.concrete.learning_rate = 1e-3   # decoder's Adam rate (paper); with 1e-2
  # more units share a gene at k = 943 (811 distinct genes, not 915)
  config.selectors.concrete.selector_learning_rate = 0.3   # logits' Adam rate: converges at
  # k = 943 of 9,403 genes (1e-2 does not; experiments/results/concrete_convergence.md)
  config.selectors.concrete.start_temperature = 10.0
  config.selectors.concrete.end_temperature = 0.01
  config.selectors.persist = ml_collections.ConfigDict()   # PERSIST gates (selection/persist.py)
  config.selectors.persist.hidden = (512,)         # reconstruction MLP's hidden widths
  config.selectors.persist.epochs = 200            # each bisection fit
  config.selectors.persist.finetune_epochs = 50    # the fit with exactly k gates allowed
  config.selectors.persist.batch_size = 64
  config.selectors.persist.learning_rate = 1e-2    # Adam, the reconstruction MLP's
  config.selectors.persist.gate_learning_rate = 0.1   # Adam, the gates' log α: at 1e-2 a
                                           # gate needs ~440 steps to close, more than a fit
                                           # on a few hundred profiles has
  config.selectors.persist.bisection_steps = 8     # fits tuning lambda (fewer if one hits k)
  config.selectors.persist.lambda_min = 1e-3       # price of an open gate, in genes' worth
  config.selectors.persist.lambda_max = 1e2        # of explained variance (per-gene z-scores)

  config.evaluate = ml_collections.ConfigDict()
  config.evaluate.permutation_alpha = 0.01
  config.evaluate.block_size = 2048        # genes per block in the permutation test
  config.evaluate.models = ('linear', 'dgex')
  config.evaluate.ridge = 0.0               # 'linear': fixed ridge penalty (0 = least squares)
  config.evaluate.ridge_grid = (0.0, 1e-3, 1e-2, 1e-1, 1.0)   # 'ridge': penalties tried on the
                                           # validation split, x mean squared singular value
  config.evaluate.knn_neighbors = 10
  config.evaluate.random_sets = 20        # random panels of equal size: the noise floor
  config.evaluate.random_sets_nonlinear = 3   # as many for D-GEX/KNN (each is a full fit)
  config.evaluate.go_min_size = 10
  config.evaluate.go_max_size = 500
  config.evaluate.go_fdr = 0.05

  config.infer = ml_collections.ConfigDict()   # --mode=infer: a saved model of the workdir
  config.infer.input = ''                  # landmark measurements, any format data.read_any reads
  config.infer.panel = 'l1000'             # models/<panel>_<model>/ of the workdir
  config.infer.model = 'dgex'              # 'linear', 'ridge' or 'dgex'
  config.infer.output = ''                 # '' = <workdir>/infer/<panel>_<model>/
  config.infer.min_landmark_fraction = 0.8 # refuse inputs with fewer of the panel's genes
  config.infer.input_scale = 'auto'        # 'auto', 'log2', 'linear' or 'zscore' (per-gene)
  config.infer.batch_column = ''           # sample-metadata column of the input's batches,
                                           # centred one by one when the run centred its
                                           # studies; '' = the whole input is one batch
  return config
