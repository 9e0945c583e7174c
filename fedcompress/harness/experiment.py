"""One federated experiment, from plain arguments to a run directory of results.

`run_experiment(task, config)` builds the FedAvg process with the configured codecs,
runs the round loop, evaluates with Keras, and writes into
`<root_output_dir>/<experiment_name>/`: `config.json`, `run_info.json`, `metrics.csv`,
TensorBoard events (scalars + HParams) and `checkpoints/`. Binaries translate flags into
an `ExperimentConfig`; notebooks build one directly.

The run directory has one writer (its lock is taken before anything is written), and
`config.json` is the run's record, written once: a resume must match it in every
setting that changes results, and may only raise the rounds (see
`fedcompress.harness.rundir`).
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import inspect
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from absl import flags
from tensorflow_federated.python.core.impl.types import type_conversions

from fedcompress import metrics as m
from fedcompress.codecs import (
  CodecSpec,
  available_codecs,
  get_codec,
  replaced_builtin_codecs,
  seeding,
)
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated import optimizers, runtime
from fedcompress.federated.aggregation import check_weighted_codec
from fedcompress.federated.aggregators import AggregatorSpec
from fedcompress.federated.error_feedback import (
  ERROR_FEEDBACK_MODES,
  build_fedavg_with_error_feedback,
  check_error_feedback,
  update_specs,
)
from fedcompress.federated.fedavg import MEASURED_PROTECTED_MEAN, build_fedavg
from fedcompress.federated.privacy import (
  DPConfig,
  check_protected_mean,
  effective_noise_multiplier,
  rdp_epsilon,
)
from fedcompress.harness import reporting, rundir
from fedcompress.harness.checkpoints import Checkpointer
from fedcompress.harness.cli import fail, warn, warn_once
from fedcompress.harness.client_state import ClientStateStore
from fedcompress.harness.loop import (
  LoopConfig,
  LoopResult,
  NonFiniteModelError,
  run_loop,
)
from fedcompress.harness.rundir import RunDirectoryError
from fedcompress.tasks.errors import (
  PRETRAINED_FINGERPRINT_PREFIX,
  DataReadError,
  DatasetUnavailableError,
  error_cause,
  file_fingerprint,
  weights_fingerprint,
)
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes
from fedcompress.tasks.task import FederatedTask

CHECKPOINT_DIR = rundir.CHECKPOINT_DIR
CLIENT_STATE_DIR = "client_states"

# What a single run leaves behind when a worker is lost or a round fails.
RUN_KEPT = "Checkpoints written so far are kept (--resume continues)"


def codec_names(codec: CodecSpec | AllocatedCodec) -> list[str]:
  """The registered codecs `codec` is made of: a chain's links, a budget's base codec,
  and a link's `base` option naming a codec (an entropy coder's: `huffman(base=myq)` and
  `uniform_huffman` run myq's and uniform's code, whose source and revision went
  unrecorded, so such a run resumed on an edited myq)."""
  names = []
  for name, options in getattr(codec, "base", codec).resolved_links():
    names.append(name)
    base = options.get("base")
    if isinstance(base, str) and base in available_codecs():
      names.append(base)
  return names


def resume_hint(run_dir: str, rounds_asked: int | None = None) -> str:
  """What an interrupted run keeps, for its one line: the newest checkpoint, or none.

  `rounds_asked`: the command's --rounds, which a resume extending the run records only
  once it has started (interrupted before, it was told it had ended).
  """
  rounds = rundir.checkpoint_rounds(run_dir)
  try:
    asked = rundir.recorded_rounds(run_dir)
  except ValueError:  # An unreadable record: said when the run is resumed.
    asked = None
  if rounds_asked is not None:
    asked = max(asked or 0, rounds_asked)
  if rounds and asked is not None and rounds[-1] >= asked:
    # Stopped after its last round (the final evaluation, model or text): there is no
    # round `asked + 1` to continue from.
    return (f"checkpoint round_{rounds[-1]} of its last round is kept; rerun with --resume "
            "to write what follows the rounds")
  if rounds:
    return (f"checkpoint round_{rounds[-1]} is kept; rerun with --resume to continue from "
            f"round {rounds[-1] + 1}")
  return "no checkpoint was written yet, so a rerun with --resume starts from round 1"


def kept_in(run_dir: str, rounds_asked: int | None = None) -> str:
  """`run_failure`'s `kept` for one run: what `run_dir` holds now, as a sentence
  (`resume_hint`'s).

  A worker unreachable at startup fails before the run directory exists; the generic
  `RUN_KEPT` then spoke of checkpoints that were never written.
  """
  hint = resume_hint(run_dir, rounds_asked)
  return hint[0].upper() + hint[1:]


def _out_of_space(error: BaseException) -> BaseException | None:
  """The error in `error`'s chain that says the disk (or the user's quota) is full.

  TensorFlow's file writes (checkpoints, TensorBoard events) say it as a
  ResourceExhaustedError, Python's as an OSError; a full disk ended a run in an
  81-line traceback, though its checkpoints were intact.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return error
    if isinstance(error, tf.errors.ResourceExhaustedError) and any(
        words in str(error.message) for words in ("No space left", "quota exceeded")):
      return error
    error = error.__cause__ or error.__context__
  return None


def run_failure(error: Exception, *, kept: str = RUN_KEPT, offline: bool = False) -> int | None:
  """What a binary returns for `error` from its runs, its one `error:` line printed.

  The failures a run can meet: bad settings, a dataset that cannot be read, a worker
  lost, a model gone non-finite, a round failed in TFF's worker. None for anything else:
  a bug, which the caller re-raises with its traceback. A local worker interrupted by
  Ctrl-C raises KeyboardInterrupt, for `cli.interruptible` to say.

      except Exception as e:
        code = run_failure(e)
        if code is None:
          raise
        return code

  Args:
    error: what the run (or sweep of runs) raised.
    kept: what is kept for next time, said after a lost worker or a failed round.
    offline: an unreadable dataset can be replaced by the embedded digits
      (`--dataset=digits`), and the line says so.
  """
  if isinstance(error, DatasetUnavailableError):
    return fail(f"{error}{' Or run offline with --dataset=digits.' if offline else ''}")
  if (full := _out_of_space(error)) is not None:
    return fail(f"out of disk space ({type(full).__name__}: {error_cause(full)}). {kept}: "
                "free some space first (a checkpoint is written before the oldest kept one "
                "is deleted).", 1)
  if isinstance(error, DataReadError):
    return fail(f"{error}. {kept}.", 1)
  if isinstance(error, (ValueError, flags.Error)):
    return fail(str(error))
  if isinstance(error, NonFiniteModelError):
    return fail(str(error), 1)
  if isinstance(error, runtime.WorkerInterruptedError):
    # A Ctrl-C that reached the worker before the main thread: said as the
    # KeyboardInterrupt is (`cli.interruptible`: one line, exit 130), not as a lost worker
    # (exit 1, which a scheduler retries).
    raise KeyboardInterrupt from error
  if isinstance(error, runtime.WorkerUnavailableError):
    return fail(f"{error} {kept}.", 1)
  if isinstance(error, runtime.COMPUTATION_ERRORS):
    return fail(f"a round failed in the TFF worker: {runtime.describe_computation_error(error)}"
                f". {kept}.", 1)
  return None


@dataclasses.dataclass(frozen=True)
class OptimizerChoice:
  """One optimizer of `--client_optimizer` / `--server_optimizer` and the options it takes.

  `options` maps an option name (`momentum`, `epsilon`, `initial_accumulator`; the flags
  are `--server_<option>`) to its keyword in the TFF builder. An option left unset (None)
  keeps the builder's own default, so runs that never name one are unchanged.
  """

  build: Callable[..., tff.learning.optimizers.Optimizer]
  options: Mapping[str, str] = dataclasses.field(default_factory=dict)


# TFF's Adam and Yogi add epsilon outside the square root, as the FedOpt paper's Keras
# optimizers did; TFF's Adagrad adds it inside, hence `adagrad_keras` for FedAdagrad.
OPTIMIZERS: dict[str, OptimizerChoice] = {
    "sgd": OptimizerChoice(tff.learning.optimizers.build_sgdm, {"momentum": "momentum"}),
    "sgdm": OptimizerChoice(
        lambda learning_rate, momentum=0.9: tff.learning.optimizers.build_sgdm(
            learning_rate=learning_rate, momentum=momentum), {"momentum": "momentum"}),
    "adam": OptimizerChoice(tff.learning.optimizers.build_adam, {"epsilon": "epsilon"}),
    "adagrad": OptimizerChoice(tff.learning.optimizers.build_adagrad, {
        "epsilon": "epsilon", "initial_accumulator": "initial_preconditioner_value"}),
    "adagrad_keras": OptimizerChoice(optimizers.build_keras_adagrad, {
        "epsilon": "epsilon", "initial_accumulator": "initial_preconditioner_value"}),
    "yogi": OptimizerChoice(tff.learning.optimizers.build_yogi, {
        "epsilon": "epsilon", "initial_accumulator": "initial_preconditioner_value"}),
}
OPTIMIZER_OPTIONS = ("momentum", "epsilon", "initial_accumulator")

CLIENT_WEIGHTINGS = {
    "num_examples": tff.learning.ClientWeighting.NUM_EXAMPLES,
    "uniform": tff.learning.ClientWeighting.UNIFORM,
}


