"""build_fedavg's speed choices change nothing but speed.

`build_fedavg` trains with `DATASET_ITERATOR` (TFF defaults to `DATASET_REDUCE`) and
creates client models with zero trainable weights (TFF would draw random ones every
round, only to overwrite them with the broadcast). Here: the initial state still holds
the model's own seeded weights, and training matches plain TFF with its defaults.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.federated import fedavg

# BatchNormalization is here on purpose: its non-trainable statistics keep their
# initializers, which is what the zero-initialized client model must not touch.
pytestmark = [pytest.mark.filterwarnings("ignore:Batch Normalization contains"),
              pytest.mark.slow]  # Builds and runs several TFF processes.


def _keras_model() -> tf.keras.Model:
  return tf.keras.Sequential([
      tf.keras.layers.Input(shape=(4,)),
      tf.keras.layers.Dense(5, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=3),
                            bias_initializer=tf.keras.initializers.RandomUniform(seed=4)),
      tf.keras.layers.BatchNormalization(),
      tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=5)),
  ])


def _model_fn() -> tff.learning.models.VariableModel:
  return tff.learning.models.from_keras_model(
      _keras_model(),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      input_spec=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int64)),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def _data():
  rng = np.random.default_rng(1)
  return [tf.data.Dataset.from_tensor_slices(
      (rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n).astype(np.int64))
  ).batch(4) for n in (8, 5, 12)]


def _weights(process, state):
  weights = process.get_model_weights(state)
  return [np.asarray(w) for w in (*weights.trainable, *weights.non_trainable)]


@pytest.fixture(scope="module")
def runs():
  plain = tff.learning.algorithms.build_weighted_fed_avg(
      _model_fn, tff.learning.optimizers.build_sgdm(0.02))  # TFF defaults: DATASET_REDUCE
  ours = fedcompress.build_fedavg(_model_fn)
  out = {}
  for name, process in (("plain", plain), ("ours", ours)):
    state = process.initialize()
    history = [_weights(process, state)]
    for _ in range(2):
      state = process.next(state, _data()).state
      history.append(_weights(process, state))
    out[name] = history
  return out


def test_initial_state_holds_the_models_own_weights(runs):
  expected = _keras_model().get_weights()  # trainable first, then BN's moving stats
  keras_order = [0, 1, 2, 3, 6, 7, 4, 5]  # kernel, bias, gamma, beta, k2, b2 | mean, var
  ours = runs["ours"][0]
  for got, index in zip(ours, keras_order, strict=True):
    np.testing.assert_array_equal(got, expected[index])
  assert np.any(ours[0] != 0)
  for got, want in zip(ours, runs["plain"][0], strict=True):
    np.testing.assert_array_equal(got, want)


def test_training_matches_plain_tff(runs):
  for ours, plain in zip(runs["ours"][1:], runs["plain"][1:], strict=True):
    for got, want in zip(ours, plain, strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
  assert not np.allclose(runs["ours"][2][0], runs["ours"][0][0])  # It did train.


def test_zero_initialized_touches_only_trainable_variables():
  model = fedavg.zero_initialized(_model_fn)()
  assert all(not np.any(v.numpy()) for v in model.trainable_variables)
  moving_variance = [v for v in model.non_trainable_variables if "moving_variance" in v.name]
  np.testing.assert_array_equal(moving_variance[0].numpy(), np.ones(5, np.float32))
