"""Federated Shakespeare next-character prediction, as in TFF's text-generation tutorial.

Data, vocabulary, preprocessing, the character RNN, its flattened accuracy, text
generation and the tutorial's sanity check, all kept faithful to "Federated Learning for
Text Generation" (tensorflow.org/federated/tutorials/federated_learning_for_text_generation)
so its numbers can be reproduced, plus the fix that tutorial describes but skips:
padding short clients and masking the pad out of loss and accuracy.

Ids. The vocabulary is the tutorial's 86 characters in its exact order, so a model
pretrained for the tutorial (or by `experiments/pretrain_char_rnn.py`) sees the same
ids. The tutorial maps characters with
`tf.lookup.StaticHashTable(KeyValueTensorInitializer(vocab, range(86)), default_value=0)`:
an unknown byte becomes id 0 (the character 'd'); there is no out-of-vocabulary bucket,
so the model has exactly 86 classes (Embedding(86, .), Dense(86)). `PAD_ID` = 86 is
outside the model's classes on purpose: it only ever appears in *targets*, where loss
and accuracy mask it out. Input positions that are padding hold id 0, which is harmless
because the GRU is causal: an input pad at position t can only influence predictions at
positions >= t, and every one of those has a pad target (see `preprocess`).
"""

from __future__ import annotations

import collections
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from fedcompress.tasks.errors import DatasetUnavailableError
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes

# The tutorial's "fixed vocabulary of ASCII chars that occur in the works of Shakespeare
# and Dickens", in its order (the order defines the ids of the pretrained model).
VOCAB = ("dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\n"
         "aeimquyAEIMQUY]!%)-159\r")
VOCAB_SIZE = len(VOCAB)  # 86: the model's number of classes.
OOV_ID = 0  # The tutorial's `default_value=0`: unknown bytes read as 'd'.
PAD_ID = VOCAB_SIZE  # 86: a target that is padding; never a class of the model.

CHAR2IDX = {c: i for i, c in enumerate(VOCAB)}
IDX2CHAR = np.array(list(VOCAB))

SEQ_LENGTH = 100
BATCH_SIZE = 8
SHUFFLE_BUFFER = 100

SHAKESPEARE_SQLITE = "shakespeare.sqlite"

assert VOCAB_SIZE == 86 and len(CHAR2IDX) == 86, "the tutorial's vocabulary has 86 chars"


# ----------------------------------------------------------------------------- data


def load_shakespeare(cache_dir: str | os.PathLike[str] | None = None):
  """Federated Shakespeare (train, test) `ClientData`, via TFF's own loader.

  `tff.simulation.datasets.shakespeare.load_data` reads `<cache_dir>/shakespeare.sqlite`
  when it exists and otherwise downloads it. When neither works this raises
  `DatasetUnavailableError` (naming `--cache_dir`) instead of a urllib traceback, and
  removes the partial file a failed download leaves behind (TFF would otherwise take
  it for a cached copy next time).

  Args:
    cache_dir: folder holding (or to hold) `shakespeare.sqlite`; None is TFF's `~/.tff`.

  Returns:
    (train, test) `tff.simulation.datasets.ClientData`; each client's examples are
    `OrderedDict(snippets=<scalar tf.string>)`.

  Raises:
    DatasetUnavailableError: not cached and not downloadable.
  """
  import http.client
  import lzma
  import sqlite3

  import tensorflow_federated as tff
  from tensorflow_federated.python.simulation.datasets import sql_client_data

  cache_dir = None if cache_dir is None else os.fspath(cache_dir)
  where = cache_dir if cache_dir is not None else os.path.join(os.path.expanduser("~"), ".tff")
  expected = os.path.join(where, SHAKESPEARE_SQLITE)
  existed = os.path.exists(expected)
  try:
    return tff.simulation.datasets.shakespeare.load_data(cache_dir=cache_dir)
  except (OSError, EOFError, lzma.LZMAError, http.client.HTTPException,
          tf.errors.OpError, sqlite3.Error, sql_client_data.DatabaseFormatError) as e:
    # sqlite3 / DatabaseFormatError: a cached file that is not TFF's database.
    if not existed and os.path.exists(expected):
      os.remove(expected)
    raise DatasetUnavailableError("Federated Shakespeare", cache_dir, SHAKESPEARE_SQLITE,
                                  e) from e


def build_char_table() -> tf.lookup.StaticHashTable:
  """The tutorial's char -> id table (unknown bytes -> `OOV_ID`).

  Built per call so it lives in whichever graph or eager context the caller is in
  (TFF traces dataset functions in its own graphs).
  """
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          keys=list(VOCAB), values=tf.constant(list(range(VOCAB_SIZE)), dtype=tf.int64)),
      default_value=OOV_ID)


