"""Per-client state kept on disk in the run directory, versioned by round.

Some methods need memory on a client between its participations: error feedback keeps
the part of its update the codec lost (`fedcompress.federated.error_feedback`). In a
simulation of 3,400 EMNIST clients with the 1.66M-parameter CNN that memory is 22 GB of
float32, so it cannot live in the driver. `ClientStateStore` keeps it on disk:

* A client's state is one flat float32 vector of a fixed size. It is created (zeros)
  the first time the client is sampled; nothing is written for a client never sampled,
  so the files grow with the clients seen, not with the population.
* Each version is one file per (client, round): `<dir>/c_<client>.r<round>.pb`, a
  serialized `TensorProto` (`tf.io.serialize_tensor`).
* The driver never holds the states. The process reads and writes them itself, in the
  TFF worker that trains the client (`ClientStateProcess.next_files`): the loop passes
  each sampled client's read path (its newest version written before the round, or ""
  for zeros) and the path of the version to write. Passing
  the vectors through the driver instead cost its memory about seven copies of a
  round's states (serialization into TFF's values and gRPC, both ways): 1.5x the peak
  RSS of the same run without client state at 10 clients of the 1.66M-parameter CNN.
  The paths are absolute (a worker's working directory is its own); with remote
  workers on other machines the run directory must therefore be shared at the same
  path (NFS).
* Versions make the store consistent with the round checkpoints: a read for round r
  takes the client's newest version written before r. On `--resume` from checkpoint
  round R, every version written after R (by rounds the resume redoes, including a
  file a kill left half-written) is deleted, so the redone rounds read exactly what
  they read the first time. After a round the driver checks each written file's size,
  fsyncs it and its directory (`commit`, `sync`) before the round's checkpoint is
  saved. After every round, versions that neither the next round nor a resume from a
  kept checkpoint reads are deleted (`collect_garbage`).

Why plain files rather than an embedded store (sqlite, LMDB, zarr): a state is written
and read whole, once per participation, by a TensorFlow op in the worker; `tf.io`
reads and writes files on every file system TensorFlow knows and needs nothing else.
The cost is one inode per (client, version): with garbage collection, per client seen,
its newest version and the newest at or before each kept checkpoint.

Nothing here imports TFF. `read` and `write` (Python, whole vectors) are for tests,
tools and processes that run without TFF.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

_FILE = re.compile(r"^c_(?P<client>.+)\.r(?P<round>\d+)\.pb$")
_TEMP_PREFIX = ".tmp-"


def _file_name(client_id: str, round_num: int) -> str:
  # Quoted so any client id (with '/', '.', spaces...) is one safe file name.
  return f"c_{urllib.parse.quote(client_id, safe='')}.r{round_num}.pb"


def _serialize(value: np.ndarray) -> bytes:
  # The bytes `tf.io.serialize_tensor` writes in the worker: dtype, shape, content.
  return tf.make_tensor_proto(value).SerializeToString()


def _parse(data: bytes) -> np.ndarray:
  return tf.make_ndarray(tensor_pb2.TensorProto.FromString(data))


def saved_versions(directory: str) -> dict[str, list[int]]:
  """client id -> the sorted rounds of its versions in `directory` ({} if there is none),
  read without opening a store (which would create the folder)."""
  versions: dict[str, list[int]] = {}
  for name in os.listdir(directory) if os.path.isdir(directory) else ():
    if match := _FILE.match(name):
      versions.setdefault(urllib.parse.unquote(match["client"]), []).append(
          int(match["round"]))
  for rounds in versions.values():
    rounds.sort()
  return versions


class ClientStateStore:
  """Versioned per-client float32 vectors in one directory (see the module docstring)."""

  def __init__(self, directory: str, size: int, dtype: np.dtype | type = np.float32):
    """Opens (creating if missing) the store in `directory`.

    Args:
      directory: where the state files live, e.g. `<run_dir>/client_states`.
      size: elements of every client's state vector.
      dtype: element type of the vectors.
    """
    if size < 1:
      raise ValueError(f"client state size must be >= 1, got {size}")
    # Absolute: the worker that opens the files may run in another directory.
    self.directory = os.path.abspath(directory)
    self.size = int(size)
    self.dtype = np.dtype(dtype)
    os.makedirs(directory, exist_ok=True)
    # Killed writes leave temporary files; they never became a version.
    for name in os.listdir(directory):
      if name.startswith(_TEMP_PREFIX):
        os.remove(os.path.join(directory, name))
    # client id -> sorted rounds with a version on disk. Small: ids and ints only.
    self._versions = saved_versions(directory)
    self._file_bytes = len(_serialize(np.zeros(self.size, self.dtype)))

  def _path(self, client_id: str, round_num: int) -> str:
    return os.path.join(self.directory, _file_name(client_id, round_num))

  def clients_seen(self) -> list[str]:
    """Ids of the clients with a state on disk."""
    return sorted(c for c, rounds in self._versions.items() if rounds)

  def versions(self, client_id: str) -> list[int]:
    """Rounds after which `client_id`'s state was written (oldest first)."""
    return list(self._versions.get(client_id, ()))

  def read_path(self, client_id: str, round_num: int) -> str:
    """The file `client_id` starts round `round_num` with: its newest version written
    before that round, or "" for a client not seen before (its state is zeros).

    Raises:
      ValueError: the file does not hold a vector of this store's size and dtype.
    """
    earlier = [r for r in self._versions.get(client_id, ()) if r < round_num]
    if not earlier:
      return ""
    path = self._path(client_id, earlier[-1])
    # Another model's state would fail inside the worker with TensorFlow's message.
    if os.path.getsize(path) != self._file_bytes:
      with open(path, "rb") as f:
        value = _parse(f.read())
      raise ValueError(f"client state {path} holds {value.dtype}{list(value.shape)}, "
                       f"this run needs {self.dtype}[{self.size}]: written by another "
                       "model")
    return path

  def write_path(self, client_id: str, round_num: int) -> str:
    """Where the process writes `client_id`'s state after round `round_num`."""
    return self._path(client_id, round_num)

  def commit(self, client_id: str, round_num: int) -> None:
    """Records the version the process wrote at `write_path` (checked and fsynced).

    Raises:
      ValueError: the file is missing or not of this store's size (a process that did
        not write it, or wrote another shape).
    """
    path = self._path(client_id, round_num)
    try:
      size = os.path.getsize(path)
    except FileNotFoundError:
      raise ValueError(f"the process did not write client state {path}") from None
    if size != self._file_bytes:
      raise ValueError(f"client state {path} has {size} bytes, a float32[{self.size}] "
                       f"has {self._file_bytes}")
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)
    self._add_version(client_id, round_num)

  def read(self, client_id: str, round_num: int) -> np.ndarray:
    """The state `client_id` starts round `round_num` with, as a vector (zeros if new)."""
    path = self.read_path(client_id, round_num)
    if not path:
      return np.zeros(self.size, self.dtype)
    with open(path, "rb") as f:
      return _parse(f.read())

  def write(self, client_id: str, round_num: int, value: np.ndarray) -> None:
    """Stores `client_id`'s state after round `round_num` (atomically)."""
    value = np.asarray(value, self.dtype).reshape(-1)
    if value.shape != (self.size,):
      raise ValueError(f"client state of {client_id!r} has {value.size} elements, the store "
                       f"holds {self.size}")
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=self.directory)
    try:
      with os.fdopen(fd, "wb") as f:
        f.write(_serialize(value))
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, self._path(client_id, round_num))
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
    self._add_version(client_id, round_num)

  def _add_version(self, client_id: str, round_num: int) -> None:
    rounds = self._versions.setdefault(client_id, [])
    if round_num not in rounds:
      rounds.append(round_num)
      rounds.sort()

  def sync(self) -> None:
    """Makes the renames of the writes so far durable (fsync of the directory)."""
    fd = os.open(self.directory, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)

  def _remove(self, client_id: str, rounds: Iterable[int]) -> None:
    kept = self._versions.get(client_id, [])
    for r in list(rounds):
      try:
        os.remove(self._path(client_id, r))
      except FileNotFoundError:
        pass
      kept.remove(r)

  def discard_after(self, round_num: int) -> None:
    """Deletes every version written after `round_num` (a resume from that round)."""
    for client, rounds in self._versions.items():
      self._remove(client, [r for r in rounds if r > round_num])

  def collect_garbage(self, kept_checkpoints: Sequence[int]) -> None:
    """Deletes the versions that neither the running loop nor a resume from one of
    `kept_checkpoints` reads.

    Per client, its newest version is kept (the next round reads it) and the newest at
    or before each kept checkpoint (a resume from it reads that one). Every version after
    the oldest checkpoint was kept before: 78 files where a 9-round run with checkpoints
    at 3, 6 and 9 needed 54, and ~1,500 (9.4 GiB of CNN states) for 60 needed in 200
    digits rounds with a checkpoint every 50.
    """
    for client, rounds in self._versions.items():
      keep = {rounds[-1]} if rounds else set()
      for checkpoint in kept_checkpoints:
        older = [r for r in rounds if r <= checkpoint]
        if older:
          keep.add(older[-1])
      self._remove(client, [r for r in rounds if r not in keep])

  def disk_bytes(self) -> int:
    """Bytes of all state files."""
    return sum(os.path.getsize(self._path(c, r))
               for c, rounds in self._versions.items() for r in rounds)