def build_optimizer(name: str, learning_rate: float,
                    options: Mapping[str, float | None] | None = None, *,
                    flag_prefix: str = "") -> tff.learning.optimizers.Optimizer:
  """The TFF optimizer `name` at `learning_rate`, with `options` (None: the default).

  Raises:
    ValueError: see `check_optimizer`.
  """
  kwargs = check_optimizer(name, learning_rate, options, flag_prefix=flag_prefix)
  return OPTIMIZERS[name].build(learning_rate=learning_rate, **kwargs)


def resolved_optimizer(name: str, learning_rate: float,
                       options: Mapping[str, float | None] | None = None) -> str:
  """The optimizer as TFF runs it, `kind(hyperparameter=value,...)` without its learning
  rate: one text however it was spelt. `sgdm`, `sgdm` with momentum 0.9 and `sgd` with
  momentum 0.9 build one optimizer, as do `adam` and `adam` with TFF's epsilon, and
  each was its own HParams row and passed a sweep's same-settings check (review R7 of
  s47)."""
  optimizer = build_optimizer(name, learning_rate, options)
  state = optimizer.initialize(tf.TensorSpec([1], tf.float32))
  hparams = {k: v for k, v in optimizer.get_hparams(state).items() if k != "learning_rate"}
  # The initial accumulator is a state, not a hyperparameter: its value as given, or
  # the builder's default.
  keyword = OPTIMIZERS[name].options.get("initial_accumulator")
  if keyword is not None:
    given = check_optimizer(name, learning_rate, options)
    hparams["initial_accumulator"] = given.get(
        keyword, inspect.signature(OPTIMIZERS[name].build).parameters[keyword].default)
  kind = "sgd" if name == "sgdm" else name  # sgdm is SGD at momentum 0.9.
  # Each value's shortest float32 decimal: TFF holds them as float32.
  values = ",".join(f"{k}={float(str(np.float32(v)))!r}" for k, v in sorted(hparams.items()))
  return f"{kind}({values})" if values else kind  # Plain SGD: `sgd`, as the flag says.


