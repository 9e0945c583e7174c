"""Interruptions lose nothing: damaged checkpoints, and a short chaos run of the binary."""

import dataclasses
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import metrics as m
from fedcompress.harness import rundir
from fedcompress.harness.checkpoints import (
  Checkpointer,
  CheckpointMismatchError,
  CheckpointUnreadableError,
  LoopState,
)
from fedcompress.harness.loop import LoopConfig, run_loop
from fedcompress.harness.reporting import CsvReporter, TensorBoardReporter, read_metrics_csv
from tools import chaos

pytestmark = pytest.mark.slow  # interrupts and resumes real runs


def _state(value):
  return {"w": np.full(3, value, np.float32), "step": np.int64(value)}


@pytest.fixture
def checkpointer(tmp_path):
  """Rounds 1..3 saved; round r holds w = r and bits 10 r, 20 r."""
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  for r in (1, 2, 3):
    ckpt.save(_state(r), LoopState(r, 10 * r, 20 * r))
  return ckpt


def _newest(ckpt):
  return os.path.join(ckpt.root_dir, "round_3")


def _truncate_variables(path):
  data = [os.path.join(path, "variables", n) for n in os.listdir(os.path.join(path, "variables"))
          if n.startswith("variables.data")]
  assert data
  for name in data:
    size = os.path.getsize(name)
    with open(name, "r+b") as f:
      f.truncate(size // 2)


def _remove_graph(path):
  os.remove(os.path.join(path, "saved_model.pb"))


def _garbage_graph(path):
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"\x00garbage" * 10)


def _empty(path):
  shutil.rmtree(path)
  os.mkdir(path)


@pytest.mark.parametrize("damage", [_truncate_variables, _remove_graph, _garbage_graph,
                                    _empty])
def test_unreadable_newest_checkpoint_falls_back(checkpointer, damage):
  assert checkpointer.versions() == [1, 2, 3]
  damage(_newest(checkpointer))
  warnings = []
  state, loop = checkpointer.restore(_state(0), warn=warnings.append)
  np.testing.assert_array_equal(state["w"], [2, 2, 2])
  assert state["step"] == 2 and state["w"].dtype == np.float32
  assert loop == LoopState(2, 20, 40)
  # Said, not silent: one line naming the checkpoint skipped, one where it is kept.
  assert len(warnings) == 2 and warnings[0].startswith("checkpoint round_3 is unreadable (")
  aside = os.path.join(checkpointer.root_dir, "unreadable_round_3")
  assert warnings[1] == f"the unreadable checkpoint round_3 is kept as {aside}"
  # Out of the versions: left as round_3 it stayed the newest by name, which an
  # interrupted resume named as kept and the next resume refused as lost metrics.
  assert os.path.isdir(aside) and checkpointer.versions() == [1, 2]
  assert rundir.checkpoint_rounds(os.path.dirname(checkpointer.root_dir)) == [1, 2]
  warnings.clear()
  assert checkpointer.restore(_state(0), warn=warnings.append)[1] == loop and warnings == []


def test_no_readable_checkpoint_is_an_error_not_a_restart(checkpointer, capsys):
  for version in checkpointer.versions():
    _garbage_graph(os.path.join(checkpointer.root_dir, f"round_{version}"))
  with pytest.raises(CheckpointUnreadableError,
                     match=r"none of the 3 checkpoints .* \(round_1, round_2, round_3\)"):
    checkpointer.restore(_state(0))
  assert capsys.readouterr().err.count("warning: checkpoint round_") == 3
  assert checkpointer.versions() == [1, 2, 3]  # Nothing deleted.


def test_killed_save_leaves_no_version(checkpointer):
  # What a kill during TFF's write leaves: a temporary directory, never renamed.
  partial = os.path.join(checkpointer.root_dir, "round_4_temp1234")
  shutil.copytree(_newest(checkpointer), partial)
  _truncate_variables(partial)
  assert checkpointer.versions() == [1, 2, 3]
  state, loop = checkpointer.restore(_state(0))
  assert loop.round_num == 3 and state["step"] == 3
  assert not os.path.exists(partial)  # Cleaned up on restore.
  checkpointer.save(_state(4), LoopState(4, 40, 80))
  assert checkpointer.versions() == [2, 3, 4]


