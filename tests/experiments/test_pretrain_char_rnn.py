"""Smoke tests of experiments/pretrain_char_rnn.py and fedcompress.tasks.models.pretrain."""

from __future__ import annotations

import collections
import functools
import http.server
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.datasets import shakespeare
from fedcompress.tasks.datasets.text import TextInputError
from fedcompress.tasks.models import char_rnn, pretrain

pytestmark = pytest.mark.slow  # pretrains and runs the binary

TINY = dict(embedding_dim=4, rnn_units=8, batch_size=4, seq_length=20, epochs=1,
            steps_per_epoch=3, log_every=1)


@pytest.fixture(scope="module")
def binary(load_binary):
  # load_binary removes the binary's absl flags afterwards: other binaries' tests
  # define flags of the same names (--seed, --cache_dir).
  with load_binary("experiments/pretrain_char_rnn.py") as module:
    yield module


@pytest.fixture()
def text_file(tmp_path):
  path = tmp_path / "tiny.txt"
  # Curly quotes exercise the folding; 2,000 chars make several 4x21 batches.
  path.write_text(("\u201cBah,\u201d said Scrooge, \u201chumbug!\u201d\n" * 80)[:2000],
                  encoding="utf-8")
  return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
  def log_message(self, *args):
    pass


@pytest.fixture()
def http_root(tmp_path):
  """A real HTTP server on 127.0.0.1 serving a fresh folder; yields (folder, base URL)."""
  root = tmp_path / "www"
  root.mkdir()
  httpd = http.server.ThreadingHTTPServer(
      ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def test_main_trains_on_files_and_urls_and_saves_a_loadable_model(binary, text_file, tmp_path,
                                                                  http_root, capsys):
  root, base = http_root
  (root / "carol.txt").write_bytes(b"Marley was dead: to begin with. " * 70)
  url = f"{base}/carol.txt"
  cache = tmp_path / "cache"
  out = tmp_path / "models" / "tiny.keras"
  with flagsaver.flagsaver(text_files=[str(text_file)], text_urls=[url], cache_dir=str(cache),
                           output=str(out), **TINY):
    assert binary.main(["pretrain_char_rnn"]) == 0
  stdout = capsys.readouterr().out
  assert "downloaded " + url in stdout
  # 2,000 folded chars (the file ends mid-line, so a newline is added) + 32 x 70.
  assert "text: 4,241 characters from 2 file(s) (0 outside the vocabulary dropped)" in stdout
  assert "step 1/3" in stdout and "step 3/3" in stdout and "done: 3 steps" in stdout
  (cached,) = cache.iterdir()
  assert cached.read_bytes().startswith(b"Marley was dead")
  model = tf.keras.models.load_model(out, compile=False)
  assert char_rnn.char_rnn_sizes(model) == (86, 4, 8)
  assert model(tf.zeros([2, 5], tf.int64)).shape == (2, 5, 86)


def test_pretraining_learns_a_periodic_text(tmp_path):
  # "abcd" repeated is fully predictable: a working training loop gets near-perfect
  # accuracy quickly; a broken one (wrong targets, no updates) stays far below.
  path = tmp_path / "abcd.txt"
  path.write_text("abcd" * 1000)
  out = tmp_path / "abcd.h5"  # The legacy format, which load_model reads too.
  result = pretrain.pretrain_char_rnn(
      output=out, text_files=[path], embedding_dim=8, rnn_units=32, batch_size=8,
      seq_length=20, epochs=2, steps_per_epoch=40, learning_rate=0.05, seed=0,
      log=lambda _: None)
  assert (result.num_chars, result.num_dropped_chars, result.steps) == (4000, 0, 80)
  assert result.final_accuracy > 0.95
  model = tf.keras.models.load_model(out, compile=False)
  assert char_rnn.char_rnn_sizes(model) == (86, 8, 32)
  raw = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(snippets=tf.constant(["abcd" * 300])))
  ev = sh_task.evaluate(model, shakespeare.preprocess(raw, seed=0))
  assert ev.accuracy > 0.95


