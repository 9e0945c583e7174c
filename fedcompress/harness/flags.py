"""Shared absl flag groups for the experiment binaries, and their translation.

Binaries call the `define_*` functions at import and, in `main()`, the `*_from_flags`
functions, which turn flag values into the library's plain arguments. Nothing else in
the library reads flags.

The range of every numeric flag is in `NUMBER_FLAGS`, checked when the command line is
parsed (see there).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

from absl import flags

from fedcompress import codecs, tasks
from fedcompress.codecs import allocation
from fedcompress.federated import aggregators, privacy, quiet
from fedcompress.harness import cli, codec_modules, rundir
from fedcompress.harness.codec_modules import import_codec_modules
from fedcompress.harness.experiment import (
  CLIENT_WEIGHTINGS,
  ERROR_FEEDBACK_MODES,
  OPTIMIZER_OPTIONS,
  OPTIMIZERS,
  REMOTE_SECURE_SUMS,
  ExperimentConfig,
  check_remote_codecs,
  codec_names,
)
from fedcompress.harness.finetune import check_uniform_weighting, run_finetune
from fedcompress.tasks.datasets import digits as digits_data
from fedcompress.tasks.datasets import emnist as emnist_data
from fedcompress.tasks.datasets import shakespeare as shakespeare_data
from fedcompress.tasks.datasets.digits import MIN_DIRICHLET_ALPHA
from fedcompress.tasks.errors import cached_path, file_fingerprint
from fedcompress.tasks.shakespeare import (
  create_model,
  load_pretrained,
  pretrained_fingerprint,
  tff_model_fn,
)

FlagValues = flags.FlagValues

# `--model` of the Shakespeare binary that fine-tunes `--pretrained_model`.
PRETRAINED = "pretrained"

# TFF's optimizers compute in float32: a larger learning rate is infinite there.
_FLOAT32_MAX = 3.4028234663852886e38


@dataclasses.dataclass(frozen=True)
class NumberRule:
  """The values a numeric flag accepts: a finite number in [low, high] (or (low, high])."""

  low: float
  high: float | None = None
  low_open: bool = False  # low itself excluded
  high_open: bool = False  # high itself excluded
  integer: bool = False
  optional: bool = False  # None (unset) allowed
  why: str = ""

  def accepts(self, value: Any) -> bool:
    if value is None:
      return self.optional
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    if not math.isfinite(value) or (self.integer and value != int(value)):
      return False
    above = value > self.low if self.low_open else value >= self.low
    below = self.high is None or (value < self.high if self.high_open else value <= self.high)
    return above and below

  def describe(self) -> str:
    def show(x: float) -> str:
      return str(int(x)) if self.integer else f"{x:g}"

    what = "an integer" if self.integer else "a finite number"
    if self.high is not None and not self.low_open and not self.high_open:
      text = f"{what} in {show(self.low)}..{show(self.high)}"
    else:
      text = f"{what} {'>' if self.low_open else '>='} {show(self.low)}"
      if self.high is not None:
        text += f" and {'<' if self.high_open else '<='} {show(self.high)}"
    if self.optional:
      text += " (or unset)"
    return f"must be {text}" + (f" ({self.why})" if self.why else "")


def _at_least(low: int, **kw) -> NumberRule:
  return NumberRule(low, integer=True, **kw)


_POSITIVE = NumberRule(0.0, low_open=True)
_LEARNING_RATE = NumberRule(0.0, _FLOAT32_MAX, low_open=True,
                            why="TFF's optimizers compute in float32")

# Every numeric flag of the experiment binaries and the values it accepts. They are
# absl validators, registered where the flags are defined: absl runs them when the
# command line is parsed, before main() and so before anything is loaded or written,
# for every binary and for every run of a sweep (which parses all of its runs before it
# starts the first); the error names the flag (`flag --digits_alpha=0.0: must be ...`).
# A check function called from the binaries instead would run only where it is called,
# and NaN passes absl's own lower_bound/upper_bound (every comparison with NaN is False),
# hence these rules. Bits and the threshold of codecs are not here: the codec's own
# record checks them (`fedcompress.codecs`), for flags and library calls alike.
NUMBER_FLAGS: dict[str, NumberRule] = {
    "rounds": _at_least(1),
    "clients_per_round": _at_least(1),
    "client_epochs": _at_least(1),
    "client_batch_size": _at_least(1),
    "rounds_per_eval": _at_least(1),
    "rounds_per_checkpoint": _at_least(1),
    # scikit-learn's and numpy's seeds are 32-bit unsigned.
    "seed": NumberRule(0, 2**32 - 1, integer=True),
    "client_learning_rate": _LEARNING_RATE,
    "server_learning_rate": _LEARNING_RATE,
    "digits_clients": _at_least(1),
    "digits_alpha": NumberRule(MIN_DIRICHLET_ALPHA,
                               why="smaller ones make numpy's Dirichlet sampler run for hours"),
    "worker_timeout_s": _POSITIVE,  # 0 gave up on a running worker before connecting
    "max_batches_per_client": _at_least(1, optional=True),
    "compression_threshold": _at_least(0),
    "max_eval_batches": _at_least(1),
    "temperature": _POSITIVE,
    "num_generate": _at_least(0),
    # experiments/pretrain_char_rnn.py (Keras' Adam computes in float32 too).
    "embedding_dim": _at_least(1),
    "rnn_units": _at_least(1),
    "epochs": _at_least(1),
    "steps_per_epoch": _at_least(1, optional=True),
    "batch_size": _at_least(1),
    "seq_length": _at_least(1),
    "learning_rate": NumberRule(0.0, _FLOAT32_MAX, low_open=True,
                                why="Keras' Adam computes in float32"),
    "log_every": _at_least(1),
    # Differential privacy (define_privacy_flags): noise std / clip, clip norm, delta of
    # the reported epsilon, and the distributed mechanism's field width.
    "dp_noise_multiplier": NumberRule(0.0),
    "dp_clip": _POSITIVE,
    "dp_delta": NumberRule(0.0, 1.0, low_open=True),
    "dp_field_bits": NumberRule(1, 22, integer=True),
    "broadcast_bits_per_coordinate": NumberRule(0.0, low_open=True, optional=True),
    "aggregate_bits_per_coordinate": NumberRule(0.0, low_open=True, optional=True),
    # Optimizer options (define_optimizer_flags); unset keeps TFF's default.
    **{f"{side}_{option}": rule for side in ("client", "server") for option, rule in (
        ("momentum", NumberRule(0.0, 1.0, high_open=True, optional=True)),
        ("epsilon", NumberRule(0.0, optional=True)),
        ("initial_accumulator", NumberRule(0.0, optional=True)))},
}


def add_number_checks(fv: FlagValues, names: list[str]) -> None:
  """Registers the `NUMBER_FLAGS` rule of each of `names` as an absl validator on `fv`."""
  for name in names:
    rule = NUMBER_FLAGS[name]
    flags.register_validator(name, rule.accepts, message=rule.describe(), flag_values=fv)


def define_runtime_flags(fv: FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_bool("tf_logs", False, "Show TensorFlow/TFF logs (quiet by default). Also "
                    "FEDCOMPRESS_TF_LOGS=1.", flag_values=fv)
  flags.DEFINE_integer("max_concurrent_clients", None, "Client computations run at once "
                       "(TFF's max_concurrent_computation_calls); default one per core, "
                       "<= 0 for no limit.", flag_values=fv)
  flags.DEFINE_list("workers", [], "HOST:PORT of remote TFF workers (experiments/worker.py) "
                    "to run rounds on; empty runs locally.", flag_values=fv)
  flags.DEFINE_float("worker_timeout_s", 120.0, "With --workers: seconds a worker may take to "
                     "accept connections, and later fail every call (dead, unreachable), "
                     "before the run stops with an error instead of TFF retrying forever. "
                     "(A worker that stops answering but keeps its connections open, a "
                     "stopped process or a frozen host, is waited for.)",
                     flag_values=fv)
  add_number_checks(fv, ["worker_timeout_s"])


def define_loop_flags(fv: FlagValues = flags.FLAGS, *, rounds: int = 10,
                      clients_per_round: int = 10, rounds_per_eval: int = 1) -> None:
  flags.DEFINE_integer("rounds", rounds, "Federated rounds to run.", flag_values=fv)
  flags.DEFINE_integer("clients_per_round", clients_per_round,
                       "Clients sampled uniformly without replacement each round.",
                       flag_values=fv)
  flags.DEFINE_integer("client_epochs", 1, "Local epochs over each client's data.",
                       flag_values=fv)
  flags.DEFINE_integer("client_batch_size", 20, "Local batch size.", flag_values=fv)
  flags.DEFINE_integer("rounds_per_eval", rounds_per_eval,
                       "Evaluate on the test split every N rounds (and after the last).",
                       flag_values=fv)
  flags.DEFINE_integer("rounds_per_checkpoint", 1, "Checkpoint every N rounds (and after "
                       "the last).", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Seed of client sampling, data order, model init, "
                       "data splits, the codecs' randomness and --dp=central*'s noise (which "
                       "whoever knows the seed can remove).", flag_values=fv)
  flags.DEFINE_enum("client_weighting", "num_examples", sorted(CLIENT_WEIGHTINGS),
                    "Weight of each client in the mean.", flag_values=fv)
  add_number_checks(fv, ["rounds", "clients_per_round", "client_epochs", "client_batch_size",
                         "rounds_per_eval", "rounds_per_checkpoint", "seed"])


# (what, the default when unset): TFF's builders' own defaults, but sgdm's momentum
# (TFF's build_sgdm has none: sgdm without it would be sgd) and adagrad_keras, which are
# fedcompress's.
_OPTIMIZER_OPTION_HELP = {
    "momentum": ("Momentum (0.9 at the server: FedAvgM)", "none for sgd, 0.9 for sgdm"),
    "epsilon": ("Epsilon (the FedOpt paper's tau)", "TFF's; 1e-7 for adagrad_keras"),
    "initial_accumulator": ("Initial second-moment accumulator",
                            "TFF's; 0.0 for adagrad_keras"),
}


def optimizer_options_from_flags(fv: FlagValues, side: str) -> dict[str, float]:
  """The optimizer options set on the command line for `side` ('client' or 'server')."""
  return {option: fv[f"{side}_{option}"].value for option in OPTIMIZER_OPTIONS
          if fv[f"{side}_{option}"].value is not None}


def define_optimizer_flags(fv: FlagValues = flags.FLAGS, *, client_lr: float = 0.02,
                           server_lr: float = 1.0) -> None:
  names = sorted(OPTIMIZERS)
  for side, lr in (("client", client_lr), ("server", server_lr)):
    flags.DEFINE_enum(f"{side}_optimizer", "sgd", names, f"{side.capitalize()} optimizer.",
                      flag_values=fv)
    flags.DEFINE_float(f"{side}_learning_rate", lr, f"{side.capitalize()} learning rate.",
                       flag_values=fv)
    for option, (what, default) in _OPTIMIZER_OPTION_HELP.items():
      takes = "|".join(n for n in names if option in OPTIMIZERS[n].options)
      flags.DEFINE_float(f"{side}_{option}", None, f"{what} of --{side}_optimizer="
                         f"{takes}; default: {default}.", flag_values=fv)
    add_number_checks(fv, [f"{side}_learning_rate"] +
                      [f"{side}_{option}" for option in OPTIMIZER_OPTIONS])


def _codec_names_check(fv: FlagValues):
  def check(text: str) -> bool:
    # Names only, so a typo fails as the flags are parsed; options are checked as the
    # codec is made (`codec_from_flags`), with the other codec flags. The user's codec
    # modules first (parsed by then: absl validates after parsing every flag), as they
    # register names the codec flags may use.
    try:
      import_codec_modules(fv["codec_modules"].value or [])
    except ValueError:
      return True  # --codec_modules' own check says why, once.
    try:
      for name, _ in codecs.parse_chain(text):
        codecs.get_codec(name)
    except ValueError as e:
      hint = ("; a codec of your own: the module that registers it, in --codec_modules"
              if str(e).startswith("unknown codec") else "")
      raise flags.ValidationError(f"{e}{hint}") from None
    return True

  return check


def _check_codec_modules(entries: list[str]) -> bool:
  try:
    import_codec_modules(entries or [])
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


def define_codec_flags(fv: FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_list("codec_modules", [], "Python modules that register codecs of your own "
                    "(fedcompress.register_stage or fedcompress.register), imported before "
                    "the codec flags are read: .py files by path, or modules importable "
                    "from PYTHONPATH.", flag_values=fv)
  flags.register_validator("codec_modules", _check_codec_modules, flag_values=fv)
  for direction, what in (("broadcast", "server -> client weights"),
                          ("aggregate", "client -> server updates (the numerator of "
                           "the mean; its denominator, each client's weight, goes as a "
                           "float32, and under --secure_aggregation or --dp, which take "
                           "uniform weights, not at all)")):
    flags.DEFINE_string(f"{direction}_encoder", "identity", f"Codec for {what}: one of "
                        f"{', '.join(codecs.available_codecs())}, optionally with its "
                        "options (eden(bits=1)), or a chain of them "
                        "(randk(fraction=0.1)|eden(bits=1)).", flag_values=fv)
    flags.register_validator(f"{direction}_encoder", _codec_names_check(fv), flag_values=fv)
    flags.DEFINE_integer(f"{direction}_bits", None, f"Bits per value for {direction} "
                         "codecs that take `bits` (uniform: 1..16); default: the codec's "
                         "own (8 for uniform).", flag_values=fv)
    flags.DEFINE_string(f"{direction}_encoder_args", "", "Codec options as key=value,... "
                        "(e.g. fraction=0.01 or deterministic=true); every codec takes "
                        "its own keyword options this way.", flag_values=fv)
    flags.DEFINE_float(f"{direction}_bits_per_coordinate", None, "Budget in bits per "
                       "coordinate of the whole model per client, everything sent included: "
                       f"each {direction} tensor's codec width is then allocated every round "
                       "to minimize the expected squared error (fedcompress.codecs."
                       "allocation); the codec must take `bits`.", flag_values=fv)
    flags.DEFINE_string(f"{direction}_widths", "", "With --"
                        f"{direction}_bits_per_coordinate: candidate widths, comma-separated "
                        "(not whole, e.g. 0.9 or 1.95: ceil(w) bits on the fraction w/ceil(w) "
                        "of rotated coordinates, for eden); "
                        "default 1,2,3,4,6,8 (those the codec takes; given widths it "
                        "cannot take are refused).", flag_values=fv)
    add_number_checks(fv, [f"{direction}_bits_per_coordinate"])
  flags.DEFINE_enum("aggregator", aggregators.MEAN, list(aggregators.NAMES),
                    "Server-side aggregation: mean (the encoded mean, with "
                    "--aggregate_encoder) or fetchsgd (count-sketched updates, momentum and "
                    "error accumulation in sketch space at the server; then "
                    "--aggregate_encoder must be identity).", flag_values=fv)
  flags.DEFINE_string("aggregator_args", "", "Aggregator options as key=value,... (e.g. "
                      "rows=1,fraction=0.04,topk=0.01 for fetchsgd).", flag_values=fv)
  flags.DEFINE_enum("error_feedback", "none", list(ERROR_FEEDBACK_MODES),
                    "Client error feedback on the uplink codec: none; ef (residual memory, "
                    "Stich et al. 2018); ef21 (Richtarik et al. 2021). ef/ef21 keep one "
                    "state per client seen in <run>/client_states; no extra bits.",
                    flag_values=fv)
  define_privacy_flags(fv)
  flags.DEFINE_integer("compression_threshold", codecs.DEFAULT_THRESHOLD,
                       "Only tensors with more elements than this are encoded.",
                       flag_values=fv)
  add_number_checks(fv, ["compression_threshold"])


def define_privacy_flags(fv: FlagValues = flags.FLAGS) -> None:
  """Secure aggregation and differential privacy (fedcompress.federated.secure, .privacy)."""
  flags.DEFINE_bool("secure_aggregation", False, "Sum client updates with TFF's secure sum; "
                    "the aggregate codec must be sum-compatible (e.g. fixed_int) and the "
                    "mean is unweighted (--client_weighting=uniform).", flag_values=fv)
  flags.DEFINE_enum("dp", "none", ("none",) + privacy.MECHANISMS, "Differential privacy of "
                    "the mean: central Gaussian (fixed or adaptive clip) or distributed "
                    "discrete Gaussian under --secure_aggregation.", flag_values=fv)
  flags.DEFINE_float("dp_noise_multiplier", 1.0, "Noise std / L2 clip.", flag_values=fv)
  flags.DEFINE_float("dp_clip", 0.1, "L2 clip norm of a client update (initial one for "
                     "central_adaptive).", flag_values=fv)
  flags.DEFINE_float("dp_delta", 1e-5, "Delta of the reported privacy/epsilon.",
                     flag_values=fv)
  flags.DEFINE_integer("dp_field_bits", 16, "--dp=distributed: each coordinate is wrapped "
                       "modulo 2^this (1..22); their exact sum takes about log2(clients) "
                       "bits more per coordinate.", flag_values=fv)
  add_number_checks(fv, ["dp_noise_multiplier", "dp_clip", "dp_delta", "dp_field_bits"])


def define_output_flags(fv: FlagValues = flags.FLAGS, *, experiment_name: str) -> None:
  flags.DEFINE_string("root_output_dir", "runs", "Runs are written under this folder.",
                      flag_values=fv)
  flags.DEFINE_string("experiment_name", experiment_name, "Folder name of this run.",
                      flag_values=fv)
  flags.DEFINE_bool("resume", False, "Continue the run in the experiment folder from its "
                    "last checkpoint.", flag_values=fv)


def run_dir(fv: FlagValues) -> str:
  """The run directory `define_output_flags`' flags name."""
  return os.path.join(fv.root_output_dir, fv.experiment_name)


