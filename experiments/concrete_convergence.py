"""Does the Concrete Autoencoder converge at k = 943 on the demo training split?

Trains landmark.selection.concrete_selection.fit on the gene-level TRAINING matrix the
selectors see (D-GEX's universe, built as experiments/selector_benchmark.py does) under a
list of named settings (overrides of config.selectors.concrete), and tabulates for each the
convergence measure `eval/max_probability` over training (mean over the k units of their
largest selection probability; converged above concrete_selection.CONVERGED), the wall
seconds of the fit and the number of distinct genes the units' argmaxes select. Held-out
studies are never touched. Writes the markdown table to --output after every setting.

  python -m experiments.concrete_convergence --workdir=/tmp/concrete_prep --epochs=100
  python -m experiments.concrete_convergence --settings=paper_lr,fix --epochs=100
"""

import os
import time

from absl import app
from absl import flags
from ml_collections import config_flags
import numpy as np

from landmark import pipeline
from landmark.data import readers
from landmark.evaluation import panels as panels_lib
from landmark.selection import concrete_selection
from landmark.training import core

# name -> (overrides of config.selectors.concrete, what it tests). `selector_learning_rate`
# is Adam's rate for the selector's logits (the decoder keeps `learning_rate`).
SETTINGS = {
    'old_default': (dict(learning_rate=1e-2, selector_learning_rate=1e-2),
                    'before the fix: one Adam rate 1e-2 for logits and decoder'),
    'selector_lr_0.1': (dict(learning_rate=1e-2, selector_learning_rate=0.1),
                        'logits 0.1, decoder 1e-2'),
    'selector_lr_0.3': (dict(learning_rate=1e-2, selector_learning_rate=0.3),
                        'logits 0.3, decoder 1e-2'),
    'selector_lr_1': (dict(learning_rate=1e-2, selector_learning_rate=1.0),
                      'logits 1, decoder 1e-2'),
    'selector_lr_0.3_dec_1e-3': (dict(selector_learning_rate=0.3, learning_rate=1e-3),
                                 'logits 0.3, decoder at the paper rate 1e-3'),
    'fix': ({}, 'the new defaults of configs/common.py (logits 0.3, decoder 1e-3)'),
}

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/quick.py', 'Run configuration.')
_WORKDIR = flags.DEFINE_string('workdir', '/tmp/concrete_prep', 'Where prepare_data caches.')
_SETTINGS = flags.DEFINE_list('settings', list(SETTINGS), 'Named settings to run, in order.')
_EPOCHS = flags.DEFINE_integer('epochs', 100, 'Epochs of every fit (the config has 1000: '
                               'too slow on 2 CPU cores for a sweep).')
_K = flags.DEFINE_integer('k', 943, 'Panel size.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of every fit.')
_OUTPUT = flags.DEFINE_string('output', 'experiments/results/concrete_convergence.md',
                              'Markdown table written here.')


def training_genes(config, workdir):
  """The gene-level training matrix (samples x genes) of selector_benchmark.fold_panels."""
  splits = pipeline.prepare_data(config, workdir)
  annotation = readers.read_probe_annotation(config.data.annotation)
  genes = panels_lib.gene_splits(splits, annotation, panels_lib.dgex_universe(config.data))
  return np.asarray(genes.train, np.float32)


def run(x, k, settings, seed):
  """(history of the fit, model, wall seconds): fit's core.Result history, captured."""
  captured = {}
  fit = core.fit

  def recording(*args, **kwargs):
    result = fit(*args, **kwargs)
    captured['history'] = result.history
    return result

  core.fit = recording
  try:
    started = time.perf_counter()
    model = concrete_selection.fit(x, k, settings, seed=seed)
    seconds = time.perf_counter() - started
  finally:
    core.fit = fit
  return captured['history'], model, seconds


def main(argv):
  del argv
  config = _CONFIG.value
  x = training_genes(config, _WORKDIR.value)
  header = (f'# Concrete AE convergence at k = {_K.value}\n\n'
            f'Demo training split (configs/quick.py), {x.shape[0]} profiles x {x.shape[1]} genes; '
            f'{_EPOCHS.value} epochs per fit, seed {_SEED.value}, CPU (2 cores). '
            f'`max_probability`: mean over units of the largest selection probability '
            f'(converged above {concrete_selection.CONVERGED}), at each tenth of training.\n\n'
            '| setting | what | final max_probability | over training | wall s | distinct genes |\n'
            '|---|---|---|---|---|---|\n')
  rows = []
  for name in _SETTINGS.value:
    overrides, what = SETTINGS[name]
    settings = config.selectors.concrete.copy_and_resolve_references()
    settings.update(dict(overrides, epochs=_EPOCHS.value))
    history, model, seconds = run(x, _K.value, settings, _SEED.value)
    curve = history[concrete_selection.MAX_PROBABILITY]
    distinct = len(set(np.asarray(model.selector.probabilities()).argmax(axis=1).tolist()))
    rows.append(f'| {name} | {what} | {curve[-1]:.3f} | {" ".join(f"{v:.2f}" for v in curve)} '
                f'| {seconds:.0f} | {distinct} |\n')
    print(rows[-1], end='', flush=True)
    os.makedirs(os.path.dirname(_OUTPUT.value), exist_ok=True)
    with open(_OUTPUT.value, 'w') as f:
      f.write(header + ''.join(rows))


if __name__ == '__main__':
  app.run(main)
