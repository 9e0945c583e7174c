"""Round checkpoints through `tff.program.FileProgramStateManager`.

A checkpoint holds the learning process state (flattened to a list of arrays, so any
process state structure saves as a SavedModel) and the loop's own state: the round and
the cumulative bits. Versions are round numbers. Loading falls back to the previous
version when the newest one is unreadable (a kill during its write), so `--resume`
never picks a checkpoint it then fails on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from absl import logging


class CheckpointMismatchError(ValueError):
  """The checkpoint was written by a different model or codec configuration."""


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
        root_dir, prefix="round_", keep_total=keep_total, keep_first=False)

  def versions(self) -> list[int]:
    return sorted(asyncio.run(self._manager.get_versions()) or [])

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
    asyncio.run(self._manager.save(payload, tmp_version))

  def restore(self, template_state):
    """(process_state, LoopState) of the newest readable checkpoint, or None.

    Args:
      template_state: a state of the same process (e.g. `process.initialize()`); its
        structure, shapes and dtypes are what the checkpoint must match.

    Raises:
      CheckpointMismatchError: a readable checkpoint does not fit `template_state`.
    """
    template_flat = tf.nest.flatten(template_state)
    for version in reversed(self.versions()):
      structure = {"process_state": [np.zeros(0)] * len(template_flat), "loop": np.zeros(0)}
      try:
        payload = asyncio.run(self._manager.load(version, structure))
      except Exception as e:  # A partial write: SavedModel incomplete or corrupt.
        logging.warning("checkpoint round_%d unreadable (%s); trying an older one", version, e)
        continue
      flat = payload["process_state"]
      _check_compatible(template_flat, flat, version)
      values = [np.asarray(v, dtype=np.asarray(t).dtype)
                for t, v in zip(template_flat, flat, strict=True)]
      state = tf.nest.pack_sequence_as(template_state, values)
      return state, LoopState(*(int(x) for x in payload["loop"]))
    return None


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