def define_image_task_flags(fv: FlagValues = flags.FLAGS) -> None:
  flags.DEFINE_enum("dataset", "emnist", sorted(tasks.IMAGE_TASKS),
                    "emnist: TFF's federated EMNIST (download or --cache_dir); digits: the "
                    "embedded scikit-learn digits, offline.", flag_values=fv)
  flags.DEFINE_string("cache_dir", None, "Folder holding (or to download) emnist_all.sqlite.",
                      flag_values=fv)
  flags.DEFINE_bool("only_digits", True, "EMNIST digits only (10 classes) or all 62.",
                    flag_values=fv)
  flags.DEFINE_enum("model", tasks.DEFAULT_IMAGE_MODEL, sorted(tasks.IMAGE_MODELS),
                    "fedavg_cnn: the tutorial's CNN (McMahan et al. 2017); fedopt_cnn: the "
                    "FedOpt paper's CNN with dropout (Reddi et al. 2021).", flag_values=fv)
  flags.DEFINE_integer("digits_clients", 20, "Clients the digits dataset is split into.",
                       flag_values=fv)
  flags.DEFINE_float("digits_alpha", 1.0, "Dirichlet concentration of the digits label "
                     "split (smaller = more non-IID).", flag_values=fv)
  add_number_checks(fv, ["digits_clients", "digits_alpha"])


