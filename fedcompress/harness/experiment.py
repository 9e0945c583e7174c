"""One federated experiment, from plain arguments to a run directory of results.

`run_experiment(task, config)` builds the FedAvg process with the configured codecs,
runs the round loop, evaluates with Keras, and writes into
`<root_output_dir>/<experiment_name>/`: `config.json`, `metrics.csv`, TensorBoard
events (scalars + HParams) and `checkpoints/`. Binaries translate flags into an
`ExperimentConfig`; notebooks build one directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress import metrics as m
from fedcompress.codecs import CodecSpec
from fedcompress.federated import runtime
from fedcompress.federated.fedavg import build_fedavg
from fedcompress.harness import reporting
from fedcompress.harness.checkpoints import Checkpointer, CheckpointMismatchError
from fedcompress.harness.cli import fail  # noqa: F401  (re-exported for binaries)
from fedcompress.harness.loop import LoopConfig, LoopResult, run_loop
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes
from fedcompress.tasks.task import FederatedTask

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
CHECKPOINT_DIR = "checkpoints"
RUN_INFO_FILE = "run_info.json"


class RunDirectoryError(ValueError):
  """The output directory cannot be used as asked (exists without --resume, unwritable)."""


OPTIMIZERS: dict[str, Callable[[float], tff.learning.optimizers.Optimizer]] = {
    "sgd": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr),
    "sgdm": lambda lr: tff.learning.optimizers.build_sgdm(learning_rate=lr, momentum=0.9),
    "adam": lambda lr: tff.learning.optimizers.build_adam(learning_rate=lr),
    "adagrad": lambda lr: tff.learning.optimizers.build_adagrad(learning_rate=lr),
    "yogi": lambda lr: tff.learning.optimizers.build_yogi(learning_rate=lr),
}

CLIENT_WEIGHTINGS = {
    "num_examples": tff.learning.ClientWeighting.NUM_EXAMPLES,
    "uniform": tff.learning.ClientWeighting.UNIFORM,
}


def build_optimizer(name: str, learning_rate: float) -> tff.learning.optimizers.Optimizer:
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
  if not learning_rate > 0:
    raise ValueError(f"learning rate must be > 0, got {learning_rate}")
  return OPTIMIZERS[name](learning_rate)


@dataclasses.dataclass
class ExperimentConfig:
  """Everything one run needs, as plain values."""

  root_output_dir: str
  experiment_name: str
  rounds: int = 10
  clients_per_round: int = 10
  client_optimizer: str = "sgd"
  client_learning_rate: float = 0.02
  server_optimizer: str = "sgd"
  server_learning_rate: float = 1.0
  client_weighting: str = "num_examples"
  broadcast_codec: CodecSpec = dataclasses.field(default_factory=CodecSpec)
  aggregate_codec: CodecSpec = dataclasses.field(default_factory=CodecSpec)
  rounds_per_eval: int = 1
  rounds_per_checkpoint: int = 1
  seed: int = 0
  resume: bool = False
  fixed_clients: tuple[str, ...] | None = None
  # Values recorded in config.json and TensorBoard HParams (e.g. the resolved flags).
  recorded: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  # Keys of `recorded` that must match the checkpointed run for --resume.
  resume_must_match: tuple[str, ...] = ()
  progress: bool | None = None

  @property
  def run_dir(self) -> str:
    return os.path.join(self.root_output_dir, self.experiment_name)

  def validate(self) -> None:
    if self.rounds < 1:
      raise ValueError(f"--rounds must be >= 1, got {self.rounds}")
    if self.clients_per_round < 1:
      raise ValueError(f"--clients_per_round must be >= 1, got {self.clients_per_round}")
    if self.rounds_per_eval < 1 or self.rounds_per_checkpoint < 1:
      raise ValueError("--rounds_per_eval and --rounds_per_checkpoint must be >= 1")
    if self.client_weighting not in CLIENT_WEIGHTINGS:
      raise ValueError(f"unknown client weighting {self.client_weighting!r}; valid: "
                       f"{', '.join(CLIENT_WEIGHTINGS)}")
    if not self.experiment_name or os.sep in self.experiment_name:
      raise ValueError(f"--experiment_name must be a plain folder name, got "
                       f"{self.experiment_name!r}")


@dataclasses.dataclass
class ExperimentResult:
  run_dir: str
  loop: LoopResult
  wall_time_s: float
  final_eval: dict[str, float] | None
  totals: dict[str, int]
  process: Any = None


def check_run_dir(config: ExperimentConfig) -> None:
  """Raises what `prepare_run_dir` would, without creating anything (fail before work)."""
  run_dir = config.run_dir
  if os.path.isdir(run_dir) and os.listdir(run_dir):
    if not config.resume:
      raise RunDirectoryError(
          f"{run_dir} already holds a run; pass --resume to continue it or choose another "
          "--experiment_name (nothing was overwritten)")
    _check_resumable(config)


def prepare_run_dir(config: ExperimentConfig) -> bool:
  """Creates or checks the run directory; returns True when resuming a previous run.

  Raises:
    RunDirectoryError: it exists and `resume` is off, or it cannot be written.
    CheckpointMismatchError: `resume` into a run of a different model or codec.
  """
  run_dir = config.run_dir
  existing = os.path.isdir(run_dir) and bool(os.listdir(run_dir))
  check_run_dir(config)
  try:
    os.makedirs(run_dir, exist_ok=True)
    probe = os.path.join(run_dir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise RunDirectoryError(f"cannot write to {run_dir}: {e.strerror or e}") from None
  return existing


def _check_resumable(config: ExperimentConfig) -> None:
  path = os.path.join(config.run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  for key in config.resume_must_match:
    old, new = previous.get(key), _jsonable(config.recorded.get(key))
    if old != new:
      raise CheckpointMismatchError(
          f"cannot resume {config.run_dir}: it was run with {key}={old!r}, now {new!r} "
          "(a checkpoint of a different model or codec)")


def _jsonable(value: Any) -> Any:
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return str(value)


def write_config(config: ExperimentConfig) -> None:
  record = {k: _jsonable(v) for k, v in config.recorded.items()}
  record.setdefault("broadcast_codec", config.broadcast_codec.describe())
  record.setdefault("aggregate_codec", config.aggregate_codec.describe())
  tmp = os.path.join(config.run_dir, CONFIG_FILE + ".tmp")
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(config.run_dir, CONFIG_FILE))


def keras_evaluator(keras_model_fn: Callable[[], tf.keras.Model], dataset: tf.data.Dataset
                    ) -> Callable[[Any], dict[str, float]]:
  """`model_weights -> {'eval/loss', 'eval/accuracy'}` on `dataset`, with one Keras model."""
  model = keras_model_fn()

  def evaluate(model_weights) -> dict[str, float]:
    restore_keras_v2_classes(model)  # A TFF process built since may have swapped them.
    model_weights.assign_weights_to(model)
    results = model.evaluate(dataset, verbose=0, return_dict=True)
    out = {m.EVAL_LOSS: float(results["loss"])}
    accuracy = [v for k, v in results.items() if k.endswith("accuracy")]
    if accuracy:
      out[m.EVAL_ACCURACY] = float(accuracy[0])
    return out

  return evaluate


def build_process(task: FederatedTask, config: ExperimentConfig):
  return build_fedavg(
      task.model_fn,
      build_optimizer(config.client_optimizer, config.client_learning_rate),
      build_optimizer(config.server_optimizer, config.server_learning_rate),
      broadcast_codec=config.broadcast_codec,
      aggregate_codec=config.aggregate_codec,
      client_weighting=CLIENT_WEIGHTINGS[config.client_weighting],
  )


def run_experiment(task: FederatedTask, config: ExperimentConfig, *,
                   initial_weights: Any = None, process: Any = None,
                   console: reporting.ConsoleReporter | None = None) -> ExperimentResult:
  """Runs `config` on `task`; see the module docstring for what it writes.

  Args:
    task: data and model.
    config: the run.
    initial_weights: `tff.learning.models.ModelWeights` to start from (fine-tuning).
    process: a prebuilt process for this task and config (tests share one).
    console: console reporter to use (default: stdout lines, progress bar on a tty).
  """
  config.validate()
  if not config.fixed_clients and config.clients_per_round > len(task.client_ids):
    raise ValueError(f"--clients_per_round={config.clients_per_round} but the dataset has "
                     f"only {len(task.client_ids)} clients")
  unknown = [c for c in (config.fixed_clients or ()) if c not in set(task.client_ids)]
  if unknown:
    raise ValueError(f"unknown client id(s): {', '.join(unknown)}")
  # The rounds run on a TFF worker this process owns (unless a context is in place).
  runtime.install()
  resuming = prepare_run_dir(config)
  config_path = os.path.join(config.run_dir, CONFIG_FILE)
  previous_config = _read_optional(config_path)
  write_config(config)
  began = time.perf_counter()
  process = process or build_process(task, config)
  initial_state = None
  if initial_weights is not None:
    initial_state = process.set_model_weights(process.initialize(), initial_weights)
  hparams = dict(config.recorded) or {"experiment_name": config.experiment_name}
  reporters = [
      console or reporting.ConsoleReporter(progress=config.progress),
      reporting.CsvReporter(os.path.join(config.run_dir, METRICS_FILE)),
      reporting.TensorBoardReporter(config.run_dir, hparams, run_name=config.experiment_name),
  ]
  try:
    loop = run_loop(
        process, task.client_ids, task.client_dataset,
        LoopConfig(rounds=config.rounds, clients_per_round=config.clients_per_round,
                   seed=config.seed, rounds_per_eval=config.rounds_per_eval,
                   rounds_per_checkpoint=config.rounds_per_checkpoint,
                   fixed_clients=config.fixed_clients),
        evaluate=keras_evaluator(task.keras_model_fn, task.test_dataset),
        reporters=reporters,
        checkpointer=Checkpointer(os.path.join(config.run_dir, CHECKPOINT_DIR)),
        initial_state=initial_state, resume=resuming)
  except CheckpointMismatchError:
    # Refused before any round ran: leave the run as it was, so that resuming it with
    # its own flags still works.
    _restore_optional(config_path, previous_config)
    raise
  wall_time_s = time.perf_counter() - began
  _add_wall_time(config.run_dir, wall_time_s)
  rows = reporting.read_metrics_csv(os.path.join(config.run_dir, METRICS_FILE))
  totals = {m.BROADCAST_CUMULATIVE_BITS: int(rows[-1][m.BROADCAST_CUMULATIVE_BITS]),
            m.AGGREGATE_CUMULATIVE_BITS: int(rows[-1][m.AGGREGATE_CUMULATIVE_BITS])} if rows else {}
  final_eval = loop.final_eval
  if final_eval is None and rows and rows[-1].get(m.EVAL_ACCURACY) is not None:
    final_eval = {m.EVAL_LOSS: rows[-1][m.EVAL_LOSS], m.EVAL_ACCURACY: rows[-1][m.EVAL_ACCURACY]}
  return ExperimentResult(run_dir=config.run_dir, loop=loop,
                          wall_time_s=wall_time_s, final_eval=final_eval,
                          totals=totals, process=process)


def _read_optional(path: str) -> bytes | None:
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return f.read()


def _restore_optional(path: str, content: bytes | None) -> None:
  if content is None:
    if os.path.exists(path):
      os.remove(path)
    return
  with open(path + ".tmp", "wb") as f:
    f.write(content)
  os.replace(path + ".tmp", path)


def _add_wall_time(run_dir: str, seconds: float) -> None:
  """Accumulates the run's wall time over its resumed segments in run_info.json."""
  path = os.path.join(run_dir, RUN_INFO_FILE)
  info = {"wall_time_s": 0.0, "segments": 0}
  if os.path.exists(path):
    with open(path) as f:
      info.update(json.load(f))
  info["wall_time_s"] += seconds
  info["segments"] += 1
  with open(path + ".tmp", "w") as f:
    json.dump(info, f, indent=2)
  os.replace(path + ".tmp", path)


def describe_result(result: ExperimentResult) -> str:
  """The closing line of a run: rounds, final eval accuracy, total bits, where logs are."""
  from fedcompress.units import format_bits

  accuracy = (result.final_eval or {}).get(m.EVAL_ACCURACY)
  rounds = result.loop.rows[-1][m.ROUND] if result.loop.rows else result.loop.start_round - 1
  return (f"done: {rounds} rounds, eval accuracy "
          f"{'n/a' if accuracy is None else f'{accuracy:.4f}'}, broadcast "
          f"{format_bits(result.totals.get(m.BROADCAST_CUMULATIVE_BITS, 0))}, aggregate "
          f"{format_bits(result.totals.get(m.AGGREGATE_CUMULATIVE_BITS, 0))} in "
          f"{result.wall_time_s:.0f}s; logs: {result.run_dir}")


