"""The client-state store, and the round loop with client state (fake process, no TFF)."""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.harness.checkpoints import Checkpointer
from fedcompress.harness.client_state import ClientStateStore
from fedcompress.harness.loop import LoopConfig, run_loop, sample_clients


def test_state_is_zeros_until_written_and_no_file_for_unseen_clients(tmp_path):
  store = ClientStateStore(str(tmp_path / "s"), 4)
  np.testing.assert_array_equal(store.read("a", 1), np.zeros(4, np.float32))
  assert os.listdir(tmp_path / "s") == [] and store.clients_seen() == []
  store.write("a", 1, np.arange(4))
  assert store.clients_seen() == ["a"]
  assert os.listdir(tmp_path / "s") == ["c_a.r1.pb"]


def test_reads_the_newest_version_before_the_round(tmp_path):
  store = ClientStateStore(str(tmp_path), 2)
  store.write("a", 1, [1, 1])
  store.write("a", 3, [3, 3])
  np.testing.assert_array_equal(store.read("a", 1), [0, 0])  # round 1 starts from zeros
  np.testing.assert_array_equal(store.read("a", 2), [1, 1])
  np.testing.assert_array_equal(store.read("a", 3), [1, 1])
  np.testing.assert_array_equal(store.read("a", 4), [3, 3])
  assert store.versions("a") == [1, 3]
  # The read paths a process gets: "" for zeros, else the file TensorFlow parses.
  assert store.read_path("a", 1) == ""
  path = store.read_path("a", 4)
  assert path == store.write_path("a", 3)
  np.testing.assert_array_equal(tf.io.parse_tensor(tf.io.read_file(path), tf.float32), [3, 3])


def test_commit_takes_what_the_process_wrote_and_refuses_what_it_did_not(tmp_path):
  store = ClientStateStore(str(tmp_path), 3)
  path = store.write_path("a", 2)
  with pytest.raises(ValueError, match="did not write client state"):
    store.commit("a", 2)
  tf.io.write_file(path, tf.io.serialize_tensor(tf.constant([1.0, 2.0])))
  with pytest.raises(ValueError, match=r"a float32\[3\] has"):
    store.commit("a", 2)
  assert store.versions("a") == []
  tf.io.write_file(path, tf.io.serialize_tensor(tf.constant([1.0, 2.0, 3.0])))
  store.commit("a", 2)
  assert store.versions("a") == [2]
  np.testing.assert_array_equal(store.read("a", 3), [1, 2, 3])


def test_persisted_across_reopen_with_odd_ids_and_temp_files_dropped(tmp_path):
  store = ClientStateStore(str(tmp_path), 3)
  store.write("f0/../x y", 2, [1, 2, 3])
  (tmp_path / ".tmp-killed").write_bytes(b"torn")
  reopened = ClientStateStore(str(tmp_path), 3)
  assert reopened.clients_seen() == ["f0/../x y"]
  np.testing.assert_array_equal(reopened.read("f0/../x y", 5), [1, 2, 3])
  assert not (tmp_path / ".tmp-killed").exists()
  assert reopened.disk_bytes() == os.path.getsize(next(tmp_path.glob("c_*.pb")))


def test_discard_after_and_garbage_collection(tmp_path):
  store = ClientStateStore(str(tmp_path), 1)
  for r in (1, 2, 4, 6):
    store.write("a", r, [r])
  store.write("b", 3, [3])
  store.discard_after(4)  # a resume from checkpoint 4 redoes round 6
  assert store.versions("a") == [1, 2, 4]
  store.collect_garbage([3])  # the only kept checkpoint is round 3
  assert store.versions("a") == [2, 4] and store.versions("b") == [3]
  np.testing.assert_array_equal(store.read("a", 4), [2])
  assert sorted(os.listdir(tmp_path)) == ["c_a.r2.pb", "c_a.r4.pb", "c_b.r3.pb"]


def test_garbage_collection_keeps_what_each_kept_checkpoint_and_the_next_round_read(tmp_path):
  # Everything after the oldest kept checkpoint was kept: versions 5 and 7 here, read by
  # no resume (from 3, 6 or 9) and not by the next round.
  store = ClientStateStore(str(tmp_path), 1)
  for r in (1, 2, 3, 5, 6, 7, 9):
    store.write("a", r, [r])
  store.write("b", 8, [8])
  store.collect_garbage([3, 6, 9])
  assert store.versions("a") == [3, 6, 9] and store.versions("b") == [8]
  # What a resume from 3 and from 6 reads, and the round after 9: unchanged.
  for round_num, version in ((4, 3), (7, 6), (10, 9)):
    np.testing.assert_array_equal(store.read("a", round_num), [version])


def test_wrong_sizes_are_refused(tmp_path):
  store = ClientStateStore(str(tmp_path), 3)
  with pytest.raises(ValueError, match="has 2 elements, the store holds 3"):
    store.write("a", 1, [1, 2])
  store.write("a", 1, [1, 2, 3])
  with pytest.raises(ValueError, match=r"holds float32\[3\], this run needs float32\[4\]"):
    ClientStateStore(str(tmp_path), 4).read("a", 2)


@dataclasses.dataclass
class _Output:
  state: dict
  metrics: dict
  client_states: list


class _CountingProcess:
  """Each client's state counts its participations; the model sums the counts seen."""

  def initialize(self):
    return {"w": np.zeros(1, np.float32)}

  def next_files(self, state, data, read_paths, write_paths):
    # What a TFF process does in its workers: read each state file (or zeros), write the
    # new one.
    new = [(tf.io.parse_tensor(tf.io.read_file(p), tf.float32).numpy() if p
            else np.zeros(1, np.float32)) + 1 for p in read_paths]
    for value, path in zip(new, write_paths, strict=True):
      tf.io.write_file(path, tf.io.serialize_tensor(value))
    total = state["w"] + sum(float(s[0]) for s in new)
    return _Output({"w": total}, {"broadcast/bits": 1, "aggregate/bits": 1}, new)

  def get_model_weights(self, state):
    return state["w"]


