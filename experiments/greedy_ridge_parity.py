"""Do the JAX greedy ridge and the numpy one it replaced choose the same panels on the
17-study grouped CV? The selector benchmark's tables (experiments/results/selectors_17) were
made with the numpy path; where every fold's panel is the same, they stand for the new path.

For each fold's training split (D-GEX's genes, as the selector benchmark chooses from) and
each greedy ridge selector, the k = 943 panel with the penalty validation, by both paths:
whether the panels are identical in order, their overlap, the penalty chosen and the time.
Writes `<out>` (TSV) and prints it.

  python -m experiments.greedy_ridge_parity --out=experiments/results/selectors_17/greedy_ridge_parity.tsv
"""

import os
import sys
import tempfile
import time

if not __package__:
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from absl import logging
import numpy as np
import pandas as pd

from configs import compendium
from experiments import numpy_greedy_ridge
from landmark import fileio
from landmark import pipeline
from landmark.data import readers
from landmark.evaluation import panels as panels_lib
from landmark.selection import greedy_ridge

_OUT = flags.DEFINE_string('out', None, 'TSV of the comparison.')
_FOLDS = flags.DEFINE_integer('folds', 5, 'Folds of the grouped CV (configs/compendium.py).')
flags.mark_flag_as_required('out')
K = 943


def main(argv):
  del argv
  rows = []
  for fold in range(_FOLDS.value):
    config = compendium.get_config(f'folds={_FOLDS.value},fold={fold}')
    settings = config.selectors
    with tempfile.TemporaryDirectory() as workdir:
      splits = pipeline.prepare_data(config, workdir)
    genes = panels_lib.gene_splits(splits, readers.read_probe_annotation(config.data.annotation),
                                   panels_lib.dgex_universe(config.data))
    for name, standardise in (('greedy_ridge', False), ('greedy_ridge_standardised', True)):
      started = time.perf_counter()
      old = numpy_greedy_ridge.selection(
          genes.train, genes.train_studies, tuple(settings.greedy_ridge_alphas), K,
          settings.greedy_ridge_validation_k, settings.greedy_ridge_validation_folds,
          standardise)
      old_seconds = time.perf_counter() - started
      started = time.perf_counter()
      moments = greedy_ridge.in_memory(genes.train, genes.train_studies.astype(str),
                                       settings.greedy_ridge_validation_folds, dtype='float64')
      paths, alpha, _ = greedy_ridge.select(moments, K, tuple(settings.greedy_ridge_alphas),
                                            settings.greedy_ridge_validation_k, standardise)
      new_seconds = time.perf_counter() - started
      new = paths.order[0]
      rows.append({'fold': fold, 'selector': name, 'profiles': len(genes.train),
                   'genes': len(genes.genes), 'k': K, 'alpha': alpha,
                   'identical_order': bool(np.array_equal(old, new)),
                   'shared_genes': len(set(old) & set(new)),
                   'first_difference': int(np.argmax(old != new)) if not np.array_equal(
                       old, new) else -1,
                   'numpy_seconds': round(old_seconds, 1), 'jax_seconds': round(new_seconds, 1)})
      logging.info('%s', rows[-1])
  table = pd.DataFrame(rows)
  fileio.write_table(_OUT.value, table, index=False)
  print(table.to_string(index=False))


if __name__ == '__main__':
  app.run(main)
