"""Chaos check: interrupt an experiment with signals, resume it, compare with a clean run.

`run_chaos` runs the EMNIST compression binary (`experiments/emnist_compression.py`) on
the embedded digits as subprocesses:

1. a reference run, uninterrupted;
2. the same run (same flags and seed) interrupted once per signal, in turn, at seeded
   random rounds, and continued each time with `--resume`:
   * `SIGINT` goes to the whole process group, as Ctrl-C in a terminal does (TFF's
     worker gets it too), and `SIGTERM` to the Python process, as `kill` does; both
     are sent in the middle of the round's training, half a round after the previous
     round's checkpoint appeared;
   * `SIGKILL` goes to the Python process as soon as the round's console line is out,
     which is when its metrics rows and then its checkpoint are being written.

After every interruption the run directory must be consistent with its last
checkpoint: `metrics.csv` holds rounds 1..k with k the last checkpointed round or the
one after it (a row is written just before its checkpoint), TensorBoard no step past
k, no step twice, no child process (TFF worker) outlives the run, and after SIGINT or
SIGTERM stderr holds the one `error:` line and no traceback. At the end,
`metrics.csv` must equal the reference's in round numbers, bits and cumulative bits,
with losses and accuracies within a tolerance, and TensorBoard must hold every round
exactly once.

Nothing here imports TFF: the runs are subprocesses. TensorFlow is imported only to
read TensorBoard event files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedcompress import metrics as m
from fedcompress.federated import signals as _signals
from fedcompress.harness import rundir
from fedcompress.harness.reporting import read_metrics_csv

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO_ROOT, "experiments", "emnist_compression.py")
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
# What the binaries exit with (`cli.interruptible`): 130 and 143.
_EXIT_CODES = {name: 128 + signal.Signals[name] for name in ("SIGINT", "SIGTERM")}
# Tutorial-style compressed run on the digits, deterministic rounding so that the
# resumed training can be compared with the reference's.
DEFAULT_EXPERIMENT_FLAGS = (
    "--dataset=digits", "--digits_clients=6", "--clients_per_round=3",
    "--client_learning_rate=0.05", "--broadcast_encoder=uniform",
    "--aggregate_encoder=uniform", "--broadcast_encoder_args=deterministic=true",
    "--aggregate_encoder_args=deterministic=true", "--rounds_per_eval=1")
# Compared exactly with the reference: integers.
EXACT_COLUMNS = (m.ROUND, m.BROADCAST_BITS, m.AGGREGATE_BITS, m.BROADCAST_CUMULATIVE_BITS,
                 m.AGGREGATE_CUMULATIVE_BITS)
# Compared within `ChaosConfig.rtol`: floating-point training results.
CLOSE_COLUMNS = (m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.EVAL_LOSS, m.EVAL_ACCURACY)
# What `_command` sets for every segment. Checkpoints every round: a SIGINT or SIGTERM
# is sent half a round after the previous round's checkpoint (a flagfile's own
# --rounds_per_checkpoint, 20 in the sweeps' configs, is overridden; it changes no result).
OWN_FLAGS = ("rounds", "root_output_dir", "experiment_name", "resume", "rounds_per_checkpoint")
_ROUND_LINE = re.compile(r"round\s+(\d+), .*, round_time_s=([0-9.]+)$")
_CHECKPOINT_DIR = re.compile(r"round_(\d+)$")


@dataclasses.dataclass
class ChaosConfig:
  """What to run and how to interrupt it.

  Attributes:
    root_dir: folder of the two runs (`reference/`, `interrupted/`) and `chaos.json`.
    rounds: rounds of each run.
    seed: seed of the interrupted rounds (the experiment's own `--seed` is in
      `experiment_flags`, default 0).
    signals: signal names, one interruption each, in this order.
    experiment_flags: flags of the EMNIST binary (dataset, codecs, ...).
    rtol: relative tolerance of losses and accuracies against the reference.
    timeout_s: longest a run segment may take.
    exit_timeout_s: longest a process may take to exit after SIGINT or SIGTERM.
    parallel_reference: run the reference at the same time as the interrupted run.
    python: interpreter of the runs.
    binary: the experiment binary.
    at_rounds: the rounds to interrupt (increasing, from 2), instead of seeded random.
  """

  root_dir: str
  rounds: int = 8
  seed: int = 0
  signals: Sequence[str] = SIGNALS
  experiment_flags: Sequence[str] = DEFAULT_EXPERIMENT_FLAGS
  rtol: float = 1e-3
  timeout_s: float = 900.0
  exit_timeout_s: float = 60.0
  parallel_reference: bool = False
  python: str = sys.executable
  binary: str = BINARY
  at_rounds: Sequence[int] | None = None

  def validate(self) -> None:
    unknown = [s for s in self.signals if s not in SIGNALS]
    if unknown:
      raise ValueError(f"unknown signal(s) {', '.join(unknown)}; valid: {', '.join(SIGNALS)}")
    if not self.signals:
      raise ValueError("give at least one signal")
    # Interruptions land on distinct rounds from 2 on: the round before each must have
    # been seen finishing in the same process.
    if self.rounds < len(self.signals) + 1:
      raise ValueError(f"--rounds must be >= {len(self.signals) + 1} for "
                       f"{len(self.signals)} interruptions, got {self.rounds}")
    if self.at_rounds is not None and (
        len(self.at_rounds) != len(self.signals) or list(self.at_rounds) != sorted(
            set(self.at_rounds)) or not all(2 <= r <= self.rounds for r in self.at_rounds)):
      raise ValueError(f"at_rounds must be {len(self.signals)} increasing rounds in "
                       f"2..{self.rounds}, got {list(self.at_rounds)}")
    if not self.rtol >= 0:
      raise ValueError(f"rtol must be >= 0, got {self.rtol}")
    # The runs' own flags, set by `_command`: a second value would be overridden there
    # (or, for --rounds_per_checkpoint, leave rounds with no checkpoint to wait for).
    given = {flag.split("=")[0].lstrip("-") for flag in self.experiment_flags}
    named = [f for f in OWN_FLAGS if f in given or f"no{f}" in given]
    if named:
      raise ValueError(f"the experiment flags may not set {', '.join('--' + f for f in named)}:"
                       " the chaos check sets them itself (--rounds is its own flag)")


@dataclasses.dataclass
class Interruption:
  """One signal sent to the interrupted run, and the state it left."""

  signal: str
  round: int
  moment: str
  exit_code: int | None
  exit_s: float | None
  stderr: list[str]
  last_checkpoint: int
  csv_rounds: list[int]
  tensorboard_max_step: int
  problems: list[str]

  @property
  def ok(self) -> bool:
    return not self.problems


@dataclasses.dataclass
class ChaosReport:
  """Outcome of `run_chaos`."""

  rounds: int
  interruptions: list[Interruption]
  problems: list[str]
  max_loss_rel_diff: float
  max_accuracy_abs_diff: float
  reference_s: float
  interrupted_s: float

  @property
  def ok(self) -> bool:
    return not self.problems and all(i.ok for i in self.interruptions)

  def as_dict(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out["ok"] = self.ok
    return out

  def summary_lines(self) -> list[str]:
    lines = []
    for i in self.interruptions:
      code = "hung" if i.exit_code is None else str(i.exit_code)
      lines.append(
          f"{i.signal:7s} at round {i.round} ({i.moment}): exit {code} after "
          f"{i.exit_s if i.exit_s is not None else float('nan'):.1f}s, last checkpoint "
          f"round {i.last_checkpoint}, metrics.csv rounds 1..{max(i.csv_rounds, default=0)},"
          f" TensorBoard steps up to {i.tensorboard_max_step}"
          f"{'' if i.ok else ' -- ' + '; '.join(i.problems)}")
      lines.extend(f"        stderr: {line}" for line in i.stderr)
    lines.append(
        f"final metrics.csv vs uninterrupted, {self.rounds} rounds: "
        + ("rounds, bits and cumulative bits equal; " if not self.problems else "")
        + f"losses within {self.max_loss_rel_diff:.2e} (relative), accuracies within "
        f"{self.max_accuracy_abs_diff:.2e}; reference {self.reference_s:.0f}s, "
        f"interrupted and resumed {self.interrupted_s:.0f}s")
    lines.extend(f"PROBLEM: {p}" for p in self.problems)
    lines.append("chaos: PASS" if self.ok else "chaos: FAIL")
    return lines


def pick_rounds(rounds: int, count: int, seed: int) -> list[int]:
  """`count` distinct rounds in 2..`rounds`, increasing, chosen by `seed`."""
  rng = np.random.default_rng(seed)
  return sorted(int(r) for r in rng.choice(np.arange(2, rounds + 1), size=count,
                                           replace=False))


_running: set[_Segment] = set()
_running_lock = threading.Lock()


class _Segment:
  """One subprocess of the experiment; a thread follows its round lines on stdout."""

  def __init__(self, cmd: list[str], log_path: str):
    self._log = open(log_path, "a")  # noqa: SIM115 (closed in finish())
    self._log.write(f"$ {' '.join(cmd)}\n")
    self._log.flush()
    self.stderr_path = log_path + ".stderr"
    self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in finish())
    # A new session: the process group is the run and its TFF worker, as in a shell.
    # SIGINT handling is reset, as an interactive shell does for a foreground job: run
    # from a background job, the run would otherwise inherit SIGINT ignored.
    self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                    text=True, start_new_session=True, cwd=REPO_ROOT,
                                    preexec_fn=_signals.restore_default_sigint)
    self.rounds: list[tuple[int, float]] = []  # (round, round time) of each line seen
    self._ended = False
    self._changed = threading.Condition()
    with _running_lock:
      _running.add(self)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self) -> None:
    assert self.process.stdout is not None
    for line in self.process.stdout:
      self._log.write(line)
      self._log.flush()
      match = _ROUND_LINE.search(line.rstrip("\n"))
      if match:
        with self._changed:
          self.rounds.append((int(match.group(1)), float(match.group(2))))
          self._changed.notify_all()
    with self._changed:
      self._ended = True
      self._changed.notify_all()

  def latest(self) -> int:
    with self._changed:
      return self.rounds[-1][0] if self.rounds else 0

  def wait_for_round(self, round_num: int, deadline: float) -> int:
    """Blocks until the line of round `round_num` or a later one; returns that round."""
    with self._changed:
      while not (self.rounds and self.rounds[-1][0] >= round_num):
        if self._ended:
          raise RuntimeError(f"the run ended (exit {self.process.wait()}) before round "
                             f"{round_num}; see {self.stderr_path}")
        if not self._changed.wait(timeout=max(0.0, deadline - time.monotonic())):
          if time.monotonic() >= deadline:
            raise TimeoutError(f"round {round_num} not reached in time")
      return self.rounds[-1][0]

  def steady_round_times(self) -> list[float]:
    """Round times of this process after its first round (which includes warm-up)."""
    with self._changed:
      return [t for _, t in self.rounds[1:]]

  def children(self) -> list[int]:
    return _children(self.process.pid)

  def finish(self, timeout_s: float) -> int | None:
    """Waits for the exit; returns the exit code, or None if it had to be killed."""
    try:
      code = self.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
      self.kill()
      code = None
    with _running_lock:
      _running.discard(self)
    self._reader.join(10)
    self._log.close()
    self._stderr.close()
    return code

  def kill(self) -> None:
    """SIGKILL to the run's whole process group (it and its TFF worker)."""
    try:
      os.killpg(self.process.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
    self.process.wait()

  def stderr_lines(self) -> list[str]:
    with open(self.stderr_path) as f:
      return [line.rstrip("\n") for line in f if line.strip()]


def _children(pid: int) -> list[int]:
  """PIDs whose parent is `pid` (from /proc)."""
  found = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        # The command name, in parentheses, may hold spaces: split after it.
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == pid:
      found.append(int(entry))
  return found


def _session(sid: int) -> list[int]:
  """Live PIDs of session `sid` (a run started with `start_new_session` and its children,
  even those reparented after it died)."""
  found = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[3]) == sid and fields[0] != "Z":
      found.append(int(entry))
  return found


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


