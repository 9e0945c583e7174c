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

from fedcompress.tasks.errors import DatasetUnavailableError
from fedcompress.tasks.models import cnn as models
from fedcompress.tasks.task import FederatedTask

SHUFFLE_BUFFER = 418
EMNIST_SQLITE = "emnist_all.sqlite"
INPUT_SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 28, 28, 1], tf.float32),
                                     y=tf.TensorSpec([None, 1], tf.int32))


def load_emnist(only_digits: bool = True, cache_dir: str | None = None):
  """TFF's federated EMNIST (train, test) `ClientData`, or a clear error offline."""
  if cache_dir is not None:
    path = os.path.join(cache_dir, EMNIST_SQLITE)
    if os.path.exists(path) and not _is_sqlite(path):
      raise DatasetUnavailableError(
          "federated EMNIST", cache_dir, EMNIST_SQLITE,
          ValueError(f"{path} is not an SQLite database"))
  try:
    return tff.simulation.datasets.emnist.load_data(only_digits=only_digits,
                                                    cache_dir=cache_dir)
  except DatasetUnavailableError:
    raise
  except Exception as e:  # urllib, lzma, sqlite: all mean "not usable here"
    raise DatasetUnavailableError("federated EMNIST", cache_dir, EMNIST_SQLITE, e) from e


def _is_sqlite(path: str) -> bool:
  with open(path, "rb") as f:
    return f.read(16) == b"SQLite format 3\x00"


def preprocess(dataset: tf.data.Dataset, *, epochs: int = 1, batch_size: int = 20,
               shuffle_buffer: int = SHUFFLE_BUFFER, seed: int | None = None
               ) -> tf.data.Dataset:
  """The tutorial's client pipeline: repeat, shuffle, batch, pixels to (28, 28, 1)."""

  def batch_format_fn(element):
    return collections.OrderedDict(
        x=tf.reshape(element["pixels"], [-1, 28, 28, 1]),
        y=tf.reshape(tf.cast(element["label"], tf.int32), [-1, 1]))

  return (dataset.repeat(epochs).shuffle(shuffle_buffer, seed=seed)
          .batch(batch_size).map(batch_format_fn))


def test_dataset(client_data, batch_size: int = 500) -> tf.data.Dataset:
  """All test clients pooled into one batched dataset for Keras evaluation."""

  def to_xy(element):
    return (tf.reshape(element["pixels"], [-1, 28, 28, 1]),
            tf.reshape(tf.cast(element["label"], tf.int32), [-1, 1]))

  return client_data.create_tf_dataset_from_all_clients().batch(batch_size).map(to_xy).cache()


def build_image_task(name: str, train, test, *, num_classes: int, epochs: int,
                     batch_size: int, seed: int, model_seed: int | None = None
                     ) -> FederatedTask:
  """A `FederatedTask` for EMNIST-shaped client data and the original FedAvg CNN."""
  model_seed = seed if model_seed is None else model_seed

  def client_dataset(client_id: str, round_num: int) -> tf.data.Dataset:
    # Shuffle order depends on (seed, round), so a resumed run sees the same data.
    return preprocess(train.create_tf_dataset_for_client(client_id), epochs=epochs,
                      batch_size=batch_size, seed=seed * 100_003 + round_num)

  def keras_model_fn() -> tf.keras.Model:
    model = models.create_original_fedavg_cnn(num_classes, seed=model_seed)
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model

  def model_fn() -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
        models.create_original_fedavg_cnn(num_classes, seed=model_seed),
        input_spec=INPUT_SPEC,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  return FederatedTask(name=name, client_ids=list(train.client_ids),
                       client_dataset=client_dataset, test_dataset=test_dataset(test),
                       model_fn=model_fn, keras_model_fn=keras_model_fn,
                       input_spec=INPUT_SPEC)


def emnist_task(*, only_digits: bool = True, cache_dir: str | None = None, epochs: int = 1,
                batch_size: int = 20, seed: int = 0) -> FederatedTask:
  train, test = load_emnist(only_digits, cache_dir)
  return build_image_task("emnist", train, test, num_classes=10 if only_digits else 62,
                          epochs=epochs, batch_size=batch_size, seed=seed)
