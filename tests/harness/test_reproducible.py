"""Acceptance: the same flags and seed give the same metrics.csv, rerun or resumed.

For each stochastic codec (in both directions, on both kernels), one TFF process runs
the same 2-round experiment twice and once as 1 round + a resumed second round; the
three metrics.csv files must be equal in every column except `round_time_s`, to the
last digit written. A control run whose process alone has another seed (same clients,
same data order) must differ, so equal files are not an accident of a codec that
draws nothing. Each codec costs a TFF process build and six rounds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress import metrics as m
from fedcompress.codecs import CodecSpec
from fedcompress.harness import reporting
from fedcompress.harness.experiment import ExperimentConfig, build_process, run_experiment
from fedcompress.tasks.task import FederatedTask

pytestmark = pytest.mark.slow

_NUM_CLIENTS = 4
_INPUT_SPEC = (tf.TensorSpec([None, 8], tf.float32), tf.TensorSpec([None, 1], tf.int32))


def _keras_model() -> tf.keras.Model:
  init = tf.keras.initializers.GlorotUniform
  return tf.keras.Sequential([
      tf.keras.layers.Input(shape=(8,)),
      tf.keras.layers.Dense(16, activation="relu", kernel_initializer=init(seed=1)),
      tf.keras.layers.Dense(3, kernel_initializer=init(seed=2)),
      tf.keras.layers.Softmax(),
  ])


def _tiny_task() -> FederatedTask:
  rng = np.random.default_rng(0)
  data = {f"c{i}": (rng.normal(size=(12, 8)).astype(np.float32),
                    rng.integers(0, 3, (12, 1)).astype(np.int32)) for i in range(_NUM_CLIENTS)}

  def client_dataset(client_id: str, round_num: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(data[client_id]).shuffle(
        12, seed=round_num).batch(4)

  def keras_model_fn() -> tf.keras.Model:
    model = _keras_model()
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model

  def model_fn():
    return tff.learning.models.from_keras_model(
        _keras_model(), input_spec=_INPUT_SPEC,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  test = tf.data.Dataset.from_tensor_slices(data["c0"]).batch(6)
  return FederatedTask("tiny", sorted(data), client_dataset, test, model_fn, keras_model_fn,
                       _INPUT_SPEC)


# The stochastic codecs the acceptance names (rounding, rotation, coordinate sampling,
# a stateful adaptive one); hadamard's and kashin's draws go through the same seed scopes
# (tests/codecs/test_seeding.py). Threshold 40: both kernels (128 and 48 elements) are
# encoded, the biases not, which halves the encoders each TFF build traces.
_CODECS = {
    "uniform": CodecSpec("uniform", {"bits": 2}, threshold=40),
    "drive": CodecSpec("drive", {}, threshold=40),
    "randk": CodecSpec("randk", {"fraction": 0.5}, threshold=40),
    "adaptive": CodecSpec("adaptive", {"budget_bits_per_coordinate": 4.0}, threshold=40),
}


def _config(tmp_path, name: str, codec: CodecSpec, *, rounds: int = 2, seed: int = 0,
            resume: bool = False) -> ExperimentConfig:
  return ExperimentConfig(root_output_dir=str(tmp_path), experiment_name=name, rounds=rounds,
                          clients_per_round=3, client_learning_rate=0.5,
                          broadcast_codec=codec, aggregate_codec=codec, seed=seed,
                          resume=resume, progress=False)


def _rows_without_time(run_dir) -> list[dict[str, str]]:
  with open(f"{run_dir}/metrics.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    del row[m.ROUND_TIME_S]
  return rows


@pytest.fixture(scope="module")
def task():
  return _tiny_task()


@pytest.fixture(scope="module")
def processes(task, tmp_path_factory):
  """`get(codec_name, seed)`: one TFF process build per codec and seed in this module."""
  built = {}
  root = tmp_path_factory.mktemp("builds")

  def get(name: str, seed: int = 0):
    if (name, seed) not in built:
      built[name, seed] = build_process(task, _config(root, "x", _CODECS[name], seed=seed))
    return built[name, seed]

  return get


@pytest.mark.parametrize("name", sorted(_CODECS))
def test_rerun_and_resume_give_the_same_metrics(tmp_path, task, processes, name):
  codec = _CODECS[name]
  process = processes(name)
  first = run_experiment(task, _config(tmp_path, "first", codec), process=process)
  second = run_experiment(task, _config(tmp_path, "second", codec), process=process)
  run_experiment(task, _config(tmp_path, "resumed", codec, rounds=1), process=process)
  resumed = run_experiment(task, _config(tmp_path, "resumed", codec, resume=True),
                           process=process)
  rows = _rows_without_time(first.run_dir)
  assert len(rows) == 2
  assert _rows_without_time(second.run_dir) == rows
  assert _rows_without_time(resumed.run_dir) == rows


def test_dp_rerun_and_resume_give_the_same_metrics(tmp_path, task):
  # The DP aggregator keeps the round's DP event, strings included, in its state: a
  # checkpoint of it used to be refused on resume as "written by a different model".
  # The noise (both of central_adaptive's) comes from the seed and the round; central's
  # alone is checked in tests/federated/test_secure.py.
  mechanism = "central_adaptive"
  codec = _CODECS["uniform"]

  def config(name, **kwargs):
    return dataclasses.replace(_config(tmp_path, name, codec, **kwargs), dp=mechanism,
                               dp_noise_multiplier=0.1, dp_clip=0.5,
                               client_weighting="uniform")

  process = build_process(task, config("x"))
  first = run_experiment(task, config("first"), process=process)
  second = run_experiment(task, config("second"), process=process)
  run_experiment(task, config("resumed", rounds=1), process=process)
  resumed = run_experiment(task, config("resumed", resume=True), process=process)
  rows = _rows_without_time(first.run_dir)
  assert len(rows) == 2
  assert _rows_without_time(second.run_dir) == rows
  assert _rows_without_time(resumed.run_dir) == rows


def test_codec_seed_changes_the_run(tmp_path, task, processes):
  # Same clients and data order, only the codecs' seed differs: the run must change, so
  # the equal files above are not those of a codec that draws nothing.
  codec = _CODECS["uniform"]
  # The other seed's process is built by hand: build_process's is refused under a config
  # of another seed, whose record would not say what ran.
  by_hand = fedcompress.build_fedavg(task.model_fn, tff.learning.optimizers.build_sgdm(0.5),
                                     broadcast_codec=codec, aggregate_codec=codec, seed=1)
  runs = [run_experiment(task, _config(tmp_path, f"codec_seed_{seed}", codec), process=process)
          for seed, process in ((0, processes("uniform", 0)), (1, by_hand))]
  first, other = (_rows_without_time(r.run_dir) for r in runs)
  assert [r[m.AGGREGATE_BITS] for r in other] == [r[m.AGGREGATE_BITS] for r in first]
  assert [r[m.TRAIN_LOSS] for r in other] != [r[m.TRAIN_LOSS] for r in first]


def test_composed_codec_rerun_gives_the_same_metrics(tmp_path, task):
  codec = CodecSpec("randk(fraction=0.5)|uniform(bits=4)", threshold=0)
  process = build_process(task, _config(tmp_path, "x", codec))
  first = run_experiment(task, _config(tmp_path, "first", codec), process=process)
  second = run_experiment(task, _config(tmp_path, "second", codec), process=process)
  assert _rows_without_time(second.run_dir) == _rows_without_time(first.run_dir)


def test_resume_in_another_environment_is_recorded_and_warned(tmp_path, task, processes,
                                                              monkeypatch):
  # TensorFlow's thread count changes float reduction order (fedcompress/harness/
  # rundir.py), so each segment records its environment and a resume that differs from
  # the first segment says so on the console.
  codec = _CODECS["uniform"]
  monkeypatch.delenv("TF_NUM_INTRAOP_THREADS", raising=False)

  def run(rounds: int, resume: bool) -> str:
    out = io.StringIO()
    run_experiment(task, _config(tmp_path, "moved", codec, rounds=rounds, resume=resume),
                   process=processes("uniform"),
                   console=reporting.ConsoleReporter(stream=out, progress=False))
    return out.getvalue()

  assert "warning" not in run(1, resume=False)
  assert "warning" not in run(2, resume=True)
  monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
  lines = [line for line in run(3, resume=True).splitlines() if "warning" in line]
  assert len(lines) == 1
  assert "TF_NUM_INTRAOP_THREADS None -> 1" in lines[0]
  assert "rounds from 3 on" in lines[0]
  info = json.loads((tmp_path / "moved" / "run_info.json").read_text())
  environments = [segment["environment"] for segment in info["segments"]]
  assert [e["thread_variables"]["TF_NUM_INTRAOP_THREADS"] for e in environments] == [
      None, None, "1"]
  assert {e["usable_cpus"] for e in environments} == {len(os.sched_getaffinity(0))}
  assert environments[0]["packages"]["tensorflow"] == tf.__version__
  # The code that ran each segment: this checkout's commit, or None without git.
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  if os.path.exists(os.path.join(repo, ".git")):
    head = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert [e["source"]["commit"] for e in environments] == [head] * 3
  else:
    assert [e["source"] for e in environments] == [None] * 3
