"""experiments/demo.py end to end, run from another folder."""

import pathlib
import shlex
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two one-round runs in a fresh process


def test_a_relative_output_folder_is_the_callers(repo_root, tmp_path):
  # The demo moves into the repository (its flagfiles name each other from there); a
  # relative --root_output_dir must still mean the folder the command ran in.
  result = subprocess.run(
      [sys.executable, str(repo_root / "experiments" / "demo.py"), "--rounds=1",
       "--rounds_per_eval=1", "--root_output_dir=demo out"],
      cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr
  for run in ("original", "compressed_u8"):
    assert (tmp_path / "demo out" / run / "metrics.csv").exists()
  assert not (repo_root / "demo out").exists()
  # The tutorial's 146.46 against 507.62 Mibit per round, each way.
  assert ("compressed_u8 sent 3.47x fewer broadcast bits and 3.47x fewer aggregate bits "
          "than original; final eval accuracy ") in result.stdout
  # A command that pastes into a shell as one --logdir, the space included.
  tensorboard = pathlib.Path(sys.executable).parent / "tensorboard"
  assert (f"TensorBoard: {shlex.quote(str(tensorboard))} --logdir "
          f"{shlex.quote(str(tmp_path / 'demo out'))}\n") in result.stdout
  # Run again into the same folder: one line that names the demo's own flag, not the
  # experiment binaries' --resume and --experiment_name.
  again = subprocess.run(
      [sys.executable, str(repo_root / "experiments" / "demo.py"), "--rounds=1",
       "--root_output_dir=demo out"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert again.returncode == 2, again.stderr
  lines = again.stderr.strip().splitlines()
  assert lines == [f"error: {tmp_path / 'demo out'} already holds the demo's original and "
                   "compressed_u8 runs: give another --root_output_dir (or none: a new folder "
                   "under runs/demo/)"], lines
