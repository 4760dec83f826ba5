"""The project's own error types: each message is one line, `<file or field>: <problem>`.

`main.py` catches `LandmarkError` and prints `error: <message>` with exit status 2; any
other exception is a bug and keeps its traceback.
"""


class LandmarkError(Exception):
  """A run cannot go on; `where` names the file or config field, `problem` says why."""

  def __init__(self, where, problem=None):
    # One argument is a whole message: ml_collections' config_flags re-raises an error of a
    # config's get_config as type(error)(message).
    if problem is None:
      self.where, self.problem = '', str(where)
      super().__init__(self.problem)
    else:
      self.where, self.problem = str(where), str(problem)
      super().__init__(f'{self.where}: {self.problem}')


class DataError(LandmarkError, ValueError):
  """Bad input data: `where` is the file holding it."""


class ConfigError(LandmarkError, ValueError):
  """A config field that cannot work: `where` is the field (e.g. `config.train.epochs`)."""


class CheckpointError(LandmarkError):
  """No checkpoint of the run can be restored."""


class RunIdentityError(LandmarkError):
  """A workdir's results were made under another config or other data, or it is busy."""


class NumericalError(LandmarkError, FloatingPointError):
  """Training diverged (NaN/inf loss) or a result is meaningless (all scores equal)."""
