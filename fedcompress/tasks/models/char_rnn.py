"""Character RNNs (the tutorial's GRU, the FedOpt paper's LSTM), masked loss and accuracy."""

from __future__ import annotations

import copy
from typing import NamedTuple

import tensorflow as tf

from fedcompress.tasks.datasets.char_vocab import PAD_ID, VOCAB_SIZE
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes


@tf.keras.utils.register_keras_serializable(package="fedcompress")
class MaskedSparseCategoricalCrossentropy(tf.keras.losses.Loss):
  """Mean softmax cross-entropy over the target positions that are not `pad_id`.

  Without pads this equals `SparseCategoricalCrossentropy(from_logits=True)` (the
  tutorial's loss). TFF's `from_keras_model` passes no sample weights, which is why the
  mask comes from the targets themselves.
  """

  def __init__(self, pad_id: int = PAD_ID, name: str = "masked_sparse_categorical_crossentropy",
               **kwargs):
    super().__init__(name=name, **kwargs)
    self.pad_id = pad_id

  def call(self, y_true, y_pred):
    logits = tf.cast(y_pred, tf.float32)
    labels = tf.reshape(tf.cast(y_true, tf.int64), tf.shape(logits)[:-1])
    mask = tf.not_equal(labels, self.pad_id)
    safe_labels = tf.where(mask, labels, tf.zeros_like(labels))
    per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                                  logits=logits)
    mask = tf.cast(mask, per_position.dtype)
    # A scalar: Keras' reduction of a scalar is the scalar itself.
    return tf.math.divide_no_nan(tf.reduce_sum(per_position * mask), tf.reduce_sum(mask))

  def get_config(self):
    return {**super().get_config(), "pad_id": self.pad_id}


@tf.keras.utils.register_keras_serializable(package="fedcompress")
class FlattenedCategoricalAccuracy(tf.keras.metrics.SparseCategoricalAccuracy):
  """The tutorial's character accuracy for rank-3 predictions, ignoring pad targets.

  Flattens [batch, time, vocab] logits and [batch, time] targets into one prediction
  per character (the tutorial's class), and gives targets equal to `pad_id` zero weight.
  """

  def __init__(self, name: str = "accuracy", dtype=tf.float32, pad_id: int = PAD_ID):
    super().__init__(name, dtype=dtype)
    self.pad_id = pad_id

  def update_state(self, y_true, y_pred, sample_weight=None):
    num_classes = tf.shape(y_pred)[-1]
    y_true = tf.reshape(tf.cast(y_true, tf.int64), [-1])
    y_pred = tf.reshape(y_pred, [-1, num_classes])
    weight = tf.cast(tf.not_equal(y_true, self.pad_id), self.dtype)
    if sample_weight is not None:
      weight *= tf.reshape(tf.cast(sample_weight, self.dtype), [-1])
    return super().update_state(y_true, y_pred, weight)

  def get_config(self):
    return {**super().get_config(), "pad_id": self.pad_id}


def create_char_rnn(*, vocab_size: int = VOCAB_SIZE, embedding_dim: int = 256,
                    rnn_units: int = 1024, batch_size: int | None = None,
                    stateful: bool = False, seed: int | None = None) -> tf.keras.Model:
  """The tutorial's character RNN: Embedding, GRU (return_sequences), Dense logits.

  Args:
    vocab_size: classes (86 for the tutorial's vocabulary).
    embedding_dim: embedding width (256 in the tutorial).
    rnn_units: GRU units (1024 in the tutorial).
    batch_size: fixed batch size, or None for any; required when `stateful`.
    stateful: keep the GRU state between calls (the batch-1 generation model).
    seed: initializer seed; None for random.

  Returns:
    An uncompiled `tf.keras.Sequential` taking int ids [batch, time] and returning
    logits [batch, time, vocab_size].
  """
  if stateful and batch_size is None:
    raise ValueError("a stateful model needs a fixed batch_size (1 for generation)")

  def seeded(init, offset):
    # One initializer per weight: a shared seeded instance would repeat its values.
    return init(seed=None if seed is None else seed + offset)

  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(batch_input_shape=(batch_size, None), dtype=tf.int64),
      tf.keras.layers.Embedding(
          vocab_size, embedding_dim,
          embeddings_initializer=seeded(tf.keras.initializers.RandomUniform, 1)),
      tf.keras.layers.GRU(
          rnn_units, return_sequences=True, stateful=stateful,
          kernel_initializer=seeded(tf.keras.initializers.GlorotUniform, 2),
          recurrent_initializer=seeded(tf.keras.initializers.GlorotUniform, 3)),
      tf.keras.layers.Dense(vocab_size,
                            kernel_initializer=seeded(tf.keras.initializers.GlorotUniform, 4)),
  ])


