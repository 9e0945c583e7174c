"""Tests of the `kashin` codec (fedcompress/codecs/stages/kashin.py).

The representation itself is tensor_encoding's `KashinHadamardEncodingStage` (tested
there); here: the frame size, bits in both directions, and the quantization error.
"""

from __future__ import annotations

import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import kashin


@pytest.mark.parametrize("n, frame", [
    (1_605_632, 2_097_152),  # 0.766 of 2**21: no extra level.
    (1_800_000, 4_194_304),  # 0.858 of 2**21 > 0.85: doubled.
    (3000, 4096),
    (4096, 8192),  # Exactly a power of two: ratio 1 > 0.85.
    (1, 2),
])
def test_frame_size(n, frame):
  assert kashin.frame_size(n) == frame


def test_bits_in_both_directions():
  # 3000 -> 4096 coefficients, 8 bits -> 1024 words, + min and max. A broadcast also
  # carries tensor_encoding's int64[2] seed; in aggregation it is the round's shared
  # seed, sent by the server, not by the clients.
  assert kashin.bits_formula(3000, direction="aggregate") == 1024 * 32 + 64
  assert kashin.bits_formula(3000, direction="broadcast") == 1024 * 32 + 64 + 128
  encoder = testing.simple_encoder("kashin", tf.TensorSpec([3000], tf.float32))
  assert testing.round_trip(encoder, tf.random.normal([3000]))[2] == 1024 * 32 + 64 + 128


def test_small_range_gives_a_small_error():
  # Kashin's coefficients are bounded by ~||x|| / sqrt(frame); 8-bit deterministic
  # quantization of the 4096 coefficients then errs by at most sqrt(4096) half-steps.
  x = tf.random.normal([3000])
  encoder = testing.simple_encoder("kashin", tf.TensorSpec([3000], tf.float32), bits=8,
                                   deterministic=True)
  encoded, decoded, _ = testing.round_trip(encoder, x)
  key = "encoded_tensors/flattened_values/kashin_hadamard_values/min_max"
  low, high = encoded[key].numpy()
  assert float(tf.norm(decoded - x)) <= 64 * (high - low) / (2 * 255) * (1 + 1e-5)
  assert float(tf.norm(decoded - x) / tf.norm(x)) < 0.02


@pytest.mark.parametrize("options", [{"bits": 0}, {"eta": 1.0}, {"delta": 0.0},
                                     {"num_iters": 0}, {"last_iter_clip": 2}])
def test_bad_options_raise(options):
  with pytest.raises(ValueError):
    CodecSpec("kashin", options)