def define_image_experiment_flags(fv: FlagValues = flags.FLAGS) -> None:
  """Every flag of the EMNIST compression experiment."""
  define_image_task_flags(fv)
  define_loop_flags(fv)
  define_optimizer_flags(fv, client_lr=0.02, server_lr=1.0)
  define_codec_flags(fv)
  define_output_flags(fv, experiment_name="emnist")
  define_runtime_flags(fv)


def define_shakespeare_experiment_flags(fv: FlagValues = flags.FLAGS) -> None:
  """Every flag of the Shakespeare experiment (fine-tuning, or from scratch with --model)."""
  flags.DEFINE_string("pretrained_model", None, "Keras model file of the pretrained "
                      "character RNN (experiments/pretrain_char_rnn.py makes one; a run's "
                      "final_model.keras, GRU or fedopt_lstm, is one too).",
                      flag_values=fv)
  flags.DEFINE_enum("model", PRETRAINED, [PRETRAINED, *sorted(tasks.SHAKESPEARE_MODELS)],
                    f"{PRETRAINED}: fine-tune --pretrained_model (the tutorial); fedopt_lstm: "
                    "train the FedOpt paper's LSTM from scratch (seeded by --seed).",
                    flag_values=fv)
  flags.DEFINE_integer("seq_length", 100, "Characters per training and evaluation window "
                       "(the tutorial's 100; the FedOpt protocol's 80).", flag_values=fv)
  flags.DEFINE_string("cache_dir", None, "Folder holding (or to download) "
                      "shakespeare.sqlite.", flag_values=fv)
  flags.DEFINE_list("clients", [], "Train on these client ids every round (the "
                    "tutorial's two), which sets --clients_per_round to their number; empty "
                    "samples --clients_per_round each round.",
                    flag_values=fv)
  flags.DEFINE_integer("max_batches_per_client", None, "Batches (of --client_batch_size "
                       "windows) per client and epoch (the tutorial's .take(5)); each epoch "
                       "draws them afresh through the tutorial's 100-window shuffle buffer, "
                       "which the client's windows enter in order, so they come from its "
                       "first 100 + batch size x this - 1 windows (139 at 8 x 5); default "
                       "all.", flag_values=fv)
  flags.DEFINE_bool("pad_short_clients", False, "Pad the last window and batch (masked "
                    "out of loss and accuracy) so clients with less than one batch of "
                    "text (808 characters at 8 x 100) train.",
                    flag_values=fv)
  flags.DEFINE_integer("max_eval_batches", 60, "Held-out test batches evaluated after "
                       "each evaluation round.", flag_values=fv)
  flags.DEFINE_string("sanity_client", None, "Client of the initial sanity check "
                      "(default: first --clients, else THE_TRAGEDY_OF_KING_LEAR_KING).",
                      flag_values=fv)
  flags.DEFINE_string("generate_prompt", "What of TensorFlow Federated, you ask? ",
                      "Text generation prompt after training.", flag_values=fv)
  flags.DEFINE_float("temperature", 1.0, "Sampling temperature of text generation.",
                     flag_values=fv)
  flags.DEFINE_integer("num_generate", 200, "Characters to generate.", flag_values=fv)
  add_number_checks(fv, ["max_batches_per_client", "max_eval_batches", "temperature",
                         "num_generate", "seq_length"])
  define_loop_flags(fv, rounds=5, clients_per_round=10)
  define_optimizer_flags(fv, client_lr=0.5, server_lr=1.0)
  define_codec_flags(fv)
  define_output_flags(fv, experiment_name="shakespeare")
  define_runtime_flags(fv)
  fv.set_default("client_batch_size", 8)


