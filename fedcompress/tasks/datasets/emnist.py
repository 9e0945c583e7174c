"""Federated EMNIST as in TFF's compression tutorial: loading and preprocessing.

`load_emnist` reads `<cache_dir>/emnist_all.sqlite` when it is there and otherwise lets
TFF download it (the real download path is kept). Offline with no cache, it raises
`DatasetUnavailableError`, which binaries print as one line.
"""

from __future__ import annotations

import collections
import os

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.tasks.errors import DatasetUnavailableError, load_cached

SHUFFLE_BUFFER = 418
EMNIST_SQLITE = "emnist_all.sqlite"
INPUT_SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 28, 28, 1], tf.float32),
                                     y=tf.TensorSpec([None, 1], tf.int32))


def load_emnist(only_digits: bool = True, cache_dir: str | None = None):
  """TFF's federated EMNIST (train, test) `ClientData`, or a clear error offline."""

  def load(cache_dir):
    if cache_dir is not None:
      path = os.path.join(cache_dir, EMNIST_SQLITE)
      if os.path.exists(path) and not _is_sqlite(path):
        raise DatasetUnavailableError(
            "federated EMNIST", cache_dir, EMNIST_SQLITE,
            ValueError(f"{path} is not an SQLite database"), present=True)
    return tff.simulation.datasets.emnist.load_data(only_digits=only_digits,
                                                    cache_dir=cache_dir)

  # Exception: urllib, lzma, sqlite all mean "not usable here".
  return load_cached(load, "federated EMNIST", cache_dir, EMNIST_SQLITE, (Exception,))


def _is_sqlite(path: str) -> bool:
  with open(path, "rb") as f:
    return f.read(16) == b"SQLite format 3\x00"


def preprocess(dataset: tf.data.Dataset, *, epochs: int = 1, batch_size: int = 20,
               shuffle_buffer: int = SHUFFLE_BUFFER, seed: int | None = None
               ) -> tf.data.Dataset:
  """The tutorial's client pipeline: shuffle, repeat, batch, pixels to (28, 28, 1).

  Shuffled before it is repeated, as TFF's compression tutorial and TFF's EMNIST
  baselines do, so each local epoch is one pass over the client's examples in a fresh
  order (`shuffle` reshuffles on each repetition, from `seed`).
  """

  def batch_format_fn(element):
    return collections.OrderedDict(
        x=tf.reshape(element["pixels"], [-1, 28, 28, 1]),
        y=tf.reshape(tf.cast(element["label"], tf.int32), [-1, 1]))

  return (dataset.shuffle(shuffle_buffer, seed=seed).repeat(epochs)
          .batch(batch_size).map(batch_format_fn))


# Order in which the test clients are joined for evaluation; fixed so that runs compare.
_EVAL_CLIENT_ORDER_SEED = 0


def test_dataset(client_data, batch_size: int = 500) -> tf.data.Dataset:
  """All test clients pooled into one batched dataset for Keras evaluation."""

  def to_xy(element):
    return (tf.reshape(element["pixels"], [-1, 28, 28, 1]),
            tf.reshape(tf.cast(element["label"], tf.int32), [-1, 1]))

  # TFF joins the clients in a random order unless seeded: the batches, and so the float
  # sums of eval/loss, would differ from process to process in their last digits.
  joined = client_data.create_tf_dataset_from_all_clients(seed=_EVAL_CLIENT_ORDER_SEED)
  return joined.batch(batch_size).map(to_xy).cache()