def checkpoint_rounds(run_dir: str) -> list[int]:
  """Rounds of the complete checkpoint directories (TFF writes `round_N_temp*` first)."""
  path = os.path.join(run_dir, "checkpoints")
  if not os.path.isdir(path):
    return []
  return sorted(int(match.group(1)) for match in map(_CHECKPOINT_DIR.match, os.listdir(path))
                if match)


def tensorboard_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
  """Every scalar event in `run_dir`'s event files: tag -> [(step, value)], in file order.

  A record cut short by a kill ends its file's reading, as it does for TensorBoard.
  """
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2

  scalars: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
    try:
      for record in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(record.numpy())
        for value in event.summary.value:
          if value.HasField("tensor"):
            # Only scalars: HParams summaries are tensors too. (Plugin metadata is on
            # a tag's first event only, so it cannot tell them apart.)
            array = tf.make_ndarray(value.tensor)
            if array.ndim == 0 and array.dtype.kind in "fiu":
              scalars.setdefault(value.tag, []).append((event.step, float(array)))
          elif value.HasField("simple_value"):
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    except tf.errors.DataLossError:
      pass
  return scalars


def check_consistency(run_dir: str) -> tuple[int, list[int], int, list[str]]:
  """Checks an interrupted run against its last checkpoint.

  Returns:
    (last checkpoint round or 0, metrics.csv rounds, largest TensorBoard step,
    problems found).
  """
  problems = []
  checkpoints = checkpoint_rounds(run_dir)
  last = max(checkpoints, default=0)
  csv_path = os.path.join(run_dir, "metrics.csv")
  rows = read_metrics_csv(csv_path) if os.path.exists(csv_path) else []
  rounds = [int(r[m.ROUND]) for r in rows]
  if rounds != list(range(1, len(rounds) + 1)):
    problems.append(f"metrics.csv rounds are {rounds}, not 1..{len(rounds)}")
  if not last <= len(rounds) <= last + 1:
    problems.append(f"metrics.csv has {len(rounds)} rounds for last checkpoint {last}")
  scalars = tensorboard_scalars(run_dir)
  max_step = max((s for events in scalars.values() for s, _ in events), default=0)
  if max_step > len(rounds):
    problems.append(f"TensorBoard has step {max_step} past metrics.csv's {len(rounds)}")
  problems.extend(_duplicate_steps(scalars))
  return last, rounds, max_step, problems


