"""Federated Shakespeare for next-character prediction, as in TFF's text-generation tutorial.

Loading (TFF's own loader, offline from a cached sqlite) and the tutorial's
preprocessing into (input, target) id batches, kept faithful to "Federated Learning for
Text Generation" (tensorflow.org/federated/tutorials/federated_learning_for_text_generation)
so its numbers can be reproduced, plus the fix that tutorial describes but skips:
padding short clients (the pads are masked out of loss and accuracy by
`fedcompress.tasks.models.char_rnn`). Ids are `fedcompress.tasks.datasets.char_vocab`'s.
"""

from __future__ import annotations

import os

import tensorflow as tf

from fedcompress.tasks.datasets.char_vocab import OOV_ID, PAD_ID, build_char_table
from fedcompress.tasks.errors import load_cached

SEQ_LENGTH = 100
BATCH_SIZE = 8
SHUFFLE_BUFFER = 100

SHAKESPEARE_SQLITE = "shakespeare.sqlite"


def load_shakespeare(cache_dir: str | os.PathLike[str] | None = None):
  """Federated Shakespeare (train, test) `ClientData`, via TFF's own loader.

  `tff.simulation.datasets.shakespeare.load_data` reads `<cache_dir>/shakespeare.sqlite`
  when it exists and otherwise downloads it. When neither works this raises
  `DatasetUnavailableError` (naming `--cache_dir`) instead of a urllib traceback, and
  removes the partial file a failed or interrupted download leaves behind (TFF would
  otherwise take it for a cached copy next time); `~` in `cache_dir` is expanded.

  Args:
    cache_dir: folder holding (or to hold) `shakespeare.sqlite`; None is TFF's `~/.tff`.

  Returns:
    (train, test) `tff.simulation.datasets.ClientData`; each client's examples are
    `OrderedDict(snippets=<scalar tf.string>)`.

  Raises:
    DatasetUnavailableError: not cached and not downloadable.
    ValueError: `cache_dir` is a file.
  """
  import http.client
  import lzma
  import sqlite3

  import tensorflow_federated as tff
  from tensorflow_federated.python.simulation.datasets import sql_client_data

  # sqlite3 / DatabaseFormatError: a cached file that is not TFF's database.
  unavailable = (OSError, EOFError, lzma.LZMAError, http.client.HTTPException,
                 tf.errors.OpError, sqlite3.Error, sql_client_data.DatabaseFormatError)
  return load_cached(lambda cache_dir: tff.simulation.datasets.shakespeare.load_data(
      cache_dir=cache_dir), "Federated Shakespeare", cache_dir, SHAKESPEARE_SQLITE,
      unavailable)


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
