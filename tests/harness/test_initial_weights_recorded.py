"""`run_experiment(initial_weights=...)` is recorded and compared on resume (R3 of s48).

A run from given weights and one from the model's initializer wrote the same
config.json, and a resume from other weights was accepted; the binaries tie a
Shakespeare run to its pretrained file's content.
"""

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.harness import experiment, rundir
from fedcompress.tasks import digits_task


def _weights(task, shift):
  model = task.keras_model_fn()
  return tff.learning.models.ModelWeights(
      trainable=[w + shift for w in model.get_weights()], non_trainable=[])


def test_the_start_weights_are_recorded_and_a_resume_from_others_refused(tmp_path):
  task = digits_task(num_clients=4)
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="w",
                                       rounds=1, clients_per_round=2, rounds_per_eval=1)
  start = _weights(task, 0.01)
  experiment.run_experiment(task, config, initial_weights=start)
  recorded = json.loads((tmp_path / "w" / rundir.CONFIG_FILE).read_text())
  assert recorded[rundir.INITIAL_WEIGHTS_DIGEST] == experiment.weights_digest(start)
  assert experiment.weights_digest(_weights(task, 0.01)) == experiment.weights_digest(start)
  other = _weights(task, 0.02)
  assert experiment.weights_digest(other) != experiment.weights_digest(start)
  resumed = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="w",
                                        rounds=2, clients_per_round=2, rounds_per_eval=1,
                                        resume=True)
  with pytest.raises(rundir.RunDirectoryError, match=r"initial_weights_sha256 \d+:[0-9a-f]{64} "
                     r"\(recorded \d+:[0-9a-f]{64}\)"):
    experiment.run_experiment(task, resumed, initial_weights=other)
  # Nothing ran: still one round.
  assert len(np.atleast_1d(np.loadtxt(tmp_path / "w" / rundir.METRICS_FILE, delimiter=",",
                                      skiprows=1, usecols=0))) == 1


def test_a_run_from_the_initializer_and_one_from_weights_do_not_resume_each_other(tmp_path):
  # Recorded only when given, the digest was compared neither way: a run from the
  # initializer resumed with weights ignored them, and one from weights resumed without
  # them restarted from the initializer where no checkpoint was kept (R8 of s48).
  task = digits_task(num_clients=4)

  def config(name, rounds, resume=False):
    return experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name=name,
                                       rounds=rounds, clients_per_round=2, resume=resume)

  experiment.run_experiment(task, config("scratch", 1))
  recorded = json.loads((tmp_path / "scratch" / rundir.CONFIG_FILE).read_text())
  assert recorded[rundir.INITIAL_WEIGHTS_DIGEST] is None
  assert rundir.INITIAL_WEIGHTS_DIGEST not in experiment.tensorboard_hparams(
      config("scratch", 1))
  with pytest.raises(rundir.RunDirectoryError, match=r"initial_weights_sha256 \d+:[0-9a-f]{64} "
                     r"\(recorded None\)"):
    experiment.run_experiment(task, config("scratch", 2, resume=True),
                              initial_weights=_weights(task, 0.01))
  experiment.run_experiment(task, config("given", 1), initial_weights=_weights(task, 0.01))
  with pytest.raises(rundir.RunDirectoryError, match=r"initial_weights_sha256 None "
                     r"\(recorded \d+:[0-9a-f]{64}\)"):
    experiment.run_experiment(task, config("given", 2, resume=True))


