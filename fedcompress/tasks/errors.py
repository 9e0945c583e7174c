"""Errors shared by the task loaders.

Binaries catch these and print one line instead of a traceback, so a user who is offline
learns which flag to set rather than reading a urllib stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

# TensorFlow's errors from a graph open with boilerplate and the Python stack of the node
# that failed ("Graph execution error:", "Detected at node ...", indented "File" lines);
# the cause is the first line after them.
_BOILERPLATE = ("Graph execution error:", "Detected at node", "<stack traces unavailable>")
# What a damaged record or database says (TensorFlow's parse ops, sqlite).
_DAMAGE_WORDS = ("parse", "malformed", "corrupt", "sqlite", "database", "truncated")


def error_cause(error: BaseException) -> str:
  """The line of `error`'s message that says what went wrong."""
  text = str(getattr(error, "message", None) or error)
  for line in text.splitlines():
    if line.strip() and not line[0].isspace() and not line.startswith(_BOILERPLATE):
      return line.strip()
  return text.strip().splitlines()[0] if text.strip() else ""


class DataReadError(Exception):
  """Reading a dataset's examples, or evaluating on them, failed on the driver.

  Loading reads only a file's client list, so a damaged example page is met where the
  examples are read: inside TFF's worker for the clients (a round's one-line failure),
  or on the driver for the test split (the evaluation, a sanity check), where
  TensorFlow's error was a traceback. The message says a damaged file fails this way
  only when the error is one (a record that does not parse, bytes that are not UTF-8,
  TensorFlow's DataLossError, a malformed database); another error there, such as
  labels the model does not have, is said as what it is.
  """

  def __init__(self, what: str, cause: BaseException):
    line = error_cause(cause)[:300]
    # By class name: importing TensorFlow here would load it for every flag check.
    damaged = (isinstance(cause, UnicodeDecodeError)
               or any(c.__name__ == "DataLossError" for c in type(cause).__mro__)
               or any(word in line.lower() for word in _DAMAGE_WORDS))
    if damaged:
      super().__init__(f"{what} could not read its data ({type(cause).__name__}: {line}): "
                       "a damaged dataset file fails this way; replace it, or point "
                       "--cache_dir at a good copy")
    else:
      super().__init__(f"{what} failed ({type(cause).__name__}: {line})")


class DatasetUnavailableError(Exception):
  """A dataset is neither in the cache directory nor downloadable."""

  def __init__(self, dataset: str, cache_dir: str | None, expected_file: str,
               cause: BaseException | None = None, present: bool = False,
               splits: list[str] | None = None):
    self.dataset = dataset
    self.cache_dir = cache_dir
    self.expected_file = expected_file
    self.cause = cause
    # `--cache_dir=` is the working directory to TFF: name it.
    where = (os.path.abspath(cache_dir or os.curdir) if cache_dir is not None
             else "TFF's default cache (~/.tff)")
    reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    if splits is not None:  # A good database, of other clients than those asked for.
      message = (f"{dataset}: {expected_file} in {where} holds no client of the split "
                 f"asked for (it has {', '.join(splits) or 'no split'}): it is another "
                 f"dataset's or variant's file; put TFF's {expected_file} there, or point "
                 "--cache_dir at a folder that has it.")
    elif present:  # TFF never downloads over a file that is there, damaged or not.
      message = (f"{dataset}: {expected_file} in {where} is there but cannot be read{reason}: "
                 "delete or replace it, or point --cache_dir at a folder with a good copy.")
    else:
      message = (f"{dataset} is not cached and could not be downloaded{reason}: put "
                 f"{expected_file} in {where} or point --cache_dir at a folder that has it.")
    super().__init__(message)


def _splits(path: str) -> list[str]:
  """The split names of one of TFF's sqlite databases (empty if it cannot be read)."""
  import sqlite3

  try:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
      return sorted(r[0] for r in db.execute("SELECT DISTINCT split_name FROM client_metadata"))
  except sqlite3.Error:
    return []


def check_cache_dir(cache_dir: str | os.PathLike[str] | None, expected_file: str) -> None:
  """Raises ValueError if `cache_dir` exists but is not a folder (e.g. the sqlite itself)."""
  if cache_dir is not None and os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
    raise ValueError(f"--cache_dir {os.fspath(cache_dir)} is a file, not a folder: point it "
                     f"at the folder that holds (or is to hold) {expected_file}")


