"""Issues 8 and 13: each bad input is one `error: ...` line, a non-zero exit, no files.

One test per bad input. Flag errors absl finds before `main()` runs are tested through
the binaries' own parser (`parse_flags`, in-process), or on the real command line (a
subprocess) where the whole path matters (an input that used to hang); the rest call
`main()` in-process on the embedded digits (EMNIST binary) or a generated Shakespeare
sqlite and a tiny model. Every test has a deadline: an input that hangs fails it.
"""

import collections
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import portpicker
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from absl.testing import flagsaver

from fedcompress.harness.cli import parse_flags
from fedcompress.tasks.models import char_rnn
from tools import sample_data

pytestmark = pytest.mark.slow  # builds processes and runs binaries

USAGE_ERROR = 2
# Longest any test here may take (the subprocess ones import TensorFlow, on 2 busy cores).
DEADLINE_S = 600


@pytest.fixture(autouse=True)
def _deadline():
  """Fails a test that runs longer than DEADLINE_S (an input that hangs)."""

  def expire(signum, frame):  # noqa: ARG001
    raise TimeoutError(f"the test did not finish within {DEADLINE_S}s")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.alarm(DEADLINE_S)
  try:
    yield
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _assert_one_error_line(err: str, *fragments: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: "), lines
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


def _parse_error(capsys, *args: str) -> str:
  """Parses `args` with the binaries' parser; asserts exit 2 and one error line."""
  capsys.readouterr()
  with flagsaver.flagsaver(), pytest.raises(SystemExit) as exit_info:
    parse_flags(["binary", *args])
  out, err = capsys.readouterr()
  assert exit_info.value.code == USAGE_ERROR, (out, err)
  assert out == ""
  return _assert_one_error_line(err)


def _session_processes(sid: int) -> list[int]:
  """Processes still alive in session `sid` (a subprocess started with a new session)."""
  pids = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open(f"/proc/{entry}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[3]) == sid and fields[0] != "Z":
      pids.append(int(entry))
  return pids


def _snapshot(root) -> dict[str, str]:
  """Every file under `root` -> digest of its content."""
  out = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


# ---------------------------------------------------------------------------------------
# Flag errors (before main): the real command line.


def _command_line(repo_root, tmp_path, *args, binary="experiments/emnist_compression.py",
                  timeout=DEADLINE_S - 60, output=True):
  """Runs a binary; asserts it wrote no run directory and left no process behind."""
  runs = tmp_path / "runs"
  proc = subprocess.Popen(
      [sys.executable, binary, *args, *([f"--root_output_dir={runs}"] if output else [])],
      cwd=repo_root,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
  try:
    out, err = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    pytest.fail(f"{binary} {' '.join(args)} did not exit within {timeout}s")
  time.sleep(0.5)  # The kernel delivers a worker's parent-death signal.
  assert _session_processes(proc.pid) == [], "a process of the run outlived it"
  assert not runs.exists()
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_plot_of_a_file_instead_of_a_run_is_one_line(repo_root, tmp_path):
  # A run is a directory holding metrics.csv; the CSV itself (or any file) is a
  # mistake the plot names, not a NotADirectoryError traceback.
  csv_file = tmp_path / "metrics.csv"
  csv_file.write_text("round\n1\n")
  result = _command_line(repo_root, tmp_path, f"--runs={csv_file}",
                         f"--output={tmp_path / 'plot.png'}", binary="experiments/plot.py",
                         output=False)
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "metrics.csv")


def test_flag_errors_are_one_line_in_every_binary(repo_root, tmp_path):
  # plot.py loads no TensorFlow: a quick check that the other binaries share the parser.
  result = _command_line(repo_root, tmp_path, "--no_such_flag", binary="experiments/plot.py")
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "no_such_flag")
  for path in ("experiments/emnist_compression.py", "experiments/shakespeare_finetune.py",
               "experiments/sweep.py", "experiments/plot.py", "experiments/demo.py",
               "experiments/pretrain_char_rnn.py", "experiments/worker.py",
               "tools/run_chaos.py", "tools/compare_codecs.py"):
    source = (repo_root / path).read_text()
    assert "flags_parser=parse_flags" in source, path
    assert "interruptible(main" in source, path


def test_pretrain_number_flags(repo_root, tmp_path):
  # Issue 13: --learning_rate=inf passed pretrain_char_rnn's check and trained to NaN.
  # The real command line once; the other number flags in-process (TestPretrainFlags).
  text = tmp_path / "t.txt"
  text.write_text("abc " * 1000)
  result = _command_line(repo_root, tmp_path, "--learning_rate=inf", f"--text_files={text}",
                         f"--output={tmp_path / 'm.keras'}",
                         binary="experiments/pretrain_char_rnn.py", output=False)
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "--learning_rate")
  assert not (tmp_path / "m.keras").exists()


