"""Encoded weighted mean: type signature, result and bits on literal data."""

import collections

import numpy as np
import pytest
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec
from fedcompress.federated.aggregation import EncodedSumFactory, build_mean_factory

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    a=tff.TensorType(np.float32, [6]), b=tff.TensorType(np.float32, [2])))
CODEC = CodecSpec("uniform", {"bits": 2, "deterministic": True}, threshold=3)


@pytest.fixture(scope="module")
def process():
  return build_mean_factory(CODEC).create(VALUE_TYPE, tff.TensorType(np.float32))


def test_is_tff_encoded_sum():
  assert isinstance(EncodedSumFactory.from_codec(CODEC), tff.aggregators.EncodedSumFactory)


def test_type_signature(process):
  next_type = process.next.type_signature
  assert next_type.parameter[1] == tff.FederatedType(VALUE_TYPE, tff.CLIENTS)
  assert next_type.parameter[2] == tff.FederatedType(np.float32, tff.CLIENTS)
  assert next_type.result.result == tff.FederatedType(VALUE_TYPE, tff.SERVER)
  bits_type = collections.OrderedDict(bits=np.int64)
  assert next_type.result.measurements == tff.FederatedType(
      collections.OrderedDict(mean_value=bits_type, mean_weight=bits_type), tff.SERVER)


def test_weighted_mean_and_bits(process):
  values = [
      collections.OrderedDict(a=np.array([0, 1, 2, 3, 0, 3], np.float32),
                              b=np.array([1.0, 2.0], np.float32)),
      collections.OrderedDict(a=np.array([3, 2, 1, 0, 3, 0], np.float32),
                              b=np.array([-1.0, 0.5], np.float32)),
  ]
  weights = [1.0, 3.0]
  output = process.next(process.initialize(), values, weights)
  # Weighted numerators: client 2 sends [9,6,3,0,9,0], exactly on its 2-bit levels
  # {0,3,6,9}; client 1's [0..3] are on theirs. Mean = ([0,1,2,3,0,3] + [9,6,3,0,9,0]) / 4.
  np.testing.assert_allclose(output.result["a"], np.array([9, 7, 5, 3, 9, 3]) / 4, atol=1e-6)
  np.testing.assert_allclose(output.result["b"], [(1 - 3) / 4, (2 + 1.5) / 4], atol=1e-6)
  # Per client: numerator 'a' 32 + 64 (packed word, min, max), 'b' 64; weight 32.
  assert output.measurements["mean_value"]["bits"] == 2 * 160
  assert output.measurements["mean_weight"]["bits"] == 2 * 32
