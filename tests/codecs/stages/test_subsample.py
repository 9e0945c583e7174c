"""Row-prefix sampling (fedcompress/codecs/stages/subsample.py) and eden's `keep`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, get_codec
from fedcompress.codecs.stages import subsample
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = subsample.RowPrefixEncodingStage


class RowPrefixEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite: [3, 8] rows, keep 0.5 -> the first 4 columns, the rest zeros."""

  def default_encoding_stage(self):
    return Stage(0.5)

  def default_input(self):
    return tf.random.normal([3, 8])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    kept = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    self.assertEqual(kept.shape, (3, 4))
    self.assertAllEqual(kept, data.x[:, :4])
    self.assertAllEqual(data.decoded_x[:, :4], data.x[:, :4])
    self.assertAllEqual(data.decoded_x[:, 4:], np.zeros([3, 4]))


@pytest.mark.parametrize("keep, sent", [(0.5, 1024), (0.9, 1844), (0.001, 3), (1.0, 2048)])
def test_eden_keep_bits(keep, sent):
  # 784 rows of 2048 (the tutorial CNN's dense kernel): sent indices at 1 bit, packed
  # 32 per word, one float32 scale per row, one seed.
  bits = get_codec("eden").bits(1_605_632, {"bits": 1, "keep": keep})
  assert bits == -(-784 * sent // 32) * 32 + 784 * 32 + 32


def test_eden_keep_error_is_the_dropped_share_plus_the_kept_error():
  # Rotated coordinates share the energy evenly: keeping half at 1 bit errs by about
  # 1/2 + 1/2 * 0.5708 (EDEN's unbiased 1-bit normalized MSE).
  encoder = CodecSpec("eden", {"bits": 1, "keep": 0.5}, threshold=0).make_encoder()
  x = tf.random.stateless_normal([1 << 16], [7, 7])
  params, decode_params = encoder.get_params(encoder.initial_state())
  encoded, _, shapes = encoder.encode(x, params)
  decoded = encoder.decode(encoded, decode_params, shapes)
  mse = float(tf.reduce_sum(tf.square(decoded - x)) / tf.reduce_sum(tf.square(x)))
  assert mse == pytest.approx(0.5 + 0.5 * 0.5708, rel=0.03)
  with pytest.raises(ValueError, match="keep"):
    get_codec("eden").options({"keep": 0.0})
