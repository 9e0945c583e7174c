"""`keras_evaluator` evaluates the weights it is given, not its model's own."""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress import metrics as m
from fedcompress.harness.experiment import keras_evaluator


def _model(seed: int) -> tf.keras.Model:
  model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(
      3, activation="softmax", kernel_initializer=tf.keras.initializers.GlorotUniform(seed))])
  model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model


def test_the_given_weights_are_evaluated():
  # Every end-to-end test only checked that eval/accuracy was there and in [0, 1]: an
  # evaluator that forgot to assign the round's weights, and so evaluated the untrained
  # model every round, passed them all.
  rng = np.random.default_rng(0)
  x = rng.standard_normal([64, 4]).astype(np.float32)
  y = rng.integers(0, 3, 64)
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
  evaluate = keras_evaluator(lambda: _model(seed=1), dataset)
  for seed in (2, 3):
    other = _model(seed)
    expected = other.evaluate(dataset, verbose=0, return_dict=True)
    got = evaluate(tff.learning.models.ModelWeights.from_model(other))
    assert got[m.EVAL_LOSS] == float(expected["loss"])
    assert got[m.EVAL_ACCURACY] == float(expected["sparse_categorical_accuracy"])
  own = _model(seed=1).evaluate(dataset, verbose=0, return_dict=True)
  assert got[m.EVAL_LOSS] != float(own["loss"])  # Seed 3's weights are not seed 1's.
