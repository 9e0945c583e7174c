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


@pytest.mark.slow
def test_a_test_split_of_less_than_one_evaluation_batch_is_refused_before_training(tmp_path):
  # 8 windows of 101 characters make a batch: 800 characters in test hold none. Its first
  # evaluation, after round 1 had trained, ended in a KeyError traceback (Keras' empty
  # results); 808 hold one.
  model = char_rnn.create_char_rnn(embedding_dim=4, rnn_units=4, seed=0)
  for size, batches in ((800, 0), (808, 1)):
    clients = {"TRAIN_A": "a" * 2000, "TEST": "t" * size}
    folder = tmp_path / str(size)
    folder.mkdir()
    tff.simulation.datasets.save_to_sql_client_data(
        list(clients), lambda c, clients=clients: tf.data.Dataset.from_tensor_slices(
            collections.OrderedDict(snippets=tf.constant([clients[c]]))),
        str(folder / "shakespeare.sqlite"),
        split_names_by_client_id={"TRAIN_A": "train", "TEST": "test"})
    if not batches:
      with pytest.raises(ValueError, match=r"less than one evaluation batch \(8 windows of 101 "
                         r"characters\): lower --seq_length"):
        sh_task.build_shakespeare_task(model, cache_dir=str(folder))
      # Shorter windows fit: 8 of 81 characters.
      setup = sh_task.build_shakespeare_task(model, cache_dir=str(folder), seq_length=80)
      assert len(list(setup.task.test_dataset)) == 1
    else:
      setup = sh_task.build_shakespeare_task(model, cache_dir=str(folder))
      assert len(list(setup.task.test_dataset)) == batches


def test_an_evaluation_of_no_batch_is_one_error_not_a_key_error():
  from fedcompress.harness.experiment import keras_evaluator

  model = char_rnn.create_char_rnn(embedding_dim=4, rnn_units=4, seed=0)
  model.compile(loss=char_rnn.MaskedSparseCategoricalCrossentropy())
  # Of unknown length, as a pipeline's (a known empty one Keras refuses itself).
  empty = tf.data.Dataset.from_tensor_slices(
      (tf.zeros([1, 8, 5], tf.int64), tf.zeros([1, 8, 5], tf.int64))).filter(
          lambda x, y: False)
  evaluate = keras_evaluator(lambda: model, empty)
  weights = tff.learning.models.ModelWeights(
      trainable=[w.numpy() for w in model.trainable_weights], non_trainable=[])
  with pytest.raises(ValueError, match="the evaluation found no batch in the task's test set"):
    evaluate(weights)
