"""tools.codec_speed: bad input is one `error:` line, before timing anything; what it prints."""

import itertools
import os

import pytest

from fedcompress.codecs import registry
from tools import codec_speed


@pytest.mark.parametrize("argv, message", [
    (["--codecs=bogus"], "--codecs: unknown codecs ['bogus']"),
    # It exited 0 having measured nothing; a codec named twice was measured once.
    (["--codecs="], "--codecs lists no codec"),
    (["--codecs=uniform,topk,uniform"], "--codecs lists uniform more than once"),
    (["--codecs=drive(bits=x)"], "--codecs: "),
    (["--codecs=mine", "--codec_modules=/nonexistent/none.py"], "--codec_modules: cannot import"),
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


_USER_CODEC = """
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import registry

registry.register_stage("mine_of_codec_speed", te.stages.UniformQuantizationEncodingStage)
"""


def test_codecs_of_ones_own_and_with_inline_options_are_timed(tmp_path, capsys):
  # As the other tools and the binaries take them: a module's codec by its name, and a
  # registered codec with its options written inline.
  module = tmp_path / "codec_speed_user_codec.py"
  module.write_text(_USER_CODEC)
  try:
    codec_speed.main(["--shape=64", "--reps=1", f"--codec_modules={module}",
                      "--codecs=mine_of_codec_speed,uniform(bits=2)"])
  finally:  # The registry is the process's: the suite's other tests list its codecs.
    registry.unregister("mine_of_codec_speed")
  rows = [line.split() for line in capsys.readouterr().out.splitlines()]
  assert [row[0] for row in rows] == ["x", "mine_of_codec_speed", "uniform(bits=2)"]
  assert all(row[1::3] == ["encode", "decode"] for row in rows[1:])