def shakespeare_config_from_flags(fv: FlagValues, module_names: list[str] | None = None
                                  ) -> ExperimentConfig:
  """The `ExperimentConfig` of a Shakespeare fine-tuning run (checks its fixed flags)."""
  if fv.model == PRETRAINED and not fv.pretrained_model:
    raise ValueError("--pretrained_model is required (or --model=fedopt_lstm to train from "
                     "scratch)")
  if fv.model != PRETRAINED and fv.pretrained_model:
    raise ValueError(f"--model={fv.model} trains from scratch: leave --pretrained_model unset")
  # Here too, not only when the run starts: a sweep ran the runs before such a one.
  check_uniform_weighting(fv.client_weighting, fv.pad_short_clients, fv.clients)
  extra = {"dataset": "shakespeare"}
  if fv.pretrained_model:
    extra[rundir.PRETRAINED_DIGEST] = pretrained_fingerprint(fv.pretrained_model)
  extra.update(_data_file_recorded(fv.cache_dir, shakespeare_data.SHAKESPEARE_SQLITE))
  return experiment_config_from_flags(
      fv, module_names=module_names or [], extra_recorded=extra,
      fixed_clients=tuple(fv.clients) or None)


def run_shakespeare_from_flags(fv: FlagValues, module_names: list[str] | None = None,
                               config: ExperimentConfig | None = None):
  config = config or shakespeare_config_from_flags(fv, module_names)
  if not fv.pretrained_model:
    _warn_unused(fv, ["sanity_client"], "the sanity check runs on a pretrained model only")
  return run_finetune(
      config, pretrained_path=fv.pretrained_model or None, cache_dir=fv.cache_dir,
      model=None if fv.model == PRETRAINED else fv.model, epochs=fv.client_epochs,
      batch_size=fv.client_batch_size, seq_length=fv.seq_length,
      max_batches=fv.max_batches_per_client,
      pad_short_clients=fv.pad_short_clients, max_eval_batches=fv.max_eval_batches,
      sanity_client=fv.sanity_client, prompt=fv.generate_prompt,
      temperature=fv.temperature, num_generate=fv.num_generate, generate_seed=fv.seed)


