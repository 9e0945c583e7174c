"""countsketch's table size: `columns` or `fraction`, never both (a review found `fraction`
ignored beside `columns` yet naming the run)."""

import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec


def test_a_fraction_beside_columns_is_refused():
  with pytest.raises(ValueError, match="countsketch: fraction=0.5 is used only with columns=0"):
    CodecSpec("countsketch(columns=100,fraction=0.5)")
  # Either alone sizes the table: 100 columns, or 1% of 10,000 elements over 5 rows.
  spec = tf.TensorSpec([10_000], tf.float32)
  assert CodecSpec("countsketch(columns=100)", threshold=0).tensor_bits(spec) == 32 * 5 * 100
  assert CodecSpec("countsketch(fraction=0.01)", threshold=0).tensor_bits(spec) == 32 * 5 * 20
