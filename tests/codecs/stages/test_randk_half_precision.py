"""`randk`'s n / k scale on half-precision tensors: applied in float32, rounded once."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import testing


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
def test_kept_values_are_scaled_in_float32_and_rounded_once(dtype):
  # n / k = 1000 / 30 is 33.25 in bfloat16 and 33.34 in float16: a scale rounded in the
  # tensor's dtype shrank (or grew) every decoded value by the same factor.
  n, fraction = 1000, 0.03
  x = tf.cast(tf.constant(np.random.default_rng(0).standard_normal(n), tf.float32), dtype)
  encoder = testing.simple_encoder("randk", tf.TensorSpec([n], dtype), fraction=fraction)
  _, decoded, _ = testing.round_trip(encoder, x)
  kept = np.flatnonzero(decoded.numpy().astype(np.float32))
  assert len(kept) == 30
  expected = tf.cast(tf.cast(tf.gather(x, kept), tf.float32) * (n / 30), dtype)
  np.testing.assert_array_equal(tf.gather(decoded, kept).numpy(), expected.numpy())


def test_a_scale_past_float16s_range_keeps_finite_products():
  # n / k = 100,000 > 65504, float16's largest: the scale alone was inf.
  n = 100_000
  encoder = testing.simple_encoder("randk", tf.TensorSpec([n], tf.float16), fraction=1e-5)
  _, decoded, _ = testing.round_trip(encoder, tf.fill([n], tf.constant(1e-3, tf.float16)))
  values = decoded.numpy()
  assert np.count_nonzero(values) == 1
  assert values.max() == np.float16(np.float32(np.float16(1e-3)) * n)
