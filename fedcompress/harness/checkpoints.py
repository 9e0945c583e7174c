"""Round checkpoints through `tff.program.FileProgramStateManager`.

A checkpoint holds the learning process state (flattened to a list of arrays, so any
process state structure saves as a SavedModel) and the loop's own state: the round and
the cumulative bits. Versions are round numbers.

A kill at any moment never leaves a checkpoint that `--resume` picks and then fails on:
TFF writes each version into `round_N_temp<random>` and renames it to `round_N` only
when complete (a rename is atomic), and a directory name that is not `round_<int>` is
not a version. Leftover temporary directories are removed on restore. Should the
newest version still be unreadable (e.g. a damaged disk), loading falls back to the
previous one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import re
import shutil
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.program import file_utils

from fedcompress.harness import cli

_PREFIX = "round_"
# What FileProgramStateManager writes before renaming: f"{path}_temp{random 4 digits}".
_PARTIAL_WRITE = re.compile(r"round_\d+_temp\d+$")


def _run(coroutine):
  """Runs a coroutine to completion, also where an event loop already runs (Jupyter).

  `asyncio.run` refuses to start inside a running loop, which every notebook kernel
  has; there the coroutine runs on its own loop in a worker thread.
  """
  try:
    asyncio.get_running_loop()
  except RuntimeError:
    return asyncio.run(coroutine)
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    return pool.submit(asyncio.run, coroutine).result()


class CheckpointMismatchError(ValueError):
  """The checkpoint was written by a different model or codec configuration."""


class CheckpointUnreadableError(ValueError):
  """Checkpoints exist but none can be read: resuming would start the run over."""


@dataclasses.dataclass
class LoopState:
  round_num: int
  broadcast_cumulative_bits: int
  aggregate_cumulative_bits: int
  broadcast_cumulative_coded_bits: int = 0
  aggregate_cumulative_coded_bits: int = 0

  def as_array(self) -> np.ndarray:
    return np.array(dataclasses.astuple(self), np.int64)


class Checkpointer:
  """Saves and restores (process state, LoopState) under `root_dir`."""

  def __init__(self, root_dir: str, keep_total: int = 3):
    self.root_dir = root_dir
    self._manager = tff.program.FileProgramStateManager(
        root_dir, prefix=_PREFIX, keep_total=keep_total, keep_first=False)

  def versions(self) -> list[int]:
    return sorted(_run(self._manager.get_versions()) or [])

  def remove_partial_writes(self) -> list[str]:
    """Deletes temporary directories of saves that were killed; returns their names."""
    if not os.path.isdir(self.root_dir):
      return []
    partial = sorted(n for n in os.listdir(self.root_dir) if _PARTIAL_WRITE.match(n))
    for name in partial:
      shutil.rmtree(os.path.join(self.root_dir, name), ignore_errors=True)
    return partial

  def save(self, process_state, loop: LoopState) -> None:
    flat = [np.asarray(x) for x in tf.nest.flatten(process_state)]
    payload = {
        "process_state": flat,
        "loop": loop.as_array(),
    }
    tmp_version = loop.round_num
    # FileProgramStateManager refuses to overwrite; a re-run of the same round (after a
    # resume from an older version) replaces the stale directory first.
    stale = os.path.join(self.root_dir, f"round_{tmp_version}")
    if os.path.exists(stale):
      shutil.rmtree(stale)
    _run(self._manager.save(payload, tmp_version))

  def restore(self, template_state, warn: Callable[[str], None] = cli.warn):
    """(process_state, LoopState) of the newest readable checkpoint, or None if none exist.

    An unreadable newest checkpoint (a damaged file) is skipped for an older one, with
    a `warn` line naming it.

    Args:
      template_state: a state of the same process (e.g. `process.initialize()`); its
        structure, shapes and dtypes are what the checkpoint must match.
      warn: called with one line per checkpoint skipped.

    Raises:
      CheckpointMismatchError: a readable checkpoint does not fit `template_state`.
      CheckpointUnreadableError: checkpoints exist and none is readable. Starting over
        from round 1 would discard the run's rows, events and client states, so it is
        not done silently.
    """
    self.remove_partial_writes()
    template_flat = tf.nest.flatten(template_state)
    versions = self.versions()
    unreadable = []
    for version in reversed(versions):
      # Read as saved, without imposing the template's structure (which is all
      # `FileProgramStateManager.load` adds, for `tff.Serializable` values we do not
      # save): a checkpoint that does not fit must be reported as such, not taken for
      # an unreadable one and silently skipped, which would restart the run.
      path = os.path.join(self.root_dir, f"{_PREFIX}{version}")
      try:
        payload = _run(file_utils.read_saved_model(path))
      except Exception as e:  # Incomplete or damaged SavedModel.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        warn(f"checkpoint round_{version} is unreadable ({reason[:200]}); trying an older one")
        unreadable.append(version)
        continue
      if not (isinstance(payload, dict) and set(payload) == {"process_state", "loop"}):
        raise CheckpointMismatchError(
            f"checkpoint round_{version} was not written by fedcompress's Checkpointer")
      flat = [np.asarray(v) for v in payload["process_state"]]
      _check_compatible(template_flat, flat, version)
      state = tf.nest.pack_sequence_as(template_state, flat)
      for skipped in unreadable:
        self._set_aside(skipped, warn)
      return state, LoopState(*(int(x) for x in np.asarray(payload["loop"])))
    if versions:
      raise CheckpointUnreadableError(
          f"none of the {len(versions)} checkpoints in {self.root_dir} can be read "
          f"(round_{', round_'.join(map(str, versions))}); resuming would start over from "
          "round 1 and discard the run's rows: start a new run (another --experiment_name), "
          f"or delete {self.root_dir} to start this one over")
    return None


  def _set_aside(self, version: int, warn: Callable[[str], None]) -> None:
    """Renames unreadable `round_<version>` out of the versions, kept for a look.

    Left as a version, it stayed the run's newest checkpoint by name: a resume
    interrupted before it saved that round again said the unreadable one was kept,
    and the next resume was refused as missing that round's metrics.
    """
    path = os.path.join(self.root_dir, f"{_PREFIX}{version}")
    aside, n = os.path.join(self.root_dir, f"unreadable_{_PREFIX}{version}"), 1
    while os.path.lexists(aside):
      n += 1
      aside = os.path.join(self.root_dir, f"unreadable_{_PREFIX}{version}_{n}")
    try:
      os.rename(path, aside)
    except OSError as e:
      warn(f"could not move the unreadable checkpoint round_{version} aside: "
           f"{e.strerror or e}")
      return
    warn(f"the unreadable checkpoint round_{version} is kept as {aside}")


def _is_text(value) -> bool:
  """A tf.string value: bytes of its own width in a state (`|S22`), objects when read back.

  TFF's DP aggregator keeps the round's DP event in its state, with its name as a
  string, so a DP run's checkpoint holds strings.
  """
  array = np.asarray(value)
  return array.dtype.kind == "S" or (
      array.dtype.kind == "O" and all(isinstance(x, bytes) for x in array.reshape(-1)))


def _check_compatible(template_flat, flat, version: int) -> None:
  if len(flat) != len(template_flat):
    raise CheckpointMismatchError(
        f"checkpoint round_{version} holds {len(flat)} state tensors, this model and codec "
        f"need {len(template_flat)}: it was written by a different model or codec")
  for i, (t, v) in enumerate(zip(template_flat, flat, strict=True)):
    if np.shape(t) != np.shape(v):
      raise CheckpointMismatchError(
          f"checkpoint round_{version} tensor {i} has shape {np.shape(v)}, this model and "
          f"codec need {np.shape(t)}: it was written by a different model or codec")
    if np.asarray(t).dtype != np.asarray(v).dtype and not (_is_text(t) and _is_text(v)):
      raise CheckpointMismatchError(
          f"checkpoint round_{version} tensor {i} is {np.asarray(v).dtype}, this model and "
          f"codec need {np.asarray(t).dtype}: it was written by a different model or codec")