def _duplicate_steps(scalars: dict[str, list[tuple[int, float]]]) -> list[str]:
  problems = []
  for tag, events in sorted(scalars.items()):
    steps = [s for s, _ in events]
    if len(steps) != len(set(steps)):
      problems.append(f"TensorBoard tag {tag} has repeated steps {sorted(steps)}")
  return problems


def compare_with_reference(run_dir: str, reference_dir: str, rtol: float
                           ) -> tuple[list[str], float, float]:
  """Final metrics.csv and TensorBoard of `run_dir` against the reference run's.

  Returns:
    (problems, largest relative loss difference, largest accuracy difference).
  """
  problems = []
  run = read_metrics_csv(os.path.join(run_dir, "metrics.csv"))
  ref = read_metrics_csv(os.path.join(reference_dir, "metrics.csv"))
  exact = [{k: r.get(k) for k in EXACT_COLUMNS} for r in run]
  exact_ref = [{k: r.get(k) for k in EXACT_COLUMNS} for r in ref]
  if exact != exact_ref:
    diff = next((i for i, (a, b) in enumerate(zip(exact, exact_ref, strict=False)) if a != b),
                min(len(exact), len(exact_ref)))
    problems.append(f"rounds/bits differ from the reference from row {diff + 1}: "
                    f"{exact[diff:diff + 1]} vs {exact_ref[diff:diff + 1]}")
  loss_diff = accuracy_diff = 0.0
  for a, b in zip(run, ref, strict=False):
    for key in CLOSE_COLUMNS:
      x, y = a.get(key), b.get(key)
      if x is None or y is None:
        if (x is None) != (y is None):
          problems.append(f"round {a[m.ROUND]}: {key} is {x} here, {y} in the reference")
        continue
      if key.endswith("loss"):
        loss_diff = max(loss_diff, abs(x - y) / max(abs(y), 1e-12))
      else:
        accuracy_diff = max(accuracy_diff, abs(x - y))
      if not np.isclose(x, y, rtol=rtol, atol=0.0 if key.endswith("loss") else rtol):
        problems.append(f"round {a[m.ROUND]}: {key} {x} vs reference {y} (rtol {rtol})")
  scalars = tensorboard_scalars(run_dir)
  problems.extend(_duplicate_steps(scalars))
  want = list(range(1, len(ref) + 1))
  for tag in (m.BROADCAST_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_BITS, m.TRAIN_LOSS):
    events = sorted(scalars.get(tag, []))
    if [s for s, _ in events] != want:
      problems.append(f"TensorBoard {tag} steps are {[s for s, _ in events]}, not {want}")
    # TensorBoard keeps scalars as float32.
    elif tag != m.TRAIN_LOSS and [v for _, v in events] != [
        float(np.float32(r[tag])) for r in ref]:
      problems.append(f"TensorBoard {tag} values differ from the reference's metrics.csv")
  return problems, loss_diff, accuracy_diff