class _VersionsAtStart:
  """Reporter that records, when the loop starts, the rounds of every state file."""

  def __init__(self, directory):
    self.directory = directory
    self.rounds = None

  def start(self, first, total):
    # File names end in `.r<round>.pb` (client_state._file_name).
    self.rounds = {int(name.rsplit(".r", 1)[1][:-3]) for name in os.listdir(self.directory)
                   if name.endswith(".pb")}

  def write(self, row):
    pass

  def close(self):
    pass


class _StopAfter:
  """Reporter that fails once round `n` has run (its client states are written)."""

  def __init__(self, n):
    self.n = n

  def start(self, first, total):
    pass

  def write(self, row):
    if row["round"] == self.n:
      raise KeyboardInterrupt

  def close(self):
    pass


class _StateFilesPerRound:
  """Reporter that counts the state files on disk as each round's row is written."""

  def __init__(self, directory):
    self.directory = directory
    self.counts = []

  def start(self, first, total):
    pass

  def write(self, row):
    self.counts.append(sum(name.endswith(".pb") for name in os.listdir(self.directory)))

  def close(self):
    pass


def _run(tmp_path, name, rounds, resume=False, reporters=(), rounds_per_checkpoint=2):
  store = ClientStateStore(str(tmp_path / name / "states"), 1)
  return run_loop(_CountingProcess(), [f"c{i}" for i in range(6)], lambda c, r: c,
                  LoopConfig(rounds=rounds, clients_per_round=2, seed=3,
                             rounds_per_checkpoint=rounds_per_checkpoint),
                  checkpointer=Checkpointer(str(tmp_path / name / "ckpt")),
                  resume=resume, reporters=reporters, client_states=store), store


def test_loop_interrupted_after_client_writes_resumes_to_the_same_states(tmp_path):
  full, full_store = _run(tmp_path, "full", 7)
  with pytest.raises(KeyboardInterrupt):
    _run(tmp_path, "cut", 7, reporters=[_StopAfter(5)])  # round 5 ran, checkpoint is 4
  at_start = _VersionsAtStart(tmp_path / "cut" / "states")
  resumed, store = _run(tmp_path, "cut", 7, resume=True, reporters=[at_start])
  assert resumed.start_round == 5
  # Round 5's states were written before the kill; the resume drops them before redoing it.
  assert 5 not in at_start.rounds and 4 in at_start.rounds
  np.testing.assert_array_equal(resumed.state["w"], full.state["w"])
  for client in full_store.clients_seen():
    np.testing.assert_array_equal(store.read(client, 8), full_store.read(client, 8))
  # Only versions a resume from a kept checkpoint (3: rounds 4, 6, 7) could read are
  # left: per client, its newest version at or before each of them (7: its newest).
  clients = [f"c{i}" for i in range(6)]
  rounds = {c: [r for r in range(1, 8) if c in sample_clients(clients, 2, 3, r)]
            for c in clients}
  expected = {c: sorted({[r for r in rs if r <= k][-1] for k in (4, 6, 7)
                         if any(r <= k for r in rs)})
              for c, rs in rounds.items() if rs}
  assert sum(len(rs) for rs in rounds.values()) > sum(len(v) for v in expected.values())
  for kept in (store, full_store):
    assert {c: kept.versions(c) for c in kept.clients_seen()} == expected


def test_versions_no_one_reads_are_deleted_every_round_not_only_at_checkpoints(tmp_path):
  # No checkpoint before round 12: at each round's row the disk holds each client's
  # newest version before the round (6 clients at most) and the round's 2 new ones.
  # Collected at checkpoints only, 2 files more every round (24 at round 12).
  counter = _StateFilesPerRound(tmp_path / "sparse" / "states")
  _, store = _run(tmp_path, "sparse", 12, reporters=[counter], rounds_per_checkpoint=50)
  assert len(counter.counts) == 12 and max(counter.counts) <= 6 + 2, counter.counts
  assert all(len(store.versions(c)) == 1 for c in store.clients_seen())


def test_a_resume_without_the_clients_states_is_refused(tmp_path):
  # Deleted to save disk, the states would restart from zeros: every client's memory
  # reset, the run diverging without a word.
  _run(tmp_path, "gone", 4)
  shutil.rmtree(tmp_path / "gone" / "states")
  with pytest.raises(ValueError, match=r"cannot resume from round 4: \d+ of the \d+ clients "
                     r"that took part by then have no state in .*states \(e\.g\. c"):
    _run(tmp_path, "gone", 6, resume=True)
  # One client's files lost is refused too; all of them there, the resume runs.
  _run(tmp_path, "one", 4)
  store = ClientStateStore(str(tmp_path / "one" / "states"), 1)
  lost = store.clients_seen()[0]
  for name in os.listdir(store.directory):
    if name.startswith(f"c_{lost}."):
      os.remove(os.path.join(store.directory, name))
  with pytest.raises(ValueError, match=f"1 of the .* clients .*e\\.g\\. {lost}\\)"):
    _run(tmp_path, "one", 6, resume=True)
  _run(tmp_path, "kept", 4)
  assert _run(tmp_path, "kept", 6, resume=True)[0].start_round == 5


def test_paths_are_absolute_for_workers_in_other_directories(tmp_path, monkeypatch):
  # A TFF worker opens the files from its own working directory.
  monkeypatch.chdir(tmp_path)
  store = ClientStateStore("states", 2)
  assert store.write_path("a", 1) == str(tmp_path / "states" / "c_a.r1.pb")
