"""Issue 8, point 1: each bad input is one `error: ...` line, a non-zero exit, no files.

One test per bad input. Flag errors absl finds before `main()` runs are tested on the
real command line (a subprocess); the rest call `main()` in-process on the embedded
digits (EMNIST binary) or a generated Shakespeare sqlite and a tiny model.
"""

import collections
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys

import portpicker
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from absl.testing import flagsaver

from fedcompress.tasks.models import char_rnn

pytestmark = pytest.mark.slow  # builds processes and runs binaries

USAGE_ERROR = 2


def _assert_one_error_line(err: str, *fragments: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1, lines
  assert lines[0].startswith("error: "), lines
  assert "Traceback" not in err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


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


def _command_line(repo_root, tmp_path, *args, binary="experiments/emnist_compression.py"):
  runs = tmp_path / "runs"
  result = subprocess.run(
      [sys.executable, binary, *args, f"--root_output_dir={runs}"], cwd=repo_root,
      capture_output=True, text=True, timeout=600, check=False)
  assert not runs.exists()
  return result


def test_unknown_codec_name(repo_root, tmp_path):
  result = _command_line(repo_root, tmp_path, "--broadcast_encoder=nope", "--dataset=digits")
  assert result.returncode == USAGE_ERROR, result.stderr
  line = _assert_one_error_line(result.stderr, "--broadcast_encoder=nope")
  for name in ("identity", "uniform", "hadamard"):  # The valid ones are listed.
    assert name in line
  assert result.stdout == ""


def test_flagfile_that_does_not_exist(repo_root, tmp_path):
  missing = tmp_path / "nope.flags"
  result = _command_line(repo_root, tmp_path, f"--flagfile={missing}")
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "Unable to open flagfile", str(missing))


def test_flag_errors_are_one_line_in_every_binary(repo_root, tmp_path):
  # plot.py loads no TensorFlow: a quick check that the other binaries share the parser.
  result = _command_line(repo_root, tmp_path, "--no_such_flag", binary="experiments/plot.py")
  assert result.returncode == USAGE_ERROR, result.stderr
  _assert_one_error_line(result.stderr, "no_such_flag")
  for path in ("experiments/emnist_compression.py", "experiments/shakespeare_finetune.py",
               "experiments/sweep.py", "experiments/plot.py", "experiments/demo.py",
               "experiments/pretrain_char_rnn.py", "tools/run_chaos.py",
               "tools/compare_codecs.py"):
    source = (repo_root / path).read_text()
    assert "flags_parser=parse_flags" in source, path


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
    values = dict(dataset="digits", digits_clients=4, clients_per_round=2, rounds=1,
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

  @pytest.mark.parametrize("direction,bits", [("broadcast", 0), ("aggregate", 17),
                                              ("aggregate", -8)])
  def test_bits_outside_1_to_16(self, binary, tmp_path, capsys, direction, bits):
    self.check(binary, tmp_path, capsys, "bits must be an integer in 1..16", str(bits),
               **{f"{direction}_encoder": "uniform", f"{direction}_bits": bits})

  def test_unknown_codec_option(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "codec 'uniform'", "levels",
               aggregate_encoder="uniform", aggregate_encoder_args="levels=3")

  def test_negative_threshold(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "threshold must be a non-negative integer", "-1",
               compression_threshold=-1)

  def test_more_clients_per_round_than_clients(self, binary, tmp_path, capsys):
    self.check(binary, tmp_path, capsys, "--clients_per_round=5", "only 4 clients",
               clients_per_round=5)

  @pytest.mark.parametrize("clients", [0, -2])
  def test_clients_per_round_below_one(self, binary, tmp_path, capsys, clients):
    self.check(binary, tmp_path, capsys, "--clients_per_round must be >= 1",
               clients_per_round=clients)

  @pytest.mark.parametrize("rounds", [0, -1])
  def test_rounds_below_one(self, binary, tmp_path, capsys, rounds):
    self.check(binary, tmp_path, capsys, "--rounds must be >= 1", rounds=rounds)

  def test_unreachable_worker(self, binary, tmp_path, capsys):
    port = portpicker.pick_unused_port()  # Nothing listens there.
    root = tmp_path / "runs"
    rc = self.run(binary, root, workers=[f"127.0.0.1:{port}"], worker_timeout_s=1.0)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    _assert_one_error_line(err, f"TFF worker at 127.0.0.1:{port} not ready after 1s",
                           "experiments/worker.py")
    assert not root.exists()

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
    self.check(binary, tmp_path, capsys, "emnist_all.sqlite", "--cache_dir",
               dataset="emnist", cache_dir=str(cache))

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
    _assert_one_error_line(err, "cannot resume", "aggregate_codec='identity>10000'",
                           "now 'uniform", "different model or codec")
    assert _snapshot(root) == before

  def test_checkpoint_of_another_model_state(self, binary, finished_run, tmp_path, capsys):
    # Without config.json to compare with, the checkpoint itself is checked: momentum
    # adds server optimizer state that the SGD run's checkpoint does not have.
    root = self.resume_copy(finished_run, tmp_path)
    os.remove(root / "run" / "config.json")
    before = _snapshot(root)
    capsys.readouterr()
    rc = self.run(binary, root, resume=True, rounds=2, server_optimizer="sgdm")
    out, err = capsys.readouterr()
    assert rc == USAGE_ERROR, (out, err)
    _assert_one_error_line(err, "checkpoint round_1", "different model or codec")
    assert _snapshot(root) == before  # config.json was not written either.
    # The run still resumes with its own flags.
    assert self.run(binary, root, resume=True, rounds=2) == 0


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

  def test_unknown_client_id(self, binary, tmp_path, capsys, data_dir, tiny_model):
    self.check(binary, tmp_path, capsys, data_dir, tiny_model, "unknown client id: NOBODY",
               clients=["NOBODY"])

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
               "--cache_dir", cache_dir=str(cache))
    assert path.exists()  # The user's file is not deleted.
