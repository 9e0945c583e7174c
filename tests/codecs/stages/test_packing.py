"""Tests of 32-bit-per-word packing (fedcompress/codecs/stages/packing.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs.stages import packing
from fedcompress.codecs.testing import BaseEncodingStageTest


class Bitpack32EncodingStageTest(BaseEncodingStageTest):
  """tensor_encoding's round-trip suite, 3-bit values that straddle word boundaries."""

  def default_encoding_stage(self):
    return packing.Bitpack32EncodingStage(3)

  def default_input(self):
    return tf.cast(tf.random.uniform([5, 7], maxval=8, dtype=tf.int32), tf.float32)

  @property
  def is_lossless(self):
    return True

  def common_asserts_for_test_data(self, data):
    packed = data.encoded_x[packing.Bitpack32EncodingStage.ENCODED_VALUES_KEY]
    self.assertEqual(packed.dtype, np.int32)
    self.assertEqual(packed.shape, (4,))  # ceil(35 * 3 / 32)
    self.assertAllEqual(data.x, data.decoded_x)


@pytest.mark.parametrize("values, bits, words", [
    ([1, 0, 1, 1], 1, [1 + 4 + 8]),
    ([1] * 32, 1, [-1]),  # All 32 bits set: the int32 sign bit is used too.
    ([1] * 33, 1, [-1, 1]),
    ([7] * 11, 3, [-1, 1]),  # The 11th value spans bits 30, 31 and 32.
    ([5, 2], 3, [5 + (2 << 3)]),
    ([0xFFFF, 1], 16, [0xFFFF + (1 << 16)]),
    # 16 2-bit values fill one word; the last (2 = 0b10) sets bit 31, the sign bit.
    ([3] + [0] * 14 + [2], 2, [3 - 2**31]),
])
def test_hand_packed_words(values, bits, words):
  packed = packing.pack_bits(tf.constant(values, tf.int64), bits)
  assert packed.dtype == tf.int32
  np.testing.assert_array_equal(packed.numpy(), words)
  np.testing.assert_array_equal(packing.unpack_bits(packed, bits, len(values)).numpy(), values)


@pytest.mark.parametrize("bits", range(1, 17))
def test_round_trip_every_width(bits):
  rng = np.random.default_rng(bits)
  for n in (1, 31, 32, 33, 257):
    values = rng.integers(0, 2**bits, size=n)
    packed = packing.pack_bits(tf.constant(values), bits)
    assert packed.shape == (-(-n * bits // 32),)
    np.testing.assert_array_equal(packing.unpack_bits(packed, bits, n).numpy(), values)


def test_float64_input_keeps_dtype_with_a_counted_marker():
  stage = packing.Bitpack32EncodingStage(2)
  x = tf.constant([0.0, 1.0, 2.0, 3.0, 3.0], tf.float64)
  encoded = stage.encode(x, {})
  assert encoded[stage.DUMMY_TYPE_VALUES_KEY].dtype == tf.float64
  decoded = stage.decode(encoded, {}, shape=x.shape)
  assert decoded.dtype == tf.float64
  np.testing.assert_array_equal(decoded.numpy(), x.numpy())


@pytest.mark.parametrize("bits", [0, 17, 2.0, True, "8"])
def test_bad_bits_raise(bits):
  with pytest.raises(ValueError, match="bits"):
    packing.Bitpack32EncodingStage(bits)
