"""Tests of the `kashin` codec (fedcompress/codecs/stages/kashin.py).

The representation is tensor_encoding's `KashinHadamardEncodingStage` (tested there),
iterated in the frame here: its coefficients against tensor_encoding's, the frame
projection against its definition, and huge inputs; then the frame size, bits in both
directions, and the quantization error.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import kashin, rotation


def _stages(**options):
  return (kashin.FastKashinHadamardEncodingStage(**options),
          te.stages.research.KashinHadamardEncodingStage(**options))


# Slabs of the frame (A = frame / largest power of two dividing n): 64 and 32 for the
# CNN's kernels, 2, 4 (a matrix product each); 256 and 512 the outer factors, twice.
@pytest.mark.parametrize("n", [1, 3, 700, 3000, 3136, 4096, 12_288, 51_200])
@pytest.mark.parametrize("options", [
    {"num_iters": 3}, {"num_iters": 1}, {"num_iters": 5, "eta": 0.7, "delta": 2.0},
    {"num_iters": 3, "last_iter_clip": True}])
def test_coefficients_equal_tensor_encodings_to_rounding(n, options):
  x = tf.constant(np.random.default_rng(n).standard_normal([1, n]).astype(np.float32))
  fast, reference = _stages(**options)
  params = reference.get_params()[0]
  coefficients = fast.encode(x, params)[fast.ENCODED_VALUES_KEY]
  expected = reference.encode(x, params)[reference.ENCODED_VALUES_KEY]
  # Coefficients are O(1) here; the transforms differ in summation order only.
  np.testing.assert_allclose(coefficients.numpy(), expected.numpy(), atol=1e-5)
  decoded = fast.decode({fast.ENCODED_VALUES_KEY: coefficients}, params,
                        shape=tf.constant([1, n]))
  if not options.get("last_iter_clip"):
    np.testing.assert_allclose(decoded.numpy(), x.numpy(), atol=1e-5)


# A <= 64 (3, 40, 48, 96, 100, 3136) is one matrix product; above, the outer factors:
# 700 (A = 256, slabs of 4), 3000 (512, 8), 999 (odd: the whole transform).
@pytest.mark.parametrize("n", [3, 40, 48, 96, 100, 3136, 700, 3000, 999])
@pytest.mark.parametrize("rows", [1, 3])
def test_frame_projection_is_f_f_transpose(n, rows):
  frame = kashin.frame_size(n)
  h = rotation.sylvester(frame) / np.sqrt(frame)
  keep = np.diag((np.arange(frame) < n).astype(np.float64))
  f = np.random.default_rng(n).standard_normal([rows, frame])
  projected = kashin.frame_projection(n, frame)(tf.constant(f, tf.float64))
  # F F^T = H P^T D D P H = H P^T P H: the signs cancel.
  np.testing.assert_allclose(projected.numpy(), f @ (h @ keep @ h), atol=1e-12)


# 1e20: ||x||^2 overflows float32 (tensor_encoding then clips nothing); 1e36: the
# transform's limit, 3.3e35 for the 4096-coefficient frame, is exceeded too.
@pytest.mark.parametrize("huge", [1e20, 1e36])
def test_inputs_near_the_largest_float_are_encoded_scaled(huge):
  n = 3136
  x = np.random.default_rng(5).standard_normal([1, n]).astype(np.float32)
  fast, _ = _stages(num_iters=3)
  params = fast.get_params()[0]
  with np.errstate(over="ignore"):
    assert not np.isfinite(np.sum(np.square(x * np.float32(huge))))
  small, scaled = (fast.encode(tf.constant(v), params)[fast.ENCODED_VALUES_KEY].numpy()
                   for v in (x, x * np.float32(huge)))
  assert np.isfinite(scaled).all()
  # The representation is homogeneous: the scaled encode is the encode, scaled.
  np.testing.assert_allclose(scaled / huge, small, rtol=1e-5, atol=1e-5)


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