@dataclasses.dataclass
class _Output:
  state: dict
  metrics: dict


@pytest.mark.parametrize("template,message", [
    ({"w": np.zeros(3, np.float32), "step": np.int64(0), "extra": np.zeros(2)},
     "holds 2 state tensors, this model and codec need 3"),
    ({"w": np.zeros(4, np.float32), "step": np.int64(0)}, "has shape (3,)"),
    # Not cast to fit: float weights read into an integer state would lose their values.
    ({"w": np.zeros(3, np.int32), "step": np.int64(0)}, "is float32, this model and codec "
     "need int32"),
])
def test_checkpoint_of_another_model_is_a_mismatch_not_skipped(checkpointer, template,
                                                              message):
  # Readable but not fitting: an error, never a silent restart from round 1.
  with pytest.raises(CheckpointMismatchError, match=message.replace("(", r"\(").replace(
      ")", r"\)")):
    checkpointer.restore(template)
  assert checkpointer.versions() == [1, 2, 3]


class _AddProcess:
  """No TFF: each round adds the sum of the clients' data to w; fixed bits per round."""

  def initialize(self):
    return _state(0)

  def next(self, state, client_data):
    new = {"w": state["w"] + np.float32(sum(client_data)), "step": state["step"] + 1}
    metrics = {"client_work": {"train": {"loss": float(new["step"])}},
               m.BROADCAST_BITS: 7, m.AGGREGATE_BITS: 11}
    return _Output(new, metrics)

  def get_model_weights(self, state):
    return state["w"]


def _loop(tmp_path, name, rounds, resume=False):
  run_dir = tmp_path / name
  run_dir.mkdir(exist_ok=True)
  return run_loop(_AddProcess(), ["a", "b", "c"], lambda cid, r: r * 10 + ord(cid) - 96,
                  LoopConfig(rounds=rounds, clients_per_round=2, seed=3),
                  reporters=[CsvReporter(str(run_dir / "metrics.csv"))],
                  checkpointer=Checkpointer(str(run_dir / "checkpoints")), resume=resume)


def test_resume_after_damaged_newest_checkpoint_matches_uninterrupted(tmp_path):
  full = _loop(tmp_path, "full", 4)
  _loop(tmp_path, "part", 3)
  # Round 3's row is in metrics.csv, its checkpoint unreadable: round 3 is redone.
  _truncate_variables(str(tmp_path / "part" / "checkpoints" / "round_3"))
  resumed = _loop(tmp_path, "part", 4, resume=True)
  assert resumed.start_round == 3
  np.testing.assert_array_equal(resumed.state["w"], full.state["w"])
  rows = read_metrics_csv(str(tmp_path / "part" / "metrics.csv"))
  reference = read_metrics_csv(str(tmp_path / "full" / "metrics.csv"))

  def comparable(table):
    return [{k: v for k, v in r.items() if k != m.ROUND_TIME_S} for r in table]

  assert comparable(rows) == comparable(reference)
  assert [r[m.ROUND] for r in rows] == [1, 2, 3, 4]
  assert [r[m.BROADCAST_CUMULATIVE_BITS] for r in rows] == [7, 14, 21, 28]
  assert [r[m.AGGREGATE_CUMULATIVE_BITS] for r in rows] == [11, 22, 33, 44]
  assert Checkpointer(str(tmp_path / "part" / "checkpoints")).versions() == [2, 3, 4]


@pytest.mark.parametrize("flag", ["--rounds_per_checkpoint=3", "--rounds=5", "--noresume",
                                  "--resume", "--experiment_name=x", "--root_output_dir=y"])
def test_flags_the_check_sets_itself_are_refused(flag):
  # --rounds_per_checkpoint=3 left the signal waiting 15 minutes for a checkpoint of a
  # round that never got one; the others would be overridden by the check's own.
  config = chaos.ChaosConfig("x", experiment_flags=(*chaos.DEFAULT_EXPERIMENT_FLAGS, flag))
  name = flag.split("=")[0].removeprefix("--no").lstrip("-")
  with pytest.raises(ValueError, match=f"may not set --{name}: the chaos check sets"):
    config.validate()