@pytest.mark.parametrize("content, message", [
    (None, r"text file not found: .*missing\.txt"),
    ("<<>>==++||~~^^{}" * 20, r"none of the .* characters .* is in the 86-character vocabulary"),
    ("short text", r"fewer than one batch needs"),
])
def test_bad_text_is_a_one_line_error(binary, tmp_path, capsys, content, message):
  path = tmp_path / "missing.txt"
  if content is not None:
    path.write_text(content)
  with flagsaver.flagsaver(text_files=[str(path)], output=str(tmp_path / "m.keras"), **TINY):
    assert binary.main(["pretrain_char_rnn"]) == 2
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ")
  assert re.search(message, lines[0])
  assert not (tmp_path / "m.keras").exists()


def test_bad_output_suffix_fails_before_training(tmp_path):
  with pytest.raises(pretrain.PretrainConfigError, match=r"\.keras"):
    pretrain.pretrain_char_rnn(output=tmp_path / "m.pb", text_files=["/nonexistent"])
  with pytest.raises(pretrain.PretrainConfigError, match="text_files or --text_urls"):
    pretrain.pretrain_char_rnn(output=tmp_path / "m.keras")
  with pytest.raises(TextInputError):
    pretrain.pretrain_char_rnn(output=tmp_path / "m.keras", text_files=["/nonexistent"])
  # `--text_files=a.txt,`: the empty entry was read as the folder '.'.
  for listed in (dict(text_files=["/nonexistent", ""]), dict(text_urls=["", "http://x/a"])):
    name = next(iter(listed))
    with pytest.raises(pretrain.PretrainConfigError, match=f"^--{name} lists an empty entry"):
      pretrain.pretrain_char_rnn(output=tmp_path / "m.keras", **listed)


def test_unwritable_output_and_cache_dir_fail_before_training(tmp_path):
  # The output's folder used to be made only after fit(): a bad path threw the whole
  # training away with a FileExistsError traceback.
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  text = tmp_path / "t.txt"
  text.write_text("abc " * 1000)
  lines = []
  with pytest.raises(pretrain.PretrainConfigError, match="cannot write in"):
    pretrain.pretrain_char_rnn(output=blocker / "m.keras", text_files=[text], log=lines.append)
  assert lines == []  # Nothing trained, nothing read.
  (tmp_path / "d.keras").mkdir()
  with pytest.raises(pretrain.PretrainConfigError, match="is a folder"):
    pretrain.pretrain_char_rnn(output=tmp_path / "d.keras", text_files=[text])
  with pytest.raises(TextInputError, match="--cache_dir .*cannot create it"):
    pretrain.pretrain_char_rnn(output=tmp_path / "m.keras", text_urls=["http://127.0.0.1:9/x"],
                               cache_dir=blocker / "cache")
  assert not (tmp_path / "m.keras").exists()


def test_dataset_windows_are_input_target_shifts():
  ids = np.arange(3 * 11, dtype=np.int64) % 86
  ds = pretrain.make_pretraining_dataset(ids, batch_size=3, seq_length=10, seed=0,
                                         repeat=False)
  (x, y), = list(ds)
  assert x.shape == y.shape == (3, 10)
  starts = sorted(int(r[0]) for r in x.numpy())
  assert starts == [0, 11, 22]
  np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])
  np.testing.assert_array_equal(y.numpy()[:, -1] - x.numpy()[:, 0], [10, 10, 10])


def test_binary_exits_nonzero_without_traceback(repo_root, tmp_path):
  proc = subprocess.run(
      [sys.executable, str(repo_root / "experiments" / "pretrain_char_rnn.py"),
       f"--text_files={tmp_path / 'absent.txt'}", f"--output={tmp_path / 'm.keras'}"],
      capture_output=True, text=True, timeout=300, cwd=repo_root)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
      f"error: text file not found: {tmp_path / 'absent.txt'}"]
