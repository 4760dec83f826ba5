"""The run a config describes: data -> AutoEncoder -> DeepLIFT landmarks -> evaluation."""

import json
import os

from absl import logging
import numpy as np

from landmark import data as data_lib
from landmark import fileio
from landmark import preprocess

MODES = ('all', 'prepare')


def prepare_data(config, workdir):
  """Reads and preprocesses the compendium; writes `data_summary.json`."""
  compendium = data_lib.load_compendium(config.data)
  splits = preprocess.prepare(compendium, config, config.seed, workdir)
  summary = {name: {'samples': int(c.shape[0]), 'features': int(c.shape[1]),
                    'studies': c.meta['study'].value_counts().to_dict(),
                    'value_range': [float(np.min(c.values)), float(np.max(c.values))]}
             for name, c in splits.items()}
  fileio.write_text(os.path.join(workdir, 'data_summary.json'), json.dumps(summary, indent=2))
  return splits


def run(config, workdir, mode='all'):
  """Runs `mode` of the pipeline in `workdir`, reusing what earlier runs left there."""
  os.makedirs(workdir, exist_ok=True)
  fileio.write_text(os.path.join(workdir, 'config.json'), config.to_json_best_effort(indent=2))
  splits = prepare_data(config, workdir)
  logging.info('Prepared %s', {name: c.shape for name, c in splits.items()})
