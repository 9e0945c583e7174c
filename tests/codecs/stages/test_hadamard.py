"""Tests of the `hadamard` codec (fedcompress/codecs/stages/hadamard.py).

Its stages are tested on their own in test_rotation.py, test_packing.py and
tensor_encoding (uniform quantization); here: bits, error bound, unbiasedness.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import hadamard


@pytest.mark.parametrize("n, options, expected", [
    # 3000 -> 2 rows of 2048 = 4096 coordinates; 8 bits -> 1024 words; min, max, seed.
    (3000, {}, 1024 * 32 + 64 + 32),
    (3000, {"bits": 3}, 384 * 32 + 64 + 32),
    (3000, {"bits": 16, "block_size": 0}, 2048 * 32 + 64 + 32),
    (1_605_632, {"bits": 8}, 401_408 * 32 + 64 + 32),
])
def test_bits_of_hand_computed_cases(n, options, expected):
  assert hadamard.bits_formula(n, **options) == expected
  if n <= 3000:
    encoder = testing.simple_encoder("hadamard", tf.TensorSpec([n], tf.float32), **options)
    assert testing.round_trip(encoder, tf.random.normal([n]))[2] == expected


def test_float64_adds_the_dtype_marker():
  encoder = testing.simple_encoder("hadamard", tf.TensorSpec([100], tf.float64), bits=4)
  _, decoded, bits = testing.round_trip(encoder, tf.random.normal([100], dtype=tf.float64))
  # 128 coordinates * 4 bits = 16 words; float64 min and max; seed; one float64 marker.
  assert bits == 16 * 32 + 128 + 32 + 64 == hadamard.bits_formula(100, bits=4, dtype="float64")
  assert decoded.dtype == tf.float64


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_deterministic_error_bound(bits):
  # Rounding moves each rotated coordinate by at most half a step, (max - min) /
  # (2 (2**bits - 1)); the rotation is orthogonal, so the error norm is at most
  # sqrt(P) times that, P = 1024 rotated coordinates.
  x = tf.random.normal([1000])
  encoder = testing.simple_encoder("hadamard", tf.TensorSpec([1000], tf.float32), bits=bits,
                                   deterministic=True)
  encoded, decoded, _ = testing.round_trip(encoder, x)
  low, high = encoded["encoded_tensors/rotated/min_max"].numpy()
  bound = np.sqrt(1024) * (high - low) / (2 * (2**bits - 1))
  assert float(tf.norm(decoded - x)) <= bound * (1 + 1e-5)
  # And the bound is not vacuous: the error is of that order.
  assert float(tf.norm(decoded - x)) > bound / 10


def test_stochastic_rounding_is_unbiased():
  tf.random.set_seed(5)
  x = np.random.default_rng(4).standard_normal(64).astype(np.float32)
  encoder = testing.simple_encoder("hadamard", tf.TensorSpec([64], tf.float32), bits=1)
  mean = testing.mean_of_decodes(encoder, tf.constant(x), 2000).numpy()
  # One 1-bit draw: relative error ~1.5; the mean of 2000: ~0.035.
  assert np.linalg.norm(mean - x) / np.linalg.norm(x) < 0.12


@pytest.mark.parametrize("options", [{"bits": 0}, {"bits": 17}, {"deterministic": "yes"},
                                     {"block_size": 1000}])
def test_bad_options_raise(options):
  with pytest.raises(ValueError):
    CodecSpec("hadamard", options)
