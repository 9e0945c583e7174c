"""tools/codec_error.py: the normalized MSE it reports is the codecs' real error."""

import json
import math
import os

import pytest

from fedcompress.harness import rundir
from tools import codec_error


def test_lossless_codec_has_no_error():
  assert codec_error.normalized_mse("identity", {}, 1024, [0, 1]) == [0.0, 0.0]


def test_drive_error_is_the_published_figure():
  # One round trip of 2^14 Gaussians is within a few percent of pi/2 - 1; a codec that
  # decoded zeros would give 1.0, one that lost the scale far more.
  errors = codec_error.normalized_mse("drive", {}, 2**14, range(4))
  assert len(set(errors)) == 4  # Each seed draws its own vector and rotations.
  assert sum(errors) / 4 == pytest.approx(math.pi / 2 - 1, rel=0.05)


def test_the_published_figures_are_the_papers():
  # pi/2 - 1 for DRIVE; D_b / (1 - D_b) for EDEN, D_b the distortion of the Gaussian
  # Lloyd-Max quantizer, 1 - sum_i P(cell i) c_i^2 at its fixed point. The round-trip
  # tests' tolerance alone passed the biased figures D_b themselves.
  import statistics

  from fedcompress.codecs.stages import eden

  normal = statistics.NormalDist()
  figures = {label: (options, published) for label, _, options, published
             in codec_error.CASES}
  assert figures["drive"] == ({}, math.pi / 2 - 1)
  for bits in (1, 2, 3, 4):
    levels = eden.gaussian_lloyd_max(bits)
    midpoints = [(a + b) / 2 for a, b in zip(levels, levels[1:], strict=False)]
    edges = [-math.inf, *midpoints, math.inf]
    mass = [normal.cdf(b) - normal.cdf(a) for a, b in zip(edges, edges[1:], strict=False)]
    distortion = 1 - sum(p * c**2 for p, c in zip(mass, levels, strict=True))
    options, published = figures[f"eden-{bits}bit"]
    assert options == {"bits": bits}
    assert published == pytest.approx(distortion / (1 - distortion), rel=5e-4), bits


def test_seeds_draw_other_rotations(monkeypatch):
  # The encoder was built once, before the seeds were set: every seed had the same
  # rotations. On one vector, other rotations give other errors.
  import numpy as np

  # Every seed's vector the same (seed 0's): only the rotations can differ.
  monkeypatch.setattr(np.random, "default_rng", lambda seed: np.random.Generator(
      np.random.PCG64(0)))
  errors = codec_error.normalized_mse("eden", {"bits": 2}, 4096, range(3))
  assert len(set(errors)) == 3


def test_main_writes_every_case(tmp_path):
  output = tmp_path / "error.json"
  codec_error.main(["--seeds=2", "--size=4096", f"--output={output}"])
  result = json.loads(output.read_text())
  assert result["block_size"] == 0  # The papers' figures are for large blocks.
  assert all(c["options"]["block_size"] == 0 for c in result["cases"])
  assert [c["case"] for c in result["cases"]] == [c[0] for c in codec_error.CASES]
  for case in result["cases"]:
    assert len(case["per_seed"]) == 2
    assert case["mean"] == pytest.approx(case["published"], rel=0.15), case["case"]


def test_main_quiets_tensorflow(monkeypatch, tmp_path):
  # conftest quieted this process already: without what it set, main() must set it again.
  for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "FEDCOMPRESS_TF_LOGS"):
    monkeypatch.delenv(name, raising=False)
  codec_error.main(["--seeds=2", "--size=64", f"--output={tmp_path / 'error.json'}"])
  assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"


def test_main_records_the_code_that_measured(tmp_path):
  output = tmp_path / "error.json"
  codec_error.main(["--seeds=2", "--size=64", f"--output={output}"])
  source = json.loads(output.read_text())["source"]
  assert source == rundir.source() and source["commit"]
