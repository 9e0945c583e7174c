"""build_fedavg: bits of the tutorial CNN, and one round computed by hand."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.tasks.models.cnn import create_original_fedavg_cnn

CNN_SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 28, 28, 1], tf.float32),
                                   y=tf.TensorSpec([None, 1], tf.int32))


def cnn_model_fn():
  return tff.learning.models.from_keras_model(
      create_original_fedavg_cnn(seed=0), input_spec=CNN_SPEC,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def _cnn_clients(n=10):
  rng = np.random.default_rng(0)
  return [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.random((2, 28, 28, 1), np.float32),
      y=rng.integers(0, 10, (2, 1)).astype(np.int32))).batch(2) for _ in range(n)]


def test_cnn_has_tutorial_size():
  assert create_original_fedavg_cnn().count_params() == 1_663_370


@pytest.mark.parametrize("codec,broadcast_bits", [
    (None, 532_278_400),  # 1,663,370 float32 x 10 clients = 507.62 Mibit
    # Tensors over 10,000 elements at 8 bits, packed 28 bits per int32, plus min/max.
    (fedcompress.CodecSpec("uniform", {"bits": 8}), 153_575_360),  # 146.46 Mibit
])
@pytest.mark.slow
def test_tutorial_cnn_bits_per_round(codec, broadcast_bits):
  process = fedcompress.build_fedavg(cnn_model_fn, broadcast_codec=codec,
                                     aggregate_codec=codec)
  metrics = process.next(process.initialize(), _cnn_clients()).metrics
  assert metrics["broadcast/bits"] == broadcast_bits
  # Clients send the same structure plus their float32 weight for the mean.
  assert metrics["aggregate/bits"] == broadcast_bits + 10 * 32
  if codec is not None:
    mibit = metrics["broadcast/bits"] / 2**20
    assert abs(mibit - 146.46) / 146.46 < 1e-3


def linear_model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(1,)),
      tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=(tf.TensorSpec([None, 1], tf.float32),
                               tf.TensorSpec([None, 1], tf.float32)),
      loss=tf.keras.losses.MeanSquaredError())


def test_one_round_by_hand():
  process = fedcompress.build_fedavg(
      linear_model_fn, tff.learning.optimizers.build_sgdm(0.1),
      tff.learning.optimizers.build_sgdm(1.0))
  clients = [tf.data.Dataset.from_tensor_slices(([[1.0]], [[2.0]])).batch(1),
             tf.data.Dataset.from_tensor_slices(([[2.0]], [[2.0]])).batch(1)]
  output = process.next(process.initialize(), clients)
  # w = 0; client 1: d/dw (w-2)^2 = -4 -> w = 0.4; client 2: d/dw (2w-2)^2 = -8 -> 0.8.
  # One example each: mean update 0.6; server SGD 1.0 -> w = 0.6.
  weights = process.get_model_weights(output.state)
  np.testing.assert_allclose(weights.trainable[0], [[0.6]], atol=1e-6)
  # One float32 weight to each of 2 clients; each sends it back plus its mean weight.
  assert output.metrics["broadcast/bits"] == 2 * 32
  assert output.metrics["aggregate/bits"] == 2 * (32 + 32)
  loss = output.metrics["client_work"]["train"]["loss"]
  np.testing.assert_allclose(loss, (4 + 4) / 2, rtol=1e-6)  # both start at loss 4


@pytest.mark.slow
def test_metrics_type_carries_bits():
  process = fedcompress.build_fedavg(linear_model_fn)
  metrics_type = process.next.type_signature.result.metrics.member
  assert metrics_type["broadcast/bits"] == tff.TensorType(np.int64)
  assert metrics_type["aggregate/bits"] == tff.TensorType(np.int64)
  assert isinstance(process, tff.learning.templates.LearningProcess)


def test_an_aggregator_that_measures_no_bits_is_refused():
  # TFF's MeanFactory sends each client's whole update and weight but measures no
  # `bits`: counted as 0, it would report a free uplink.
  with pytest.raises(ValueError, match="the aggregator measures no 'bits'"):
    fedcompress.build_fedavg(linear_model_fn, aggregator=tff.aggregators.MeanFactory())


@pytest.mark.parametrize("side", ["client", "server"])
def test_a_keras_optimizer_is_refused_by_name(side):
  # The TFF tutorial passed Keras optimizers; here one failed inside TFF with "'SGD'
  # object has no attribute 'initialize'".
  from fedcompress.federated.error_feedback import build_fedavg_with_error_feedback

  keras_sgd = tf.keras.optimizers.SGD(0.02)
  for build in (fedcompress.build_fedavg, build_fedavg_with_error_feedback):
    with pytest.raises(TypeError, match=rf"^{side}_optimizer must be a TFF optimizer, as "
                       r"tff\.learning\.optimizers\.build_sgdm\(learning_rate=0\.02\), got "
                       r".*\.SGD$"):
      build(lambda: None, **{f"{side}_optimizer": keras_sgd})
