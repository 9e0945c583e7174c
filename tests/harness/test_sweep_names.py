"""A sweep refuses, before any run, a run name no folder can hold."""

import pytest

from fedcompress.harness import sweep


def test_a_run_name_longer_than_a_folder_name_is_refused_before_any_run(tmp_path):
  # A 9-axis grid ran its first run (231 bytes), then stopped at the second (258):
  # "File name too long".
  runs = sweep.runs_from_grid(
      "aggregate_encoder=uniform,eden;" + ";".join(
          f"{'x' * 20}{i}=1" for i in range(11)))
  assert max(len(r.name.encode()) for r in runs) > 255
  with pytest.raises(ValueError, match=r"is \d+ bytes, more than a folder name can hold "
                     r"\(255\): name the run"):
    sweep.run_sweep(runs, str(tmp_path / "runs"), common_flags="--dataset=digits")
  assert not (tmp_path / "runs").exists()