def test_a_flagfiles_checkpoint_interval_gives_way_to_every_round(tmp_path, load_binary):
  # The sweeps' flagfiles checkpoint every 20 rounds: the runs' command line checkpoints
  # every round all the same, as the binary parses it.
  flagfile = tmp_path / "sweep.flags"
  flagfile.write_text("--dataset=digits\n--rounds_per_checkpoint=20\n")
  config = chaos.ChaosConfig(str(tmp_path), experiment_flags=(f"--flagfile={flagfile}",))
  config.validate()
  with load_binary("experiments/emnist_compression.py") as module:
    module.FLAGS(["emnist_compression", *chaos._command(config, "interrupted")[2:]])
    assert module.FLAGS.rounds_per_checkpoint == 1 and module.FLAGS.dataset == "digits"
    module.FLAGS.unparse_flags()


def test_pick_rounds_is_seeded_distinct_and_after_round_one():
  picks = chaos.pick_rounds(8, 3, seed=0)
  assert picks == chaos.pick_rounds(8, 3, seed=0) and picks == sorted(set(picks))
  assert len(picks) == 3 and all(2 <= r <= 8 for r in picks)
  assert chaos.pick_rounds(3, 2, seed=5) == [2, 3]  # The only two rounds there are.
  with pytest.raises(ValueError, match="rounds must be >= 4"):
    chaos.ChaosConfig("x", rounds=3).validate()
  with pytest.raises(ValueError, match="unknown signal"):
    chaos.ChaosConfig("x", signals=("SIGHUP",)).validate()


def _fake_run(run_dir, checkpoints, csv_rounds, tb_steps):
  for r in checkpoints:
    os.makedirs(run_dir / "checkpoints" / f"round_{r}")
  os.makedirs(run_dir / "checkpoints" / "round_9_temp1234")  # Not a checkpoint.
  reporter = CsvReporter(str(run_dir / "metrics.csv"))
  reporter.start(1, 10)
  for r in csv_rounds:
    reporter.write({m.ROUND: r, m.BROADCAST_BITS: 1, m.AGGREGATE_BITS: 1,
                    m.ROUND_TIME_S: 0.1})
  reporter.close()
  with tf.summary.create_file_writer(str(run_dir)).as_default():
    for step in tb_steps:
      tf.summary.scalar(m.TRAIN_LOSS, 1.0, step=step)
  return str(run_dir)


@pytest.mark.parametrize("checkpoints,csv_rounds,tb_steps,problem", [
    ([1, 2], [1, 2, 3], [1, 2, 3], None),  # A row past the checkpoint: allowed.
    ([1, 2], [1, 2], [1], None),  # Killed between the CSV and TensorBoard writes.
    ([1, 2], [1, 2, 3, 4], [1, 2], "4 rounds for last checkpoint 2"),
    ([1, 2], [1], [1], "1 rounds for last checkpoint 2"),
    ([1, 2], [1, 3], [1], "not 1..2"),
    ([1, 2], [1, 2], [1, 2, 3], "step 3 past"),
    ([1, 2], [1, 2], [1, 2, 2], "repeated steps"),
])
def test_consistency_check(tmp_path, checkpoints, csv_rounds, tb_steps, problem):
  last, rounds, max_step, problems = chaos.check_consistency(
      _fake_run(tmp_path, checkpoints, csv_rounds, tb_steps))
  assert (last, rounds, max_step) == (2, csv_rounds, max(tb_steps))
  if problem is None:
    assert problems == []
  else:
    assert len(problems) == 1 and problem in problems[0], problems


