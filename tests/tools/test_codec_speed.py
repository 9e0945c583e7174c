"""tools.codec_speed refuses bad input in one usage line, before timing anything."""

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
