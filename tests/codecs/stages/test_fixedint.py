"""stages/fixedint.py: the integers stay in [-L, L] and every coordinate survives."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, seeding
from fedcompress.codecs.stages import _common, fixedint


def _round_trip(spec: str, x: tf.Tensor, key=(0, 0)):
  encoder = CodecSpec(spec, threshold=0).make_encoder()
  with seeding.seed_scope(tf.constant(key, tf.int64)):
    encode_params, decode_params = encoder.get_params(encoder.initial_state())
    encoded, _, shapes = encoder.encode(x, encode_params)
    return encoded, encoder.decode(encoded, decode_params, shapes).numpy()


def test_rotation_signs_are_never_zero():
  # Under this seed scope the rotation's float uniform for coordinate 39738 of a 2^16
  # frame is exactly 0.5, which tensor_encoding's sign(u - 0.5) makes 0: the coordinate
  # was multiplied by 0 both ways and decoded as 0 whatever its value.
  n, index = 1 << 16, 39738
  with _common.seed_scope(tf.constant([7, 6], tf.int64)):
    seed = _common.draw_seed_pair64()
  assert tf.random.stateless_uniform([n], seed).numpy()[index] == 0.5
  _, decoded = _round_trip("fixed_int(bits=16,clip=4.0,rotation=true)", tf.fill([n], 0.01),
                           key=(7, 6))
  np.testing.assert_allclose(decoded, 0.01, atol=1e-3)


@pytest.mark.parametrize("rotation", ["false", "true"])
def test_nan_is_sent_inside_the_field(rotation):
  # A NaN cast to int32 is -2^31: outside [-L, L], which secure aggregation sizes its
  # field from. It is sent as 0 (the rotation spreads it to every coordinate).
  x = tf.constant([-1.0, -0.5, 0.25, np.nan, 0.5, np.inf, -np.inf, 1.0])
  encoded, decoded = _round_trip(f"fixed_int(bits=8,clip=1.0,rotation={rotation})", x)
  ints = np.concatenate([np.ravel(v.numpy()).astype(np.int64)  # abs(-2^31) in int32 is < 0
                         for v in tf.nest.flatten(encoded) if v.dtype == tf.int32])
  bound = fixedint.sum_bound(bits=8)
  assert np.all(np.abs(ints) <= bound), ints
  assert np.all(np.isfinite(decoded))
  if rotation == "false":
    assert decoded[3] == 0.0 and decoded[5] == 1.0 and decoded[6] == -1.0


def test_other_dtypes_are_refused_in_one_line():
  # Its decode gives float32; a float64 tensor used to fail deep in tensor_encoding with
  # a bare AssertionError when the aggregator was built.
  with pytest.raises(ValueError, match="fixed_int encodes float32 tensors, got float64"):
    _round_trip("fixed_int(bits=8,clip=1.0)", tf.zeros([4], tf.float64))
