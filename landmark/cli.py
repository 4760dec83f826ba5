"""The command line (`landmark`, or `python main.py`): finds landmark genes as a config says.

  landmark --config=configs/quick.py --workdir=/tmp/landmark_quick
  landmark --config=configs/default.py:bottleneck=50 --workdir=runs/b50 --mode=train

A problem with the input, the config or the workdir ends the run with one line,
`error: <file or field>: <problem>`, and exit status 2 (`--verbose` keeps the traceback).
"""

import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from landmark import errors
from landmark import pipeline
from landmark.training import sharding

FLAGS = flags.FLAGS
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, events and results.')
_MODE = flags.DEFINE_enum('mode', 'all', pipeline.MODES, 'Which part of the pipeline to run.')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Recompute the stages whose results in the '
                               'workdir were made under another config or other data.')
_VERBOSE = flags.DEFINE_bool('verbose', False, 'Show the traceback of a run-stopping error.')
config_flags.DEFINE_config_file('config', None, 'Configuration file.', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  """Runs the pipeline on the parsed flags; a LandmarkError ends it with one line, status 2."""
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  config = FLAGS.config
  if not isinstance(config, ml_collections.ConfigDict):   # the file failed to load
    try:
      config.seed
    except OSError as e:
      print(f'error: --config: {str(e).strip().splitlines()[-1].strip()}', file=sys.stderr)
      sys.exit(2)
  try:
    sharding.initialize(config)   # before the first use of a device
    logging.info('JAX %s, process %d of %d, devices: %s', jax.__version__, jax.process_index(),
                 jax.process_count(), jax.devices())
    pipeline.run(config, _WORKDIR.value, _MODE.value, _OVERWRITE.value)
  except errors.LandmarkError as e:
    if _VERBOSE.value:
      raise
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv):
  """absl's flag parsing, with a config file's own error (a bad `:arg`) in one line.

  ml_collections re-raises a config file's error with its traceback as text; the
  project's error is its last line.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    found = re.findall(r'^landmark\.errors\.\w+: (.*)$', str(e), re.MULTILINE)
    print(f'error: {found[-1] if found else str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)


def run() -> None:
  """The `landmark` console command (pyproject.toml) and main.py."""
  app.run(main, flags_parser=_parse_flags)
