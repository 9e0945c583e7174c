"""Keras models of the reference setups."""

from __future__ import annotations

import tensorflow as tf


def create_original_fedavg_cnn(num_classes: int = 10, seed: int | None = None
                               ) -> tf.keras.Model:
  """The CNN of McMahan et al. (2017) used by the TFF compression tutorial.

  Conv 5x5x32, max-pool, conv 5x5x64, max-pool, dense 512, dense `num_classes`, softmax:
  1,663,370 float32 parameters for 10 classes.
  """
  def init(layer: int) -> tf.keras.initializers.Initializer:
    # One initializer per layer: Keras warns that a shared seeded instance would give
    # every layer the same values.
    return tf.keras.initializers.GlorotUniform(seed=None if seed is None else seed + layer)

  data_format = "channels_last"
  return tf.keras.Sequential([
      tf.keras.layers.Input(shape=(28, 28, 1)),
      tf.keras.layers.Conv2D(32, 5, padding="same", activation="relu",
                             data_format=data_format, kernel_initializer=init(1)),
      tf.keras.layers.MaxPool2D(2, padding="same", data_format=data_format),
      tf.keras.layers.Conv2D(64, 5, padding="same", activation="relu",
                             data_format=data_format, kernel_initializer=init(2)),
      tf.keras.layers.MaxPool2D(2, padding="same", data_format=data_format),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(512, activation="relu", kernel_initializer=init(3)),
      tf.keras.layers.Dense(num_classes, kernel_initializer=init(4)),
      tf.keras.layers.Softmax(),
  ])
