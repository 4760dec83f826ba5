"""The panel designer: a ranked gene panel from a training split, without an AutoEncoder.

`design(split, annotation, config)` runs `config.method` on the genes of `config.panel.universe`:
the greedy ridge selectors stream the split once (`Split.arrays`, a GCTX's chunks or the
matrix; probes collapsed to genes chunk by chunk) into `greedy_ridge.Moments`, so no row
limit applies to them; any other selector chooses from the split read into memory (a stream's
`data.stream_eval_samples` rows).
"""

from absl import logging
import ml_collections
import pandas as pd

from landmark.data import preprocess
from landmark.data import splits as splits_lib
from landmark.errors import ConfigError
from landmark.selection import greedy_ridge
from landmark.selection import selectors
from landmark.training import sharding

PAPER_METHOD = 'deeplift'   # config.method of the paper: AutoEncoders, then DeepLIFT
UNIVERSES = ('all', 'dgex')


def methods() -> list[str]:
  """The config.method values: the paper's, and every selector that needs no AutoEncoder
  (random panels are the noise floor, not a design)."""
  return [PAPER_METHOD] + sorted(set(selectors.SELECTORS) - selectors.NEEDS_ENCODER - {'random'})


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a config.method or config.panel field that cannot work."""
  if config.method not in methods():
    raise ConfigError('config.method', f'must be one of {methods()}, got {config.method!r}')
  if config.panel.universe not in UNIVERSES:
    raise ConfigError('config.panel.universe', f'must be one of {UNIVERSES}, got '
                      f'{config.panel.universe!r}')
  if config.panel.k < 1:
    raise ConfigError('config.panel.k', f'must be at least 1, got {config.panel.k!r}')
  selectors.check_config(config.selectors)


def design(split: splits_lib.Split, annotation: pd.DataFrame, config: ml_collections.ConfigDict,
           universe: list[str] | None, l1000: list[str]) -> pd.DataFrame:
  """The `config.panel.k` genes `config.method` chooses from `split`'s genes (of `universe`;
  None: every annotated gene), best first: symbol, and gain for the greedy ridge methods
  (the fraction of the training sum of squares each step explained); `.attrs['universe']`
  holds every gene chosen from."""
  collapse = preprocess.gene_collapse(split.features, annotation, universe)
  k = config.panel.k
  if k > len(collapse.genes):
    raise ConfigError('config.panel.k', f'{k} genes asked for, but the data have only '
                      f'{len(collapse.genes)} annotated genes in universe '
                      f'{config.panel.universe!r}')
  if config.method in selectors.GREEDY_RIDGE:
    settings = config.selectors
    mesh = sharding.device_mesh(config.mesh.devices)
    logging.info('%s: one pass over %d training profiles, %d genes', config.method,
                 split.shape[0], len(collapse.genes))
    moments = greedy_ridge.accumulate(
        (collapse(chunk) for chunk in split.arrays()), split.meta['study'].to_numpy(),
        len(collapse.genes),
        settings.greedy_ridge_validation_folds, dtype=settings.greedy_ridge_dtype, mesh=mesh)
    table = greedy_ridge.panel_table(moments, collapse.genes, k, settings,
                                     selectors.GREEDY_RIDGE[config.method], mesh)
  else:
    memory = split.to_memory(config.data.stream_eval_samples, config.seed)
    context = selectors.SelectionContext(collapse.genes, collapse(memory.values), l1000, config,
                                         studies=memory.meta['study'].to_numpy())
    table = pd.DataFrame({'symbol': selectors.select(config.method, context, k, config.seed)})
  table.attrs['universe'] = collapse.genes
  return table