def _reported_run(run_dir, losses, aggregate_bits):
  """A run dir as the binary's reporters write it: round r has loss `losses[r - 1]`."""
  run_dir.mkdir()
  reporters = [CsvReporter(str(run_dir / "metrics.csv")), TensorBoardReporter(str(run_dir))]
  for reporter in reporters:
    reporter.start(1, len(losses))
  for r, (loss, bits) in enumerate(zip(losses, aggregate_bits, strict=True), start=1):
    row = {m.ROUND: r, m.TRAIN_LOSS: loss, m.TRAIN_ACCURACY: 0.5, m.BROADCAST_BITS: 100,
           m.AGGREGATE_BITS: bits, m.BROADCAST_CUMULATIVE_BITS: 100 * r,
           m.AGGREGATE_CUMULATIVE_BITS: sum(aggregate_bits[:r]), m.ROUND_TIME_S: 0.1}
    for reporter in reporters:
      reporter.write(row)
  for reporter in reporters:
    reporter.close()
  return str(run_dir)


def test_comparison_with_the_reference_reports_what_differs(tmp_path):
  # The chaos run's own test only sees runs that agree, where comparing a run with itself
  # would pass too: here the second round's loss and aggregate bits differ.
  reference = _reported_run(tmp_path / "reference", [1.0, 0.6], [10, 10])
  run = _reported_run(tmp_path / "run", [1.0, 0.5], [10, 12])
  problems, loss_diff, accuracy_diff = chaos.compare_with_reference(run, reference, 1e-3)
  assert any("differ from the reference from row 2" in p for p in problems), problems
  assert any(p.startswith(f"round 2: {m.TRAIN_LOSS} 0.5 vs reference 0.6") for p in problems)
  assert loss_diff == pytest.approx(1 / 6) and accuracy_diff == 0.0
  # Another run with the same rows (its own files) agrees with the reference.
  same = _reported_run(tmp_path / "same", [1.0, 0.6], [10, 10])
  assert chaos.compare_with_reference(same, reference, 0.0) == ([], 0.0, 0.0)


def test_short_chaos_run_matches_uninterrupted(tmp_path):
  """The binary, Ctrl-C'd at round 2, kill -9'd at 4, resumed: same results.

  With client state (error feedback on top-k): the resumed run must equal the
  uninterrupted one in every metrics column but time (`rtol=0`), so the client states on
  disk are consistent with the checkpoint after each interruption, SIGKILL included.
  Rounds here take under a second; when the harness is too late for a round it signals a later
  one, so the run has rounds to spare (with 4, a loaded machine could finish first).
  SIGTERM unwinds as SIGINT does (an exception in the main thread, the same `finally`
  blocks; `tests/federated/test_signals.py` checks its line and cleanup): not sent here,
  where each interruption costs a start of the binary (`python -m tools.run_chaos` sends
  all three).
  """
  config = chaos.ChaosConfig(
      root_dir=str(tmp_path / "chaos"), rounds=8, signals=("SIGINT", "SIGKILL"),
      at_rounds=(2, 4), parallel_reference=True, rtol=0.0,
      experiment_flags=("--dataset=digits", "--digits_clients=12", "--clients_per_round=2",
                        "--client_learning_rate=0.05", "--aggregate_encoder=topk",
                        "--aggregate_encoder_args=fraction=0.05", "--error_feedback=ef"))
  report = chaos.run_chaos(config, log=lambda line: None)
  assert report.ok, "\n".join(report.summary_lines())
  sigint, sigkill = report.interruptions
  # Exactly the one line: no traceback, no TensorFlow or gRPC log lines (the chaos
  # harness imports TensorFlow, whose TF_CPP_MIN_LOG_LEVEL=1 the runs inherit).
  assert sigint.exit_code == 130
  assert len(sigint.stderr) == 1 and sigint.stderr[0].startswith("error: interrupted")
  assert sigkill.exit_code == -9
  # Whatever the moment, the run dir only ever held rounds up to one past its checkpoint.
  for i in report.interruptions:
    assert i.last_checkpoint <= len(i.csv_rounds) <= i.last_checkpoint + 1
  rows = read_metrics_csv(str(tmp_path / "chaos" / "interrupted" / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == list(range(1, 9))
  assert report.max_loss_rel_diff == 0.0 and report.max_accuracy_abs_diff == 0.0
  # The residuals were kept on disk (a version per client and round it took part in).
  states = tmp_path / "chaos" / "interrupted" / "client_states"
  assert len(list(states.glob("c_*.pb"))) >= 2
