"""Run identity: what each stage's results were computed from, so no rerun reuses a stale one.

A workdir holds the results of one config on one set of input files. Each stage — `data`,
`train/seed_<s>`, `explain/seed_<s>`, `consensus`, `evaluate` — records in `stages.json`,
when it completes, the config fields and input-file fingerprints its outputs depend on:
its own and those of every stage before it, so a change anywhere upstream shows in every
stage after it. A rerun compares every recorded stage with what the current config and
files give before it writes anything: a stage that matches is reused; one that differs
stops the run with one line naming what changed, or, with `overwrite`, is recomputed
together with everything after it. The AutoEncoder's train identity is also stored in
each orbax checkpoint's metadata, so a run killed during training is checked as well.

Experiments that keep results of their own between invocations (tables per cell of a grid)
record each one's identity in `results.json` beside it (`record_result`) and reuse it only
while `result_is_current`.

A lock file (`.lock`, an advisory `flock` released when the process ends, however it
ends) stops a second run into a busy workdir at once.
"""

import contextlib
import fcntl
import functools
import hashlib
import json
import os
from typing import Any, Iterator, Mapping

import ml_collections

from landmark import fileio
from landmark.errors import RunIdentityError

STAGES_FILE = 'stages.json'
RESULTS_FILE = 'results.json'   # experiments' kept results: name -> identity
LOCK_FILE = '.lock'
MISSING = '<not set>'

# Config fields of each stage (prefixes of dotted names); a stage depends on its own and
# those of every stage before it. Fields that change no result are left out: how often to
# checkpoint or log, memory bounds, devices, the dry run.
_DATA_FIELDS = ('seed', 'data.max_samples', 'data.stream', 'data.chunk_samples',
                'data.shuffle_buffer_chunks', 'data.stream_eval_samples', 'data.study_field',
                'preprocess.')
_TRAIN_FIELDS = ('model.', 'train.')
_TRAIN_NO_EFFECT = ('train.checkpoint_every_epochs', 'train.keep_checkpoints',
                    'train.log_every_epochs')
_EXPLAIN_FIELDS = ('deeplift.',)
_EXPLAIN_NO_EFFECT = ('deeplift.max_chunk_mb',)
_EVALUATE_FIELDS = ('evaluate.', 'dgex.', 'selector', 'selectors.')
# A selector method's panel stage (config.method other than the paper's 'deeplift').
_PANEL_FIELDS = ('method', 'panel.', 'selectors.')
_PANEL_FILES = ('data.l1000_landmarks', 'data.dgex_landmarks', 'data.dgex_targets')
# Input files, by the stage that first reads them: fingerprinted by name, size and content
# (not by path, so a run can be continued from a clone elsewhere).
_DATA_FILES = ('data.studies', 'data.samples_table', 'data.annotation')
_EXPLAIN_FILES = ('data.l1000_landmarks',)
_EVALUATE_FILES = ('data.dgex_landmarks', 'data.dgex_targets', 'data.go_gmt')


# Fields added to the config after runs were recorded, with the value that keeps the
# behaviour those runs had: a record made before a field existed reads as having that
# value, so adding a field does not make every earlier result stale.
ADDED_FIELDS = {'model.study_conditional': False, 'data.study_field': ''}