def create_fedopt_lstm(*, vocab_size: int = VOCAB_SIZE, batch_size: int | None = None,
                       stateful: bool = False, seed: int | None = None) -> tf.keras.Model:
  """The Shakespeare LSTM of Reddi et al., *Adaptive Federated Optimization* (ICLR 2021).

  google-research/federated `utils/models/shakespeare_models.py`,
  `create_recurrent_model` (McMahan et al.'s model, AISTATS 2017): Embedding of width 8,
  two LSTMs of 256 units (return_sequences; He-normal kernels, orthogonal recurrent
  kernels), Dense logits. Two differences, both from this package's vocabulary
  (`fedcompress.tasks.datasets.char_vocab`): `vocab_size` is the tutorial's 86 classes
  rather than the paper's 90 (86 characters + pad, OOV, BOS, EOS), and the Embedding does
  not mask id 0, which is the character 'd' here, not the paper's pad (pads are masked in
  the targets instead, and the model is causal). 819,462 parameters at 86 classes
  (820,522 at the paper's 90).

  Args, returns: as `create_char_rnn`.
  """
  if stateful and batch_size is None:
    raise ValueError("a stateful model needs a fixed batch_size (1 for generation)")

  def seeded(init, offset):
    return init(seed=None if seed is None else seed + offset)

  def lstm(offset: int) -> tf.keras.layers.LSTM:
    return tf.keras.layers.LSTM(
        256, return_sequences=True, stateful=stateful,
        kernel_initializer=seeded(tf.keras.initializers.HeNormal, offset),
        recurrent_initializer=seeded(tf.keras.initializers.Orthogonal, offset + 1))

  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(batch_input_shape=(batch_size, None), dtype=tf.int64),
      tf.keras.layers.Embedding(
          vocab_size, 8,
          embeddings_initializer=seeded(tf.keras.initializers.RandomUniform, 1)),
      lstm(2),
      lstm(4),
      tf.keras.layers.Dense(vocab_size,
                            kernel_initializer=seeded(tf.keras.initializers.GlorotNormal, 6)),
  ])


def rebuild(config: dict, *, batch_size: int | None = None, stateful: bool = False
            ) -> tf.keras.Model:
  """A new, untrained Sequential character model from another's `get_config()`.

  Any of this module's models (GRU or LSTM, pretrained or not), with the input batch
  size and the RNN layers' statefulness replaced (batch 1, stateful: for generation),
  taking sequences of any length.
  """
  config = copy.deepcopy(config)
  for layer in config["layers"]:
    layer_config = layer["config"]
    # Any length: generation feeds its seed text, then one character at a time. A file
    # saved with `Embedding(input_length=100)` trained every round, then failed there.
    if "batch_input_shape" in layer_config:
      layer_config["batch_input_shape"] = (batch_size, None,
                                           *layer_config["batch_input_shape"][2:])
    if layer_config.get("input_length") is not None:
      layer_config["input_length"] = None
    if "stateful" in layer_config:
      layer_config["stateful"] = stateful
  return tf.keras.Sequential.from_config(config)


class CharRnnSizes(NamedTuple):
  vocab_size: int
  embedding_dim: int
  rnn_units: int


def char_rnn_sizes(model: tf.keras.Model) -> CharRnnSizes:
  """Reads the sizes of a character RNN (e.g. one loaded from a file)."""
  embeddings = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Embedding)]
  grus = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.GRU)]
  if len(embeddings) != 1 or len(grus) != 1:
    raise ValueError("expected a character RNN with one Embedding and one GRU layer, got "
                     f"{[type(layer).__name__ for layer in model.layers]}")
  return CharRnnSizes(embeddings[0].input_dim, embeddings[0].output_dim, grus[0].units)


def vocab_size(model: tf.keras.Model) -> int:
  """Characters a character model reads and predicts: any of this module's (GRU or LSTM).

  Raises:
    ValueError: not one Embedding (not masking id 0), then recurrent layers returning
      every position in order, then Dense logits (no activation) over as many classes
      as the Embedding reads.
  """
  if not isinstance(model, tf.keras.Sequential):
    # `rebuild` makes the model anew from a Sequential's config; a functional model of
    # the same layers was refused as if they were not the ones listed.
    raise ValueError(f"expected a Sequential character RNN, got a {type(model).__name__} "
                     "(a functional Keras model): build it as tf.keras.Sequential([Embedding, "
                     "recurrent layers, Dense])")
  layers = model.layers
  kinds = [type(layer).__name__ for layer in layers]
  if (len(layers) < 3 or not isinstance(layers[0], tf.keras.layers.Embedding)
      or not all(isinstance(layer, tf.keras.layers.RNN) for layer in layers[1:-1])
      or not isinstance(layers[-1], tf.keras.layers.Dense)
      or layers[-1].units != layers[0].input_dim):
    raise ValueError("expected a character RNN (Embedding, recurrent layers, Dense logits "
                     f"over the Embedding's characters), got {kinds}")
  # Each would load, train and generate, wrongly: the loss and the sampler read the
  # output as logits (a softmax head's probabilities read as logits gave a loss near
  # chance's and noise for text), every position is predicted and scored (a masked id
  # 0, which is a character here, drops it from Keras' evaluation only), in order.
  activation = getattr(layers[-1].activation, "__name__", str(layers[-1].activation))
  if activation != "linear":
    raise ValueError(f"the output layer applies {activation}: a character RNN here outputs "
                     "logits (Dense with no activation)")
  if layers[0].mask_zero:
    raise ValueError("the Embedding masks id 0 (mask_zero=True), which is a character here: "
                     "every position is predicted and scored")
  for layer in layers[1:-1]:
    if not layer.return_sequences or layer.go_backwards:
      raise ValueError(f"recurrent layer {layer.name} must return every position in order "
                       "(return_sequences=True, go_backwards=False)")
    # Keras draws the masks unseeded: two runs of one --seed trained differently. The
    # rates live on the cells (a GRU layer's is its cell's; RNN(GRUCell(dropout=...)) and
    # stacked cells have them there only).
    cell = getattr(layer, "cell", None)
    for part in getattr(cell, "cells", None) or [cell]:
      rates = {k: getattr(part, k, 0) for k in ("dropout", "recurrent_dropout")}
      if any(rates.values()):
        raise ValueError(f"recurrent layer {layer.name} has "
                         + ", ".join(f"{k}={v}" for k, v in rates.items() if v)
                         + ": Keras draws its masks without a seed, so runs of one --seed "
                         "would differ; save the model with them at 0")
  return layers[0].input_dim


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> tf.keras.Model:
  """Puts `source`'s weights into `target` (same sizes, any batch size) and returns it."""
  restore_keras_v2_classes(source, target)
  target.set_weights(source.get_weights())
  return target
