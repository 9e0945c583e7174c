"""Tests of the fast 8-bit path of tensor_encoding's 28-bit packing (stages/bitpack28.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import tf_utils

from fedcompress import codecs
from fedcompress.codecs.stages import bitpack28
from fedcompress.codecs.testing import BaseEncodingStageTest

KEY = te.stages.BitpackingEncodingStage.ENCODED_VALUES_KEY


class Bitpacking28EncodingStageTest(BaseEncodingStageTest):
  """tensor_encoding's round-trip suite on the fast path (8 bits, 5x7 = 35 values)."""

  def default_encoding_stage(self):
    return bitpack28.Bitpacking28EncodingStage(8)

  def default_input(self):
    return tf.cast(tf.random.uniform([5, 7], maxval=256, dtype=tf.int32), tf.float32)

  @property
  def is_lossless(self):
    return True

  def common_asserts_for_test_data(self, data):
    packed = data.encoded_x[KEY]
    self.assertEqual(packed.dtype, np.int32)
    self.assertEqual(packed.shape, (10, 1))  # ceil(35 * 8 / 28)
    self.assertAllEqual(data.x, data.decoded_x)


# Every length modulo 7 (tensor_encoding drops its last word for 4-6 padding values),
# the values 0 and 255 at every position of a group, and a tutorial-sized tensor.
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 15, 700, 3136 * 512 + 3])
def test_same_words_as_tensor_encoding(n):
  rng = np.random.default_rng(n)
  values = rng.integers(0, 256, size=n)
  values[: min(n, 7)] = 255
  values[7:14] = 0
  expected = tf_utils.pack_into_int(tf.constant(values, tf.int32), 8, 28).numpy()
  packed = bitpack28.pack_8_in_28(tf.constant(values, tf.float32)).numpy()
  assert packed.shape == expected.shape == (-(-8 * n // 28), 1)
  np.testing.assert_array_equal(packed, expected)
  assert packed.min() >= 0 and packed.max() < 2**28  # 28 of 32 bits, as tensor_encoding
  unpacked = bitpack28.unpack_8_from_28(tf.constant(expected), [n]).numpy()
  np.testing.assert_array_equal(unpacked, values)


def test_hand_packed_group():
  # Seven bytes 1..7 = 56 bits: word 0 holds bytes 0-2 and the low nibble of byte 3,
  # word 1 its high nibble and bytes 4-6.
  packed = bitpack28.pack_8_in_28(tf.constant([1, 2, 3, 0x4F, 5, 6, 7])).numpy()
  np.testing.assert_array_equal(packed[:, 0], [1 + (2 << 8) + (3 << 16) + (0xF << 24),
                                               0x4 + (5 << 4) + (6 << 12) + (7 << 20)])


def test_decode_with_dynamic_shape_and_float64_marker():
  stage = bitpack28.Bitpacking28EncodingStage(8)
  x = tf.constant(np.arange(20, dtype=np.float64).reshape(4, 5))
  encoded = stage.encode(x, stage.get_params()[0])
  assert encoded[te.stages.BitpackingEncodingStage.DUMMY_TYPE_VALUES_KEY].dtype == tf.float64

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
  def decode(shape):
    return stage.decode(encoded, {}, shape=shape)

  decoded = decode(tf.constant([4, 5]))
  assert decoded.dtype == tf.float64
  np.testing.assert_array_equal(decoded.numpy(), x.numpy())


@pytest.mark.parametrize("bits", [3, 12])
def test_other_widths_are_tensor_encodings_own(bits):
  values = np.random.default_rng(bits).integers(0, 2**bits, size=50).astype(np.float32)
  ours = bitpack28.Bitpacking28EncodingStage(bits)
  theirs = te.stages.BitpackingEncodingStage(bits)
  np.testing.assert_array_equal(ours.encode(values, {})[KEY].numpy(),
                                theirs.encode(values, {})[KEY].numpy())


@pytest.mark.slow
def test_uniform_codec_sends_tensor_encodings_words():
  # Deterministic rounding: the registry's `uniform` and tensor_encoding's encoder must
  # produce identical encodings (hence identical bit counts) on the same input.
  x = tf.constant(np.random.default_rng(0).normal(size=(37, 29)), tf.float32)
  uniform = codecs.get_codec("uniform").encoder({"bits": 8, "deterministic": True})
  ours = te.core.SimpleEncoder(uniform, tf.TensorSpec(x.shape, x.dtype))
  theirs = te.core.SimpleEncoder(te.encoders.uniform_quantization(8, stochastic=False),
                                 tf.TensorSpec(x.shape, x.dtype))
  ours_encoded, _ = ours.encode(x, ours.initial_state())
  theirs_encoded, _ = theirs.encode(x, theirs.initial_state())
  tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()),
                        ours_encoded, theirs_encoded)
  np.testing.assert_array_equal(ours.decode(ours_encoded).numpy(),
                                theirs.decode(theirs_encoded).numpy())
