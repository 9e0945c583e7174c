"""nonuniform (and Huffman over it) decodes a tensor holding NaN or an infinity as NaN.

Before, its levels were fitted around the value: +inf decoded as the top level with
every output finite, and a NaN among few distinct values left the sorted levels out of
order, so finite values took wrong ones ([1, 2, nan, 4, 5] decoded as [1, 2, 1, 2, 5]).
uniform and the rotations give NaN, and so a client's bad update is seen.
"""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import testing

_NORMAL = np.random.default_rng(3).normal(size=1000).astype(np.float32)
_LARGE = np.random.default_rng(4).normal(size=72_000).astype(np.float32)  # Histogram fit.


def _with(values, index, special):
  values = values.copy()
  values[index] = special
  return values


@pytest.mark.parametrize("codec,options", [("nonuniform", {}), ("nonuniform", {"bits": 2}),
                                           ("huffman", {"base": "nonuniform"})])
@pytest.mark.parametrize("values", [
    _with(_NORMAL, 5, np.inf), _with(_NORMAL, 5, -np.inf), _with(_NORMAL, 5, np.nan),
    np.array([1, 2, np.nan, 4, 5], np.float32), np.array([1, 2, np.inf, 4, 5], np.float32),
    _with(_LARGE, 70_000, np.inf), _with(_LARGE, 9, np.nan)],
    ids=["inf", "-inf", "nan", "few-nan", "few-inf", "large-inf", "large-nan"])
def test_a_nonfinite_value_decodes_as_nan_everywhere(codec, options, values):
  encoder = testing.simple_encoder(codec, tf.TensorSpec(values.shape, tf.float32), **options)
  _, decoded, _ = testing.round_trip(encoder, tf.constant(values))
  assert np.isnan(decoded.numpy()).all()


def test_finite_values_still_decode_to_their_levels():
  encoder = testing.simple_encoder("nonuniform", tf.TensorSpec([5], tf.float32))
  _, decoded, _ = testing.round_trip(encoder, tf.constant([1, 2, 3, 4, 5], tf.float32))
  np.testing.assert_array_equal(decoded.numpy(), [1, 2, 3, 4, 5])
