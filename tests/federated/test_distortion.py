"""`aggregate/relative_error`: decoded mean against the exact mean, hand-computed."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.codecs import CodecSpec
from fedcompress.federated.aggregation import (
  RelativeErrorFactory,
  build_mean_factory,
  relative_error_tf,
)

VALUE_TYPE = tff.TensorType(np.float32, [3])
WEIGHT_TYPE = tff.TensorType(np.float32)
VALUES = [np.array([0.0, 0.3, 1.0], np.float32), np.array([1.0, 0.6, 0.0], np.float32)]
WEIGHTS = [1.0, 3.0]


def test_relative_error_tf_by_hand():
  decoded = {"a": tf.constant([1.0, 2.0]), "b": tf.constant([2.0])}
  exact = {"a": tf.constant([1.0, 0.0]), "b": tf.constant([2.0])}
  # ||(0, 2, 0)|| / ||(1, 0, 2)|| = 2 / sqrt(5).
  np.testing.assert_allclose(relative_error_tf(decoded, exact), 2 / np.sqrt(5), rtol=1e-6)
  assert float(relative_error_tf(exact, exact)) == 0.0
  zeros = {"a": tf.zeros([2]), "b": tf.zeros([1])}
  assert float(relative_error_tf(decoded, zeros)) == 0.0  # defined as 0, not NaN


@pytest.fixture(scope="module")
def identity_process():
  return build_mean_factory(None, measure_error=True).create(VALUE_TYPE, WEIGHT_TYPE)


@pytest.fixture(scope="module")
def one_bit_process():
  codec = CodecSpec("uniform", {"bits": 1, "deterministic": True}, threshold=2)
  return build_mean_factory(codec, measure_error=True).create(VALUE_TYPE, WEIGHT_TYPE)


def test_factory_and_measurement_type(identity_process):
  assert isinstance(build_mean_factory(None, measure_error=True), RelativeErrorFactory)
  assert isinstance(build_mean_factory(None), tff.aggregators.MeanFactory)
  bits_type = collections.OrderedDict(bits=np.int64)
  assert identity_process.next.type_signature.result.measurements == tff.FederatedType(
      collections.OrderedDict(mean_value=bits_type, mean_weight=bits_type,
                              relative_error=np.float32), tff.SERVER)


def test_identity_has_no_error(identity_process):
  output = identity_process.next(identity_process.initialize(), VALUES, WEIGHTS)
  np.testing.assert_allclose(output.result, [0.75, 0.525, 0.25], atol=1e-6)
  assert abs(output.measurements["relative_error"]) < 1e-6
  # The exact mean is instrumentation: bits are those of the encoded mean alone.
  assert output.measurements["mean_value"]["bits"] == 2 * 3 * 32
  assert output.measurements["mean_weight"]["bits"] == 2 * 32


def test_one_bit_quantization_error_by_hand(one_bit_process):
  output = one_bit_process.next(one_bit_process.initialize(), VALUES, WEIGHTS)
  # Weighted numerators: [0, 0.3, 1] on levels {0, 1} -> [0, 0, 1];
  # 3 x [1, 0.6, 0] = [3, 1.8, 0] on levels {0, 3} -> [3, 3, 0].
  # Decoded mean = [3, 3, 1] / 4; exact mean = [3, 2.1, 1] / 4.
  np.testing.assert_allclose(output.result, [0.75, 0.75, 0.25], atol=1e-6)
  expected = 0.225 / np.sqrt(0.75**2 + 0.525**2 + 0.25**2)  # = 0.237089
  np.testing.assert_allclose(output.measurements["relative_error"], expected, rtol=1e-5)
  # Per client: one packed word + min/max for the value, 32 bits for the weight.
  assert output.measurements["mean_value"]["bits"] == 2 * (32 + 64)
  assert output.measurements["mean_weight"]["bits"] == 2 * 32


def test_a_round_of_zero_weights_has_error_zero(one_bit_process):
  # Every client rejected (or empty): tff.federated_mean divided by a total weight of 0
  # and the error was NaN, against the documented 0.0.
  output = one_bit_process.next(one_bit_process.initialize(),
                                [np.zeros(3, np.float32)] * 2, [0.0, 0.0])
  assert float(output.measurements["relative_error"]) == 0.0


def _linear_model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(1,)),
      tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=(tf.TensorSpec([None, 1], tf.float32),
                               tf.TensorSpec([None, 1], tf.float32)),
      loss=tf.keras.losses.MeanSquaredError())


@pytest.mark.slow
def test_fedavg_reports_relative_error():
  process = fedcompress.build_fedavg(
      _linear_model_fn, tff.learning.optimizers.build_sgdm(0.1),
      tff.learning.optimizers.build_sgdm(1.0), measure_error=True)
  clients = [tf.data.Dataset.from_tensor_slices(([[1.0]], [[2.0]])).batch(1),
             tf.data.Dataset.from_tensor_slices(([[2.0]], [[2.0]])).batch(1)]
  metrics = process.next(process.initialize(), clients).metrics
  assert metrics["aggregate/relative_error"] == pytest.approx(0.0, abs=1e-6)
  # Unchanged accounting: each client sends its update and its weight.
  assert metrics["aggregate/bits"] == 2 * (32 + 32)
  assert metrics["aggregate/coded_bits"] == metrics["aggregate/bits"]
  assert metrics["broadcast/coded_bits"] == metrics["broadcast/bits"] == 2 * 32
