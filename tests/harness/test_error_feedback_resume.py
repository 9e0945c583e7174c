"""A run with error feedback, interrupted and resumed, equals the uninterrupted run.

The interruption falls after round 3's client states were written but before that
round was reported or checkpointed (the last checkpoint is round 2): the window where a
store without versions would make the resumed rounds 3-4 read states from the future.
"""

import csv

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress import metrics as m
from fedcompress.harness import experiment, reporting
from fedcompress.harness.client_state import ClientStateStore
from fedcompress.tasks.task import FederatedTask

DIM, CLASSES = 12, 3
SPEC = (tf.TensorSpec([None, DIM], tf.float32), tf.TensorSpec([None, 1], tf.int32))


def _keras_model():
  return tf.keras.Sequential([tf.keras.layers.Input(shape=(DIM,)),
                              tf.keras.layers.Dense(CLASSES, kernel_initializer="zeros")])


def _task() -> FederatedTask:
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(CLASSES, DIM)).astype(np.float32)

  def examples(seed, n):
    r = np.random.default_rng(seed)
    y = r.integers(0, CLASSES, n)
    x = centers[y] + r.normal(size=(n, DIM)).astype(np.float32)
    return x, y.reshape(-1, 1).astype(np.int32)

  def client_dataset(cid, round_num):
    x, y = examples(int(cid[1:]), 8)
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(8, seed=round_num).batch(4)

  def model_fn():
    return tff.learning.models.from_keras_model(
        _keras_model(), input_spec=SPEC,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))

  def keras_model_fn():
    model = _keras_model()
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model

  x, y = examples(99, 30)
  return FederatedTask("tiny", [f"c{i}" for i in range(5)], client_dataset,
                       tf.data.Dataset.from_tensor_slices((x, y)).batch(30), model_fn,
                       keras_model_fn, SPEC)


def _config(root, name, resume=False):
  return fedcompress.ExperimentConfig(
      root_output_dir=str(root), experiment_name=name, rounds=4, clients_per_round=2,
      client_learning_rate=0.5, rounds_per_checkpoint=2, resume=resume, progress=False,
      aggregate_codec=fedcompress.CodecSpec("topk", {"fraction": 0.2}, threshold=0),
      error_feedback="ef")


class _KilledAfter(reporting.ConsoleReporter):
  """Console whose process "dies" once round `n` has run and written client states."""

  def __init__(self, n):
    super().__init__(progress=False)
    self.n = n

  def write(self, row):
    if row[m.ROUND] == self.n:
      raise KeyboardInterrupt
    super().write(row)


def _rows(run_dir):
  with open(f"{run_dir}/metrics.csv") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    del row[m.ROUND_TIME_S]
  return rows


@pytest.fixture(scope="module")
def task_and_process():
  task = _task()
  return task, experiment.build_process(task, _config("unused", "unused"))


@pytest.mark.slow  # 4.5 min on 2 shared cores under heavy load; two 4-round runs and a resume
def test_resumed_error_feedback_run_equals_uninterrupted(tmp_path, task_and_process):
  task, process = task_and_process
  full = experiment.run_experiment(task, _config(tmp_path, "full"), process=process)
  with pytest.raises(KeyboardInterrupt):
    experiment.run_experiment(task, _config(tmp_path, "cut"), process=process,
                              console=_KilledAfter(3))
  store = ClientStateStore(str(tmp_path / "cut" / experiment.CLIENT_STATE_DIR),
                           process.client_state_size)
  assert any(3 in store.versions(c) for c in store.clients_seen())  # round 3 wrote states
  resumed = experiment.run_experiment(task, _config(tmp_path, "cut", resume=True),
                                      process=process)
  assert resumed.loop.start_round == 3
  full_rows, resumed_rows = _rows(full.run_dir), _rows(resumed.run_dir)
  assert len(full_rows) == 4 and resumed_rows == full_rows
  # Client states, too: every client's newest state is the same in both runs.
  size = process.client_state_size
  a = ClientStateStore(str(tmp_path / "full" / experiment.CLIENT_STATE_DIR), size)
  b = ClientStateStore(str(tmp_path / "cut" / experiment.CLIENT_STATE_DIR), size)
  assert a.clients_seen() == b.clients_seen()
  for client in a.clients_seen():
    np.testing.assert_array_equal(a.read(client, 5), b.read(client, 5))
    assert np.abs(a.read(client, 5)).max() > 0  # top-k 20% left a residual


@pytest.mark.slow  # two one-round runs
def test_ef21_with_fixed_clients_weighs_the_round_by_those_clients(tmp_path):
  # EF21's server step is g += (|S| / N) mean D(c_i), N the clients that can take part:
  # with fixed clients, only they. Uncompressed, its first round is then plain FedAvg's
  # (g starts at 0); with N = all 5 clients it was 2/5 of it.
  task = _task()
  weights = {}
  for mode in ("none", "ef21"):
    config = fedcompress.ExperimentConfig(
        root_output_dir=str(tmp_path), experiment_name=mode, rounds=1, clients_per_round=2,
        client_learning_rate=0.5, progress=False, fixed_clients=("c0", "c1"),
        error_feedback=mode, client_weighting="uniform")
    result = experiment.run_experiment(task, config)
    weights[mode] = result.process.get_model_weights(result.loop.state).trainable
  assert np.abs(weights["none"][0]).max() > 0
  for plain, ef21 in zip(weights["none"], weights["ef21"], strict=True):
    np.testing.assert_allclose(ef21, plain, rtol=1e-5, atol=1e-7)