@pytest.fixture(scope="class")
def pretrain_binary(load_binary):
  with load_binary("experiments/pretrain_char_rnn.py") as module:
    yield module


@pytest.mark.usefixtures("pretrain_binary")
class TestPretrainFlags:
  """pretrain_char_rnn's number flags through its own parser (flags it defined)."""

  @pytest.mark.parametrize("flag", ["--learning_rate=nan", "--batch_size=0",
                                    "--steps_per_epoch=-1"])
  def test_number_out_of_range(self, tmp_path, capsys, flag):
    line = _parse_error(capsys, flag, "--text_files=t.txt", f"--output={tmp_path / 'm.keras'}")
    assert flag.split("=")[0] in line
    assert not (tmp_path / "m.keras").exists()


def test_worker_flag_errors_are_one_line(repo_root, tmp_path):
  # Issue 13, item 10: worker.py printed absl's 'FATAL Flags parsing error' on two lines
  # and its 21-line usage text.
  result = _command_line(repo_root, tmp_path, binary="experiments/worker.py", output=False)
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "--port")
  assert result.stdout == ""


def test_digits_alpha_zero_does_not_hang(repo_root, tmp_path):
  # Issue 13, item 8: numpy's Dirichlet sampler never returned (and ignored SIGINT and
  # SIGTERM) with alpha 0. Now the command line is refused before anything loads.
  result = _command_line(repo_root, tmp_path, "--dataset=digits", "--digits_alpha=0",
                         timeout=300)
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "--digits_alpha=0.0", "must be a finite number")


# ---------------------------------------------------------------------------------------
# EMNIST binary, main() in-process on the embedded digits.


# Class-scoped: absl flags are process-global and both binaries define --rounds etc.,
# so each class loads its binary and removes its flags when it is done.
@pytest.fixture(scope="class")
def emnist_binary(load_binary):
  with load_binary("experiments/emnist_compression.py") as module:
    yield module


@pytest.fixture(scope="class")
def finished_run(emnist_binary, tmp_path_factory):
  """A finished 1-round EMNIST run (identity codecs, SGD) to resume wrongly."""
  root = tmp_path_factory.mktemp("finished")
  assert TestEmnist.run(emnist_binary, root) == 0
  return root / "run"


