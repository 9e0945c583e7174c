"""experiments/demo.py end to end, run from another folder."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two one-round runs in a fresh process


def test_a_relative_output_folder_is_the_callers(repo_root, tmp_path):
  # The demo moves into the repository (its flagfiles name each other from there); a
  # relative --root_output_dir must still mean the folder the command ran in.
  result = subprocess.run(
      [sys.executable, str(repo_root / "experiments" / "demo.py"), "--rounds=1",
       "--rounds_per_eval=1", "--root_output_dir=demo_out"],
      cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr
  for run in ("original", "compressed_u8"):
    assert (tmp_path / "demo_out" / run / "metrics.csv").exists()
  assert not (repo_root / "demo_out").exists()
  # Run again into the same folder: one line that names the demo's own flag, not the
  # experiment binaries' --resume and --experiment_name.
  again = subprocess.run(
      [sys.executable, str(repo_root / "experiments" / "demo.py"), "--rounds=1",
       "--root_output_dir=demo_out"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
  assert again.returncode == 2, again.stderr
  lines = again.stderr.strip().splitlines()
  assert lines == [f"error: {tmp_path / 'demo_out'} already holds the demo's original and "
                   "compressed_u8 runs: give another --root_output_dir (or none: a new folder "
                   "under runs/demo/)"], lines
