"""Tests of the faster stochastic rounding of uniform quantization (stages/uniform.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import testing
from fedcompress.codecs.stages import _common, uniform
from fedcompress.codecs.testing import BaseEncodingStageTest

VALUES = te.stages.UniformQuantizationEncodingStage.ENCODED_VALUES_KEY
MIN_MAX = te.stages.UniformQuantizationEncodingStage.MIN_MAX_VALUES_KEY


class UniformQuantizationStageTest(BaseEncodingStageTest):
  """tensor_encoding's suite on the stochastic path, 8 bits."""

  def default_encoding_stage(self):
    return uniform.UniformQuantizationStage(8)

  def default_input(self):
    return tf.random.normal([20, 30])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    q = data.encoded_x[VALUES]
    self.assertAllEqual(q, np.floor(q))  # Integer levels...
    self.assertAllInRange(q, 0, 255)  # ...of 8 bits.
    self.assertAllClose(data.encoded_x[MIN_MAX], [data.x.min(), data.x.max()])
    step = (data.x.max() - data.x.min()) / 255
    self.assertLessEqual(np.max(np.abs(data.decoded_x - data.x)), step * (1 + 1e-5))


def _encode(stage, x):
  return stage.encode(tf.constant(x), stage.get_params()[0])


def test_rounds_up_with_probability_of_the_fraction():
  # 2 bits over [0, 3]: y = x, so P(round up) = frac(x); 3.0 must never become 4.
  x = np.array([0.0, 0.1, 0.5, 0.9, 1.25, 2.75, 3.0], np.float32)
  stage = uniform.UniformQuantizationStage(2)
  draw = tf.function(lambda: _encode(stage, x)[VALUES])
  draws = np.stack([draw().numpy() for _ in range(4000)])
  assert set(np.unique(draws)) <= {0.0, 1.0, 2.0, 3.0}
  np.testing.assert_array_equal(draws.min(axis=0), np.floor(x))
  np.testing.assert_array_equal(draws.max(axis=0), np.ceil(x))
  # Bernoulli means: std error <= 0.5 / sqrt(4000) = 0.0079; 4 of them is 0.032.
  np.testing.assert_allclose(draws.mean(axis=0), x, atol=0.032)


def test_top_level_is_clipped():
  # All mass at the maximum plus one value at the minimum: y = 255 exactly for most
  # entries, where y + u can round to 256 in float32.
  x = np.full(1_000_000, 1.0, np.float32)  # ~7.6 of them expected to overflow unclipped.
  x[0] = 0.0
  q = _encode(uniform.UniformQuantizationStage(8), x)[VALUES].numpy()
  assert q.max() == 255.0 and q[0] == 0.0


def test_constant_input_encodes_to_zeros_and_decodes_exactly():
  stage = uniform.UniformQuantizationStage(8)
  x = np.full(10, -2.5, np.float32)
  encoded = _encode(stage, x)
  np.testing.assert_array_equal(encoded[VALUES].numpy(), np.zeros(10))
  decoded = stage.decode(encoded, stage.get_params()[1])
  np.testing.assert_array_equal(decoded.numpy(), x)


def test_deterministic_and_fixed_range_are_tensor_encodings():
  x = np.random.default_rng(0).normal(size=50).astype(np.float32)
  for kwargs in ({"stochastic": False}, {"stochastic": False, "min_max": [-1.0, 1.0]}):
    ours = _encode(uniform.UniformQuantizationStage(4, **kwargs), x)
    theirs = _encode(te.stages.UniformQuantizationEncodingStage(4, **kwargs), x)
    tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()),
                          ours, theirs)


def test_dither_is_the_centred_16_bit_grid_and_fresh_per_call():
  draw = tf.function(lambda: _common.dither16([1001]))  # Odd: the last word is half used.
  first, second = draw().numpy(), draw().numpy()
  assert first.shape == (1001,) and first.dtype == np.float32
  k = first * 65536 - 0.5
  np.testing.assert_array_equal(k, np.round(k))  # (k + 1/2) / 2^16 exactly...
  assert k.min() >= 0 and k.max() <= 65535  # ...with k a 16-bit integer.
  assert not np.array_equal(first, second)


def test_dither_uses_both_halves_of_each_word_uniformly():
  # If one 16-bit half of every Philox word were lost or repeated, the even or odd
  # positions would be constant or equal to their neighbours.
  u = _common.dither16([200_000]).numpy()
  even, odd = u[0::2], u[1::2]
  for half in (even, odd):
    # Uniform on (0, 1): mean 1/2 (std error 0.29 / sqrt(1e5) ~ 0.0009), variance 1/12.
    assert abs(half.mean() - 0.5) < 0.005 and abs(half.var() - 1 / 12) < 0.002
  assert abs(np.corrcoef(even, odd)[0, 1]) < 0.02


def test_dither_in_half_precision_does_not_overflow():
  u = _common.dither16([4096], tf.float16).numpy()
  assert u.dtype == np.float16 and np.all(np.isfinite(u)) and u.min() > 0 and u.max() < 1


def _round_trip(stage, x):
  encoded = _encode(stage, x)
  return encoded[VALUES].numpy(), stage.decode(encoded, stage.get_params()[1]).numpy()