def shakespeare_model_fn(fv: FlagValues) -> Callable[[], Any]:
  """The run's TFF model_fn, from its pretrained model or `--model`, without its data:
  for the sweep's checks on the model's tensors before any run (a budget its plan cannot
  meet was refused when its run started, after the runs before it; review R9 of s48)."""
  start = (load_pretrained(fv.pretrained_model) if fv.pretrained_model
           else create_model(fv.model, seed=fv.seed))
  return tff_model_fn(start.get_config(), batch_size=fv.client_batch_size,
                      seq_length=fv.seq_length)[0]


def _data_file_recorded(cache_dir: str | None, file_name: str) -> dict[str, str]:
  """`data_file_fingerprint` of the dataset file, if it is already in the cache.

  The task records it as well once loaded; known from the flags, a sweep compares it
  before it skips or resumes a finished run (whose flags, `--cache_dir` among them, may
  otherwise all match). A file not yet downloaded is left to the task.
  """
  fingerprint = file_fingerprint(cached_path(cache_dir, file_name))
  return {} if fingerprint is None else {"data_file_fingerprint": fingerprint}


def image_config_from_flags(fv: FlagValues, module_names: list[str] | None = None
                            ) -> ExperimentConfig:
  """The `ExperimentConfig` of an image (EMNIST, digits) run."""
  extra = ({} if fv.dataset == "digits"
           else _data_file_recorded(fv.cache_dir, emnist_data.EMNIST_SQLITE))
  config = experiment_config_from_flags(fv, module_names=module_names or [],
                                        extra_recorded=extra)
  # Known without loading the data: refused before a sweep starts its first run.
  if fv.dataset == "digits" and config.clients_per_round > fv.digits_clients:
    raise ValueError(f"--clients_per_round={config.clients_per_round} but the dataset has "
                     f"only {fv.digits_clients} clients (--digits_clients)")
  if fv.dataset == "digits":
    digits_data.check_num_clients(fv.digits_clients)
  return config


