"""tools.codec_speed: bad input is one `error:` line, before timing anything; what it prints."""

import itertools
import os

import pytest

from tools import codec_speed


@pytest.mark.parametrize("argv, message", [
    (["--codecs=bogus"], "unknown --codecs bogus"),
    (["--reps=0"], "--reps must be >= 1"),
    (["--shape=a,b"], "--shape must be comma-separated integers"),
    (["--shape=-5"], "--shape dimensions must be >= 1"),
    (["--shape=3,0"], "--shape dimensions must be >= 1"),
])
def test_bad_input_is_one_line(capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    codec_speed.main(argv)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_main_quiets_tensorflow(monkeypatch):
  # conftest quieted this process already: without what it set, main() must set it again.
  for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "FEDCOMPRESS_TF_LOGS"):
    monkeypatch.delenv(name, raising=False)
  codec_speed.main(["--shape=64", "--reps=1", "--codecs=uniform"])
  assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"


def test_the_reference_row_is_a_median_as_the_codec_rows_are(monkeypatch, capsys):
  # One slow call of three (a page fault, another process): its median is the other two,
  # their mean a third of the slow one. After the reference's 3 calls every call takes 1 s.
  clock = itertools.chain([0.0, 0.1, 0.1, 0.101, 0.101, 0.102], itertools.count(1.0))
  monkeypatch.setattr(codec_speed.time, "process_time", lambda: next(clock))
  codec_speed.main(["--shape=64", "--reps=3", "--codecs=uniform"])
  reference, uniform = capsys.readouterr().out.splitlines()
  assert reference.split() == ["x", "*", "1.0001", "1.0", "ms"]
  assert uniform.split() == ["uniform", "encode", "1000.0", "ms", "decode", "1000.0", "ms"]
