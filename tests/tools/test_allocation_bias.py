"""tools/allocation_bias.py: the uplink mean's error an allocation plan counts, and the real one."""

import json

import numpy as np
import pytest

from tools import allocation_bias, mean_error


def test_planned_error_is_the_clients_independent_errors():
  vectors = mean_error.client_vectors("independent", 4, 1000, 0)
  mean = vectors.astype(np.float64).mean(axis=0)
  expected = 0.5 * np.sum(vectors.astype(np.float64)**2) / 16 / np.sum(mean**2)
  assert allocation_bias.planned_error(0.5, vectors) == pytest.approx(expected, rel=1e-12)


def test_a_partial_width_errs_past_the_plan_when_clients_agree():
  # Identical clients: eden at width 1 is unbiased and its errors independent across
  # clients (own rotations), so the plan holds; at 0.5 every client shrinks the same
  # half of its vector toward 0, a bias of ~0.25 of ||mean||^2 the mean keeps whole.
  whole = allocation_bias.measure("eden", 1, "identical", 8, 4096, range(2))
  partial = allocation_bias.measure("eden", 0.5, "identical", 8, 4096, range(2))
  assert whole["ratio"] == pytest.approx(1.0, rel=0.25)
  assert partial["options"] == {"bits": 1, "keep": 0.5}
  assert partial["measured"] > 0.25 and partial["ratio"] > 2.5


def test_main_writes_every_width_and_kind_and_refuses_what_it_cannot_run(tmp_path, capsys):
  output = tmp_path / "allocation_bias.json"
  allocation_bias.main(["--widths=0.5,2", "--kinds=identical", "--clients=2", "--size=1024",
                        "--seeds=1", f"--output={output}"])
  rows = json.loads(output.read_text())["rows"]
  assert [(r["kind"], r["width"]) for r in rows] == [("identical", 0.5), ("identical", 2)]
  assert all(r["ratio"] == r["measured"] / r["planned"] for r in rows)
  with pytest.raises(SystemExit):
    allocation_bias.main(["--kinds=some"])
  with pytest.raises(SystemExit):
    allocation_bias.main(["--codec=uniform", "--widths=0.5", "--kinds=identical",
                          "--size=64", "--seeds=1", f"--output={output}"])
  err = capsys.readouterr().err
  assert "unknown ['some']" in err and "uniform takes no width 0.5" in err


@pytest.mark.slow
def test_a_codec_of_ones_own_is_measured_from_its_module(tmp_path):
  # In a fresh process, where its registration stays.
  import os
  import subprocess
  import sys

  module = tmp_path / "codec_of_a_user.py"
  module.write_text("from tensorflow_model_optimization.python.core.internal import "
                    "tensor_encoding as te\nfrom fedcompress.codecs import registry\n"
                    "registry.register_stage('mine_of_a_bias', "
                    "te.stages.UniformQuantizationEncodingStage)\n")
  output = tmp_path / "bias.json"
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run(
      [sys.executable, "-m", "tools.allocation_bias", "--codec=mine_of_a_bias", "--widths=2",
       "--kinds=independent", "--size=1024", "--seeds=1", "--clients=3",
       f"--codec_modules={module}", f"--output={output}"],
      capture_output=True, text=True, cwd=root, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  recorded = json.loads(output.read_text())
  assert recorded["codec_modules"] == [str(module)]
  (row,) = recorded["rows"]
  assert row["width"] == 2 and row["measured"] > 0 and row["planned"] > 0


def test_inline_options_go_with_every_width_and_the_widths_own_are_refused(tmp_path, capsys):
  # eden(bits=2) was refused as "option 'bits' is given twice", though given once: the
  # widths set bits (and keep). Other inline options go with every width.
  output = tmp_path / "allocation_bias.json"
  with pytest.raises(SystemExit):
    allocation_bias.main(["--codec=eden(bits=2)", f"--output={output}"])
  assert capsys.readouterr().err.startswith(
      "error: --codec: the widths set bits; leave them out of eden(bits=2)")
  allocation_bias.main(["--codec=eden(block_size=256)", "--widths=0.5,2", "--kinds=identical",
                        "--clients=2", "--size=1024", "--seeds=1", f"--output={output}"])
  rows = json.loads(output.read_text())["rows"]
  assert [r["options"] for r in rows] == [{"block_size": 256, "bits": 1, "keep": 0.5},
                                          {"block_size": 256, "bits": 2}]