def _command(config: ChaosConfig, name: str) -> list[str]:
  return [config.python, config.binary, *config.experiment_flags,
          f"--rounds={config.rounds}", f"--root_output_dir={config.root_dir}",
          f"--experiment_name={name}", "--resume", "--rounds_per_checkpoint=1"]


def _send(segment: _Segment, name: str) -> None:
  signum = getattr(signal, name)
  if name == "SIGINT":
    os.killpg(segment.process.pid, signum)  # Ctrl-C: the whole foreground group.
  else:
    segment.process.send_signal(signum)


def _interrupt(config: ChaosConfig, run_dir: str, log_path: str, name: str,
               round_num: int, round_times: list[float]) -> Interruption:
  deadline = time.monotonic() + config.timeout_s
  segment = _Segment(_command(config, "interrupted"), log_path)
  try:
    # A resumed segment may start past the round asked for (when the previous signal
    # came after a checkpoint), and a round may end before the signal is due: the
    # round actually interrupted is recorded.
    if name == "SIGKILL":
      moment = "as its metrics and checkpoint are written"
      round_num = segment.wait_for_round(round_num, deadline)
    else:
      moment = "mid-round"
      while True:
        seen = segment.wait_for_round(round_num - 1, deadline)
        # The previous round's checkpoint is written after its line (every round:
        # `_command`'s --rounds_per_checkpoint=1); the next round's training starts then.
        while seen not in checkpoint_rounds(run_dir):
          if segment.process.poll() is not None:
            raise RuntimeError(f"the run ended (exit {segment.process.returncode}) without "
                               f"a checkpoint of round {seen}; see {segment.stderr_path}")
          if time.monotonic() > deadline:
            raise TimeoutError(f"checkpoint of round {seen} never appeared")
          time.sleep(0.02)
        steady = round_times + segment.steady_round_times()
        time.sleep(0.5 * min(steady) if steady else 1.0)
        if segment.latest() == seen:
          round_num = seen + 1
          break
        round_num = segment.latest() + 1  # Too late for this round: the next one.
    children = segment.children()
    sent = time.monotonic()
    _send(segment, name)
  except BaseException:
    segment.kill()
    segment.finish(10)
    raise
  code = segment.finish(config.exit_timeout_s)
  exit_s = time.monotonic() - sent
  round_times.extend(segment.steady_round_times())
  problems = []
  if code is None:
    problems.append(f"did not exit within {config.exit_timeout_s:.0f}s of {name}")
  stderr = segment.stderr_lines()
  if any("Traceback" in line for line in stderr):
    problems.append("a traceback on stderr")
  # SIGINT and SIGTERM: the binary's one `error:` line and nothing else (no TensorFlow
  # or gRPC log lines either).
  if name != "SIGKILL" and (len(stderr) != 1 or not stderr[0].startswith("error: ")):
    problems.append(f"not one error line on stderr after {name}: {stderr[:4]}")
  # And the signal's own exit code: a SIGINT said as a lost worker exited 1, which a
  # scheduler takes for a failure to retry.
  if code is not None and name in _EXIT_CODES and code != _EXIT_CODES[name]:
    problems.append(f"exit code {code} after {name}, not {_EXIT_CODES[name]}")
  time.sleep(1.0)  # The kernel delivers the workers' parent-death signal.
  left = sorted(set(pid for pid in children if _alive(pid)) | set(
      _session(segment.process.pid)))
  if left:
    problems.append(f"processes {left} of the run outlived it")
  last, rounds, max_step, found = check_consistency(run_dir)
  return Interruption(signal=name, round=round_num, moment=moment, exit_code=code,
                      exit_s=exit_s, stderr=stderr, last_checkpoint=last, csv_rounds=rounds,
                      tensorboard_max_step=max_step, problems=problems + found)