def _is_identity(encoder: str) -> bool:
  """Whether a codec flag names identity however spelled (`identity()`); False for what
  does not parse, which the codec's own check says."""
  try:
    return codecs.CodecSpec.parse(encoder).is_identity
  except ValueError:
    return False


def _warn_unused(fv: FlagValues, names: list[str], why: str) -> None:
  """One warning line for flags given (on the command line or in a flagfile) to no effect."""
  given = [f"--{n}" for n in names if fv[n].present]
  if given:
    cli.warn_once(f"{', '.join(given)} {'has' if len(given) == 1 else 'have'} no effect: {why}")


def image_task_from_flags(fv: FlagValues) -> tasks.FederatedTask:
  if fv.dataset == "digits":
    _warn_unused(fv, ["cache_dir"], "--dataset=digits is embedded and reads no file")
  else:
    _warn_unused(fv, ["digits_clients", "digits_alpha"], f"they split --dataset=digits, "
                 f"not {fv.dataset}")
  return tasks.build_image_task(
      fv.dataset, only_digits=fv.only_digits, cache_dir=fv.cache_dir,
      epochs=fv.client_epochs, batch_size=fv.client_batch_size, seed=fv.seed,
      digits_clients=fv.digits_clients, digits_alpha=fv.digits_alpha, model=fv.model)


def _check_allocatable(fv: FlagValues, direction: str) -> None:
  """A budget allocates one codec's `bits`: refuses a chain, and a width written out."""
  encoder = fv[f"{direction}_encoder"].value
  links = codecs.parse_chain(encoder)
  if len(links) > 1:
    raise ValueError(f"--{direction}_bits_per_coordinate allocates the width of one codec, "
                     f"not of the chain {encoder!r}")
  written = {**links[0][1], **codecs.parse_options(fv[f"{direction}_encoder_args"].value)}
  for option in ("bits", "keep"):  # What a width sets (keep: eden's fraction below it).
    if option in written:
      raise ValueError(f"--{direction}_bits_per_coordinate allocates the width: drop "
                       f"{option}= from --{direction}_encoder and --{direction}_encoder_args")


