"""tools/ab_functions.py: both versions are built and timed, and the swap is undone."""

import os
import subprocess
import sys

import pytest

from fedcompress.codecs.stages import rotation
from tools import ab_functions

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_both_sides_are_timed_and_the_module_is_restored():
  own = rotation.block_layout
  times = ab_functions.compare(_REPO, "fedcompress.codecs.stages.rotation", ["block_layout"],
                               ["rotation"], reps=2)
  assert set(times) == {("rotation", side, part) for side in ("base", "head")
                        for part in ab_functions.PARTS}
  assert all(len(v) == 2 and min(v) > 0 for v in times.values())
  assert rotation.block_layout is own


def test_the_base_module_is_another_copy():
  base = ab_functions.load_base(_REPO, "fedcompress.codecs.stages.rotation")
  assert base is not rotation and base.block_layout is not rotation.block_layout
  assert base.block_layout(3000, 2048) == rotation.block_layout(3000, 2048)


def test_names_missing_from_a_version_are_refused(tmp_path):
  with pytest.raises(ValueError, match="not in both versions"):
    ab_functions.compare(_REPO, "fedcompress.codecs.stages.rotation", ["nope"], ["rotation"], 1)
  with pytest.raises(ValueError, match="does not exist"):
    ab_functions.load_base(str(tmp_path), "fedcompress.codecs.stages.rotation")


@pytest.mark.parametrize("reps", [0, -3])
def test_reps_below_one_are_refused_before_anything_is_built(capsys, reps):
  with pytest.raises(SystemExit) as exit_info:
    ab_functions.main([f"--base={_REPO}", "--module=fedcompress.codecs.stages.rotation",
                       "--names=fast_walsh_hadamard", "--codecs=drive", f"--reps={reps}"])
  assert exit_info.value.code == 2
  assert f"--reps must be >= 1, got {reps}" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.slow  # A fresh interpreter imports TensorFlow.
def test_tensorflow_starts_quiet(tmp_path):
  # This process was quieted by conftest; the child must quiet itself, as from a shell.
  env = {k: v for k, v in os.environ.items() if k not in (
      "TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "GRPC_VERBOSITY", "FEDCOMPRESS_TF_LOGS")}
  # A --base without the module: refused once TensorFlow has loaded, before any build.
  result = subprocess.run(
      [sys.executable, "-m", "tools.ab_functions", f"--base={tmp_path}",
       "--module=fedcompress.codecs.stages.rotation", "--names=block_layout",
       "--codecs=rotation"], cwd=_REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert "does not exist" in result.stderr.splitlines()[-1]
  assert "tensorflow/" not in result.stderr, result.stderr


def test_negative_threads_and_an_unknown_module_are_one_line(capsys):
  # --threads=-1 aborted TensorFlow (SIGABRT, a core dump); an unknown module was a
  # 24-line ModuleNotFoundError.
  base = [f"--base={_REPO}", "--names=fast_walsh_hadamard", "--codecs=drive", "--reps=1"]
  for args, said in ((["--module=fedcompress.codecs.stages.rotation", "--threads=-1"],
                      "--threads must be >= 0, got -1"),
                     (["--module=fedcompress.codecs.stages.nosuch"],
                      "--module: no module named 'fedcompress.codecs.stages.nosuch'")):
    with pytest.raises(SystemExit) as exit_info:
      ab_functions.main(base + args)
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err.strip().splitlines()[-1]