# Ranges above (2^bits - 1) / 2^-126, where (2^bits - 1) / (max - min) is subnormal.
EXTREME_RANGES = [(1, -5e37, 5e37), (1, -1.7e38, 1.7e38), (2, -1.5e38, 1.5e38)]


@pytest.mark.parametrize("bits, low, high", EXTREME_RANGES)
def test_extreme_range_keeps_both_ends_as_tensor_encoding_does(bits, low, high):
  # y is exactly 0 and 2^bits - 1 at the ends, whatever the dither. Multiplying by the
  # flushed scale made both 0 and decoded the maximum as the minimum.
  x = np.array([low, high], np.float32)
  for stage in (uniform.UniformQuantizationStage(bits),
                te.stages.UniformQuantizationEncodingStage(bits)):
    quantized, decoded = _round_trip(stage, x)
    np.testing.assert_array_equal(quantized, [0, 2**bits - 1])
    np.testing.assert_array_equal(decoded, x)


@pytest.mark.parametrize("bits, low, high", EXTREME_RANGES)
def test_extreme_range_error_is_tensor_encodings(bits, low, high):
  # Uniform x over the range: stochastic rounding to steps of R / (2^bits - 1) has
  # RMS error sqrt(1/6) R / (2^bits - 1) and is unbiased; over 2^20 values the mean
  # error's standard deviation is below 4e-4 R. All-minimum decodes are off by R / 2.
  x = np.random.default_rng(bits).uniform(low, high, 2**20).astype(np.float32)
  x[:2] = low, high
  width = np.float64(high) - np.float64(low)
  for stage in (uniform.UniformQuantizationStage(bits),
                te.stages.UniformQuantizationEncodingStage(bits)):
    error = _round_trip(stage, x)[1].astype(np.float64) - x
    assert abs(np.mean(error)) / width < 2e-3
    rms = np.sqrt(np.mean(error**2)) / width
    assert rms == pytest.approx(np.sqrt(1 / 6) / (2**bits - 1), rel=0.01)


def test_infinite_range_gives_tensor_encodings_nans():
  # max - min overflows: tensor_encoding's (x - min) / inf * max_value is 0, or NaN
  # where x - min overflows too, and its decode (q / max_value) * inf + min is NaN
  # for every value. The fast path encodes the same values, so fails the same way.
  x = np.array([-3e38, 0.0, 1e37, 2e38, 3e38], np.float32)
  ours = _round_trip(uniform.UniformQuantizationStage(8), x)
  theirs = _round_trip(te.stages.UniformQuantizationEncodingStage(8), x)
  np.testing.assert_array_equal(ours[0], [0, 0, 0, np.nan, np.nan])
  np.testing.assert_array_equal(ours[0], theirs[0])
  assert np.all(np.isnan(ours[1])) and np.all(np.isnan(theirs[1]))


def _half_round_trip(codec: str, x: np.ndarray, dtype, **options) -> np.ndarray:
  encoder = testing.simple_encoder(codec, tf.TensorSpec(x.shape, dtype), **options)
  _, decoded, _ = testing.round_trip(encoder, tf.constant(x, dtype))
  assert decoded.dtype == dtype
  return tf.cast(decoded, tf.float64).numpy()


@pytest.mark.parametrize("dtype,bits", [(tf.float16, 11), (tf.bfloat16, 8)])
@pytest.mark.parametrize("deterministic", [True, False])
def test_half_precision_keeps_its_ends_at_its_widest_levels(dtype, bits, deterministic):
  # In the input dtype the top level 2^bits - 1 rounded up past the dtype's exact
  # integers and the bit-packing wrapped it to 0: the maximum decoded as the minimum.
  x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
  decoded = _half_round_trip("uniform", x, dtype, bits=bits, deterministic=deterministic)
  step = 2 / (2**bits - 1)
  np.testing.assert_allclose(decoded, x, atol=2 * step + 1e-2 * (dtype == tf.bfloat16))
  assert decoded[-1] == 1.0 and decoded[0] == -1.0


@pytest.mark.parametrize("codec,dtype,bits", [
    ("uniform", tf.float16, 12), ("uniform", tf.bfloat16, 9), ("hadamard", tf.float16, 12),
    ("kashin", tf.bfloat16, 9)])
def test_half_precision_refuses_levels_it_cannot_hold(codec, dtype, bits):
  with pytest.raises(ValueError, match=f"{dtype.name} holds levels of at most"):
    _half_round_trip(codec, np.linspace(-1, 1, 64), dtype, bits=bits)


def test_half_precision_stochastic_rounding_is_unbiased_near_the_top():
  # v lies between levels 1000 and 1001 of 1023. In float16, y + u has a spacing of 0.5
  # there and rounding to it biased the draws; quantized in float32, the share of the
  # 4,000 copies sent to the upper level is v's fraction between the two.
  v = float(np.float16(1000.3 / 1023 * 2 - 1))
  fraction = (v + 1) / 2 * 1023 - 1000
  x = np.concatenate([[-1.0, 1.0], np.full(4000, v)])
  decoded = _half_round_trip("uniform", x, tf.float16, bits=10)[2:]
  assert len(set(decoded)) == 2
  upper = np.mean(decoded == decoded.max())
  assert upper == pytest.approx(fraction, abs=4 * np.sqrt(fraction * (1 - fraction) / 4000))
