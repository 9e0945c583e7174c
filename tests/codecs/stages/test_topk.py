"""Tests of the `topk` codec (fedcompress/codecs/stages/topk.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import _common, topk
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = topk.TopKEncodingStage


class TopKEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite on a 4 x 5 input keeping a quarter (k = 5)."""

  def default_encoding_stage(self):
    return Stage(fraction=0.25)

  def default_input(self):
    return tf.random.normal([4, 5])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    values = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    indices = data.encoded_x[Stage.INDICES_KEY]
    self.assertEqual(values.shape, (5,))
    self.assertEqual(indices.dtype, np.int32)
    flat = data.x.reshape(-1)
    self.assertAllEqual(values, flat[indices])
    # The kept magnitudes are the 5 largest.
    self.assertAllClose(np.sort(np.abs(values)), np.sort(np.abs(flat))[-5:])
    expected = np.zeros_like(flat)
    expected[indices] = values
    self.assertAllEqual(data.decoded_x, expected.reshape(data.x.shape))


def test_hand_computed_case():
  # k = ceil(0.4 * 5) = 2: the two largest magnitudes are -5 and -4.
  encoder = testing.simple_encoder("topk", tf.TensorSpec([5], tf.float32), fraction=0.4)
  encoded, decoded, bits = testing.round_trip(encoder, tf.constant([0.1, -5.0, 3.0, 0.2, -4.0]))
  np.testing.assert_array_equal(decoded.numpy(), [0.0, -5.0, 0.0, 0.0, -4.0])
  assert bits == 2 * (32 + 32) == topk.bits_formula(5, fraction=0.4)


@pytest.mark.parametrize("n, fraction, k", [
    (1_605_632, 0.01, 16_057),  # 16,056.32 rounds up.
    (30, 0.1, 3),  # 0.1 * 30 = 3.0000000000000004 in floating point: still 3.
    (10, 0.001, 1),  # At least one.
    (7, 1.0, 7),
    (1, 0.5, 1),
])
def test_kept_count(n, fraction, k):
  assert _common.kept_count(n, fraction) == k
  assert topk.bits_formula(n, fraction=fraction) == k * 64
  assert topk.bits_formula(n, fraction=fraction, dtype=tf.float64) == k * 96


def test_fraction_one_is_lossless():
  x = tf.random.normal([6, 7])
  encoder = testing.simple_encoder("topk", tf.TensorSpec([6, 7]), fraction=1.0)
  np.testing.assert_array_equal(testing.round_trip(encoder, x)[1].numpy(), x.numpy())


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, "0.1", True])
def test_bad_fraction_raises(fraction):
  with pytest.raises(ValueError, match="fraction"):
    CodecSpec("topk", {"fraction": fraction})
