"""A full disk ends a run in one line (exit 1), its checkpoints kept, not a traceback."""

import os

import pytest
import tensorflow as tf

from fedcompress.harness import experiment

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"),
                                reason="needs /dev/full, whose writes fail with ENOSPC")


def _write_error(write) -> Exception:
  with pytest.raises(Exception) as raised:
    write()
  return raised.value


def _python_write():
  with open("/dev/full", "wb") as f:
    f.write(b"x" * 100_000)


@pytest.mark.parametrize("write", [
    lambda: tf.io.write_file("/dev/full", "x" * 100_000),  # TensorFlow's: checkpoints, events
    _python_write,  # Python's: metrics.csv, config.json, client states
])
def test_a_full_disk_is_one_line_that_says_the_checkpoints_are_kept(write, capsys):
  error = _write_error(write)
  assert experiment.run_failure(error) == 1
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: out of disk space (")
  assert "No space left on device" in err and "Checkpoints written so far are kept" in err


def test_the_full_disk_is_found_behind_the_error_a_caller_raised():
  try:
    try:
      _python_write()
    except OSError as e:
      raise RuntimeError("saving the round failed") from e
  except RuntimeError as e:
    assert experiment.run_failure(e) == 1
  assert experiment.run_failure(RuntimeError("a bug")) is None