def test_weights_of_another_model_are_one_line(tmp_path):
  # A 26-frame TFF TypeError printing the first weight array (R3 of s48).
  task = digits_task(num_clients=4)
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="o",
                                       rounds=1, clients_per_round=2)
  weights = task.keras_model_fn().get_weights()
  fewer = tff.learning.models.ModelWeights(trainable=weights[:-2], non_trainable=[])
  with pytest.raises(ValueError, match=rf"^initial_weights do not fit task.model_fn: "
                     rf"{len(weights) - 2} trainable tensors given, the model has "
                     rf"{len(weights)}$"):
    experiment.run_experiment(task, config, initial_weights=fewer)
  swapped = tff.learning.models.ModelWeights(
      trainable=[weights[1], weights[0], *weights[2:]], non_trainable=[])
  with pytest.raises(ValueError, match=r"^initial_weights do not fit task.model_fn: "
                     r"trainable tensor 0 has shape \(32,\), the model's \(5, 5, 1, 32\)$"):
    experiment.run_experiment(task, config, initial_weights=swapped)
  assert not (tmp_path / "o").exists()


def test_an_unbatched_test_set_is_said_before_any_round():
  # It trained until the first evaluation, then failed in a Keras traceback (R3 of s48).
  task = digits_task(num_clients=4)
  with pytest.raises(ValueError, match=r"^task.test_dataset yields unbatched elements of "
                     r"shape \(28, 28, 1\); the model takes batches of \(None, 28, 28, 1\): "
                     r"add .batch\(n\)$"):
    experiment.keras_evaluator(task.keras_model_fn, task.test_dataset.unbatch())
  experiment.keras_evaluator(task.keras_model_fn, task.test_dataset)


def test_batches_keras_expands_are_not_taken_for_unbatched_ones():
  # (B, 28, 28) images on a (28, 28, 1) CNN, which Keras evaluates, were refused as
  # unbatched (R10 of s48).
  task = digits_task(num_clients=4)
  squeezed = task.test_dataset.map(lambda x, y: (tf.squeeze(x, -1), y))
  assert tuple(squeezed.element_spec[0].shape) == (None, 28, 28)
  experiment.keras_evaluator(task.keras_model_fn, squeezed)


def test_float64_initial_weights_are_one_line(tmp_path):
  # A 30-frame TFF TypeError after the run directory was taken (R10 of s48).
  task = digits_task(num_clients=4)
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="d",
                                       rounds=1, clients_per_round=2)
  weights = tff.learning.models.ModelWeights(
      trainable=[w.astype(np.float64) for w in task.keras_model_fn().get_weights()],
      non_trainable=[])
  with pytest.raises(ValueError, match=r"^initial_weights do not fit task.model_fn: "
                     r"trainable tensor 0 is float64, the model's float32$"):
    experiment.run_experiment(task, config, initial_weights=weights)
  assert not (tmp_path / "d").exists()


def test_weights_as_python_lists_are_taken():
  # Refused as float64 (numpy's reading of an untyped list), though TFF reads them as
  # the model's float32 and the run trained (R11 of s48).
  task = digits_task(num_clients=4)
  weights = tff.learning.models.ModelWeights(
      trainable=[w.tolist() for w in task.keras_model_fn().get_weights()], non_trainable=[])
  experiment._check_initial_weights(weights, task)  # noqa: SLF001


def test_an_unbatched_test_set_of_sequences_is_said():
  # A model of sequences of any length, (None, None): the exact-shape check let its
  # unbatched (80,) windows through to a Keras traceback (R11 of s48).
  def model_fn():
    model = tf.keras.Sequential([tf.keras.layers.InputLayer(input_shape=(None,)),
                                 tf.keras.layers.Embedding(10, 4),
                                 tf.keras.layers.Dense(10)])
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model

  windows = tf.data.Dataset.from_tensor_slices((tf.zeros([16, 80], tf.int64),
                                                tf.zeros([16, 80], tf.int64)))
  with pytest.raises(ValueError, match=r"^task.test_dataset yields unbatched elements of "
                     r"shape \(80,\); the model takes batches of \(None, None\)"):
    experiment.keras_evaluator(model_fn, windows)
  experiment.keras_evaluator(model_fn, windows.batch(8))
  experiment.keras_evaluator(model_fn, windows.batch(8, drop_remainder=True))