def check_optimizer(name: str, learning_rate: float,
                    options: Mapping[str, float | None] | None = None, *,
                    flag_prefix: str = "") -> dict[str, float]:
  """The TFF builder's keyword arguments for `options` of optimizer `name`.

  Raises:
    ValueError: unknown name, bad learning rate, or an option this optimizer lacks or
      a value out of range (named as the flag `--<flag_prefix><option>`).
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(OPTIMIZERS))}")
  # A string ('0.1') failed in a bare TypeError here too (build_process, build_optimizer).
  if (isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float | np.number)
      or not (learning_rate > 0 and math.isfinite(learning_rate))):
    what = f"--{flag_prefix}learning_rate" if flag_prefix else "learning rate"
    raise ValueError(f"{what} must be a finite number > 0, got {learning_rate!r}")
  choice = OPTIMIZERS[name]
  if options is not None and not isinstance(options, Mapping):  # A list of pairs.
    raise ValueError(f"{flag_prefix}optimizer_options must be a mapping such as "
                     f"{{'momentum': 0.9}}, got {options!r}")
  given = {k: v for k, v in (options or {}).items() if v is not None}
  for option, value in given.items():
    if option not in choice.options:
      takes = sorted(n for n, c in OPTIMIZERS.items() if option in c.options)
      if not takes:  # Said as "applies to --client_optimizer=, not sgd".
        raise ValueError(f"unknown optimizer option {option!r}; valid: "
                         f"{', '.join(OPTIMIZER_OPTIONS)}")
      raise ValueError(f"--{flag_prefix}{option} applies to --{flag_prefix}optimizer="
                       f"{'|'.join(takes)}, not {name}")
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
      raise ValueError(f"--{flag_prefix}{option} must be a number, got {value!r}")
    if not (value >= 0 and math.isfinite(value)) or (option == "momentum" and value >= 1):
      raise ValueError(f"--{flag_prefix}{option} must be a finite number >= 0"
                       f"{' and < 1' if option == 'momentum' else ''}, got {value}")
    # TFF's optimizers (and Keras' Adagrad) compute in float32: epsilon 1e39 was inf
    # there and the model never moved, 1e-50 was 0 and round 1 ended in NaN, blamed on
    # the learning rates, and momentum 0.9999999999 was 1.
    with np.errstate(over="ignore"):  # inf is what is said.
      single = float(np.float32(value))
    if (not math.isfinite(single) or (value > 0 and single == 0)
        or (option == "momentum" and single >= 1)):
      raise ValueError(f"--{flag_prefix}{option}={value} is {single:g} in float32, in which "
                       "the optimizers compute: give a value float32 holds"
                       f"{' (below 1)' if option == 'momentum' else ''}")
  # A coordinate whose gradients have all been 0 divides 0 by 0 in TFF's Adam with
  # epsilon 0, and in its Adagrad and Yogi when their accumulator also starts at 0
  # (TFF's defaults, 0.1 and 1e-6, keep them finite; Keras' Adagrad guards itself).
  if given.get("epsilon") == 0 and (name == "adam" or (
      name in ("adagrad", "yogi") and given.get("initial_accumulator") == 0)):
    raise ValueError(f"--{flag_prefix}epsilon must be > 0 with --{flag_prefix}optimizer={name}"
                     + ("" if name == "adam" else f" and --{flag_prefix}initial_accumulator=0")
                     + ", got 0")
  return {choice.options[k]: v for k, v in given.items()}


def _same_codec(description: str, spec: Any) -> bool:
  """Whether `description` (a `CodecSpec.describe()`) names the codec `spec` resolves to."""
  if not isinstance(spec, CodecSpec):
    return False
  name, sep, threshold = description.rpartition(">")
  try:
    old = CodecSpec(name, threshold=int(threshold)) if sep else None
  except ValueError:  # A codec this version no longer has, or a damaged record.
    return False
  return old is not None and (old.threshold, old.resolved_links()) == (
      spec.threshold, spec.resolved_links())


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
  # `OPTIMIZER_OPTIONS` of each optimizer (momentum, epsilon, initial_accumulator); an
  # option left out keeps TFF's default.
  client_optimizer_options: Mapping[str, float] = dataclasses.field(default_factory=dict)
  server_optimizer_options: Mapping[str, float] = dataclasses.field(default_factory=dict)
  client_weighting: str = "num_examples"
  broadcast_codec: CodecSpec = dataclasses.field(default_factory=CodecSpec)
  aggregate_codec: CodecSpec = dataclasses.field(default_factory=CodecSpec)
  # The encoded mean (default) or a server-side aggregator that replaces it (FetchSGD).
  aggregator: AggregatorSpec = dataclasses.field(default_factory=AggregatorSpec)
  # Client error feedback on the uplink codec: none, ef or ef21
  # (`fedcompress.federated.error_feedback`); ef/ef21 keep client state on disk.
  error_feedback: str = "none"
  rounds_per_eval: int = 1
  rounds_per_checkpoint: int = 1
  seed: int = 0
  resume: bool = False
  fixed_clients: tuple[str, ...] | None = None
  # Values recorded in config.json and TensorBoard HParams (e.g. the resolved flags).
  # On resume every one must match the run's config.json, except those in
  # `rundir.MAY_DIFFER_ON_RESUME`.
  recorded: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  progress: bool | None = None
  # `build_fedavg(measure_error=True)`: writes `aggregate/relative_error` each round
  # (an extra, uncounted exact mean); changes no result, so it is not recorded.
  measure_error: bool = False
  # Secure aggregation and differential privacy (fedcompress.federated.secure, .privacy).
  secure_aggregation: bool = False
  dp: str = "none"
  dp_noise_multiplier: float = 1.0
  dp_clip: float = 0.1
  dp_delta: float = 1e-5
  dp_field_bits: int = 16

  def __post_init__(self) -> None:
    # A notebook's numpy values as Python's (`for rounds in np.arange(1, 4)`: an np.int64
    # `rounds` failed writing run_info.json after config.json was written, and the
    # corrected cell was refused as another run), and its numpy array of client ids
    # (`rng.choice(task.client_ids, 2)`: AttributeError) as a tuple of strings.
    for field in dataclasses.fields(self):
      if isinstance(value := getattr(self, field.name), np.generic):
        setattr(self, field.name, value.item())
    if isinstance(self.fixed_clients, (list, np.ndarray)):
      self.fixed_clients = tuple(c.item() if isinstance(c, np.generic) else c
                                 for c in self.fixed_clients)

  def dp_config(self, population: int) -> DPConfig | None:
    """The DP mechanism over `population` clients, or None without DP."""
    if self.dp == "none":
      return None
    return DPConfig(self.dp, self.dp_noise_multiplier, self.dp_clip, self.clients_per_round,
                    population, delta=self.dp_delta, field_bits=self.dp_field_bits)

  @property
  def run_dir(self) -> str:
    return os.path.join(self.root_output_dir, self.experiment_name)

  def validate(self) -> None:
    # The flags' own rules (harness/flags.py) for a config built in Python: seed=-1,
    # rounds=2.5 or clients_per_round=2.0 made the run directory, then failed in round 1
    # with numpy's or TensorFlow's TypeError, and the corrected cell was refused as
    # another run's settings.
    for name, low, high in (("rounds", 1, None), ("clients_per_round", 1, None),
                            ("rounds_per_eval", 1, None), ("rounds_per_checkpoint", 1, None),
                            ("seed", 0, 2**32 - 1), ("dp_field_bits", 1, 22)):
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
          or (high is not None and value > high)):
        raise ValueError(f"--{name} ({name}=) must be an integer >= {low}"
                         f"{f' and <= {high}' if high is not None else ''}, got {value!r}")
    for name in ("resume", "secure_aggregation", "measure_error"):
      if not isinstance(getattr(self, name), (bool, np.bool_)):  # resume="no" resumed.
        raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
    for name in ("broadcast_codec", "aggregate_codec"):
      if not isinstance(codec := getattr(self, name), (CodecSpec, AllocatedCodec)):
        raise ValueError(f"{name} must be a fedcompress.CodecSpec (as "
                         f"CodecSpec('uniform(bits=8)', threshold=10000)) or a bit budget, "
                         f"got {codec!r}")
      if isinstance(codec, AllocatedCodec):
        codec.check_widths_cost_apart()
    if not isinstance(self.aggregator, AggregatorSpec):
      raise ValueError(f"aggregator must be an AggregatorSpec (as AggregatorSpec('median')), "
                       f"got {self.aggregator!r}")
    if self.fixed_clients is not None and not (
        isinstance(self.fixed_clients, tuple)
        and all(isinstance(c, str) for c in self.fixed_clients)):
      raise ValueError("fixed_clients must be a list of client ids (strings, as in "
                       f"task.client_ids), got {self.fixed_clients!r}")
    if self.client_weighting not in CLIENT_WEIGHTINGS:
      raise ValueError(f"unknown client weighting {self.client_weighting!r}; valid: "
                       f"{', '.join(CLIENT_WEIGHTINGS)}")
    if self.error_feedback not in ERROR_FEEDBACK_MODES:
      raise ValueError(f"unknown --error_feedback {self.error_feedback!r}; valid: "
                       f"{', '.join(ERROR_FEEDBACK_MODES)}")
    if self.measure_error and self.error_feedback != "none":
      raise ValueError("measure_error is not available with --error_feedback (its process "
                       "builds its own encoded mean)")
    name = self.experiment_name
    # Blank too: `--experiment_name=" "` made a folder named by a space.
    if (not isinstance(name, str) or name.strip() in ("", ".", "..") or "/" in name
        or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name):
      raise ValueError(f"--experiment_name must be a plain folder name (not blank, '.' or "
                       f"'..', no path separator), got {name!r}")
    for what, rate in (("client", self.client_learning_rate),
                       ("server", self.server_learning_rate)):
      # A string ('0.1', a notebook's copy of the flag) failed in a bare TypeError.
      if (isinstance(rate, bool) or not isinstance(rate, int | float | np.number)
          or not (rate > 0 and math.isfinite(rate))):
        raise ValueError(f"--{what}_learning_rate must be a finite number > 0, got {rate!r}")
    check_optimizer(self.client_optimizer, self.client_learning_rate,
                    self.client_optimizer_options, flag_prefix="client_")
    check_optimizer(self.server_optimizer, self.server_learning_rate,
                    self.server_optimizer_options, flag_prefix="server_")
    self._check_combinations()

  def _check_combinations(self) -> None:
    """What the processes cannot build together: one line each, before any directory.

    Here, not in the flag layer, so that notebooks and library callers building an
    `ExperimentConfig` get the same refusals as the binaries.
    """
    protected = self.secure_aggregation or self.dp != "none"
    if self.error_feedback != "none" and (protected or not self.aggregator.is_mean):
      # The error-feedback process builds its own encoded mean: it would drop these.
      raise ValueError("--error_feedback keeps its memory on the clients around the encoded "
                       "mean: it takes neither --secure_aggregation, --dp nor an --aggregator")
    if protected and not self.aggregator.is_mean:
      raise ValueError("--secure_aggregation and --dp protect the encoded mean: they take "
                       "no --aggregator")
    if protected and self.measure_error:
      raise ValueError(MEASURED_PROTECTED_MEAN)
    if self.error_feedback != "none" and not isinstance(self.aggregate_codec, AllocatedCodec):
      check_error_feedback(self.error_feedback, self.aggregate_codec,
                           CLIENT_WEIGHTINGS[self.client_weighting])
    # Error feedback takes codecs both ways; the protected mean takes an uplink codec (a
    # downlink budget works with it).
    for direction in ("broadcast", "aggregate"):
      if not isinstance(getattr(self, f"{direction}_codec"), AllocatedCodec):
        continue
      if self.error_feedback != "none":
        raise ValueError("--error_feedback takes codecs, not a bit budget: drop "
                         f"--{direction}_bits_per_coordinate")
      if protected and direction == "aggregate":
        raise ValueError("--secure_aggregation and --dp take an uplink codec, not a bit "
                         "budget: drop --aggregate_bits_per_coordinate")
    if self.fixed_clients is not None:
      if "" in self.fixed_clients:  # `--clients=A,` was "unknown client id(s): " naming none.
        raise ValueError("--clients has an empty client id (a comma too many?): "
                         f"{','.join(self.fixed_clients)}")
      repeated = sorted({c for c in self.fixed_clients if self.fixed_clients.count(c) > 1})
      if repeated:
        raise ValueError(f"--clients lists {', '.join(repeated)} more than once")
      if self.dp != "none":
        # The accountant assumes clients sampled at clients_per_round / population each
        # round, and the mean divides by clients_per_round; fixed clients train every
        # round, so both the update and the reported epsilon would be wrong.
        raise ValueError("--dp accounts for clients sampled each round: it takes no fixed "
                         "--clients (leave --clients empty and set --clients_per_round)")

  def record(self) -> dict[str, Any]:
    """What config.json holds: `recorded` plus this config's own result-affecting values.

    The plain fields are written under their flag names over what `recorded` says: a
    config from flags changed with `dataclasses.replace` (a notebook's other learning
    rate, codec or seed) recorded the flags' values, which never ran, and a resume with
    yet other settings compared the flags' values with themselves and was accepted. The
    flags that spelt a codec the config no longer runs are dropped with it.
    """
    record = {k: rundir.jsonable(v) for k, v in self.recorded.items()}
    # Fixed clients all train every round, whatever clients_per_round says (a config
    # built in Python recorded 2 where 3 listed clients trained).
    own = {"rounds": self.rounds,
           "clients_per_round": (len(self.fixed_clients) if self.fixed_clients
                                 else self.clients_per_round),
           "client_optimizer": self.client_optimizer,
           "client_learning_rate": self.client_learning_rate,
           "server_optimizer": self.server_optimizer,
           "server_learning_rate": self.server_learning_rate,
           "client_weighting": self.client_weighting, "seed": self.seed,
           "broadcast_codec": self.broadcast_codec.describe(),
           "aggregate_codec": self.aggregate_codec.describe(),
           "error_feedback": self.error_feedback,
           "secure_aggregation": self.secure_aggregation, "dp": self.dp}
    # Written also when unset (the mean, no fixed clients, an optimizer's default), so
    # that a resume going from set to unset is compared too.
    own["aggregator"] = self.aggregator.describe()
    if revisions := self.codec_revisions():
      own[rundir.CODEC_REVISIONS] = revisions
    if sources := self.codec_sources():
      own[rundir.CODEC_SOURCES_DIGEST] = sources
    if self.dp != "none":
      own.update(dp_noise_multiplier=self.dp_noise_multiplier, dp_clip=self.dp_clip,
                 dp_delta=self.dp_delta, dp_field_bits=self.dp_field_bits)
    for side, options in (("client", self.client_optimizer_options),
                          ("server", self.server_optimizer_options)):
      own.update({f"{side}_{k}": options.get(k) for k in OPTIMIZER_OPTIONS})
    if "clients" in record:  # The flag, of a config from flags.
      own["clients"] = list(self.fixed_clients or ())
    else:
      own["fixed_clients"] = list(self.fixed_clients) if self.fixed_clients else None
    for direction in ("broadcast", "aggregate"):
      key = f"{direction}_codec"
      if key in record and record[key] != rundir.jsonable(own[key]):
        for spelling in rundir.SPELLINGS:
          if spelling.startswith(f"{direction}_"):
            record.pop(spelling, None)
    record.update({key: rundir.jsonable(value) for key, value in own.items()})
    return record

  def codec_names(self) -> list[str]:
    """The registered codecs both directions are made of (a chain's links, a budget's
    base codec), each once."""
    return list(dict.fromkeys(codec_names(self.broadcast_codec)
                              + codec_names(self.aggregate_codec)))

  def codec_revisions(self) -> str:
    """`codec=revision,...` of the codecs used whose output changed since revision 1."""
    revisions = {name: get_codec(name).revision for name in self.codec_names()}
    return ",".join(f"{name}={revision}" for name, revision in sorted(revisions.items())
                    if revision > 1)

  def codec_sources(self) -> str:
    """`codec=sha256,...` of the code of the user codecs used (not fedcompress's), as
    hashed when each was registered (`fedcompress.codecs.provenance`).

    A codec is compared on resume by its name; one registered again under that name
    with other code (a notebook cell edited from float16 to float32 and run again)
    resumed the run as another codec: its bits doubled from the next round, without a
    word.
    """
    digests = {name: get_codec(name).source_digest for name in self.codec_names()}
    return ",".join(f"{name}={digest}" for name, digest in sorted(digests.items()) if digest)

  def record_compared_with(self, recorded: Mapping[str, Any] | None) -> dict[str, Any]:
    """`record()`, each codec written as `recorded` wrote it where both are the same codec.

    Codecs are recorded as given (`uniform(deterministic=False,bits=8)>10000` or
    `uniform(bits=8)>10000`), so a resume that spells out a default option, or leaves
    out one the first run spelled out, would otherwise be refused as another codec.
    """
    record = self.record()
    for key, spec in (("broadcast_codec", self.broadcast_codec),
                      ("aggregate_codec", self.aggregate_codec)):
      old = (recorded or {}).get(key)
      if isinstance(old, str) and old != record.get(key) and _same_codec(old, spec):
        record[key] = old
    old_sources = (recorded or {}).get(rundir.CODEC_SOURCES_DIGEST)
    if isinstance(old_sources, str) and rundir.CODEC_SOURCES_DIGEST not in record:
      # The recorded user codecs are all gone (a built-in codec's name the first segment
      # had registered to a codec of the user's): compared, not skipped as a key the
      # record lacks.
      record[rundir.CODEC_SOURCES_DIGEST] = "none"
    elif isinstance(old_sources, str):
      # A codec the recording code could not hash (a decorated stage, before 4cdab92)
      # is left out of the comparison, as a record without the key is; one it hashed the
      # way runs were before 6ad6c42 (its main code's text alone) is compared that way.
      old = dict(entry.partition("=")[::2] for entry in old_sources.split(","))
      record[rundir.CODEC_SOURCES_DIGEST] = ",".join(
          f"{name}={old[name] if old[name] == get_codec(name).legacy_source_digest else digest}"
          for name, digest in (entry.partition("=")[::2]
                               for entry in record[rundir.CODEC_SOURCES_DIGEST].split(","))
          if name in old)
    for key, value in self.recorded.items():
      # A set, array or mapping (a task's setting) was stored as its str before they
      # were recorded in full: such a record compares as it was made.
      if (isinstance(value, (set, frozenset, Mapping, np.ndarray))
          and (recorded or {}).get(key) == str(value)):
        record[key] = recorded[key]
    old_model = (recorded or {}).get(rundir.PRETRAINED_DIGEST)
    path = self.recorded.get("pretrained_model")
    if (isinstance(old_model, str) and isinstance(path, str)
        and not old_model.startswith(PRETRAINED_FINGERPRINT_PREFIX)
        and old_model == file_fingerprint(path, whole=True)):
      # Recorded by the file's bytes, before runs took the model by its weights: the
      # same file is the same model.
      record[rundir.PRETRAINED_DIGEST] = old_model
    for side in ("client", "server"):
      # One optimizer spelt another way (`sgdm`, then `sgd` with --server_momentum=0.9)
      # is compared as the recorded spelling, as HParams, sweeps and tables compare it.
      keys = [f"{side}_optimizer", *(f"{side}_{k}" for k in OPTIMIZER_OPTIONS)]
      if (recorded and any(k in recorded and recorded[k] != record[k] for k in keys)
          and _recorded_optimizer(recorded, side, self) == resolved_optimizer(
              getattr(self, f"{side}_optimizer"), getattr(self, f"{side}_learning_rate"),
              getattr(self, f"{side}_optimizer_options"))):
        record.update({k: recorded[k] for k in keys if k in recorded})
    if self.fixed_clients and "clients_per_round" in (recorded or {}):
      # With fixed clients it has no effect; runs made before it was set to their number
      # recorded the flag's value (10 in the Shakespeare tutorial's runs).
      record["clients_per_round"] = recorded["clients_per_round"]
    return record


def _recorded_optimizer(recorded: Mapping[str, Any], side: str,
                        config: ExperimentConfig) -> str | None:
  """`resolved_optimizer` of the `side` optimizer a record holds (at `config`'s learning
  rate, which it leaves out), or None where the record names none it can build."""
  try:
    return resolved_optimizer(
        recorded[f"{side}_optimizer"], getattr(config, f"{side}_learning_rate"),
        {k: recorded.get(f"{side}_{k}") for k in OPTIMIZER_OPTIONS})
  except (KeyError, TypeError, ValueError):
    return None


@dataclasses.dataclass
class ExperimentResult:
  run_dir: str
  loop: LoopResult
  wall_time_s: float
  final_eval: dict[str, float] | None
  totals: dict[str, int]
  process: Any = None


def check_run_dir(config: ExperimentConfig) -> None:
  """Raises what starting `config` in its run directory would, creating nothing.

  Raises:
    ValueError: a bad config (e.g. `--experiment_name=..`).
    RunDirectoryError: the directory holds a run and `resume` is off; or `resume` is on
      and the run's record differs in a setting that changes results, or in rounds
      lowered; or its record or metrics.csv cannot be read.
  """
  config.validate()
  run_dir = config.run_dir
  if not rundir.has_run(run_dir):
    return
  if not config.resume:
    if rundir.read_config(run_dir) is None:
      if rundir.checkpoint_rounds(run_dir) or os.path.exists(
          os.path.join(run_dir, rundir.METRICS_FILE)):
        raise RunDirectoryError(
            f"{run_dir} holds rounds but no {rundir.CONFIG_FILE}, so what they ran with "
            "is unknown: choose another --experiment_name (experiment_name=...); nothing "
            "was overwritten")
      # A folder of the user's (notes, a figure): told to --resume, the run started at
      # round 1 among them.
      raise RunDirectoryError(
          f"{run_dir} holds files but no run ({rundir.CONFIG_FILE}): choose another "
          "--experiment_name (experiment_name=...) or move them; nothing was overwritten "
          "(a run stopped before writing its record starts again with --resume)")
    raise RunDirectoryError(
        f"{run_dir} already holds a run; pass --resume (in Python, resume=True) to continue "
        "it or choose another --experiment_name (experiment_name=...); nothing was "
        "overwritten")
  mismatch = rundir.record_mismatch(
      run_dir, config.record_compared_with(rundir.read_config(run_dir)), config.rounds)
  if mismatch:
    # A codec's revision is its code's, not a value a flag sets: no flag resumes it.
    advice = ("A codec's revision is its code's: no flag gives back the recorded one. Start"
              if f"{rundir.CODEC_REVISIONS} " in mismatch
              else "Resume with the recorded values, or start")
    raise RunDirectoryError(
        f"cannot resume {run_dir}: it was run with other settings: {mismatch}. {advice} "
        "a new run under another --experiment_name (experiment_name=...)")
  # (record_mismatch also checked that every round it holds is recorded.)


def fetchsgd_server_note(config: ExperimentConfig) -> str | None:
  """What a run says when a server optimizer other than plain SGD at 1.0 applies
  FetchSGD's update: its momentum and learning rate are in the aggregator's options
  already (a FedOpt protocol file stacked before a codec flagfile would add a second
  momentum without a word)."""
  options = {k: v for k, v in config.server_optimizer_options.items() if v}
  if config.aggregator.name != "fetchsgd" or (
      config.server_optimizer == "sgd" and config.server_learning_rate == 1.0 and not options):
    return None
  given = "".join(f" --server_{k}={v}" for k, v in options.items())
  return (f"--aggregator=fetchsgd applies its own momentum and learning rate "
          f"(--aggregator_args); --server_optimizer={config.server_optimizer} "
          f"--server_learning_rate={config.server_learning_rate:g}{given} then steps with "
          "that update as its gradient, which is not FetchSGD as published (server SGD 1.0)")


def uncompressed_note(process: Any, config: ExperimentConfig) -> str | None:
  """What a run says when a codec encodes none of the model's tensors: each is at or
  below its threshold, so the run sends what an uncompressed one does (a model of one's
  own whose largest tensor had 4,000 elements ran 'uniform(bits=8)' at the default
  10,000 as identity, without a word; the allocated codecs refuse it)."""
  idle = []
  for direction, codec, tensors in _threshold_codecs(process, config):
    if codec.name == "identity":
      continue
    if tensors and not any(codec.applies_to(spec) for spec in tensors):
      largest = max(math.prod(spec.shape.as_list()) for spec in tensors)
      idle.append(f"the {direction} codec {codec.describe()} (the largest tensor has "
                  f"{largest} elements)")
  if not idle:
    return None
  return (f"no tensor of the model is over its codec's threshold: {' and '.join(idle)} "
          f"{'sends' if len(idle) == 1 else 'send'} every tensor as it is, as an "
          "uncompressed run does; lower "
          "--compression_threshold (threshold=) to encode them")


def _threshold_codecs(process: Any, config: ExperimentConfig):
  """(direction, CodecSpec, specs of the tensors it is given) of each direction whose
  codec applies its threshold: the broadcast's, and the aggregate's outside the secure
  sum (which, and distributed DP on it, encodes every tensor whatever the threshold)."""
  directions = ("broadcast",) if config.secure_aggregation or config.dp == "distributed" \
      else ("broadcast", "aggregate")
  try:
    weights = process.initialize.type_signature.result.member.global_model_weights
  except AttributeError:  # A process whose state holds no model weights by that name.
    return []

  def specs(value_type) -> list[tf.TensorSpec]:
    if isinstance(value_type, tff.TensorType):
      return [tf.TensorSpec(value_type.shape, value_type.dtype)]
    return [spec for child in value_type for spec in specs(child)]

  sent = {"broadcast": weights, "aggregate": weights.trainable}
  return [(direction, codec, specs(sent[direction])) for direction in directions
          if isinstance(codec := getattr(config, f"{direction}_codec"), CodecSpec)]


def tensors_codec_note(process: Any, config: ExperimentConfig) -> str | None:
  """What a run says of a codec that cannot do what its options ask on some of the
  tensors it encodes, from its record's `tensors_note` (`adaptive` at
  budget_bits_per_coordinate=2.0 sent 2.85 on a 101-element tensor every round, unsaid)."""
  notes = []
  for direction, codec, tensors in _threshold_codecs(process, config):
    links = codec.resolved_links()
    if len(links) != 1 or (note_of := get_codec(links[0][0]).tensors_note) is None:
      continue  # In a chain a link encodes what the links before it send.
    sizes = [math.prod(spec.shape.as_list()) for spec in tensors if codec.applies_to(spec)]
    if sizes and (note := note_of(sizes, direction=direction, **links[0][1])):
      notes.append(f"--{direction}_encoder: {links[0][0]} {note}")
  return "; ".join(notes) or None


def plain_codec_note(config: ExperimentConfig) -> str | None:
  """What a run says of a codec sent as it encodes (outside the secure sum) whose
  options mislead there, from its record's `plain_note`: `fixed_int` sends int32, 32
  bits a coordinate whatever its `bits` (a sweep over --aggregate_bits=2,4,8 counted the
  same bits in every row, without a word)."""
  for direction, spec in (("broadcast", config.broadcast_codec),
                          ("aggregate", config.aggregate_codec)):
    if direction == "aggregate" and config.secure_aggregation:
      continue  # Sent in the summation field, whose width the bits do count.
    for name, options in getattr(spec, "base", spec).resolved_links():
      note_of = get_codec(name).plain_note
      if note_of is not None and (note := note_of(direction=direction, **options)):
        return f"--{direction}_encoder: {name} {note}"
  return None


def error_feedback_note(config: ExperimentConfig) -> str | None:
  """What a run with `ef` over the identity uplink says: it feeds back nothing (every
  residual is 0), yet writes each client's zeros (6.3 MiB on the tutorial CNN) to disk
  every round. Not refused: a sweep's grid over codecs may hold identity. (`ef21`'s
  states are its clients' estimates, which change its results even uncompressed.)"""
  codec = config.aggregate_codec
  if config.error_feedback != "ef" or not (isinstance(codec, CodecSpec)
                                          and codec.name == "identity"):
    return None
  return ("--error_feedback=ef with the identity uplink codec feeds back nothing (every "
          f"residual is 0), yet writes each client's state to {CLIENT_STATE_DIR}/ every "
          "round")


