"""Replacing a run's record file so that a crash or power loss leaves old or new, whole.

`os.replace` of a freshly written temporary file is atomic for other processes, but
without fsync a power loss can leave the new name pointing at a file whose data never
reached the disk (an empty `run_info.json`, a truncated `metrics.csv`): the file's data
must be durable before the rename, and the rename itself (the directory) after it.
"""

from __future__ import annotations

import json
import os
from typing import Any


def _fsync(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def replace(tmp: str, path: str) -> None:
  """Moves the written and closed file `tmp` onto `path`, durably."""
  _fsync(tmp)
  os.replace(tmp, path)
  _fsync(os.path.dirname(os.path.abspath(path)))


def write_json(path: str, value: Any, **dump_options: Any) -> None:
  """Writes `value` as JSON (`json.dump`'s `dump_options`) to `path`, whole or not at all."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, **dump_options)
    f.write("\n")
  replace(tmp, path)
