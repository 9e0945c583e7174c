"""tools/mean_error.py: the error of a round's mean, own rotations against a shared one."""

import json

import numpy as np
import pytest

from fedcompress.harness import rundir
from tools import mean_error


def test_client_vectors_of_each_kind():
  independent = mean_error.client_vectors("independent", 4, 5000, 0)
  correlated = mean_error.client_vectors("correlated", 4, 5000, 0)
  identical = mean_error.client_vectors("identical", 4, 5000, 0)
  assert independent.shape == correlated.shape == identical.shape == (4, 5000)
  assert abs(np.corrcoef(independent[:2])[0, 1]) < 0.05
  assert np.corrcoef(correlated[:2])[0, 1] == pytest.approx(1 / 1.09, abs=0.02)
  assert np.array_equal(identical[0], identical[3])
  with pytest.raises(ValueError, match="kind"):
    mean_error.client_vectors("some", 4, 10, 0)


def test_a_shared_rotation_keeps_identical_clients_errors():
  # Identical clients under one rotation make one error, so the mean keeps DRIVE's
  # single-vector error (pi/2 - 1); with their own rotations it falls by the clients.
  own = mean_error.mean_error("drive", {}, "identical", 8, 4096, range(2))
  shared = mean_error.mean_error("drive", {"shared_rotation": True}, "identical", 8, 4096,
                                 range(2))
  assert np.mean(shared) == pytest.approx(np.pi / 2 - 1, rel=0.15)
  assert np.mean(own) == pytest.approx((np.pi / 2 - 1) / 8, rel=0.3)


def test_main_writes_every_codec_and_kind(tmp_path):
  output = tmp_path / "mean_error.json"
  mean_error.main(["--clients=2", "--size=2048", "--seeds=1", f"--output={output}"])
  rows = json.loads(output.read_text())["rows"]
  assert [(r["codec"], r["kind"]) for r in rows] == [
      (c, k) for c, _ in mean_error.CODECS for k in mean_error.KINDS]
  assert all(r["ratio"] == r["shared"] / r["independent_rotations"] for r in rows)


def test_main_records_the_code_that_measured(tmp_path):
  output = tmp_path / "mean_error.json"
  mean_error.main(["--clients=2", "--size=64", "--seeds=1", f"--output={output}"])
  source = json.loads(output.read_text())["source"]
  assert source == rundir.source() and source["commit"]


def test_main_measures_the_shared_column_under_a_shared_rotation(tmp_path):
  # The ratio is shared / own, so a check of the formula alone passes whatever `shared`
  # measured. Identical clients tell the two apart: one shared rotation leaves a single
  # client's error, own rotations divide it by the clients (8 here, so about 8x).
  output = tmp_path / "mean_error.json"
  mean_error.main(["--clients=8", "--size=2048", "--seeds=1", f"--output={output}"])
  rows = json.loads(output.read_text())["rows"]
  identical = [r for r in rows if r["kind"] == "identical"]
  assert [r["codec"] for r in identical] == [c for c, _ in mean_error.CODECS]
  for row in identical:
    assert row["ratio"] > 4, row
