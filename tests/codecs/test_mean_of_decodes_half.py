"""`testing.mean_of_decodes` on half precision: the mean, not float16's rounding of a sum.

Summed in float16, 1,500 draws of `uniform(bits=4)`, which is unbiased, showed a
normalized bias 216 times the noise of their mean, and more with more draws.
"""

import numpy as np
import tensorflow as tf

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.testing import mean_of_decodes


def test_an_unbiased_codec_shows_no_bias_in_float16():
  draws, n = 1500, 5000
  x = tf.constant(np.random.default_rng(1).standard_normal(n), tf.float16)
  encoder = CodecSpec("uniform", {"bits": 4}, threshold=0).simple_encoder(
      tf.TensorSpec([n], tf.float16))
  mean = mean_of_decodes(encoder, x, draws)
  assert mean.dtype == tf.float16
  exact = x.numpy().astype(np.float64)
  encoded, _ = encoder.encode(x)
  one = np.sum((encoder.decode(encoded).numpy().astype(np.float64) - exact) ** 2)
  bias = np.sum((mean.numpy().astype(np.float64) - exact) ** 2)
  # The mean of `draws` unbiased decodes errs by one decode's error / draws, give or
  # take the chi-square spread over 5,000 coordinates (a few percent); float16's own
  # rounding of the mean adds ~1e-8 of the norm. Summed in float16: 216 times.
  assert bias < 2 * one / draws, (bias, one / draws)
