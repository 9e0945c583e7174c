"""eval/loss leaves out the weight regularization, as train/loss does (s47 R1).

Keras' `evaluate` adds a model's weight penalty to every batch's loss; TFF's train/loss
and the Shakespeare pretrained evaluation do not: a char-RNN with an L2 kernel
regularizer read eval/loss 11.40 in round 1 against 2.43 before it, for the same weights.
"""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.harness.experiment import keras_evaluator


def _model(regularizer):
  model = tf.keras.Sequential([
      tf.keras.layers.Input((3,)),
      tf.keras.layers.Dense(4, kernel_regularizer=regularizer,
                            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1)),
      tf.keras.layers.Dense(2, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=2))])
  model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  return model


def test_eval_loss_is_the_compiled_loss_alone():
  rng = np.random.default_rng(0)
  x, y = rng.random((10, 3), np.float32), rng.integers(0, 2, 10)
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
  regularized = _model(tf.keras.regularizers.L2(0.5))
  plain = _model(None)
  plain.set_weights(regularized.get_weights())
  weights = tff.learning.models.ModelWeights.from_model(regularized)
  keras_loss = regularized.evaluate(dataset, verbose=0, return_dict=True)["loss"]
  loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  by_hand = sum(float(loss_fn(yb, plain(xb))) * len(yb) for xb, yb in dataset) / len(y)
  results = keras_evaluator(lambda: regularized, dataset)(weights)
  assert keras_loss > by_hand + 0.5  # The penalty Keras adds is there to leave out...
  np.testing.assert_allclose(results["eval/loss"], by_hand, rtol=1e-5)  # ...and is.
  # A model without a regularizer reads what Keras reads.
  assert keras_evaluator(lambda: plain, dataset)(weights)["eval/loss"] == (
      plain.evaluate(dataset, verbose=0, return_dict=True)["loss"])
