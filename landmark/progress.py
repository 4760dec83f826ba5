"""Progress lines for long loops: how long the items left will take."""

import datetime
import time


def eta(started: float, done: int, total: int) -> str:
  """', ETA <h:mm:ss>' for the `total - done` items left, from the mean time of the `done`
  ones since `started` (time.monotonic); '' before the first is done or after the last."""
  if not 0 < done < total:
    return ''
  left = (time.monotonic() - started) / done * (total - done)
  return f', ETA {datetime.timedelta(seconds=round(left))}'