def codec_from_flags(fv: FlagValues, direction: str
                     ) -> codecs.CodecSpec | allocation.AllocatedCodec:
  budget = fv[f"{direction}_bits_per_coordinate"].value
  # Before the codec is built: a width left by an earlier flagfile (compressed_u8's
  # --broadcast_bits=8 under down_32x's EDEN budget) would otherwise fail EDEN's own
  # check, in a line naming neither flag.
  if budget is not None and fv[f"{direction}_bits"].value is not None:
    raise ValueError(f"--{direction}_bits and --{direction}_bits_per_coordinate exclude "
                     "each other: with a budget the widths are allocated")
  if budget is not None:
    _check_allocatable(fv, direction)
  given = {f"{direction}_{k}": fv[f"{direction}_{k}"].value
           for k in ("encoder", "bits", "encoder_args")}
  try:
    # A width that has no effect is said below, naming the flags: not given to
    # make_codec, whose own warning would say it a second time.
    bits = given[f"{direction}_bits"]
    if bits is not None and not codecs.takes_bits(given[f"{direction}_encoder"],
                                                  given[f"{direction}_encoder_args"]):
      bits = None
    spec = codecs.make_codec(given[f"{direction}_encoder"], bits=bits,
                             options=given[f"{direction}_encoder_args"],
                             threshold=fv["compression_threshold"].value)
  except ValueError as e:
    # The codec's check names its option (`bits`, `clip`), not the flag that gave it:
    # with both directions' widths set, 'bits must be an integer in 1..16, got 20' named
    # neither, and a bad clip= read as --dp_clip's.
    flags_given = " ".join(f"--{k}={v}" for k, v in given.items() if v not in (None, ""))
    raise ValueError(f"{flags_given}: {e}") from None
  if budget is None:
    if fv[f"{direction}_widths"].value:
      raise ValueError(f"--{direction}_widths needs --{direction}_bits_per_coordinate")
    bits = fv[f"{direction}_bits"].value
    # Not refused: a grid such as 'aggregate_encoder=uniform,identity;aggregate_bits=2,4'
    # gives it to codecs without a width too. Said, so a lone --aggregate_bits=8 over
    # the default identity does not pass for a compressed run.
    encoder, args = given[f"{direction}_encoder"], given[f"{direction}_encoder_args"]
    if bits is not None and not codecs.takes_bits(encoder, args):
      # Which one: the options' width won over a --*_bits of another value, unsaid.
      # (`huffman` with base=drive: the options pick a base without one.)
      why = (f"--{direction}_encoder_args set the width, or pick a codec without one"
             if codecs.takes_bits(encoder)
             else f"--{direction}_encoder={encoder} takes no width or sets its own")
      cli.warn_once(f"--{direction}_bits={bits} has no effect: {why} "
                    f"({spec.describe()} runs)")
    return spec
  widths = fv[f"{direction}_widths"].value
  # The width is allocated: a default `bits` recorded by make_codec would only mislead.
  base = codecs.CodecSpec(spec.name, {k: v for k, v in spec.options.items() if k != "bits"},
                          spec.threshold)
  codec = allocation.AllocatedCodec(
      base, budget, allocation.parse_widths(widths) if widths else allocation.DEFAULT_WIDTHS)
  # The default list, written out or not, is a menu (not every codec has 6 or 8 bits),
  # which AllocatedCodec narrows to the codec's; other widths given are each meant.
  given = allocation.parse_widths(widths) if widths else allocation.DEFAULT_WIDTHS
  unusable = [w for w in given if w not in codec.widths]
  if unusable and given != allocation.DEFAULT_WIDTHS:
    raise ValueError(f"--{direction}_widths: {spec.name} cannot take {unusable} "
                     f"(of those given it takes {list(codec.widths)})")
  partial = [w for w in codec.widths if not float(w).is_integer()]
  if direction == "aggregate" and partial:
    # The plan prices each width as if the clients' errors were independent and of mean
    # zero; a width that sends part of the coordinates (eden's `keep`) shrinks toward 0,
    # a bias that clients whose updates agree share (see allocation.py).
    cli.warn_once(f"--aggregate_widths {', '.join(f'{w:g}' for w in partial)} send part of "
                  "the rotated coordinates and are biased toward 0; the plan counts the "
                  "clients' errors as independent, but their biases add up in the mean "
                  "(10 clients with agreeing updates at width 0.5: 3.6x the planned "
                  "error; at 1.95, 1.02x; `python -m tools.allocation_bias`)")
  return codec


def recorded_flags(fv: FlagValues, module_names: list[str]) -> dict[str, Any]:
  """Resolved values of the flags the binary and this module define (for config.json)."""
  record: dict[str, Any] = {}
  for module in module_names + [__name__]:
    for flag in fv.get_flags_for_module(module):
      record[flag.name] = flag.value
  return record