def _run_to_end(config: ChaosConfig, name: str, log_path: str) -> tuple[int | None, float]:
  began = time.monotonic()
  segment = _Segment(_command(config, name), log_path)
  code = segment.finish(config.timeout_s)
  return code, time.monotonic() - began


def run_chaos(config: ChaosConfig, log=print) -> ChaosReport:
  """Runs the reference and the interrupted run; see the module docstring.

  Args:
    config: what to run and how to interrupt it.
    log: where progress lines go.

  Returns:
    The report (also written to `<root_dir>/chaos.json`, with the config it ran with
    and the commit, `rundir.source()`).
  """
  try:
    return _run_chaos(config, log)
  except BaseException:
    # Interrupted itself (or failed): the runs are in sessions of their own, which no
    # Ctrl-C of ours reaches, so they are stopped here.
    with _running_lock:
      running = list(_running)
    for segment in running:
      segment.kill()
    raise


def _run_chaos(config: ChaosConfig, log) -> ChaosReport:
  config.validate()
  # The runs are started from the repository root: paths must not depend on our cwd.
  config = dataclasses.replace(config, root_dir=os.path.abspath(config.root_dir))
  for name in ("reference", "interrupted"):
    if os.path.exists(os.path.join(config.root_dir, name)):
      raise ValueError(f"{os.path.join(config.root_dir, name)} exists; choose an empty "
                       "--root_output_dir")
  os.makedirs(config.root_dir, exist_ok=True)
  logs = os.path.join(config.root_dir, "logs")
  os.makedirs(logs, exist_ok=True)
  reference_dir = os.path.join(config.root_dir, "reference")
  run_dir = os.path.join(config.root_dir, "interrupted")
  targets = list(config.at_rounds or pick_rounds(config.rounds, len(config.signals),
                                                  config.seed))
  plan = ", ".join(f"{s} at round {r}" for s, r in zip(config.signals, targets, strict=True))
  log(f"chaos: {config.rounds} rounds; {plan}")

  reference_result: dict[str, Any] = {}

  def reference() -> None:
    reference_result["code"], reference_result["s"] = _run_to_end(
        config, "reference", os.path.join(logs, "reference.log"))

  thread = threading.Thread(target=reference, daemon=True)
  if config.parallel_reference:
    thread.start()
  else:
    log("chaos: reference run")
    reference()
    log(f"chaos: reference done in {reference_result['s']:.0f}s "
        f"(exit {reference_result['code']})")

  # Steady-state round times (reference rounds after the first), to time the signals.
  round_times: list[float] = []
  if not config.parallel_reference and os.path.exists(os.path.join(reference_dir,
                                                                   "metrics.csv")):
    round_times = [float(r[m.ROUND_TIME_S]) for r in read_metrics_csv(
        os.path.join(reference_dir, "metrics.csv"))[1:]]
  began = time.monotonic()
  interruptions = []
  for name, round_num in zip(config.signals, targets, strict=True):
    log(f"chaos: {name} at round {round_num}")
    interruption = _interrupt(config, run_dir, os.path.join(logs, "interrupted.log"), name,
                              round_num, round_times)
    interruptions.append(interruption)
    log("chaos: " + ("ok: " if interruption.ok else "PROBLEM: ")
        + f"sent in round {interruption.round} ({interruption.moment}), exit "
        f"{interruption.exit_code}, last checkpoint {interruption.last_checkpoint}, "
        f"metrics.csv rounds {interruption.csv_rounds}")
  log("chaos: resuming to the end")
  code, _ = _run_to_end(config, "interrupted", os.path.join(logs, "interrupted.log"))
  interrupted_s = time.monotonic() - began
  if config.parallel_reference:
    thread.join()

  problems = []
  if reference_result.get("code") != 0:
    problems.append(f"the reference run exited {reference_result.get('code')}; see logs/")
  if code != 0:
    problems.append(f"the last resumed segment exited {code}; see logs/")
  loss_diff = accuracy_diff = float("nan")
  if not problems:
    found, loss_diff, accuracy_diff = compare_with_reference(run_dir, reference_dir,
                                                             config.rtol)
    problems.extend(found)
  report = ChaosReport(rounds=config.rounds, interruptions=interruptions, problems=problems,
                       max_loss_rel_diff=loss_diff, max_accuracy_abs_diff=accuracy_diff,
                       reference_s=reference_result.get("s", float("nan")),
                       interrupted_s=interrupted_s)
  with open(os.path.join(config.root_dir, "chaos.json"), "w") as f:
    # With what produced it, so that a PASS can be tied to its flags, signals and code.
    json.dump({**report.as_dict(), "config": dataclasses.asdict(config),
               "source": rundir.source()}, f, indent=2)
  return report

if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/chaos.py is the library of the interruption test: run "
                   "python -m tools.run_chaos (--help for its flags)")
