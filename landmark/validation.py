"""Checks of a run's config made before anything is read or written.

A config that cannot work fails here with a ConfigError naming the field, instead of
after a full training (or after overwriting results of the workdir).
"""

import os

import ml_collections

from landmark.data import preprocess
from landmark.errors import ConfigError
from landmark.selection import design
from landmark.selection import selectors
from landmark.training import train

SPLITS = ('train', 'val', 'test')
INFERENCE_MODELS = ('linear', 'ridge', 'dgex', 'knn')


def _at_least(config, field, minimum):
  value = config
  for part in field.split('.'):
    value = value[part]
  if isinstance(value, (tuple, list)):
    if not value or any(not isinstance(v, int) or v < minimum for v in value):
      raise ConfigError(f'config.{field}', f'needs integers >= {minimum}, got {tuple(value)}')
  elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
    raise ConfigError(f'config.{field}', f'must be at least {minimum}, got {value!r}')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first field of `config` that cannot give a meaningful run."""
  for field, minimum in (('seeds', 1), ('model.bottleneck', 1), ('model.hidden', 1),
                         ('train.epochs', 1), ('train.batch_size', 1),
                         ('train.checkpoint_every_epochs', 1), ('train.keep_checkpoints', 1),
                         ('train.log_every_epochs', 1), ('deeplift.top_k', 1),
                         ('deeplift.n_export', 1), ('deeplift.max_chunk_mb', 1e-3),
                         ('dgex.hidden', 1), ('dgex.epochs', 1), ('dgex.batch_size', 1),
                         ('evaluate.random_sets', 0), ('evaluate.random_sets_nonlinear', 0),
                         ('evaluate.block_size', 2), ('data.max_samples', 0)):
    _at_least(config, field, minimum)
  for field in ('random_sets', 'random_sets_nonlinear'):
    if config.evaluate[field] in (1, 2):
      raise ConfigError(f'config.evaluate.{field}', 'the random-panel null needs at least 3 '
                        f'panels (or 0 for none), got {config.evaluate[field]}')
  for field in ('train.learning_rate', 'dgex.learning_rate'):
    value = config[field.split('.')[0]][field.split('.')[1]]
    if not 0 < value < float('inf'):
      raise ConfigError(f'config.{field}', f'must be positive and finite, got {value!r}')
  if config.train.l2 < 0:
    raise ConfigError('config.train.l2', f'must be >= 0, got {config.train.l2!r}')
  if not 0 <= config.model.dropout < 1:
    raise ConfigError('config.model.dropout', f'must be in [0, 1), got {config.model.dropout!r}')
  if config.deeplift.samples not in SPLITS:
    raise ConfigError('config.deeplift.samples', f'must be one of {SPLITS}, got '
                      f'{config.deeplift.samples!r}')
  if config.deeplift.aggregate not in ('abs', 'signed'):
    raise ConfigError('config.deeplift.aggregate', "must be 'abs' or 'signed', got "
                      f'{config.deeplift.aggregate!r}')
  unknown = [m for m in config.evaluate.models if m not in INFERENCE_MODELS]
  if unknown or not config.evaluate.models:
    raise ConfigError('config.evaluate.models', f'must be some of {INFERENCE_MODELS}, got '
                      f'{tuple(config.evaluate.models)}')
  if not config.data.studies:
    raise ConfigError('config.data.studies', 'names no study file')
  preprocess.check_config(config.preprocess)
  train.check_config(config)
  design.check_config(config)
  _check_selector(config)


# Panels every run scores already (panels.reference_panels); the paper's DeepLIFT panel too.
_REFERENCE_SELECTORS = ('l1000', 'random', 'variance')


def _check_selector(config):
  """config.selector must name a selector that chooses from the data alone."""
  if not config.selector:
    return
  usable = sorted(set(selectors.SELECTORS) - selectors.NEEDS_ENCODER - set(_REFERENCE_SELECTORS))
  if config.selector not in usable:
    raise ConfigError('config.selector', f'must be one of {usable} (the run scores DeepLIFT, '
                      f'L1000, top-variance and random panels anyway), got {config.selector!r}')
  selectors.check_config(config.selectors)


DATA_FILES = ('studies', 'samples_table', 'annotation', 'l1000_landmarks', 'dgex_landmarks',
              'dgex_targets', 'go_gmt')


def check_files(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first input file of `config.data` that does not exist.

  Checked before anything is read, so a clone without the data fails at once, saying where
  it looked and how to point it elsewhere.
  """
  for field in DATA_FILES:
    paths = config.data[field]
    for path in (paths,) if isinstance(paths, str) else paths:
      if path and not os.path.isfile(path):
        root = os.environ.get('LANDMARK_DATA')
        where = f'LANDMARK_DATA={root}' if root else '../shared/data beside the checkout'
        raise ConfigError(f'config.data.{field}', f'{path} does not exist; the data are read '
                          f'from {where} (set LANDMARK_DATA to the folder that holds hgu133a/ '
                          'and annotation/, see README "Data")')
