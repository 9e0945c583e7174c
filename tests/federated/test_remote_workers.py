"""Remote TFF workers: two `experiments/worker.py` processes on 127.0.0.1 against a local run.

The workers are real `worker_binary` processes reached over gRPC through TFF's
mergeable-computation context (`runtime.set_remote_context`). Every test restores the
local context, so the rest of the suite is unaffected.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import portpicker
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.codecs import CodecSpec
from fedcompress.federated import runtime

pytestmark = pytest.mark.slow  # starts remote worker processes

_STARTUP_S = 300.0  # Importing TF on a loaded 2-core machine can take a minute.
_READY = re.compile(r"TFF worker ready on port (\d+) \(pid (\d+),")
_THRESHOLD = 4  # Encodes the 4x3 kernel (12 elements), not the 3-element bias.

# Hand-computed bits per client (see fedcompress/bits.py for what counts):
#   kernel, uniform 8 bits: min_max 2 x float32 = 64, plus 12 values x 8 bits bit-packed
#     by tensor_encoding 28 bits per int32 -> ceil(96 / 28) = 4 x int32 = 128;  192
#   bias (under the threshold): 3 x float32 = 96
# broadcast: 192 + 96 = 288 per client; aggregate: the same update, plus the mean's
# weight (its denominator, a float32 scalar) = 320 per client.
_NUM_CLIENTS = 3
_BROADCAST_BITS = _NUM_CLIENTS * 288
_AGGREGATE_BITS = _NUM_CLIENTS * 320


def _model_fn() -> tff.learning.models.VariableModel:
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(4,)),
      tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=7)),
  ])
  return tff.learning.models.from_keras_model(
      keras_model,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      input_spec=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int64)),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def _client_data() -> list[tf.data.Dataset]:
  rng = np.random.default_rng(0)
  return [tf.data.Dataset.from_tensor_slices(
      (rng.normal(size=(6, 4)).astype(np.float32), rng.integers(0, 3, 6).astype(np.int64))
  ).batch(3) for _ in range(_NUM_CLIENTS)]


def _process(**codec_options):
  codec = CodecSpec("uniform", {"bits": 8, **codec_options}, threshold=_THRESHOLD)
  return fedcompress.build_fedavg(_model_fn, broadcast_codec=codec, aggregate_codec=codec)


def _run(process, rounds: int = 2) -> list[dict]:
  state = process.initialize()
  data = _client_data()
  rows = []
  for _ in range(rounds):
    output = process.next(state, data)
    state = output.state
    train = output.metrics["client_work"]["train"]
    rows.append({
        "broadcast/bits": int(output.metrics["broadcast/bits"]),
        "aggregate/bits": int(output.metrics["aggregate/bits"]),
        "loss": float(train["loss"]),
        "accuracy": float(train["sparse_categorical_accuracy"]),
        "num_examples": int(train["num_examples"]),
        "weights": [np.asarray(w) for w in process.get_model_weights(state).trainable],
    })
  return rows


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise RuntimeError(f"worker.py exited early with {proc.returncode}")
    ready, _, _ = select.select([proc.stdout], [], [], 0.5)
    if ready:
      return proc.stdout.readline()
  raise RuntimeError("worker.py did not report ready in time")


def _cpu_ticks(pid: int) -> int:
  """User + system CPU ticks of process `pid` so far (from /proc)."""
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return int(fields[11]) + int(fields[12])


def _pid_exists(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  return True


@pytest.fixture(scope="module")
def workers(repo_root):
  """Two worker.py processes; yields [(address, wrapper Popen, worker_binary pid)]."""
  procs = []
  try:
    for _ in range(2):
      port = portpicker.pick_unused_port()
      procs.append((port, subprocess.Popen(
          [sys.executable, str(repo_root / "experiments" / "worker.py"), f"--port={port}"],
          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)))
    deadline = time.monotonic() + _STARTUP_S
    started = []
    for port, proc in procs:
      line = _read_line(proc, deadline)
      match = _READY.match(line)
      assert match and int(match.group(1)) == port, line
      started.append((f"127.0.0.1:{port}", proc, int(match.group(2))))
    yield started
  finally:
    runtime.set_local_context()
    for _, proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def local_rows():
  runtime.set_local_context()
  return {"stochastic": _run(_process()), "deterministic": _run(_process(deterministic=True))}


def test_remote_matches_local(workers, local_rows):
  try:
    runtime.set_remote_context([address for address, _, _ in workers])
    remote = _run(_process())
    # Nothing ran on a local worker: set_remote_context stopped it and none restarted.
    assert runtime.worker_pids() == []
  finally:
    runtime.set_local_context()
  local = local_rows["stochastic"]
  for r, loc in zip(remote, local, strict=True):
    assert r["broadcast/bits"] == loc["broadcast/bits"] == _BROADCAST_BITS
    assert r["aggregate/bits"] == loc["aggregate/bits"] == _AGGREGATE_BITS
    assert r["num_examples"] == loc["num_examples"] == 18
    # Stochastic rounding draws differ between runs, and so does the summation order.
    assert r["loss"] == pytest.approx(loc["loss"], abs=0.05)
    assert r["accuracy"] == pytest.approx(loc["accuracy"], abs=1 / 18 + 1e-6)


def test_remote_subrounds_deterministic_codec(workers, local_rows):
  # max_concurrent_clients=1 splits 3 clients over 2 workers into 3 subrounds, so one
  # worker runs two in sequence and TFF merges three partial aggregates.
  try:
    runtime.set_remote_context([address for address, _, _ in workers],
                               max_concurrent_clients=1)
    context = tff.framework.get_context_stack().current
    assert context.num_subrounds(_NUM_CLIENTS) == 3
    remote = _run(_process(deterministic=True))
  finally:
    runtime.set_local_context()
  for r, loc in zip(remote, local_rows["deterministic"], strict=True):
    assert r["broadcast/bits"] == loc["broadcast/bits"] == _BROADCAST_BITS
    assert r["aggregate/bits"] == loc["aggregate/bits"] == _AGGREGATE_BITS
    # Deterministic rounding: only float summation order differs.
    assert r["loss"] == pytest.approx(loc["loss"], rel=1e-5)
    assert r["accuracy"] == loc["accuracy"]
    for rw, lw in zip(r["weights"], loc["weights"], strict=True):
      np.testing.assert_allclose(rw, lw, rtol=1e-5, atol=1e-6)


def test_error_feedback_states_through_workers(workers, tmp_path):
  # Client state with remote workers: each worker reads and writes its clients' state
  # files (the run directory is shared; here the same machine), and the states equal
  # a local round's. Top-k is deterministic, as the states need on workers (TFF's
  # mergeable form recomputes the client work after the merge).
  from fedcompress.federated.error_feedback import build_fedavg_with_error_feedback

  codec = CodecSpec("topk", {"fraction": 0.25}, threshold=_THRESHOLD)  # 3 of 12 kept
  process = build_fedavg_with_error_feedback(_model_fn, aggregate_codec=codec)
  data = _client_data()
  state = process.initialize()
  outputs, paths = {}, {}
  try:
    for name in ("local", "remote"):
      if name == "remote":
        runtime.set_remote_context([address for address, _, _ in workers])
      paths[name] = [str(tmp_path / f"{name}_{i}.pb") for i in range(_NUM_CLIENTS)]
      first = process.next_files(state, data, [""] * _NUM_CLIENTS, paths[name])
      # A second round reads the states the first wrote.
      outputs[name] = process.next_files(first.state, data, paths[name],
                                         [p + ".2" for p in paths[name]])
  finally:
    runtime.set_local_context()
  for local_path, remote_path in zip(paths["local"], paths["remote"], strict=True):
    local, remote = (tf.io.parse_tensor(tf.io.read_file(p + ".2"), tf.float32).numpy()
                     for p in (local_path, remote_path))
    assert np.count_nonzero(local) > 0  # Top-k left a residual.
    np.testing.assert_allclose(remote, local, rtol=1e-5, atol=1e-6)
  for rw, lw in zip(*(process.get_model_weights(outputs[n].state).trainable
                      for n in ("remote", "local")), strict=True):
    np.testing.assert_allclose(rw, lw, rtol=1e-5, atol=1e-6)


def test_experiment_binary_through_workers(workers, load_binary, tmp_path):
  # The EMNIST binary, 2 rounds of the tutorial CNN on digits, 8 bits both ways
  # (stochastic rounding): once locally, once with --workers. Bits must agree exactly.
  from absl.testing import flagsaver

  from fedcompress import metrics as m
  from fedcompress.harness import reporting

  common = dict(dataset="digits", digits_clients=16, clients_per_round=2, rounds=2,
                client_learning_rate=0.05, rounds_per_eval=1, root_output_dir=str(tmp_path),
                broadcast_encoder="uniform", aggregate_encoder="uniform")
  rows = {}
  with load_binary("experiments/emnist_compression.py") as binary:
    try:
      for name, addresses in (("local", []), ("remote", [a for a, _, _ in workers])):
        cpu_before = [_cpu_ticks(pid) for _, _, pid in workers]
        with flagsaver.flagsaver(experiment_name=name, workers=addresses, **common):
          assert binary.main(["emnist_compression"]) == 0
        worked = [_cpu_ticks(pid) - t for (_, _, pid), t in zip(workers, cpu_before, strict=True)]
        if addresses:  # Both workers trained clients; no local worker was started.
          assert min(worked) > 0 and runtime.worker_pids() == []
        else:
          assert runtime.worker_pids()
        rows[name] = reporting.read_metrics_csv(str(tmp_path / name / "metrics.csv"))
    finally:
      runtime.set_local_context()
  local, remote = rows["local"], rows["remote"]
  assert [r[m.ROUND] for r in remote] == [r[m.ROUND] for r in local] == [1, 2]
  for r, loc in zip(remote, local, strict=True):
    for key in (m.BROADCAST_BITS, m.AGGREGATE_BITS, m.BROADCAST_CUMULATIVE_BITS,
                m.AGGREGATE_CUMULATIVE_BITS):
      assert r[key] == loc[key] > 0, key
    assert r[m.TRAIN_LOSS] == pytest.approx(loc[m.TRAIN_LOSS], rel=0.05)
    assert r[m.TRAIN_ACCURACY] == pytest.approx(loc[m.TRAIN_ACCURACY], abs=0.05)
    assert r[m.EVAL_ACCURACY] == pytest.approx(loc[m.EVAL_ACCURACY], abs=0.05)
    # Two rounds of two small clients leave accuracy at chance (0.1) here; the loss moves.
    assert r[m.EVAL_LOSS] == pytest.approx(loc[m.EVAL_LOSS], rel=0.01)
  assert local[0][m.EVAL_LOSS] != local[1][m.EVAL_LOSS]
  # The tutorial CNN's two kernels above 10,000 elements go out at 8 bits: 3.47x fewer.
  assert local[0][m.BROADCAST_BITS] == 2 * 15_357_536


def test_a_sweep_runs_on_its_runs_workers_then_leaves_the_process_local(workers, tmp_path):
  # A run's --workers are where it runs, as with its binary (the sweep ran every run on
  # the process's context, its config.json naming the workers); a run without them runs
  # on the context in place, here the caller's remote one, which the sweep keeps.
  from fedcompress.harness import sweep

  (address, _, pid), (other, _, other_pid) = workers
  common = "--dataset=digits --digits_clients=4 --clients_per_round=2 --rounds=1"
  try:
    runtime.set_local_context()
    before = _cpu_ticks(pid)
    sweep.run_sweep(sweep.runs_from_grid("aggregate_encoder=identity"), str(tmp_path / "a"),
                    common_flags=f"{common} --workers={address}")
    assert _cpu_ticks(pid) > before and runtime.worker_pids() == []  # Nothing ran locally.
    assert not runtime.is_remote()
    runtime.set_remote_context([other])
    before = _cpu_ticks(other_pid)
    sweep.run_sweep(sweep.runs_from_grid("aggregate_encoder=identity"), str(tmp_path / "b"),
                    common_flags=common)
    assert _cpu_ticks(other_pid) > before and runtime.is_remote()
  finally:
    runtime.set_local_context()

def test_a_driver_disposes_of_its_executors_on_the_workers(workers, monkeypatch):
  # A driver only closed its channels: each worker kept what the run's executors held,
  # 150-200 MB per run in a long-lived worker.
  from tensorflow_federated.python.core.impl.executors import remote_executor

  closed = []
  close = remote_executor.RemoteExecutor.close
  monkeypatch.setattr(remote_executor.RemoteExecutor, "close",
                      lambda self: (closed.append(self), close(self))[1])
  try:
    runtime.set_remote_context([address for address, _, _ in workers])
    _run(_process(), rounds=1)
    made = list(runtime._remote_executors)
    assert made
  finally:
    runtime.set_local_context()
  assert runtime._remote_executors == []
  assert {id(e) for e in made} <= {id(e) for e in closed}
  assert all(e._executor_id is None for e in made)  # Disposed on the worker.


def test_workers_stop_cleanly(workers):
  for _, proc, _ in workers:
    proc.send_signal(signal.SIGTERM)
  for _, proc, worker_pid in workers:
    assert proc.wait(timeout=30) == 0
    assert not _pid_exists(worker_pid)


def test_worker_that_ignores_sigterm_is_killed(repo_root):
  # worker.py forwards SIGTERM to its worker_binary and kills it 5 s later if it has not
  # stopped. The signal used to arrive during an untimed wait, which stayed untimed: a
  # worker_binary that did not stop (here: stopped with SIGSTOP) kept worker.py up.
  port = portpicker.pick_unused_port()
  proc = subprocess.Popen(
      [sys.executable, str(repo_root / "experiments" / "worker.py"), f"--port={port}"],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  try:
    match = _READY.match(_read_line(proc, time.monotonic() + _STARTUP_S))
    assert match, "worker.py did not report ready"
    worker_pid = int(match.group(2))
    os.kill(worker_pid, signal.SIGSTOP)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not _pid_exists(worker_pid)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


def test_a_worker_binary_that_dies_is_said_not_a_silent_exit(repo_root):
  # Its worker_binary gone (a relative --cache_dir it could not open ended it with
  # status 245), worker.py exited with its status and only the "ready" line on record.
  port = portpicker.pick_unused_port()
  proc = subprocess.Popen(
      [sys.executable, str(repo_root / "experiments" / "worker.py"), f"--port={port}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    match = _READY.match(_read_line(proc, time.monotonic() + _STARTUP_S))
    assert match, "worker.py did not report ready"
    os.kill(int(match.group(2)), signal.SIGKILL)
    assert proc.wait(timeout=30) == 1
    assert proc.stderr.read() == (f"error: the TFF worker_binary on port {port} exited with "
                                  "signal SIGKILL: drivers using it lose it (a dataset file it "
                                  "cannot open ends it, as a relative --cache_dir did); "
                                  "--tf_logs shows its log\n")
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.mark.parametrize("bad", ["localhost", ":80", "host:port", "host:0", "host:70000"])
def test_bad_worker_address(bad):
  with pytest.raises(ValueError, match="HOST:PORT"):
    runtime.set_remote_context([bad])


@pytest.mark.parametrize("workers", [["127.0.0.1:47321", "127.0.0.1:47321"],
                                     ["127.0.0.1:47321", "localhost:47321"]])
def test_one_worker_listed_twice_is_refused(workers):
  # Accepted, the round's shares both ran on it while the run recorded two workers.
  with pytest.raises(ValueError, match=rf"^workers {workers[0]} and {workers[1]} are one "
                     r"worker: list each worker once"):
    runtime.set_remote_context(workers)
  # Other ports of one host are other workers (refused here only for not listening).
  runtime.check_distinct_workers(["127.0.0.1:47321", "localhost:47322"])
  # A host no name can be ('a..b' fails IDNA encoding, a UnicodeError) is left to the
  # connection, which names the worker; the check ended the run without naming one.
  runtime.check_distinct_workers(["a..b:8000", "c:8000"])


def test_configure_without_workers_is_local():
  runtime.configure([], 1)
  assert not isinstance(tff.framework.get_context_stack().current, runtime._RemoteContext)
  runtime.configure(None, None)


def test_dead_worker_fails_the_computation_instead_of_retrying_forever():
  # TFF retries UNAVAILABLE without limit; after unavailable_timeout_s the stub gives up.
  worker = runtime.LocalWorker(max_concurrent_computation_calls=1).start()

  @tff.tensorflow.computation(tf.int32)
  def add_one(x):
    return x + 1

  try:
    runtime.set_remote_context([f"127.0.0.1:{worker.port}"], unavailable_timeout_s=2.0)
    assert add_one(1) == 2
    worker.stop()
    start = time.monotonic()
    with pytest.raises(runtime.WorkerUnavailableError,
                       match=rf"127\.0\.0\.1:{worker.port} has not answered for \d+ s"):
      add_one(2)
    # The first retry that finds 2 s passed raises; TFF's backoff between retries is
    # short at first (well under its 30 s cap after a few seconds of failures).
    assert time.monotonic() - start < 60
  finally:
    worker.stop()
    runtime.set_local_context()


def test_a_worker_unreachable_at_startup_says_no_checkpoint_was_written(load_binary, tmp_path,
                                                                         capsys):
  # The run fails before its directory exists: the line must not speak of checkpoints
  # "written so far", and must say what --resume would do.
  from absl.testing import flagsaver

  port = portpicker.pick_unused_port()
  with load_binary("experiments/emnist_compression.py") as binary:
    try:
      with flagsaver.flagsaver(dataset="digits", digits_clients=4, clients_per_round=2,
                               rounds=1, root_output_dir=str(tmp_path),
                               experiment_name="unreachable", workers=[f"127.0.0.1:{port}"],
                               worker_timeout_s=2):
        assert binary.main(["emnist_compression"]) == 1
    finally:
      runtime.set_local_context()
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: "), err
  assert f"127.0.0.1:{port}" in err
  assert ("No checkpoint was written yet, so a rerun with --resume starts from round 1."
          in err), err
  assert "written so far" not in err


def test_python_callers_on_workers_meet_the_binaries_refusals(tmp_path):
  # A notebook that sets the remote context itself, then calls run_experiment: an
  # unseeded uplink codec (a mean off by 129% through workers) and secure sums (a TFF
  # type dump at round 1) are refused before the run directory is made, as the binaries
  # refuse them with --workers.
  from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

  import fedcompress
  from fedcompress import codecs, tasks
  from fedcompress.harness import experiment

  codecs.register_stage("te_hadamard_of_a_caller", te.stages.HadamardEncodingStage)
  worker = runtime.LocalWorker(max_concurrent_computation_calls=1).start()
  task = tasks.digits_task(num_clients=4, seed=0)
  base = dict(root_output_dir=str(tmp_path), rounds=1, clients_per_round=2)
  unseeded = fedcompress.ExperimentConfig(
      experiment_name="unseeded", **base,
      aggregate_codec=CodecSpec("te_hadamard_of_a_caller", threshold=10))
  secure = fedcompress.ExperimentConfig(
      experiment_name="secure", **base, secure_aggregation=True,
      aggregate_codec=CodecSpec("fixed_int", {"bits": 16, "clip": 1.0}, threshold=0),
      client_weighting="uniform")
  try:
    experiment.check_experiment(task, unseeded)  # Locally: accepted.
    experiment.check_experiment(task, secure)
    runtime.set_remote_context([f"127.0.0.1:{worker.port}"])
    assert runtime.is_remote()
    with pytest.raises(ValueError, match=r"^the aggregate codec 'te_hadamard_of_a_caller' "
                       r"draws its parameters from TensorFlow's global generator"):
      fedcompress.run_experiment(task, unseeded)
    with pytest.raises(ValueError, match=r"^--secure_aggregation \(and --dp=distributed\) "
                       "cannot run on --workers"):
      fedcompress.run_experiment(task, secure)
    assert not os.listdir(tmp_path)
  finally:
    runtime.set_local_context()
    worker.stop()
    codecs.unregister("te_hadamard_of_a_caller")
  assert not runtime.is_remote()