def text_to_ids(text: str, *, oov: str = "map") -> np.ndarray:
  """Ids of `text` (int64), a pure-Python mirror of the table for pretraining/prompts.

  Args:
    text: the characters.
    oov: what to do with characters outside `VOCAB`: "map" to `OOV_ID` as the tutorial's
      table does, "drop" them, or "error" (ValueError naming them).
  """
  if oov == "map":
    ids = [CHAR2IDX.get(c, OOV_ID) for c in text]
  elif oov == "drop":
    ids = [CHAR2IDX[c] for c in text if c in CHAR2IDX]
  elif oov == "error":
    unknown = sorted({c for c in text if c not in CHAR2IDX})
    if unknown:
      raise ValueError(f"characters not in the vocabulary: {unknown!r}")
    ids = [CHAR2IDX[c] for c in text]
  else:
    raise ValueError(f"oov must be one of ['drop', 'error', 'map'], got {oov!r}")
  return np.asarray(ids, dtype=np.int64)


def ids_to_text(ids) -> str:
  """Characters of `ids`; pad ids are skipped."""
  return "".join(IDX2CHAR[i] for i in np.asarray(ids).reshape(-1) if 0 <= i < VOCAB_SIZE)


def split_input_target(chunk: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(input, target) = (chunk[:, :-1], chunk[:, 1:]) of a [batch, seq + 1] batch.

  The tutorial does this with two `tf.map_fn` over rows; slicing gives the same tensors.
  Pads in the input become `OOV_ID` so the Embedding can look them up.
  """
  inputs = chunk[:, :-1]
  inputs = tf.where(tf.equal(inputs, PAD_ID), tf.constant(OOV_ID, inputs.dtype), inputs)
  return inputs, chunk[:, 1:]


def preprocess(dataset: tf.data.Dataset, *, batch_size: int = BATCH_SIZE,
               seq_length: int = SEQ_LENGTH, shuffle_buffer: int = SHUFFLE_BUFFER,
               seed: int | None = None, pad_short_clients: bool = False,
               max_batches: int | None = None) -> tf.data.Dataset:
  """The tutorial's preprocessing of one client's snippets into (input, target) batches.

  To ids, unbatch (snippets are concatenated), windows of `seq_length + 1` with
  `drop_remainder`, shuffle, batches of `batch_size` with `drop_remainder`, split into
  input and target of `seq_length` each. A client with fewer than
  `(seq_length + 1) * batch_size` characters (808 by default) thus has no batch.

  With `pad_short_clients` nothing is dropped instead: the last window is padded to
  `seq_length + 1` with `PAD_ID` (a last window of a single character, which has no
  target, is dropped), and the last batch is padded to `batch_size` rows of `PAD_ID`.
  Targets equal to `PAD_ID` must be masked: `MaskedSparseCategoricalCrossentropy` and
  `FlattenedCategoricalAccuracy` do. Shapes stay static ([batch_size, seq_length]), as
  in the tutorial. Note that TFF counts `num_examples` as rows, so padded rows count
  as examples for `client_weighting=num_examples`.

  Args:
    dataset: a client's dataset of `OrderedDict(snippets=<scalar tf.string>)`.
    batch_size: rows per batch (the tutorial's 8).
    seq_length: characters per input row (the tutorial's 100).
    shuffle_buffer: window shuffle buffer (the tutorial's 100).
    seed: shuffle seed; None draws one per iteration.
    pad_short_clients: pad and keep the remainders instead of dropping them.
    max_batches: keep only this many batches (the tutorial's `.take(5)`); None keeps all.

  Returns:
    A dataset of (input, target) int64 tensors, each [batch_size, seq_length].
  """
  table = build_char_table()
  window = seq_length + 1

  def to_ids(x):
    s = tf.reshape(x["snippets"], shape=[1])
    chars = tf.strings.bytes_split(s).values
    return table.lookup(chars)

  ds = dataset.map(to_ids).unbatch()
  if not pad_short_clients:
    ds = ds.batch(window, drop_remainder=True)
    ds = ds.shuffle(shuffle_buffer, seed=seed).batch(batch_size, drop_remainder=True)
  else:
    def pad_window(w):
      w = tf.pad(w, [[0, window - tf.size(w)]], constant_values=PAD_ID)
      return tf.ensure_shape(w, [window])

    def pad_batch(b):
      b = tf.pad(b, [[0, batch_size - tf.shape(b)[0]], [0, 0]], constant_values=PAD_ID)
      return tf.ensure_shape(b, [batch_size, window])

    ds = (ds.batch(window)
          .filter(lambda w: tf.size(w) >= 2)
          .map(pad_window)
          .shuffle(shuffle_buffer, seed=seed)
          .batch(batch_size)
          .map(pad_batch))
  ds = ds.map(split_input_target)
  if max_batches is not None:
    ds = ds.take(max_batches)
  return ds


# ------------------------------------------------------------------- loss and metric


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


# ------------------------------------------------------------------------------ model


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


def copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> tf.keras.Model:
  """Puts `source`'s weights into `target` (same sizes, any batch size) and returns it."""
  restore_keras_v2_classes(source, target)
  target.set_weights(source.get_weights())
  return target


def create_generation_model(model: tf.keras.Model) -> tf.keras.Model:
  """A batch-1 stateful copy of a character RNN, for `generate_text`."""
  sizes = char_rnn_sizes(model)
  return copy_weights(model, create_char_rnn(**sizes._asdict(), batch_size=1, stateful=True))


def generate_text(model: tf.keras.Model, start_string: str, *, num_generate: int = 200,
                  temperature: float = 1.0, seed: int | None = None) -> str:
  """The tutorial's `generate_text`: samples `num_generate` characters after a prompt.

  Args:
    model: a batch-1 stateful character RNN (see `create_generation_model`); its state
      is reset first.
    start_string: the prompt; every character must be in `VOCAB`.
    num_generate: characters to sample.
    temperature: logits are divided by it; lower is more predictable.
    seed: makes sampling reproducible (stateless sampling); None samples with TF's
      global random state, as the tutorial does.

  Returns:
    `start_string` followed by the generated characters.
  """
  if not start_string:
    raise ValueError("start_string must not be empty")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if not any(getattr(layer, "stateful", False) for layer in model.layers):
    raise ValueError("generate_text needs a stateful batch-1 model: "
                     "use create_generation_model(model)")
  input_eval = tf.constant([text_to_ids(start_string, oov="error")], dtype=tf.int64)
  restore_keras_v2_classes(model)
  generated = []
  model.reset_states()
  for i in range(num_generate):
    predictions = model(input_eval, training=False)
    # Only the last position's logits matter; earlier ones were for prompt characters.
    logits = tf.squeeze(predictions, 0)[-1:] / temperature
    if seed is None:
      predicted = tf.random.categorical(logits, num_samples=1)
    else:
      predicted = tf.random.stateless_categorical(logits, num_samples=1, seed=[seed, i])
    predicted_id = int(predicted[0, 0])
    input_eval = tf.constant([[predicted_id]], dtype=tf.int64)
    generated.append(IDX2CHAR[predicted_id])
  return start_string + "".join(generated)


# ----------------------------------------------------------------------- evaluation


class Evaluation(NamedTuple):
  loss: float
  accuracy: float
  num_batches: int
  num_predictions: int  # Target positions that counted (pads excluded).


def evaluate(model: tf.keras.Model, dataset: tf.data.Dataset) -> Evaluation:
  """Masked loss and flattened accuracy of a Keras model over (input, target) batches.

  Does not compile or otherwise change `model` (its RNN state is reset first). The loss
  is averaged over counted positions, so batches with pads weigh by their real content.
  """
  restore_keras_v2_classes(model)
  loss_fn = MaskedSparseCategoricalCrossentropy()
  accuracy = FlattenedCategoricalAccuracy()
  total_loss = 0.0
  count = 0
  batches = 0
  model.reset_states()
  for x, y in dataset:
    logits = model(x, training=False)
    valid = int(tf.reduce_sum(tf.cast(tf.not_equal(y, PAD_ID), tf.int64)))
    total_loss += float(loss_fn(y, logits)) * valid
    count += valid
    batches += 1
    accuracy.update_state(y, logits)
  if count == 0:
    raise ValueError("the dataset has no (unpadded) target to evaluate on")
  return Evaluation(total_loss / count, float(accuracy.result()), batches, count)


def random_text(num_chars: int, seed: int | None = 0) -> str:
  """Characters drawn uniformly from `VOCAB` (the tutorial's random-data check)."""
  rng = np.random.default_rng(seed)
  return "".join(IDX2CHAR[rng.integers(0, VOCAB_SIZE, size=num_chars)])


class SanityCheck(NamedTuple):
  client_accuracy: float
  random_accuracy: float
  expected_random_accuracy: float  # 1 / VOCAB_SIZE, about 0.012.
  client_loss: float
  random_loss: float


def sanity_check(model: tf.keras.Model, client_dataset: tf.data.Dataset, *,
                 batch_size: int = BATCH_SIZE, seq_length: int = SEQ_LENGTH,
                 num_batches: int = 5, num_random_batches: int = 10, seed: int = 0,
                 pad_short_clients: bool = False) -> SanityCheck:
  """The tutorial's check: accuracy on one client's text versus on random characters.

  A model that learned English should be far above chance on Shakespeare and at chance
  (about 1/86) on uniformly random characters.

  Args:
    model: a character RNN accepting [batch_size, time] inputs (not the batch-1 model).
    client_dataset: one client's raw dataset (`OrderedDict(snippets=...)`).
    batch_size: rows per batch (8 in the tutorial).
    seq_length: input length (100).
    num_batches: client batches evaluated (the tutorial's `.take(5)`).
    num_random_batches: batches of random text evaluated.
    seed: shuffle seed and random-text seed.
    pad_short_clients: see `preprocess`; lets a short client be checked.

  Returns:
    Both accuracies (and losses), plus the chance level.
  """
  client = evaluate(model, preprocess(client_dataset, batch_size=batch_size,
                                      seq_length=seq_length, seed=seed,
                                      pad_short_clients=pad_short_clients,
                                      max_batches=num_batches))
  text = random_text(num_random_batches * batch_size * (seq_length + 1), seed=seed)
  random_ds = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(snippets=tf.constant([text])))
  rand = evaluate(model, preprocess(random_ds, batch_size=batch_size, seq_length=seq_length,
                                    seed=seed))
  return SanityCheck(client.accuracy, rand.accuracy, 1.0 / VOCAB_SIZE, client.loss, rand.loss)