class TestEmnist:

  @pytest.fixture
  def binary(self, emnist_binary):
    return emnist_binary

  @staticmethod
  def run(binary, root, **flag_values):
    values = dict(dataset="digits", digits_clients=16, clients_per_round=2, rounds=1,
                  rounds_per_eval=1, root_output_dir=str(root), experiment_name="run")
    values.update(flag_values)
    with flagsaver.flagsaver(**values):
      return binary.main(["emnist_compression"])

  def check(self, binary, tmp_path, capsys, *fragments, **flag_values):
    """Runs with `flag_values`; asserts the one-line error and that nothing was written."""
    root = tmp_path / "runs"
    rc = self.run(binary, root, **flag_values)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, *fragments)
    assert not root.exists()

  def test_refusal_when_the_process_is_built_leaves_no_run_directory(self, binary, tmp_path,
                                                                      capsys):
    # The budget is checked against the model when the process is built, under the
    # run directory's lock: the folder was left behind, holding only .lock.
    root = tmp_path / "runs"
    rc = self.run(binary, root, aggregate_encoder="uniform",
                  aggregate_bits_per_coordinate=0.001)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "does not cover")
    assert not (root / "run").exists()

  @pytest.mark.parametrize("direction,bits", [("broadcast", 0), ("aggregate", 17),
                                              ("aggregate", -8)])
  def test_bits_outside_1_to_16(self, binary, tmp_path, capsys, direction, bits):
    self.check(binary, tmp_path, capsys, "bits must be an integer in 1..16", str(bits),
               **{f"{direction}_encoder": "uniform", f"{direction}_bits": bits})

  def test_unknown_codec_name(self, binary, tmp_path, capsys):
    # Through the binaries' parser, in-process (the command line's whole path is
    # test_digits_alpha_zero_does_not_hang's).
    line = _parse_error(capsys, "--broadcast_encoder=nope", "--dataset=digits",
                        f"--root_output_dir={tmp_path / 'runs'}")
    assert "--broadcast_encoder=nope" in line
    for name in ("identity", "uniform", "hadamard"):  # The valid ones are listed.
      assert name in line
    assert not (tmp_path / "runs").exists()

  def test_flagfile_that_does_not_exist(self, binary, tmp_path, capsys):
    missing = tmp_path / "nope.flags"
    line = _parse_error(capsys, f"--flagfile={missing}")
    assert "Unable to open flagfile" in line and str(missing) in line

  def test_flagfile_that_is_not_utf8(self, binary, tmp_path, capsys):
    # absl let the UnicodeDecodeError through: a 20-line traceback and exit 1.
    latin1 = tmp_path / "latin1.flags"
    latin1.write_bytes("# Lernrate für digits\n--dataset=digits\n".encode("latin-1"))
    line = _parse_error(capsys, f"--flagfile={latin1}")
    assert str(latin1) in line and "is not UTF-8 text: byte 0xfc" in line

  def test_flagfile_with_a_byte_order_mark(self, binary, tmp_path, capsys):
    # Said as "unexpected arguments: --rounds=1", the mark invisible in the line.
    marked = tmp_path / "windows.flags"
    marked.write_text("--rounds=1\n--dataset=digits\n", encoding="utf-8-sig")
    line = _parse_error(capsys, f"--flagfile={marked}")
    assert line == ("error: '--rounds=1' starts with an invisible byte-order mark (U+FEFF): "
                    "save the flagfile as UTF-8 without one")

  def test_unknown_codec_option(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "codec 'uniform'", "levels",
               aggregate_encoder="uniform", aggregate_encoder_args="levels=3")

  def test_aggregator_with_an_aggregate_codec(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "--aggregator=fetchsgd replaces the encoded mean",
               aggregator="fetchsgd", aggregate_encoder="drive")

  def test_codec_errors_name_the_flags_that_gave_the_value(self, binary, tmp_path, capsys):
    # Both widths set: 'bits must be an integer in 1..16, got 20' named neither flag.
    self.check(binary, tmp_path, capsys, "--aggregate_encoder=uniform --aggregate_bits=20: "
               "bits must be an integer in 1..16, got 20", broadcast_encoder="uniform",
               broadcast_bits=8, aggregate_encoder="uniform", aggregate_bits=20)
    self.check(binary, tmp_path, capsys, "--broadcast_encoder=fixed_int "
               "--broadcast_encoder_args=clip=0: clip must be", broadcast_encoder="fixed_int",
               broadcast_encoder_args="clip=0")

  def test_more_clients_per_round_than_clients(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "--clients_per_round=17", "only 16 clients",
               clients_per_round=17)

  def parse_check(self, tmp_path, capsys, *args: str) -> str:
    """The command line `args` is refused by the parser: one line, exit 2, nothing made."""
    root = tmp_path / "runs"
    line = _parse_error(capsys, "--dataset=digits", f"--root_output_dir={root}", *args)
    assert not root.exists()
    return line

  # Numbers out of range or not finite: refused when the command line is parsed, the
  # flag named (issue 13, items 6, 8, 9 and 10). Each used to hang, train on garbage,
  # write NaN checkpoints, or fail with a traceback or an unnamed message.
  @pytest.mark.parametrize("arg,fragment", [
      ("--clients_per_round=0", "must be an integer >= 1"),
      ("--clients_per_round=-2", "must be an integer >= 1"),
      ("--rounds=0", "must be an integer >= 1"),
      ("--rounds=-1", "must be an integer >= 1"),
      ("--digits_alpha=0", "must be a finite number >= 1e-06"),
      ("--digits_alpha=nan", "must be a finite number >= 1e-06"),
      ("--digits_alpha=-1", "must be a finite number >= 1e-06"),
      ("--client_epochs=-1", "must be an integer >= 1"),
      ("--client_epochs=0", "must be an integer >= 1"),
      ("--worker_timeout_s=nan", "must be a finite number > 0"),
      ("--worker_timeout_s=0", "must be a finite number > 0"),
      ("--worker_timeout_s=inf", "must be a finite number > 0"),
      ("--client_batch_size=0", "must be an integer >= 1"),
      ("--client_batch_size=-5", "must be an integer >= 1"),
      ("--server_learning_rate=inf", "must be a finite number > 0"),
      ("--server_learning_rate=1e39", "float32"),
      ("--client_learning_rate=nan", "must be a finite number > 0"),
      ("--client_learning_rate=0", "must be a finite number > 0"),
      ("--seed=-1", "must be an integer in 0..4294967295"),
      ("--digits_clients=0", "must be an integer >= 1"),
      ("--rounds_per_eval=0", "must be an integer >= 1"),
      ("--compression_threshold=-1", "must be an integer >= 0"),
  ])
  def test_number_out_of_range(self, binary, tmp_path, capsys, arg, fragment):
    name = arg.split("=")[0]
    line = self.parse_check(tmp_path, capsys, arg)
    assert f"flag {name}=" in line and fragment in line, line

  @pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../escape", " ", "\t"])
  def test_experiment_name_must_be_a_plain_folder_name(self, binary, tmp_path, capsys, name):
    # Issue 13, item 7: '..' wrote the run into the parent of --root_output_dir, '.'
    # straight into it.
    root = tmp_path / "runs" / "inner"
    rc = self.run(binary, root, experiment_name=name)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "--experiment_name must be a plain folder name")
    assert list(tmp_path.iterdir()) == []

  def test_cache_dir_that_is_a_file(self, binary, tmp_path, capsys):
    # Issue 13, item 10: it said the dataset "could not be downloaded".
    cache = tmp_path / "emnist_all.sqlite"
    cache.write_text("a file\n")
    self.check(binary, tmp_path, capsys, f"--cache_dir {cache} is a file, not a folder",
               dataset="emnist", cache_dir=str(cache))
    assert cache.read_text() == "a file\n"

  @pytest.mark.parametrize("value", ["no", "off", "yes"])
  def test_codec_booleans_only_true_false_1_0(self, binary, tmp_path, capsys, value):
    # Issue 13, item 5 (fixed by the codec records): 'deterministic=no' turned
    # deterministic rounding on.
    self.check(binary, tmp_path, capsys, f"deterministic={value!r}", "true/false",
               aggregate_encoder="uniform", aggregate_encoder_args=f"deterministic={value}")

  def test_unreachable_worker(self, binary, tmp_path, capsys):
    port = portpicker.pick_unused_port()  # Nothing listens there.
    root = tmp_path / "runs"
    rc = self.run(binary, root, workers=[f"127.0.0.1:{port}"], worker_timeout_s=1.0)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    _assert_one_error_line(err, f"TFF worker at 127.0.0.1:{port} not ready after 1s",
                           "experiments/worker.py")
    assert not root.exists()

  def test_a_folder_holding_a_run_is_refused_before_the_workers_are_waited_for(
      self, binary, tmp_path, capsys):
    # It waited --worker_timeout_s for an unreachable worker, then advised --resume,
    # which the run of other settings in the folder then refused.
    port = portpicker.pick_unused_port()
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text('{"seed": 5}')
    started = time.monotonic()
    rc = self.run(binary, tmp_path / "runs", workers=[f"127.0.0.1:{port}"],
                  worker_timeout_s=60.0)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, f"{run_dir} already holds a run; pass --resume")
    assert time.monotonic() - started < 60

  def test_secure_aggregation_on_unreachable_workers_is_refused_at_once(self, binary,
                                                                         tmp_path, capsys):
    # The workers were waited for first: the refusal came only once they accepted
    # connections, and with none listening the run waited --worker_timeout_s to report
    # the worker instead.
    port = portpicker.pick_unused_port()
    started = time.monotonic()
    self.check(binary, tmp_path, capsys, "--secure_aggregation (and --dp=distributed) "
               "cannot run on --workers", secure_aggregation=True,
               aggregate_encoder="fixed_int", client_weighting="uniform",
               workers=[f"127.0.0.1:{port}"], worker_timeout_s=60.0)
    assert time.monotonic() - started < 60

  @pytest.mark.parametrize("where", ["under_a_file", "proc"])
  def test_unwritable_output_dir(self, binary, tmp_path, capsys, where):
    # Tests may run as root, whom file modes do not stop: a path under a regular file,
    # or in /proc, cannot be created by anyone.
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file\n")
    root = blocker / "runs" if where == "under_a_file" else "/proc/fedcompress_test/runs"
    rc = self.run(binary, root)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "cannot write to", str(root))
    assert blocker.read_text() == "a file\n"
    assert not os.path.exists("/proc/fedcompress_test")

  @pytest.mark.parametrize("content", ["text", "other_sqlite"])
  def test_cache_dir_file_that_is_not_tffs_sqlite(self, binary, tmp_path, capsys, content):
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / "emnist_all.sqlite"
    if content == "text":
      path.write_text("not a database")
    else:  # A real SQLite file, but not TFF's tables.
      with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    # It is there: "not cached ... put it in" would send the user looking for it.
    self.check(binary, tmp_path, capsys, "emnist_all.sqlite", "--cache_dir",
               "is there but cannot be read", dataset="emnist", cache_dir=str(cache))

  def test_damaged_examples_in_the_cached_sqlite(self, binary, tmp_path, capsys):
    # Loading reads only the client list: damaged example pages are first read by a
    # client's dataset inside the TFF worker, whose gRPC error was a 86-line traceback.
    cache = tmp_path / "cache"
    path = sample_data.write_random_emnist_sqlite(
        cache / "emnist_all.sqlite",
        {**{f"f{i:04d}_train": ("digits_only_train", 20) for i in range(3)},
         "f0000_test": ("digits_only_test", 5)}, num_classes=10)
    with sqlite3.connect(path) as db:
      page_size = db.execute("PRAGMA page_size").fetchone()[0]
      pages = [r[0] for r in db.execute(
          "SELECT pageno FROM dbstat WHERE name = 'examples' AND pagetype != 'internal'")]
    with open(path, "r+b") as f:
      for page in pages[len(pages) // 2:]:
        f.seek((page - 1) * page_size)
        f.write(b"\xff" * page_size)
    rc = self.run(binary, tmp_path / "runs", dataset="emnist", cache_dir=str(cache),
                  clients_per_round=3)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    _assert_one_error_line(err, "a round failed in the TFF worker: ",
                           "database disk image is malformed",
                           "No checkpoint was written yet, so a rerun with --resume starts "
                           "from round 1.")

  # A record that does not parse ended the run in an 11-frame InvalidArgumentError
  # traceback; bytes that are not UTF-8 in TensorFlow's error message, in "error: 'utf-8'
  # codec can't decode byte 0xbe", naming neither the evaluation nor the file.
  @pytest.mark.parametrize("record", ["CAST('not a tf.Example' AS BLOB)", "X'DEADBEEF'"])
  def test_damaged_test_examples_read_by_the_evaluation(self, binary, tmp_path, capsys,
                                                        record):
    # The test split is read on the driver, by the evaluation after round 1.
    cache = tmp_path / "cache"
    path = sample_data.write_random_emnist_sqlite(
        cache / "emnist_all.sqlite",
        {**{f"f{i:04d}_train": ("digits_only_train", 20) for i in range(3)},
         "f0000_test": ("digits_only_test", 5)}, num_classes=10)
    with sqlite3.connect(path) as db:
      db.execute(f"UPDATE examples SET serialized_example_proto = {record} "
                 "WHERE split_name = 'digits_only_test'")
    rc = self.run(binary, tmp_path / "runs", dataset="emnist", cache_dir=str(cache),
                  clients_per_round=3)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    _assert_one_error_line(err, "the evaluation on the test split could not read its data",
                           "damaged dataset file", "replace it")

  def resume_copy(self, finished_run, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(finished_run, root / "run")
    return root

  def test_resume_with_another_codec(self, binary, finished_run, tmp_path, capsys):
    root = self.resume_copy(finished_run, tmp_path)
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2, aggregate_encoder="uniform")
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "cannot resume", "aggregate_codec uniform(bits=8)>10000 "
                           "(recorded identity>10000)", "--experiment_name")
    assert _snapshot(root) == before

  def test_resume_must_match_the_record(self, binary, finished_run, tmp_path, capsys):
    # Issue 13, item 3: a resume with another seed, split or learning rate ran on other
    # data and rewrote config.json; a lower --rounds was recorded as the run's rounds.
    root = self.resume_copy(finished_run, tmp_path)
    config_before = (root / "run" / "config.json").read_text()
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2, seed=1, digits_clients=17,
                  client_learning_rate=0.5)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "cannot resume", "--seed=1 (recorded 0)",
                           "--digits_clients=17 (recorded 16)",
                           "--client_learning_rate=0.5 (recorded 0.02)")
    assert _snapshot(root) == before
    # Raising --rounds continues the run and adds a segment; config.json stays as written.
    assert self.run(binary, root, resume=True, rounds=2) == 0
    info = json.loads((root / "run" / "run_info.json").read_text())
    assert [(s["rounds"], s["first_round"], s["last_round"]) for s in info["segments"]] == [
        (1, 1, 1), (2, 2, 2)]
    # Lowering it again is refused: the run was already set to 2 rounds.
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=1)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "--rounds=1 (recorded 2; rounds may only go up)")
    assert _snapshot(root) == before
    assert (root / "run" / "config.json").read_text() == config_before

  def test_second_writer_is_refused(self, binary, finished_run, repo_root, tmp_path, capsys):
    # Issue 13, item 2: two runs of one experiment at once interleaved their rows and
    # checkpoints. Another process holds the run directory the way a running binary does
    # (`run_experiment` keeps `rundir.lock_run_dir` for the whole run); starting a real
    # binary for it would spend most of this test importing TensorFlow.
    root = self.resume_copy(finished_run, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from fedcompress.harness import rundir\n"
         "with rundir.lock_run_dir(sys.argv[1]):\n"
         "  print('locked', flush=True)\n"
         "  time.sleep(600)\n", str(root / "run")],
        cwd=repo_root, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
      assert holder.stdout.readline().strip() == "locked"
      before = _snapshot(root)
      capsys.readouterr()
      rc = self.run(binary, root, resume=True, rounds=3)
      out, err = capsys.readouterr()
      assert rc == USAGE_ERROR, (out, err)
      _assert_one_error_line(err, str(root / "run"), "being written by another process")
      assert _snapshot(root) == before
      # Killed, the holder's lock goes with it: the run's own --resume works at once.
      os.killpg(holder.pid, signal.SIGKILL)
      holder.wait()
    finally:
      if holder.poll() is None:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
      holder.stdout.close()
    assert self.run(binary, root, resume=True, rounds=3) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("done: 3 rounds")
    rows = (root / "run" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]

  def test_damaged_metrics_on_resume(self, binary, finished_run, tmp_path, capsys):
    # Issue 13, item 9: a garbage metrics.csv gave a KeyError traceback; a last row cut
    # short was kept as if it were complete.
    root = self.resume_copy(finished_run, tmp_path)
    metrics = root / "run" / "metrics.csv"
    complete = metrics.read_text()
    metrics.write_text("garbage\nxx,yy\n")
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "cannot resume", str(metrics), "not a fedcompress metrics.csv")
    assert _snapshot(root) == before
    # The row of checkpointed round 1 cut short: its metrics would be lost.
    metrics.write_text(complete[:-40])
    before = _snapshot(root)
    rc = self.run(binary, root, resume=True, rounds=2)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "last row", "cut short", "round_1")
    assert _snapshot(root) == before
    # A kill while round 2's row was written (after checkpoint 1): the row is redone.
    metrics.write_text(complete + complete.splitlines()[-1].replace("1,", "2,", 1)[:30])
    assert self.run(binary, root, resume=True, rounds=2) == 0
    lines = metrics.read_text().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2"]
    assert lines[1] == complete.splitlines()[1]
    assert len(lines[2].split(",")) == len(lines[0].split(","))

  def test_invalid_config_json_is_named(self, binary, finished_run, tmp_path, capsys):
    # Issue 13, item 10: a bare JSONDecodeError without the file's name.
    root = self.resume_copy(finished_run, tmp_path)
    config = root / "run" / "config.json"
    config.write_text('{"rounds": 1,')
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, str(config), "is not valid JSON")
    assert _snapshot(root) == before

  def test_rounds_without_any_client_and_a_non_finite_model(self, binary, tmp_path, capsys):
    # Issue 13, item 6: rounds where every client was left out printed loss=0.0000,
    # accuracy=0.0000, as if training went perfectly; a model that became NaN or Inf was
    # checkpointed and the run exited 0.
    root = tmp_path / "rejected"
    assert self.run(binary, root, rounds=2, client_learning_rate=1e30) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "round   1, train/loss=n/a, train/accuracy=n/a" in lines[0]
    assert lines[1] == ("warning: round 1: all 2 clients were left out (non-finite "
                        "updates, or no examples): no update was averaged and train loss "
                        "and accuracy are left empty")
    rows = (root / "run" / "metrics.csv").read_text().splitlines()
    columns = rows[0].split(",")
    for row in rows[1:]:
      values = dict(zip(columns, row.split(","), strict=True))
      assert values["train/loss"] == values["train/accuracy"] == ""
      assert values["aggregate/rejected_clients"] == "2"

    # Client updates finite but huge, and a server step that overflows float32.
    root = tmp_path / "non_finite"
    rc = self.run(binary, root, rounds=2, client_learning_rate=100.0,
                  server_learning_rate=3e38, client_batch_size=1000)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    _assert_one_error_line(err, "round 1 made the model weights non-finite",
                           "no checkpoint had been written")
    checkpoints = root / "run" / "checkpoints"
    assert not (checkpoints.exists() and any(checkpoints.iterdir()))
    assert not (root / "run" / "metrics.csv").exists()  # No round was reported.

  def test_checkpoint_of_another_model_state(self, binary, finished_run, tmp_path, capsys):
    # Where the record does not hold what the rounds ran with (here edited by hand), the
    # checkpoint itself is checked: momentum adds server optimizer state that the SGD
    # run's checkpoint does not have.
    root = self.resume_copy(finished_run, tmp_path)
    config_file = root / "run" / "config.json"
    record = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**record, "server_optimizer": "sgdm"}))
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2, server_optimizer="sgdm")
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "checkpoint round_1", "different model or codec")
    assert _snapshot(root) == before
    # Without config.json nothing tells what the rounds ran with: they were resumed at
    # any settings, which then became their record.
    config_file.unlink()
    before = _snapshot(root)
    rc = self.run(binary, root, resume=True, rounds=2)
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "holds rounds but no config.json")
    assert _snapshot(root) == before  # config.json was not written either.


