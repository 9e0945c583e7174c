"""tasks/shakespeare.py, harness/finetune.py: the evaluation windows are the same in every run."""

import collections
import string

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.models import char_rnn


@pytest.mark.slow
def test_eval_windows_do_not_depend_on_the_run(tmp_path):
  # Six test clients, each writing one letter: TFF joins clients in a random order
  # unless seeded, so two unseeded builds would agree with probability 1/720.
  test_clients = {f"TEST_{c}": c for c in string.ascii_uppercase[:6]}
  clients = {"TRAIN_A": "a", **test_clients}

  def dataset_fn(client_id):
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        snippets=tf.constant([clients[client_id] * 500] * 2)))

  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, str(tmp_path / "shakespeare.sqlite"),
      split_names_by_client_id={c: "test" if c.startswith("TEST") else "train"
                                for c in clients})
  model = char_rnn.create_char_rnn(embedding_dim=4, rnn_units=4, seed=0)
  batches = []
  for seed in (0, 1, 2):  # Training seeds differ; the held-out windows must not.
    setup = sh_task.build_shakespeare_task(model, cache_dir=str(tmp_path), max_eval_batches=10,
                                      seed=seed)
    batches.append([x.numpy() for x, _ in setup.task.test_dataset])
  assert len(batches[0]) == 6 * 1000 // (101 * 8)  # 59 windows over six clients: 7 batches
  for other in batches[1:]:
    for a, b in zip(batches[0], other, strict=True):
      np.testing.assert_array_equal(a, b)
