"""tools.codec_speed refuses bad input in one usage line, before timing anything."""

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
