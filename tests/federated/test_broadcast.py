"""Encoded broadcast: type signature, decoded values and bits on literal data."""

import collections

import numpy as np
import pytest
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec
from fedcompress.federated.broadcast import build_encoded_broadcast_process

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    a=tff.TensorType(np.float32, [6]), b=tff.TensorType(np.float32, [2])))
# 2-bit deterministic levels over [0, 3] are exactly 0, 1, 2, 3; 'b' (2 elements) is
# under the threshold and goes through identity.
CODEC = CodecSpec("uniform", {"bits": 2, "deterministic": True}, threshold=3)


@pytest.fixture(scope="module")
def process():
  return build_encoded_broadcast_process(VALUE_TYPE, CODEC)


@pytest.mark.slow
def test_type_signature(process):
  assert isinstance(process, tff.learning.templates.DistributionProcess)
  next_type = process.next.type_signature
  assert next_type.parameter[1] == tff.FederatedType(VALUE_TYPE, tff.SERVER)
  assert next_type.result.result == tff.FederatedType(VALUE_TYPE, tff.CLIENTS, all_equal=False)
  assert next_type.result.measurements == tff.FederatedType(
      collections.OrderedDict(bits=np.int64), tff.SERVER)


def test_decoded_values_and_bits(process):
  @tff.federated_computation(process.initialize.type_signature.result,
                             tff.FederatedType(VALUE_TYPE, tff.SERVER),
                             tff.FederatedType(np.int32, tff.CLIENTS))
  def run(state, value, clients):
    del clients  # Only fixes the number of clients.
    return process.next(state, value)

  value = collections.OrderedDict(
      a=np.array([0.0, 0.4, 0.6, 1.5001, 2.2, 3.0], np.float32),
      b=np.array([0.123, -4.5], np.float32))
  output = run(process.initialize(), value, [0, 0, 0])
  assert len(output.result) == 3
  for received in output.result:
    np.testing.assert_allclose(received["a"], [0, 0, 1, 2, 2, 3], atol=1e-6)
    np.testing.assert_array_equal(received["b"], value["b"])
  # Per client: 'a' = 6 x 2 bits in one 28-bit-packed int32 (32) + float32 min, max (64);
  # 'b' = 2 float32 (64). Three clients: 3 x 160.
  assert output.measurements["bits"] == 480


def test_identity_broadcast_is_exact_and_full_width():
  process = build_encoded_broadcast_process(VALUE_TYPE, None)

  @tff.federated_computation(process.initialize.type_signature.result,
                             tff.FederatedType(VALUE_TYPE, tff.SERVER),
                             tff.FederatedType(np.int32, tff.CLIENTS))
  def run(state, value, clients):
    del clients
    return process.next(state, value)

  value = collections.OrderedDict(a=np.arange(6, dtype=np.float32) / 7,
                                  b=np.array([1.5, 2.5], np.float32))
  output = run(process.initialize(), value, [0, 0])
  for received in output.result:
    np.testing.assert_array_equal(received["a"], value["a"])
  assert output.measurements["bits"] == 2 * 8 * 32
