"""`adaptive` refuses float64 tensors (R2 of s48).

It quantizes in float32 and prices a float32 min/max: on float64 a `coder=fixed` budget
went over by 64 bits a tensor, values past float32's range decoded to NaN, and
deviations below float32's resolution were lost.
"""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.testing import round_trip

SPEC = CodecSpec("adaptive", {"budget_bits_per_coordinate": 4.5, "coder": "fixed"},
                 threshold=0)


def test_float64_is_refused():
  with pytest.raises(ValueError, match=r"adaptive encodes float32 tensors and narrower "
                     r"\(it quantizes in float32\), got float64"):
    round_trip(SPEC.simple_encoder(tf.TensorSpec([1000], tf.float64)),
               tf.constant(np.linspace(-1.0, 1.0, 1000), tf.float64))


@pytest.mark.parametrize("dtype", [tf.float32, tf.float16])
def test_float32_and_narrower_still_encode(dtype):
  x = tf.constant(np.linspace(-1.0, 1.0, 1000), dtype)
  _, decoded, _ = round_trip(SPEC.simple_encoder(tf.TensorSpec([1000], dtype)), x)
  assert decoded.dtype == dtype
  np.testing.assert_allclose(decoded.numpy(), x.numpy(), atol=2.0 / 15 + 1e-3)
