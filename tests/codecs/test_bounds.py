"""Every research codec stays within its worst-case relative error bound.

The bounds (`relative_error_bound` in each codec module) hold for every input; here
they are checked on inputs that stress them: random, constant, a spike, mixed scales,
alternating signs, and a tensor with a zero block.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import stages, testing

N = 300
CODECS = [
    ("hadamard", {"bits": 3, "deterministic": True, "block_size": 64}),
    ("hadamard", {"bits": 2, "block_size": 64}),
    ("kashin", {"bits": 4, "deterministic": True}),
    ("kashin", {"bits": 3}),
    ("drive", {"block_size": 64}),
    ("eden", {"bits": 2, "block_size": 64}),
    ("eden", {"bits": 4, "block_size": 64}),
    ("topk", {"fraction": 0.1}),
    ("randk", {"fraction": 0.1}),
    ("randk", {"fraction": 0.1, "unbiased": False}),
    ("nonuniform", {"bits": 1, "method": "quantile"}),
    ("nonuniform", {"bits": 2, "method": "lloyd"}),
]


def _inputs():
  rng = np.random.default_rng(0)
  spike = np.zeros(N)
  spike[17] = -4.0
  zero_block = rng.standard_normal(N)
  zero_block[:200] = 0.0
  return {
      "normal": rng.standard_normal(N),
      "constant": np.full(N, 2.5),
      "spike": spike,
      "mixed_scales": rng.standard_normal(N) * np.where(np.arange(N) % 7 == 0, 1e4, 1e-3),
      "alternating": (-1.0)**np.arange(N),
      "zero_block": zero_block,
  }


@pytest.mark.parametrize("name, options", CODECS)
def test_error_within_bound(name, options):
  bound = stages.relative_error_bound(name, N, **options)
  encoder = testing.simple_encoder(name, tf.TensorSpec([N], tf.float32), **options)
  worst = 0.0
  for x in _inputs().values():
    x = x.astype(np.float32)
    for _ in range(2):  # The randomized codecs: more than one draw.
      decoded = testing.round_trip(encoder, tf.constant(x))[1].numpy()
      worst = max(worst, np.linalg.norm(decoded - x) / np.linalg.norm(x))
  assert worst <= bound * (1 + 1e-4)


def test_hadamard_bound_by_hand():
  # 300 elements in rows of 64: P = 320; 3 bits, deterministic: sqrt(320) / 7.
  assert stages.relative_error_bound(
      "hadamard", 300, bits=3, deterministic=True, block_size=64) == pytest.approx(
          np.sqrt(320) / 7)
  assert stages.relative_error_bound("drive", 300, block_size=64) == pytest.approx(np.sqrt(63))
  assert stages.relative_error_bound("randk", 300, fraction=0.1) == pytest.approx(9.0)
  assert stages.relative_error_bound("kashin", 300, last_iter_clip=True) is None


def test_unknown_codec_lists_the_valid_ones():
  with pytest.raises(ValueError, match="valid: drive, eden, hadamard"):
    stages.relative_error_bound("uniform", 10)