def dp_codec_note(config: ExperimentConfig) -> str | None:
  """What a central-DP run with a codec says: the codec encodes and decodes each clipped
  update before the noise, so a decoded update can exceed --dp_clip (randk(fraction=0.01)
  took a norm of 1 to 10) and the epsilon, accounted at --dp_clip, is then optimistic.
  The README said so; the run printed its epsilon without a word."""
  if config.dp not in ("central", "central_adaptive"):
    return None  # distributed: TFF's own rotation and rounding, which its accounting has.
  names = [name for name, _ in config.aggregate_codec.resolved_links() if name != "identity"]
  if not names:
    return None
  return (f"--dp={config.dp} with --aggregate_encoder={'|'.join(names)}: the codec encodes "
          "each clipped update before the noise and can enlarge it past --dp_clip, so the "
          "reported privacy epsilon, accounted at --dp_clip, may be optimistic (README, "
          "\"Secure aggregation and differential privacy\")")


def _warn_rows_without_checkpoint(run_dir: str, warn: Callable[[str], None]) -> None:
  """Says so when a resume finds rows but no checkpoint (killed before the first, or
  `checkpoints/` deleted to save space): the run starts over and replaces them."""
  path = os.path.join(run_dir, rundir.METRICS_FILE)
  rows = reporting.read_metrics_csv(path) if os.path.exists(path) else []
  if rows and not rundir.checkpoint_rounds(run_dir):
    warn(f"no checkpoint in {os.path.join(run_dir, CHECKPOINT_DIR)}: rounds 1-"
         f"{rows[-1][m.ROUND]} are run again and their rows replaced")