# ---------------------------------------------------------------------------------------
# Shakespeare binary, main() in-process on a generated sqlite and a tiny model.


@pytest.fixture(scope="class")
def shakespeare_binary(load_binary):
  with load_binary("experiments/shakespeare_finetune.py") as module:
    yield module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A shakespeare.sqlite in TFF's format, written by TFF's own writer."""
  root = tmp_path_factory.mktemp("shakespeare")
  clients = {"HAMLET": ("train", 20), "HORATIO": ("test", 10)}

  def dataset_fn(client_id):
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        snippets=tf.constant(["To be, or not to be, that is the question: " * 2]
                             * clients[client_id][1])))

  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, str(root / "shakespeare.sqlite"),
      split_names_by_client_id={c: s for c, (s, _) in clients.items()})
  return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  path = tmp_path_factory.mktemp("model") / "tiny.keras"
  char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, seed=0).save(str(path))
  return str(path)


class TestShakespeare:

  @pytest.fixture
  def binary(self, shakespeare_binary):
    return shakespeare_binary

  def check(self, binary, tmp_path, capsys, data_dir, tiny_model, *fragments, **overrides):
    root = tmp_path / "runs"
    values = dict(pretrained_model=tiny_model, cache_dir=str(data_dir), clients=["HAMLET"],
                  rounds=1, root_output_dir=str(root), experiment_name="bad")
    values.update(overrides)
    with flagsaver.flagsaver(**values):
      rc = binary.main(["shakespeare_finetune"])
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, *fragments)
    assert not root.exists()

  @pytest.mark.parametrize("arg,fragment", [
      # Issue 13, item 9: an IndexError after the whole fine-tuning had run.
      ("--temperature=nan", "must be a finite number > 0"),
      # Issue 13, item 10: the message did not name the flag.
      ("--max_eval_batches=0", "must be an integer >= 1"),
      ("--max_batches_per_client=0", "must be an integer >= 1"),
      ("--num_generate=-1", "must be an integer >= 0"),
  ])
  def test_number_out_of_range(self, binary, tmp_path, capsys, arg, fragment):
    root = tmp_path / "runs"
    line = _parse_error(capsys, f"--root_output_dir={root}", arg)
    assert f"flag {arg.split('=')[0]}=" in line and fragment in line, line
    assert not root.exists()

  def test_secure_aggregation_on_unreachable_workers_is_refused_at_once(
      self, binary, tmp_path, capsys, data_dir, tiny_model):
    # As the EMNIST binary's: the refusal waited for the workers first.
    port = portpicker.pick_unused_port()
    started = time.monotonic()
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, "--secure_aggregation (and "
               "--dp=distributed) cannot run on --workers", secure_aggregation=True,
               aggregate_encoder="fixed_int", client_weighting="uniform",
               workers=[f"127.0.0.1:{port}"], worker_timeout_s=60.0)
    assert time.monotonic() - started < 60

  def test_unknown_client_id(self, binary, tmp_path, capsys, data_dir, tiny_model):
    self.check(binary, tmp_path, capsys, data_dir, tiny_model,
               "--clients: unknown client id: NOBODY", clients=["NOBODY"])
    # The flag named: the message was the same for either.
    self.check(binary, tmp_path, capsys, data_dir, tiny_model,
               "--sanity_client: unknown client id: NOBODY", sanity_client="NOBODY")
    self.check(binary, tmp_path, capsys, data_dir, tiny_model,
               "--clients: unknown client id(s): NOBODY", clients=["HAMLET", "NOBODY"],
               clients_per_round=2)
    # Sampled clients: the tutorial's default sanity client, not in this data, is
    # --sanity_client's default (it blamed --clients, which was not given).
    self.check(binary, tmp_path, capsys, data_dir, tiny_model,
               "--sanity_client: unknown client id: THE_TRAGEDY_OF_KING_LEAR_KING (its "
               "default)", clients=[], clients_per_round=2)

  def test_missing_pretrained_model(self, binary, tmp_path, capsys, data_dir, tiny_model):
    missing = str(tmp_path / "missing.keras")
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, missing, "does not exist",
               pretrained_model=missing)

  def test_corrupt_pretrained_model(self, binary, tmp_path, capsys, data_dir, tiny_model):
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, "cannot load --pretrained_model",
               pretrained_model=str(corrupt))

  def test_text_not_in_vocabulary(self, binary, tmp_path, capsys, data_dir, tiny_model):
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, "vocabulary",
               generate_prompt="snow \u2603")

  @pytest.mark.parametrize("content", ["text", "other_sqlite"])
  def test_cache_dir_file_that_is_not_tffs_sqlite(self, binary, tmp_path, capsys, data_dir,
                                                  tiny_model, content):
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / "shakespeare.sqlite"
    if content == "text":
      path.write_text("not a database")
    else:
      with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, "shakespeare.sqlite",
               "--cache_dir", "is there but cannot be read", cache_dir=str(cache))
    assert path.exists()  # The user's file is not deleted.