def _check_privacy_flags(fv: FlagValues) -> None:
  """Warns of DP and secure-aggregation flags given to no effect, and of --dp=distributed's
  unseeded noise; refuses --workers with secure sums."""
  if fv.dp == "none":
    # The important case: a forgotten --dp trains with no differential privacy at all.
    _warn_unused(fv, ["dp_noise_multiplier", "dp_clip", "dp_delta", "dp_field_bits"],
                 "--dp is none: this run has no differential privacy")
  elif fv.dp != "distributed":
    _warn_unused(fv, ["dp_field_bits"], f"it sizes --dp=distributed's field, not --dp={fv.dp}'s")
  else:
    # Every other draw of a run comes from --seed; TFF's DistributedDpSumFactory takes none.
    cli.warn_once("--dp=distributed: TFF draws its noise on the clients unseeded, so a rerun "
                  "or a resumed run with the same --seed differs from this one")
  if fv.secure_aggregation:
    if _is_identity(fv.broadcast_encoder) and fv.broadcast_bits_per_coordinate is None:
      # Else the broadcast codec keeps it (29.01 against 29.29 Mibit at 100 and 10,000).
      _warn_unused(fv, ["compression_threshold"], "under --secure_aggregation every tensor "
                   "of the update is encoded (the whole update is summed in the field), "
                   "and the broadcast is not compressed")
    if fv.workers:
      # TFF's mergeable form splits a round at federated_aggregate; its secure sums end up
      # after the merge, which TFF refuses at round 1 with a 600-character type dump.
      raise ValueError(REMOTE_SECURE_SUMS)


def experiment_config_from_flags(fv: FlagValues, *, module_names: list[str],
                                 extra_recorded: dict[str, Any] | None = None,
                                 fixed_clients: tuple[str, ...] | None = None
                                 ) -> ExperimentConfig:
  if fv["tf_logs"].value and quiet.quieted():
    cli.warn_once("--tf_logs came too late: TensorFlow started quiet before the flags were "
                  "read (as from a flagfile or a sweep's --common_flags); set "
                  "FEDCOMPRESS_TF_LOGS=1, or give --tf_logs on the binary's command line")
  _check_privacy_flags(fv)
  broadcast = codec_from_flags(fv, "broadcast")
  aggregate = codec_from_flags(fv, "aggregate")
  recorded = recorded_flags(fv, module_names)
  aggregator = aggregators.AggregatorSpec(fv.aggregator,
                                          codecs.parse_options(fv.aggregator_args))
  if not aggregator.is_mean and (isinstance(aggregate, allocation.AllocatedCodec)
                                 or not aggregate.is_identity):
    raise ValueError(f"--aggregator={fv.aggregator} replaces the encoded mean: use "
                     "--aggregate_encoder=identity")
  if fv.workers:  # Said now, not after waiting for the workers to answer.
    check_remote_codecs(aggregate, secure_aggregation=False, flag="--aggregate_encoder")
  codec_modules.check_codec_sources(codec_names(broadcast) + codec_names(aggregate),
                                    fv.codec_modules or [])
  recorded.update(broadcast_codec=broadcast.describe(), aggregate_codec=aggregate.describe(),
                  aggregator=aggregator.describe())
  if fv.codec_modules:  # Their codecs are compared by name: their source, by digest.
    recorded[rundir.CODEC_MODULES_DIGEST] = codec_modules.fingerprints(fv.codec_modules)
  recorded.update(extra_recorded or {})
  clients_per_round = fv.clients_per_round
  if fixed_clients:
    # The listed clients train every round: a --clients_per_round of another value was
    # recorded (and shown in TensorBoard's HParams) though it never ran.
    if fv["clients_per_round"].present and fv.clients_per_round != len(fixed_clients):
      cli.warn(f"--clients lists {len(fixed_clients)} clients, who all train every round: "
               f"--clients_per_round={fv.clients_per_round} is not used")
    clients_per_round = recorded["clients_per_round"] = len(fixed_clients)
  config = ExperimentConfig(
      root_output_dir=fv.root_output_dir, experiment_name=fv.experiment_name,
      rounds=fv.rounds, clients_per_round=clients_per_round,
      client_optimizer=fv.client_optimizer, client_learning_rate=fv.client_learning_rate,
      server_optimizer=fv.server_optimizer, server_learning_rate=fv.server_learning_rate,
      client_optimizer_options=optimizer_options_from_flags(fv, "client"),
      server_optimizer_options=optimizer_options_from_flags(fv, "server"),
      client_weighting=fv.client_weighting, broadcast_codec=broadcast,
      aggregate_codec=aggregate, aggregator=aggregator, error_feedback=fv.error_feedback,
      rounds_per_eval=fv.rounds_per_eval,
      rounds_per_checkpoint=fv.rounds_per_checkpoint, seed=fv.seed, resume=fv.resume,
      fixed_clients=fixed_clients, recorded=recorded,
      secure_aggregation=fv.secure_aggregation, dp=fv.dp,
      dp_noise_multiplier=fv.dp_noise_multiplier, dp_clip=fv.dp_clip, dp_delta=fv.dp_delta,
      dp_field_bits=fv.dp_field_bits)
  # The combinations the processes cannot build are refused here too, before a dataset
  # is loaded or downloaded (ExperimentConfig.validate, which library callers also get).
  config.validate()
  return config
