"""Keras models of the reference setups: the tutorial's CNN and the FedOpt paper's."""

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


@tf.keras.utils.register_keras_serializable(package="fedcompress")
class InputSeededDropout(tf.keras.layers.Layer):
  """Dropout whose mask is a function of (`seed`, the bytes of its input), no RNG state.

  Keras' seeded `Dropout` is a stateful random op inside TFF's graphs: its masks would
  follow the order in which concurrent client computations reach the op, so a run would
  not repeat. Here the stateless mask is keyed by a fingerprint of the layer's input, which
  differs per batch, client and round (the weights change), so masks are independent in
  practice and a rerun draws the same ones (the caveat of `fedcompress.codecs.seeding`:
  two bit-identical inputs draw the same mask).
  """

  def __init__(self, rate: float, seed: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.rate = rate
    self.seed = seed

  def call(self, inputs, training=None):
    if not training:
      return inputs
    fingerprint = tf.bitcast(tf.fingerprint(tf.reshape(inputs, [1, -1]))[0], tf.int64)
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([self.seed, 0x0D50], tf.int64), fingerprint)
    return tf.nn.experimental.stateless_dropout(inputs, rate=self.rate, seed=key)

  def get_config(self):
    return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def create_fedopt_cnn(num_classes: int = 62, seed: int | None = None) -> tf.keras.Model:
  """The EMNIST CNN of Reddi et al., *Adaptive Federated Optimization* (ICLR 2021).

  google-research/federated `utils/models/emnist_models.py`, `create_conv_dropout_model`:
  conv 3x3x32, conv 3x3x64 (both valid, ReLU), max-pool 2x2, dropout 0.25, dense 128
  (ReLU), dropout 0.5, dense `num_classes`, softmax; Glorot-normal kernels. 1,206,590
  float32 parameters for 62 classes. Its dropout is `InputSeededDropout` (same rates,
  reproducible masks) and each layer gets its own initializer seed; otherwise as there.
  """
  def init(layer: int) -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.GlorotNormal(seed=None if seed is None else seed + layer)

  dropout_seed = 0 if seed is None else seed
  data_format = "channels_last"
  return tf.keras.Sequential([
      tf.keras.layers.Input(shape=(28, 28, 1)),
      tf.keras.layers.Conv2D(32, 3, activation="relu", data_format=data_format,
                             kernel_initializer=init(1)),
      tf.keras.layers.Conv2D(64, 3, activation="relu", data_format=data_format,
                             kernel_initializer=init(2)),
      tf.keras.layers.MaxPool2D(2, data_format=data_format),
      InputSeededDropout(0.25, seed=dropout_seed),
      tf.keras.layers.Flatten(),
      tf.keras.layers.Dense(128, activation="relu", kernel_initializer=init(3)),
      InputSeededDropout(0.5, seed=dropout_seed + 1),
      tf.keras.layers.Dense(num_classes, kernel_initializer=init(4)),
      tf.keras.layers.Softmax(),
  ])