def matches(recorded: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> bool:
  """Whether a recorded identity is `current` (fields it predates read as ADDED_FIELDS)."""
  if recorded is None or current is None:
    return recorded is None and current is None
  return _upgraded(recorded, current) == current


def differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """'field: recorded -> current' for each field where `recorded` differs from `current`."""
  recorded = _upgraded(recorded, current)
  return [f'{name}: {_show(recorded.get(name, MISSING))} -> {_show(current.get(name, MISSING))}'
          for name in sorted(set(recorded) | set(current))
          if recorded.get(name, MISSING) != current.get(name, MISSING)]


def _upgraded(recorded, current):
  """`recorded` with each ADDED_FIELDS field of `current` it lacks set to its old value."""
  return {**{field: value for field, value in ADDED_FIELDS.items()
             if field in current and field not in recorded}, **recorded}


def flatten(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Dotted field name -> JSON value (tuples as lists) of every leaf of `config`."""
  flat = {}

  def visit(node: Mapping[str, Any], prefix: str) -> None:
    for key, value in node.items():
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        visit(value, f'{prefix}{key}.')
      else:
        flat[f'{prefix}{key}'] = json.loads(json.dumps(value))

  visit(config.to_dict(), '')
  return flat


def file_fingerprint(path: str) -> str:
  """'<name> <bytes> sha256:<first 16 hex digits>' of a file; 'absent' if there is none."""
  if not path:
    return ''
  if not os.path.isfile(path):
    return 'absent'
  stat = os.stat(path)
  return _fingerprint(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _fingerprint(path, size, mtime_ns):
  """Hashes a file once per (path, size, mtime): grids ask for the same inputs many times."""
  del mtime_ns   # part of the cache key only
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 22), b''):
      digest.update(block)
  return f'{os.path.basename(path)} {size} sha256:{digest.hexdigest()[:16]}'


def _select(flat, prefixes, excluded=()):
  return {k: v for k, v in flat.items()
          if any(k == p or (p.endswith('.') and k.startswith(p)) for p in prefixes)
          and k not in excluded}


class RunIdentity:
  """The identity of every stage of `config`'s run, and the records of a workdir."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.workdir = workdir
    flat = flatten(config)
    self._data = {**_select(flat, _DATA_FIELDS), **_files(flat, _DATA_FILES)}
    self._train = _select(flat, _TRAIN_FIELDS, _TRAIN_NO_EFFECT)
    self._explain = {**_select(flat, _EXPLAIN_FIELDS, _EXPLAIN_NO_EFFECT),
                     **_files(flat, _EXPLAIN_FILES)}
    self._evaluate = {**_select(flat, _EVALUATE_FIELDS), **_files(flat, _EVALUATE_FILES)}
    self._panel = {**_select(flat, _PANEL_FIELDS), **_files(flat, _PANEL_FILES)}
    self.designs_panel = config.method != 'deeplift'   # a selector method: no AutoEncoder
    self.seeds = list(range(config.seed, config.seed + config.seeds))

  def stages(self) -> list[str]:
    """Every stage of the run, in order: a selector method's data, panel, evaluate; the
    paper's data, train and explain per seed, consensus, evaluate."""
    if self.designs_panel:
      return ['data', 'panel', 'evaluate']
    return (['data'] + [f'train/seed_{s}' for s in self.seeds]
            + [f'explain/seed_{s}' for s in self.seeds] + ['consensus', 'evaluate'])

  def identity(self, stage: str) -> dict[str, Any]:
    """The fields and file fingerprints that determine `stage`'s results."""
    if stage == 'data':
      return dict(self._data)
    if self.designs_panel and stage in ('panel', 'evaluate'):
      panel = {**self._data, **self._panel}
      return panel if stage == 'panel' else {**panel, **self._evaluate}
    kind, _, seed = stage.partition('/seed_')
    if kind == 'train':
      return {**self._data, **self._train, 'model_seed': int(seed)}
    if kind == 'explain':
      return {**self.identity(f'train/seed_{seed}'), **self._explain}
    if stage == 'consensus':
      return {**self._data, **self._train, **self._explain, 'model_seeds': self.seeds}
    if stage == 'evaluate':
      return {**self.identity('consensus'), **self._evaluate}
    raise ValueError(f'unknown stage {stage!r}')

  def records(self) -> dict[str, dict[str, Any]]:
    """The identities recorded in the workdir (`stages.json`) by the stages that completed."""
    return records(self.workdir)

  def is_current(self, stage: str) -> bool:
    """Whether `stage`'s recorded identity equals what it is now: its results can be reused."""
    return matches(self.records().get(stage), self.identity(stage))

  def changes(self, stage: str, recorded: dict[str, Any]) -> list[str]:
    """'field: recorded -> current' for each field where `recorded` differs from now."""
    return differences(recorded, self.identity(stage))

  def stale(self, checkpoint_identities: dict[str, dict[str, Any] | None]) -> dict[str, list[str]]:
    """Stages whose results in the workdir were made under another identity: stage -> changes.

    `checkpoint_identities` maps `train/seed_<s>` to the identity in that seed's newest
    checkpoint (None for a checkpoint from before run identities), for seeds with one.
    """
    stale = {}
    for stage, recorded in self.records().items():
      if stage not in self.stages():
        stale[stage] = ['it is not a stage of this config (config.method, config.seed, '
                         'config.seeds)']
      elif not matches(recorded, self.identity(stage)):
        stale[stage] = self.changes(stage, recorded)
    for stage, recorded in checkpoint_identities.items():
      if stage not in stale and not matches(recorded, self.identity(stage)):
        stale[stage] = (self.changes(stage, recorded) if recorded is not None
                        else ['its checkpoints carry no run identity (an older version made them)'])
    return stale

  def check(self, checkpoint_identities: dict[str, dict[str, Any] | None], overwrite: bool
            ) -> dict[str, list[str]]:
    """Raises RunIdentityError naming what changed if any result is stale, unless `overwrite`.

    With `overwrite`, returns the stale stages (a change upstream makes every stage after
    it stale too), for the caller to `forget` and recompute.
    """
    stale = self.stale(checkpoint_identities)
    if not stale:
      return {}
    stage, changes = next(iter(stale.items()))
    if not overwrite:
      more = f' and {len(changes) - 1} more' if len(changes) > 1 else ''
      raise RunIdentityError(
          self.workdir, f'its {stage} results were made under another config or other data '
          f'({changes[0]}{more}); rerun with --overwrite to recompute them and what follows, '
          'or use another --workdir')
    return stale

  def mark_done(self, stage: str) -> None:
    """Records that `stage` completed under the current identity."""
    self._write({**self.records(), stage: self.identity(stage)})

  def forget(self, stages: list[str]) -> None:
    """Drops the records of `stages`: their results are no longer current."""
    self._write({s: r for s, r in self.records().items() if s not in stages})

  def _write(self, records):
    fileio.write_text(os.path.join(self.workdir, STAGES_FILE), json.dumps(records, indent=1))


def records(workdir: str) -> dict[str, dict[str, Any]]:
  """The identities recorded in `workdir` (`stages.json`) by the stages that completed."""
  return read_records(os.path.join(workdir, STAGES_FILE),
                       'remove it and rerun with --overwrite')


def read_records(path: str, remedy: str) -> dict[str, Any]:
  """The JSON object of identities in `path` ({} if there is none); RunIdentityError, naming
  the file and `remedy`, if it is unreadable."""
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise RunIdentityError(path, f'unreadable ({e}); {remedy}') from None


def digest(identity: dict[str, Any]) -> str:
  """A short hash of a stage identity: what a result saved outside stages.json records, so a
  later reader can tell whether the stage that made it is still the workdir's current one."""
  text = json.dumps(identity, sort_keys=True)
  return 'sha256:' + hashlib.sha256(text.encode()).hexdigest()[:16]


def results_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What an experiment's results from `config`'s run depend on: every stage's fields and
  files (`evaluate`'s identity) except `evaluate.models`, as each model's results are kept
  apart."""
  identity = RunIdentity(config, '').identity('evaluate')
  del identity['evaluate.models']
  return identity


def result_is_current(directory: str, name: str, identity: Mapping[str, Any]) -> bool:
  """Whether file `name` in `directory` (an experiment's kept result, skipped on rerun)
  exists and is recorded (`results.json`) as made under `identity` (`matches`); one with no
  record is not."""
  if not os.path.exists(os.path.join(directory, name)):
    return False
  return matches(_results_recorded(directory).get(name), identity)


def _results_recorded(directory):
  """Kept result name -> the identity it was made under (`results.json` in `directory`)."""
  return read_records(os.path.join(directory, RESULTS_FILE),
                       'remove it to recompute its results')


def record_result(directory: str, name: str, identity: Mapping[str, Any]) -> None:
  """Records file `name` in `directory` as made under `identity`; call after writing it."""
  recorded = _results_recorded(directory)
  recorded[name] = dict(identity)
  fileio.write_text(os.path.join(directory, RESULTS_FILE),
                    json.dumps(recorded, indent=1, sort_keys=True))


def _files(flat, fields):
  """'file:<field>[i]' -> fingerprint of each input file named by `fields`."""
  files = {}
  for field in fields:
    paths = flat[field]
    if isinstance(paths, str):
      files[f'file:{field}'] = file_fingerprint(paths)
    else:
      files.update({f'file:{field}[{i}]': file_fingerprint(p) for i, p in enumerate(paths)})
  return files


def _show(value):
  text = value if isinstance(value, str) and value else json.dumps(value)
  return text if len(text) <= 80 else text[:77] + '...'


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds `<workdir>/.lock` for the duration; a second holder stops at once with one line."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  with open(path, 'a+') as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or 'another process'
      raise RunIdentityError(workdir, f'another run ({holder}) is using this workdir; wait for '
                             'it to finish or use another --workdir') from None
    handle.seek(0)
    handle.truncate()
    handle.write(f'pid {os.getpid()}')
    handle.flush()
    try:
      yield
    finally:
      handle.seek(0)
      handle.truncate()
      fcntl.flock(handle, fcntl.LOCK_UN)
