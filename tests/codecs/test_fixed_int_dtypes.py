"""fixed_int's size formula refuses what its encoder refuses."""

import pytest
import tensorflow as tf

from fedcompress import codecs


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float64])
def test_a_tensor_fixed_int_cannot_encode_is_not_priced(dtype):
  # The formula gave 3,200 bits for 100 float16 values that the encoder then refused:
  # figures planned from it (budgets, tables) priced what no run can send.
  codec = codecs.get_codec("fixed_int")
  with pytest.raises(ValueError, match=f"fixed_int encodes float32 tensors, got {dtype.name}"):
    codec.bits(100, dtype=dtype)
  assert codec.bits(100, dtype=tf.float32) == 3200