def _check_writable(run_dir: str) -> None:
  try:
    probe = os.path.join(run_dir, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise RunDirectoryError(f"cannot write to {run_dir}: {e.strerror or e}") from None


def _check_checkpoint_dir(path: str) -> None:
  """Refuses a checkpoint folder that is not one, before any round or row is dropped.

  A dangling symlink (checkpoints on scratch space since cleaned) or a file there ended
  a resume in TensorFlow's NotFoundError: with the symlink, after round 1 had run again
  and metrics.csv had lost the rows it was to redo.
  """
  if os.path.lexists(path) and not os.path.isdir(path):
    what = "not a folder"
    if os.path.islink(path):
      what = (f"a symlink to {os.readlink(path)}, which "
              f"{'is not a folder' if os.path.exists(path) else 'does not exist'}")
    raise RunDirectoryError(f"{path} is {what}, so no checkpoint can be read or written "
                            "there: restore it (or remove it to start the run over)")
  if os.path.isdir(path):
    _check_writable(path)


class _RunRecord:
  """Reporter that keeps the run's record: config.json once, a segment per start.

  It runs as a reporter because `start` comes after the checkpoint was restored: a
  resume refused by the checkpoint itself writes nothing.
  """

  def __init__(self, config: ExperimentConfig, began: float,
               warn: Callable[[str], None] | None = None):
    self._config = config
    self._began = began
    self._warn = warn
    self._segment: int | None = None
    self._last_round = 0

  def start(self, first_round: int, total_rounds: int) -> None:
    self._last_round = first_round - 1
    if first_round > total_rounds:
      return  # A resume of a finished run: no segment, its code computed nothing.
    self._segment = rundir.start_segment(self._config.run_dir, self._config.record(),
                                         rounds=total_rounds, first_round=first_round)
    change = rundir.environment_change(self._config.run_dir)
    if change and self._warn is not None:
      # Threads and CPUs move last digits; TensorFlow's kernel variables more (oneDNN off
      # moved an error-feedback run's eval accuracy from 0.21 to 0.10 in 2 rounds).
      self._warn(f"this run started in another environment ({change}); rounds from "
                 f"{first_round} on may differ from an uninterrupted run's, in their last "
                 "digits or, with other TensorFlow kernels, by more")
    # Recorded, not refused (docs and tools change often), but said: a codec is compared
    # on resume by its name and revision, not by its code.
    code = rundir.source_change(self._config.run_dir)
    if code and self._warn is not None:
      self._warn(f"this run started on other fedcompress code ({code}); rounds from "
                 f"{first_round} on run on this checkout's, so where the two differ in "
                 "what a run computes, they differ from an uninterrupted run")

  def write(self, row) -> None:
    self._last_round = int(row[m.ROUND])
    self._record()

  def close(self) -> None:
    if self._segment is not None:
      self._record()
      self._segment = None

  def _record(self) -> None:
    if self._segment is not None:
      rundir.record_segment(self._config.run_dir, self._segment,
                            last_round=self._last_round,
                            wall_time_s=time.perf_counter() - self._began)


def keras_evaluator(keras_model_fn: Callable[[], tf.keras.Model], dataset: tf.data.Dataset
                    ) -> Callable[[Any], dict[str, float]]:
  """`model_weights -> {'eval/loss', 'eval/accuracy'}` on `dataset`, with one Keras model.

  `eval/accuracy` is Keras' plain accuracy (`metrics.accuracy_of`); a model reporting
  only other accuracies (top-k, a custom name) has none, said once.

  Raises:
    ValueError: before any round, a test set Keras cannot evaluate (not a dataset, the
      clients' {'x', 'y'} dicts, one without end) or a model not compiled with a loss
      (its evaluation read a loss of 0.0 every round).
  """
  # Mistakes in the test set are said before any round: Keras' tracebacks came after the
  # first evaluation's rounds had trained.
  if not isinstance(dataset, tf.data.Dataset):
    raise ValueError(f"task.test_dataset must be a tf.data.Dataset of (x, y) batches, got "
                     f"{type(dataset).__name__}")
  spec = dataset.element_spec
  if isinstance(spec, Mapping) and {"x", "y"} <= set(spec):
    raise ValueError("task.test_dataset yields {'x', 'y'} dicts, the clients' format; "
                     "Keras evaluates (x, y) tuples: map it with lambda b: (b['x'], b['y'])")
  if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
    raise ValueError("task.test_dataset repeats without end (.repeat()): the evaluation "
                     "would never finish; take a finite part of it")
  model = keras_model_fn()
  try:
    wanted = model.input_shape
  except (AttributeError, ValueError):  # A subclassed model not built yet: not known.
    wanted = None
  given = spec[0] if isinstance(spec, tuple) and spec else None
  if (isinstance(given, tf.TensorSpec) and isinstance(wanted, tuple)
      and all(d is None or isinstance(d, int) for d in wanted)
      and given.shape.is_fully_defined() and given.shape.rank == len(wanted) - 1
      and all(w is None or g == w for g, w in zip(given.shape, wanted[1:], strict=True))):
    # `create_tf_dataset_from_all_clients()` without `.batch()`: it trained until the
    # first evaluation, then failed in a Keras traceback (review R3 of s48). Its
    # elements are one input each, of the model's input shape without its batch axis
    # (a None of the model's, a sequence's length, takes any size: review R11);
    # batches one axis short of the model's input (images (B, 28, 28) for (28, 28, 1)),
    # which Keras takes, have a batch axis of no fixed size (review R10).
    raise ValueError(f"task.test_dataset yields unbatched elements of shape "
                     f"{tuple(given.shape)}; the model takes batches of {wanted}: add "
                     ".batch(n)")
  # Keras keeps {} for compile(loss=None), and a model's own losses (`add_loss`) count.
  if getattr(model, "compiled_loss", None) is None or not (model.loss or model.losses):
    raise ValueError("task.keras_model_fn must return a model compiled with a loss "
                     "(model.compile(loss=..., metrics=[...])): without one Keras reads "
                     "every evaluation's loss as 0.0")

  def evaluate(model_weights) -> dict[str, float]:
    restore_keras_v2_classes(model)  # A TFF process built since may have swapped them.
    model_weights.assign_weights_to(model)
    try:
      results = model.evaluate(dataset, verbose=0, return_dict=True)
    # A damaged test split, read here on the driver. TensorFlow's error about a record
    # of bytes that are not UTF-8 fails to decode its own message: UnicodeDecodeError.
    except (tf.errors.OpError, UnicodeDecodeError) as e:
      raise DataReadError("the evaluation on the test split", e) from e
    if "loss" not in results:  # Keras returns {} for a dataset of no batch.
      raise ValueError("the evaluation found no batch in the task's test set")
    out = {m.EVAL_LOSS: float(results["loss"]) - _weight_penalty(model)}
    if (accuracy := m.accuracy_of(results)) is not None:
      out[m.EVAL_ACCURACY] = accuracy
    elif others := m.other_accuracies(results):
      warn_once(f"train/accuracy and eval/accuracy are left empty: the model reports no "
                f"plain accuracy ({', '.join(m.ACCURACY_NAMES)}), only "
                f"{', '.join(others)}")
    return out

  return evaluate


def _weight_penalty(model: tf.keras.Model) -> float:
  """The weight regularization Keras adds to every evaluated batch's loss, at the
  model's weights now: eval/loss leaves it out, as TFF's train/loss does (which adds it
  to the gradient only) and the Shakespeare pretrained evaluation. A char-RNN with an L2
  kernel regularizer read eval/loss 11.40 against 2.43 for the same weights (review R1
  of s47). Losses that depend on the data (activity regularizers, `add_loss` of
  outputs) stay in, said once."""
  if not model.loss:  # Its `add_loss` losses are its only loss.
    return 0.0
  eager = [loss for loss in model.losses if hasattr(loss, "numpy")]
  if len(eager) < len(model.losses):
    warn_once("eval/loss includes the model's losses that depend on its inputs (activity "
              "regularizers, add_loss), which train/loss leaves out")
  return float(sum(np.sum(loss.numpy(), dtype=np.float64) for loss in eager))


def process_settings(task: FederatedTask, config: ExperimentConfig) -> dict[str, Any]:
  """What `build_process` builds a process from: what `run_experiment` checks a
  prebuilt `process` against (the run records `config`'s settings, not the process's).

  The task's identity and settings too (its model; EF21 weighs a round by the task's
  client count), and the
  user codecs' sources and the codecs' revisions: a codec registered again under its
  name is another codec.
  """
  record = config.record()
  # The task's settings too: digits tasks of two seeds, or with two image models, have
  # the same clients, and a process built for one ran the other from its initial weights.
  task_settings = {f"task {k}": rundir.jsonable(v) for k, v in task.settings.items()}
  return {**{k: record.get(k) for k in _PROCESS_KEYS}, **task_identity(task), **task_settings,
          "aggregator": config.aggregator.describe(), "measure_error": config.measure_error,
          "fixed_clients": len(config.fixed_clients or ())}


# The record's values a process is built from (the rest are the loop's, the task's).
_PROCESS_KEYS = ("broadcast_codec", "aggregate_codec", "client_weighting", "seed",
                 "client_optimizer", "client_learning_rate", "server_optimizer",
                 "server_learning_rate", "error_feedback", "secure_aggregation", "dp",
                 "dp_noise_multiplier", "dp_clip", "dp_delta", "dp_field_bits",
                 "clients_per_round", rundir.CODEC_SOURCES_DIGEST, rundir.CODEC_REVISIONS,
                 *(f"{side}_{option}" for side in ("client", "server")
                   for option in OPTIMIZER_OPTIONS))


def build_process(task: FederatedTask, config: ExperimentConfig):
  """FedAvg with the config's codecs; with error feedback, a `ClientStateProcess`.

  The process carries `process_settings(task, config)` as `fedcompress_settings`.
  """
  process = _build_process(task, config)
  process.fedcompress_settings = process_settings(task, config)
  return process


def _build_process(task: FederatedTask, config: ExperimentConfig):
  common = dict(broadcast_codec=config.broadcast_codec,
                aggregate_codec=config.aggregate_codec,
                client_weighting=CLIENT_WEIGHTINGS[config.client_weighting],
                seed=config.seed)
  client_optimizer = build_optimizer(config.client_optimizer, config.client_learning_rate,
                                     config.client_optimizer_options)
  server_optimizer = build_optimizer(config.server_optimizer, config.server_learning_rate,
                                     config.server_optimizer_options)
  if config.error_feedback != "none":
    return build_fedavg_with_error_feedback(
        task.model_fn, client_optimizer, server_optimizer, mode=config.error_feedback,
        # EF21's server step weighs the round by |S| / N over the clients that can take
        # part: only the fixed ones when --clients lists them.
        num_clients=len(config.fixed_clients or task.client_ids), **common)
  protected = config.secure_aggregation or config.dp != "none"
  return build_fedavg(task.model_fn, client_optimizer, server_optimizer,
                      measure_error=config.measure_error,
                      aggregator=None if protected else config.aggregator.factory(),
                      secure_aggregation=config.secure_aggregation,
                      clients_per_round=config.clients_per_round,
                      dp=config.dp_config(len(task.client_ids)), **common)


def privacy_metrics(task: FederatedTask, config: ExperimentConfig
                    ) -> Callable[[int], dict[str, float]] | None:
  """`round -> {privacy/epsilon, privacy/noise_multiplier}` for a DP run, else None."""
  dp = config.dp_config(len(task.client_ids))
  if dp is None:
    return None
  weights_type = tff.learning.models.weights_type_from_model(task.model_fn).trainable
  noise = effective_noise_multiplier(dp, weights_type)
  return lambda round_num: {
      m.PRIVACY_EPSILON: rdp_epsilon(noise, dp.sampling_rate, round_num, dp.delta),
      m.PRIVACY_NOISE_MULTIPLIER: noise}


def run_experiment(task: FederatedTask, config: ExperimentConfig, *,
                   initial_weights: Any = None, process: Any = None,
                   console: reporting.ConsoleReporter | None = None) -> ExperimentResult:
  """Runs `config` on `task`; see the module docstring for what it writes.

  Args:
    task: data and model.
    config: the run.
    initial_weights: `tff.learning.models.ModelWeights` to start from (fine-tuning).
    process: a prebuilt process for this task and config (tests share one), from
      `build_process(task, config)` (this module's): one built with other settings or
      another task is refused, since the run records `config`'s (a process of 2-bit
      codecs ran under a record of identity codecs); one built otherwise is run with a
      warning.
    console: console reporter to use (default: stdout lines, progress bar on a tty).
  """
  config = with_task_settings(task, config)
  if initial_weights is not None and not isinstance(initial_weights,
                                                    tff.learning.models.ModelWeights):
    # A Keras model or its get_weights() list ended in TFF's TypeError, printing the
    # first weight array, after the process was built.
    raise ValueError("initial_weights must be tff.learning.models.ModelWeights (of a Keras "
                     "model: tff.learning.models.ModelWeights.from_model(model)), got "
                     f"{type(initial_weights).__name__}")
  if initial_weights is not None:
    _check_initial_weights(initial_weights, task)
  if rundir.PRETRAINED_DIGEST not in config.recorded:
    # What the run starts from, as a pretrained file's digest says it (None: the model's
    # initializer): a run from given weights and one from the initializer wrote the same
    # config.json, and a resume from other weights, or with none, was accepted (reviews
    # R3 and R8 of s48).
    config = dataclasses.replace(config, recorded={
        **config.recorded, rundir.INITIAL_WEIGHTS_DIGEST:
        None if initial_weights is None else weights_digest(initial_weights)})
  check_experiment(task, config)
  if process is not None:
    _check_process(process, task, config)
  # The rounds run on a TFF worker this process owns (unless a context is in place).
  runtime.install()
  with rundir.lock_run_dir(config.run_dir):
    # Again under the lock: another process may have written the run since.
    check_run_dir(config)
    _check_writable(config.run_dir)
    _check_checkpoint_dir(os.path.join(config.run_dir, CHECKPOINT_DIR))
    return _run_locked(task, config, initial_weights, process, console)


def _check_initial_weights(weights: tff.learning.models.ModelWeights,
                           task: FederatedTask) -> None:
  """Refuses weights that do not fit `task.model_fn`: another architecture's ended in a
  26-frame TFF TypeError printing the first weight array (review R3 of s48)."""
  wanted = tff.learning.models.weights_type_from_model(task.model_fn)

  def shapes(part) -> list[tuple]:
    return [tuple(np.shape(w)) for w in part]

  for name in ("trainable", "non_trainable"):
    model = [tuple(tf.TensorShape(t.shape).as_list()) for t in getattr(wanted, name)]
    given = shapes(getattr(weights, name))
    if len(given) != len(model):
      raise ValueError(f"initial_weights do not fit task.model_fn: {len(given)} {name} "
                       f"tensors given, the model has {len(model)}")
    for i, (a, b) in enumerate(zip(given, model, strict=True)):
      if a != b:
        raise ValueError(f"initial_weights do not fit task.model_fn: {name} tensor {i} "
                         f"has shape {a}, the model's {b}")
    # float64 arrays (drawn with NumPy) ended in a 30-frame TFF TypeError (review R10).
    # Values without a dtype of their own (Python lists) are converted to the model's,
    # as TFF does (review R11).
    for i, (w, t) in enumerate(zip(getattr(weights, name), getattr(wanted, name),
                                   strict=True)):
      if hasattr(w, "dtype") and tf.as_dtype(w.dtype) != t.dtype:
        raise ValueError(f"initial_weights do not fit task.model_fn: {name} tensor {i} "
                         f"is {tf.as_dtype(w.dtype).name}, the model's {t.dtype.name}")


def weights_digest(weights: tff.learning.models.ModelWeights) -> str:
  """`<arrays>:<sha256>` over each array's dtype, shape and values, trainable then not:
  the same weights give the same digest however they were made or saved."""
  return weights_fingerprint(tf.nest.flatten(
      [list(weights.trainable), list(weights.non_trainable)]))


def _check_process(process: Any, task: FederatedTask, config: ExperimentConfig) -> None:
  built = getattr(process, "fedcompress_settings", None)
  if built is None:
    warn("run_experiment(process=...): this process was not made by fedcompress.harness."
         "experiment.build_process(task, config), so what it runs is not checked against "
         "config, whose settings config.json and TensorBoard record")
    return
  wanted = process_settings(task, config)
  # A codec spelled with one of its defaults is the same codec, as on resume.
  same = {key for key in ("broadcast_codec", "aggregate_codec")
          if isinstance(built.get(key), str) and _same_codec(built[key], getattr(config, key))}
  if differing := [f"{key} {built.get(key)!r} (config: {value!r})"
                   for key, value in wanted.items()
                   if built.get(key) != value and key not in same]:
    raise ValueError("run_experiment(process=...): the process was built with other "
                     f"settings than config: {'; '.join(differing)}")


def task_identity(task: FederatedTask) -> dict[str, Any]:
  """What every run records of its task, whatever `task.settings` holds.

  A task built in Python may have empty settings; its name and clients still tell most
  other tasks apart (what identifies its data beyond that belongs in its settings).
  """
  ids = "\n".join(sorted(str(c) for c in task.client_ids)).encode()
  return {"task_name": task.name, "task_clients": len(task.client_ids),
          "task_client_ids_sha256": hashlib.sha256(ids).hexdigest(),
          rundir.CLIENT_SAMPLING: "sorted ids"}


def check_sampling_on_resume(task: FederatedTask, config: ExperimentConfig) -> None:
  """Refuses to resume a run that drew its clients by position in a list that was not
  sorted: its record predates sampling from the sorted ids (`rundir.CLIENT_SAMPLING`),
  and its remaining rounds would train other clients than the record's code would have.
  (Where the list is sorted, as in every built-in task, both draws are the same.)
  """
  record = rundir.read_config(config.run_dir) if config.resume else None
  if (record is None or rundir.CLIENT_SAMPLING in record or config.fixed_clients
      or list(task.client_ids) == sorted(task.client_ids)):
    return
  raise RunDirectoryError(
      f"cannot resume {config.run_dir}: its clients were sampled by their position in "
      "task.client_ids (fedcompress before client sampling used the sorted ids), and "
      "this task's ids are not sorted, so its next rounds would sample other clients "
      "than its first ones did; start a new run under another --experiment_name "
      "(experiment_name=...)")


def with_task_settings(task: FederatedTask, config: ExperimentConfig) -> ExperimentConfig:
  """`config` recording `task.settings` too, over the flags' values where both name one:
  the task is what runs (a config from flags on a task built in Python with other epochs
  recorded the flags' epochs).

  A binary records its flags, the task's among them; a task built in Python (a
  notebook, the README's examples) would otherwise leave its dataset, split, epochs,
  model and seed out of config.json, and a resume on another task would be accepted.
  The task's name and clients (`task_identity`) are recorded for every task.
  """
  settings = {**task_identity(task), **task.settings}
  for key, value in task.settings.items():
    if " at 0x" in json.dumps(rundir.jsonable(value)):
      # A function's or object's default text holds its address, another in every
      # process: the run could never be resumed, refused as run with other settings.
      raise ValueError(f"task.settings[{key!r}] is recorded as {rundir.jsonable(value)!r}, "
                       "which changes from one process to the next: record what names it "
                       "(a string, a number) instead")
  if config.fixed_clients:  # Not sampled: runs recorded before it compare as they did.
    del settings[rundir.CLIENT_SAMPLING]
  changed = {k: v for k, v in settings.items()
             if k not in config.recorded
             or rundir.jsonable(config.recorded[k]) != rundir.jsonable(v)}
  if not changed:
    return config
  return dataclasses.replace(config, recorded={**config.recorded, **changed})


def check_error_feedback_on_model(get_model_fn: Callable[[], Callable[[], Any]],
                                  config: ExperimentConfig) -> None:
  """Error feedback's checks on the model's own tensors (`check_error_feedback` with
  their specs): whether a residual stays bounded depends on their shapes.

  `get_model_fn` is called only when the run has error feedback. Run before the run
  directory is taken, as the other refusals; a sweep runs it for every run before its
  first starts.
  """
  if config.error_feedback != "none" and not isinstance(config.aggregate_codec, AllocatedCodec):
    check_error_feedback(config.error_feedback, config.aggregate_codec,
                         CLIENT_WEIGHTINGS[config.client_weighting],
                         update_specs(get_model_fn()))


def check_allocation_on_model(get_model_fn: Callable[[], Callable[[], Any]],
                              config: ExperimentConfig) -> None:
  """The bit budgets' plans (`AllocatedCodec.plan`) on the model's own tensors, as
  building the process makes them: a budget below the narrowest widths' cost, or a
  codec without a bit formula, was refused only when a sweep's run started, after the
  runs before it (review R6 of s48). `get_model_fn` is called only for a budget."""
  allocated = [(direction, codec) for direction in ("broadcast", "aggregate")
               if isinstance(codec := getattr(config, f"{direction}_codec"), AllocatedCodec)]
  if not allocated:
    return
  model_fn = get_model_fn()
  weights = tff.learning.models.weights_type_from_model(model_fn)
  for direction, codec in allocated:
    if direction == "broadcast":  # The whole model goes down; the update up, with its weight.
      specs, reserved = tf.nest.flatten(type_conversions.type_to_tf_tensor_specs(weights)), 0
    else:
      specs = update_specs(model_fn)
      reserved = CodecSpec.parse(None).tensor_bits(tf.TensorSpec([], tf.float32))
    codec.plan(specs, direction=direction, reserved_bits=reserved)


REMOTE_SECURE_SUMS = ("--secure_aggregation (and --dp=distributed) cannot run on --workers: "
                      "TFF 0.87 splits a round across workers only at plain aggregations, "
                      "not at secure sums; run without --workers")


def check_remote_codecs(aggregate: CodecSpec | AllocatedCodec, *, secure_aggregation: bool,
                        flag: str | None = None) -> None:
  """Refuses what cannot run on remote workers (`runtime.set_remote_context`).

  * Secure sums: TFF's mergeable form splits a round at `federated_aggregate`, and its
    secure sums end up after the merge, which TFF refuses at round 1 with a
    600-character type dump.
  * An uplink codec whose parameters come from TensorFlow's global generator (the
    broadcast computes them in its one encode, and sends them along). Through workers
    TFF computes the server's parameters once per subround to encode and again after
    the merge to decode: a stage drawing them unseeded (as tensor_encoding's own
    `HadamardEncodingStage` does) decoded with other draws than it encoded with, a mean
    off by more than itself (relative error 1.29 against 8e-8 locally), with equal bit
    counts and no word. The built-in codecs draw through the seed scopes.

  Args:
    aggregate: the uplink codec.
    secure_aggregation: whether the run sums securely (or with distributed DP).
    flag: the flag that set the codec, to name it by (the binaries).
  """
  if secure_aggregation:
    raise ValueError(REMOTE_SECURE_SUMS)
  spec = getattr(aggregate, "base", aggregate)
  draws = seeding.unseeded_param_draws(spec.make_encoder())
  if draws:
    named = f"{flag}={spec.name}" if flag else f"the aggregate codec {spec.name!r}"
    raise ValueError(f"{named} draws its parameters "
                     f"from TensorFlow's global generator ({', '.join(draws)}): on --workers "
                     "TFF computes them once to encode and again to decode, and the mean "
                     "would be wrong; draw seeds with fedcompress.codecs.seeding."
                     "draw_seed() and stateless ops, or run without --workers")


def check_aggregation(config: ExperimentConfig, population: int | None = None) -> None:
  """Raises what the uplink's aggregation refuses of `config`'s codec: under secure
  aggregation or DP (`check_protected_mean`), or under the client weighting of the
  encoded mean (`check_weighted_codec`).

  `population`, the clients sampled from, checks DP's sampling too; None leaves that to
  `check_experiment` (a sweep checks its runs before any has its data).
  """
  weighting = CLIENT_WEIGHTINGS[config.client_weighting]
  if config.secure_aggregation or config.dp != "none":
    dp = config.dp_config(config.clients_per_round if population is None else population)
    check_protected_mean(config.aggregate_codec, secure_aggregation=config.secure_aggregation,
                         clients_per_round=config.clients_per_round, dp=dp,
                         client_weighting=weighting)
  elif config.aggregator.is_mean:
    check_weighted_codec(config.aggregate_codec, weighting)


def check_experiment(task: FederatedTask, config: ExperimentConfig) -> None:
  """Raises what `run_experiment(task, config)` would refuse before its first round.

  Creates nothing; `run_finetune` calls it before taking the run directory's lock.
  """
  config = with_task_settings(task, config)
  config.validate()
  if duplicated := sorted(str(c) for c, n in collections.Counter(task.client_ids).items()
                         if n > 1):
    # Sampled by position, one client was drawn several times in a round, and DP's
    # epsilon was accounted for a population it counted them in.
    raise ValueError(f"task.client_ids lists {', '.join(duplicated[:3])} more than "
                     "once: give each client once")
  if not config.fixed_clients and config.clients_per_round > len(task.client_ids):
    raise ValueError(f"--clients_per_round={config.clients_per_round} but the dataset has "
                     f"only {len(task.client_ids)} clients")
  unknown = [c for c in (config.fixed_clients or ()) if c not in set(task.client_ids)]
  if unknown:
    raise ValueError(f"--clients: unknown client id(s): {', '.join(unknown)}")
  if config.secure_aggregation and config.fixed_clients and (
      len(config.fixed_clients) != config.clients_per_round):
    # The field is sized for --clients_per_round clients: more would wrap the sum, and
    # fewer would send (and count) wider values than the sum needs.
    raise ValueError(f"--clients lists {len(config.fixed_clients)} clients but secure "
                     "aggregation sizes its field for --clients_per_round="
                     f"{config.clients_per_round}: pass --clients_per_round="
                     f"{len(config.fixed_clients)}")
  if replaced := replaced_builtin_codecs(config.codec_names()):
    raise ValueError(f"codec {replaced[0]!r} is registered to a codec of the user's "
                     "(overwrite=True) in place of the built-in one, which runs record and "
                     "label by that name: register yours under another name "
                     f"(fedcompress.codecs.unregister({replaced[0]!r}) gives the built-in "
                     "back)")
  check_aggregation(config, len(task.client_ids))
  check_error_feedback_on_model(lambda: task.model_fn, config)
  if runtime.is_remote():  # The binaries say it before connecting (--workers).
    check_remote_codecs(config.aggregate_codec,
                        secure_aggregation=config.secure_aggregation or config.dp == "distributed")
  check_run_dir(config)
  check_sampling_on_resume(task, config)


def tensorboard_hparams(config: ExperimentConfig) -> dict[str, Any]:
  """The run's HParams: config.json's record, without how or where its segments ran.

  The record, not `recorded`: a config built in Python records only its task's settings
  there, and its HParams lacked the codecs, learning rates, rounds and seed. On resume,
  the record as the run was first started (config.json, written once): a resume may
  spell a setting otherwise (`--aggregator_args=topk=0.010`, the same as 0.01), and
  the HParams showed the new spelling beside config.json's.
  """
  current = {k: rundir.jsonable(v) for k, v in config.record().items()}
  record = rundir.read_config(config.run_dir) or current
  # What a resume may extend stays the current: a run extended from 10 rounds to 20
  # shows 20, as an uninterrupted run of 20 does.
  record = {**record, **{k: current[k] for k in rundir.EXTENDED_ON_RESUME if k in current}}
  # The codecs and optimizers as they run, whatever spelling config.json holds (a resume
  # runs the same ones, or is refused).
  record.update(resolved_settings(config))
  skip = (rundir.HOW_NOT_WHAT | rundir.BESIDE_THE_ROUNDS | rundir.SPELLINGS
          | rundir.OPTIMIZER_SPELLINGS)
  return {k: v for k, v in record.items() if k not in skip | rundir.unused_flags(record)}


def resolved_settings(config: ExperimentConfig) -> dict[str, str]:
  """The codecs (`resolved_codecs`) and optimizers (`resolved_optimizer`) as they run,
  under their flags' names: what `rundir.SPELLINGS` and `OPTIMIZER_SPELLINGS` spell."""
  optimizers = {f"{side}_optimizer": resolved_optimizer(
      getattr(config, f"{side}_optimizer"), getattr(config, f"{side}_learning_rate"),
      getattr(config, f"{side}_optimizer_options")) for side in ("client", "server")}
  return {**resolved_codecs(config), **optimizers}


def resolved_codecs(config: ExperimentConfig) -> dict[str, str]:
  """Both directions' codecs with every option resolved, as they run: one text for one
  codec however it was spelt (`uniform(bits=8)`, `uniform(bits=8,deterministic=false)`)."""
  aggregate = config.aggregate_codec
  return {"broadcast_codec": config.broadcast_codec.describe_resolved(),
          "aggregate_codec": (aggregate.describe_resolved(threshold=not config.secure_aggregation)
                              if isinstance(aggregate, CodecSpec)
                              else aggregate.describe_resolved())}


def _run_locked(task, config, initial_weights, process, console) -> ExperimentResult:
  began = time.perf_counter()
  # Its refusals (a model compiled without a loss) come before the process is built.
  evaluate = keras_evaluator(task.keras_model_fn, task.test_dataset)
  process = process or build_process(task, config)
  initial_state = None
  if initial_weights is not None:
    initial_state = process.set_model_weights(process.initialize(), initial_weights)
  hparams = tensorboard_hparams(config)
  console = console or reporting.ConsoleReporter(progress=config.progress)
  reporters = [
      _RunRecord(config, began, warn=console.warn),
      console,
      reporting.CsvReporter(os.path.join(config.run_dir, rundir.METRICS_FILE)),
      reporting.TensorBoardReporter(
          config.run_dir, hparams, warn=console.warn,
          rows_file=os.path.join(config.run_dir, rundir.METRICS_FILE)),
  ]
  if config.resume:
    _warn_rows_without_checkpoint(config.run_dir, console.warn)
  for note in (fetchsgd_server_note(config), plain_codec_note(config), dp_codec_note(config),
               error_feedback_note(config),
               uncompressed_note(process, config), tensors_codec_note(process, config)):
    if note:
      console.warn(note)
  loop = run_loop(
      process, task.client_ids, task.client_dataset,
      LoopConfig(rounds=config.rounds, clients_per_round=config.clients_per_round,
                 seed=config.seed, rounds_per_eval=config.rounds_per_eval,
                 rounds_per_checkpoint=config.rounds_per_checkpoint,
                 fixed_clients=config.fixed_clients),
      evaluate=evaluate,
      reporters=reporters,
      checkpointer=Checkpointer(os.path.join(config.run_dir, CHECKPOINT_DIR)),
      initial_state=initial_state, resume=config.resume, warn=console.warn,
      client_states=_client_state_store(process, config.run_dir),
      round_metrics=privacy_metrics(task, config))
  wall_time_s = time.perf_counter() - began
  rows = reporting.read_metrics_csv(os.path.join(config.run_dir, rundir.METRICS_FILE))
  # The coded totals too, where a run entropy-coded: its closing line said the raw ones
  # only (152.46 Mibit up, where 97.45 were sent; review R1 of s48).
  totals = {key: int(rows[-1][key]) for key in (
      m.BROADCAST_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_BITS,
      m.BROADCAST_CUMULATIVE_CODED_BITS, m.AGGREGATE_CUMULATIVE_CODED_BITS)
      if rows and rows[-1].get(key) is not None}
  final_eval = loop.final_eval
  if final_eval is None and rows and rows[-1].get(m.EVAL_ACCURACY) is not None:
    final_eval = {m.EVAL_LOSS: rows[-1][m.EVAL_LOSS], m.EVAL_ACCURACY: rows[-1][m.EVAL_ACCURACY]}
  return ExperimentResult(run_dir=config.run_dir, loop=loop,
                          wall_time_s=wall_time_s, final_eval=final_eval,
                          totals=totals, process=process)


def _client_state_store(process, run_dir: str) -> ClientStateStore | None:
  """The run's client-state store when `process` keeps client state, else None."""
  size = getattr(process, "client_state_size", None)
  if size is None:
    return None
  return ClientStateStore(os.path.join(run_dir, CLIENT_STATE_DIR), size)


def describe_result(result: ExperimentResult) -> str:
  """The closing line of a run: rounds, final eval accuracy, total bits, where logs are."""
  from fedcompress.units import format_bits

  accuracy = (result.final_eval or {}).get(m.EVAL_ACCURACY)
  epsilon = result.loop.rows[-1].get(m.PRIVACY_EPSILON) if result.loop.rows else None
  privacy = "" if epsilon is None else f", privacy epsilon {epsilon:.3g}"
  rounds = result.loop.rows[-1][m.ROUND] if result.loop.rows else result.loop.start_round - 1

  def total(direction: str) -> str:
    raw = result.totals.get(f"{direction}/cumulative_bits", 0)
    coded = result.totals.get(f"{direction}/cumulative_coded_bits")
    return format_bits(raw) + ("" if coded is None or coded == raw
                               else f" ({format_bits(coded)} as entropy-coded)")

  return (f"done: {rounds} rounds, eval accuracy "
          f"{'n/a' if accuracy is None else f'{accuracy:.4f}'}, broadcast "
          f"{total('broadcast')}, aggregate {total('aggregate')}{privacy} in "
          f"{result.wall_time_s:.0f}s; logs: {result.run_dir}")