def cached_path(cache_dir: str | os.PathLike[str] | None, expected_file: str) -> str:
  """Where TFF's loader reads `expected_file`: `cache_dir`, or TFF's default `~/.tff`."""
  where = (os.path.expanduser(os.fspath(cache_dir)) if cache_dir is not None
           else os.path.join(os.path.expanduser("~"), ".tff"))
  return os.path.join(where, expected_file)


def file_fingerprint(path: str, *, whole: bool = False) -> str | None:
  """`<size>:<sha256>` of a file a run starts from, None if it cannot be read.

  What a run records of its dataset or pretrained model, so that a resume is tied to
  the file's content, not its path. The sha256 is of the first and last MiB (`whole`:
  of all of it): the ends and the size tell TFF's sqlite files apart in milliseconds,
  where hashing all of federated EMNIST would take seconds; a retrained model of the
  same size may differ only between them, so models are hashed whole.
  """
  try:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      if whole:
        digest = hashlib.file_digest(f, "sha256")
      else:
        digest = hashlib.sha256(f.read(_FINGERPRINT_BYTES))
        f.seek(max(0, size - _FINGERPRINT_BYTES))
        digest.update(f.read(_FINGERPRINT_BYTES))
  except OSError:
    return None
  return f"{size}:{digest.hexdigest()}"


_FINGERPRINT_BYTES = 2**20


# What a run records of its pretrained model (`rundir.PRETRAINED_DIGEST`) since it is
# taken by its weights (`shakespeare.pretrained_fingerprint`); runs recorded before hold
# the file's `file_fingerprint`.
PRETRAINED_FINGERPRINT_PREFIX = "weights:"


def weights_fingerprint(arrays: Any, architecture: Any = None) -> str:
  """`<arrays>:<sha256>` over each array's dtype, shape and values in order (and, given,
  the JSON of `architecture`): what a run records of the weights it starts from, the
  same however they were made or saved (a `.keras` file holds Python object ids and the
  time it was saved, so the same weights saved twice were two files)."""
  import numpy as np  # Not at import: the task loaders' errors need none.

  digest = hashlib.sha256()
  if architecture is not None:
    digest.update(json.dumps(architecture, sort_keys=True, default=repr).encode())
  arrays = [np.asarray(a) for a in arrays]
  for a in arrays:
    digest.update(f"{a.dtype.str}{a.shape};".encode())
    digest.update(np.ascontiguousarray(a).tobytes())
  return f"{len(arrays)}:{digest.hexdigest()}"


def load_cached(load: Callable[[str | None], Any], dataset: str,
                cache_dir: str | os.PathLike[str] | None, expected_file: str,
                unavailable: tuple[type[BaseException], ...]) -> Any:
  """`load(cache_dir)` through one of TFF's loaders, which download what is not cached.

  `~` in `cache_dir` is expanded (TFF would make a folder named `~`), and the path made
  absolute: a client's dataset opens the file where it runs, and a remote worker runs
  in its own directory (a relative path ended every worker). A download cut
  short, by an error or by Ctrl-C, leaves a partial file that TFF would take for a
  cached copy from then on: a file that was not there before the call is removed when
  the call fails. The exceptions in `unavailable` become `DatasetUnavailableError`.
  """
  cache_dir = (None if cache_dir is None
               else os.path.abspath(os.path.expanduser(os.fspath(cache_dir))))
  check_cache_dir(cache_dir, expected_file)
  expected = cached_path(cache_dir, expected_file)
  existed = os.path.exists(expected)
  try:
    return load(cache_dir)
  except BaseException as e:
    if not existed and os.path.exists(expected):
      os.remove(expected)
    if isinstance(e, StopIteration) and existed:
      # TFF's sqlite loader finds no first client: the file is a database, but of no
      # client of the split it reads (EMNIST digits only for all 62 classes, or one
      # dataset's file under the other's name). Deleting it would not help.
      raise DatasetUnavailableError(dataset, cache_dir, expected_file, e, present=True,
                                    splits=_splits(expected)) from e
    if isinstance(e, unavailable) and not isinstance(e, DatasetUnavailableError):
      raise DatasetUnavailableError(dataset, cache_dir, expected_file, e,
                                    present=existed) from e
    raise
