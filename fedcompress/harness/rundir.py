"""A run directory's integrity: one writer at a time, and a record of what the run is.

Nothing here imports TensorFlow (a test holds a run's lock from a bare subprocess).

* **One writer.** `lock_run_dir` takes an exclusive `fcntl.flock` on `<run_dir>/.lock`
  before anything is written there, and holds it until the run ends. The kernel drops
  the lock when its process dies, however it dies (even SIGKILL), so a killed run never
  blocks its own `--resume`; a second process asking for it is refused at once.
* **A record written once.** `config.json` holds every resolved setting of the run as it
  was first started and is never rewritten. Each start of the run (the first and every
  `--resume`) appends a segment to `run_info.json`: the rounds it was asked for, the
  rounds it ran, its wall time, the harmless settings it changed (see
  `MAY_DIFFER_ON_RESUME`), and the environment it ran in (`environment`).
  `record_mismatch` compares a new start with that record.
* **The environment beside the flags.** TensorFlow splits float reductions across its
  intra-op threads, one per usable core unless `TF_NUM_INTRAOP_THREADS` says otherwise,
  so the same flags and seed on another core count or thread setting can give other
  losses and accuracies in their last digits (the bits sent do not change): `make
  demo` with `TF_NUM_INTRAOP_THREADS=1` ended at eval accuracy 0.9222 / 0.9361
  (original / compressed) against 0.9250 / 0.9250 with the default, on 2 cores.
  Each segment therefore records the usable cores, those variables and the package
  versions, and `environment_change` names what differs from the run's first segment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fedcompress import metrics as m
from fedcompress import native
from fedcompress.harness import durable, reporting

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
RUN_INFO_FILE = "run_info.json"
LOCK_FILE = ".lock"

# Recorded settings that may change when a run is resumed, because they change where its
# output goes, how it is shown or on which machines it runs, but not what it computes:
#   rounds             checked on its own: it may only go up (raising it adds a segment);
#   rounds_per_eval    evaluation reads the weights and changes nothing in training, so it
#                      only decides which rows carry eval/* (the last round always does);
#   rounds_per_checkpoint  a resume from any checkpoint reproduces the run exactly;
#   the codec flags    compared through the codecs they resolve to (`broadcast_codec`,
#                      `aggregate_codec`), so `--aggregate_bits=8` equals uniform's default
#                      and `--aggregate_widths=4,3,2,1` equals 1,2,3,4 (an allocated codec
#                      records its exact budget and the widths its codec takes, in order);
#   aggregator_args    compared through `aggregator`, the aggregator with its resolved
#                      options in sorted order, so reordered options are the same setting;
#   sanity_client, generate_prompt, temperature, num_generate
#                      Shakespeare's checks before and text generation after the rounds;
#   cache_dir          where the dataset files are kept: the file itself is compared
#                      (the task's `data_file_fingerprint`), so a moved cache must hold
#                      the same file;
#   pretrained_model   the file's path: its content is compared (`PRETRAINED_DIGEST`);
#   codec_modules      the modules' names or paths: their files' content is compared
#                      (`CODEC_MODULES_DIGEST`).
# Every other recorded setting (data, split, seed, model, optimizers, learning rates,
# codecs, client epochs and batch size, evaluation batches, ...) must match; a setting
# added later is therefore compared unless it is listed here.
MAY_DIFFER_ON_RESUME = frozenset({
    "root_output_dir", "experiment_name", "resume", "rounds", "rounds_per_eval",
    "rounds_per_checkpoint", "tf_logs", "workers", "max_concurrent_clients",
    "worker_timeout_s", "codec_modules", "broadcast_encoder", "broadcast_bits",
    "broadcast_encoder_args",
    "aggregate_encoder", "aggregate_bits", "aggregate_encoder_args",
    "broadcast_bits_per_coordinate", "broadcast_widths", "aggregate_bits_per_coordinate",
    "aggregate_widths", "compression_threshold", "aggregator_args", "sanity_client",
    "generate_prompt", "temperature", "num_generate", "cache_dir", "pretrained_model",
})
# How a segment ran or where, rather than what ran: left out of the HParams, so that a
# resumed run shows the values an uninterrupted one of the same settings shows, and
# runs of the same settings group as repeats whatever their names (TensorBoard shows
# each run's folder beside its values anyway).
HOW_NOT_WHAT = frozenset({
    "resume", "root_output_dir", "experiment_name", "tf_logs", "workers",
    "max_concurrent_clients", "worker_timeout_s", "rounds_per_checkpoint", "cache_dir",
    "pretrained_model",  # Its path; the content's digest stays.
})
# Shakespeare's check of the pretrained model before the rounds and its text after them:
# left out of the HParams too (they change neither a round nor a metric), so that two
# runs of one training are one row, and a resume of a finished run that writes the text
# at another temperature does not leave the HParams saying the first (review R7 of s47).
# `generated.json` holds what made the text. A sweep still runs them as other runs.
BESIDE_THE_ROUNDS = frozenset({"sanity_client", "generate_prompt", "temperature",
                               "num_generate"})
# Flags that spell what the record holds resolved (the codecs, with their threshold and
# budgets, and the aggregator): left out of the HParams too, which show the resolved
# ones, so that `uniform` at its default 8 bits, `--aggregate_bits=8` and
# `uniform(bits=8)` group as the one setting they are (and compressed_u8.flags with
# `--aggregate_encoder_args=bits=4` did not show aggregate_bits=8 beside the 4 bits run).
SPELLINGS = frozenset({
    "broadcast_encoder", "broadcast_bits", "broadcast_encoder_args", "aggregate_encoder",
    "aggregate_bits", "aggregate_encoder_args", "broadcast_bits_per_coordinate",
    "broadcast_widths", "aggregate_bits_per_coordinate", "aggregate_widths",
    "compression_threshold", "aggregator_args",
    # The modules' names or paths: their content's digest stays (`mods/x.py`,
    # `./mods/x.py` and its absolute path were three rows of one codec).
    "codec_modules",
})
# The optimizers' options (`experiment.OPTIMIZER_OPTIONS`), which the resolved
# optimizers hold: `sgdm`, and `sgd` with `--server_momentum=0.9`, are one optimizer
# (`experiment.resolved_optimizer`; review R7 of s47). Spellings too in the HParams, a
# sweep and the codec table, but not among SPELLINGS, every one of which a resume
# compares resolved: it compares these as given where the optimizers they spell differ
# (`ExperimentConfig.record_compared_with`), to name the flag.
OPTIMIZER_SPELLINGS = frozenset({
    "client_momentum", "client_epsilon", "client_initial_accumulator", "server_momentum",
    "server_epsilon", "server_initial_accumulator"})
# What a resume may raise, which config.json keeps as the run first started.
EXTENDED_ON_RESUME = frozenset({"rounds", "rounds_per_eval"})
# Revisions above 1 of the run's codecs (`Codec.revision`, as `adaptive=2`); a record
# without them was made on revision 1 of every codec, so they are compared also when
# missing, as "none".
CODEC_REVISIONS = "codec_revisions"
# Recorded values that are resolved codecs rather than flags (named so in messages).
_NOT_FLAGS = frozenset({"broadcast_codec", "aggregate_codec", CODEC_REVISIONS,
                        "pretrained_model_sha256", "initial_weights_sha256",
                        "codec_modules_sha256",
                        "codec_sources_sha256", "task_seed",
                        "model_seed",
                        "data_file_fingerprint", "task_name", "task_clients",
                        "task_client_ids_sha256", "client_sampling"})
# How clients are sampled: "sorted ids" (`loop.sample_clients`). A record without it was
# made when they were drawn by position in the task's list of ids, the same clients only
# where that list was sorted (`experiment.check_sampling_on_resume`).
CLIENT_SAMPLING = "client_sampling"
PRETRAINED_DIGEST = "pretrained_model_sha256"  # Recorded by the Shakespeare runs.
# `run_experiment(initial_weights=...)`'s arrays (`weights_digest`), where no pretrained
# file names them: a run from given weights and one from the model's initializer wrote
# the same config.json (review R3 of s48).
INITIAL_WEIGHTS_DIGEST = "initial_weights_sha256"
CODEC_MODULES_DIGEST = "codec_modules_sha256"  # The --codec_modules files' fingerprints.
CODEC_SOURCES_DIGEST = "codec_sources_sha256"  # The user codecs' code, however registered.


class RunDirectoryError(ValueError):
  """The output directory cannot be used as asked (exists without --resume, unwritable,
  written by another process, or its record does not match the settings)."""


# ---------------------------------------------------------------------------------------
# One writer.

_held: dict[str, list] = {}  # realpath of a lock file -> [open file, depth]
_held_lock = threading.Lock()


CHECKPOINT_DIR = "checkpoints"  # Under a run directory: round_<N> per checkpoint.


def unused_flags(record: Mapping[str, Any]) -> set[str]:
  """Flags of `record` that do nothing in its run, which the binaries say: the digits'
  on another dataset, DP's without --dp, the field's without --dp=distributed, and
  Shakespeare's --sanity_client without a pretrained model (nothing to check)."""
  return {k for k in record if (k.startswith("digits_") and record.get("dataset") not in
                                (None, "digits"))
          or (k.startswith("dp_") and record.get("dp", "none") == "none")
          or (k == "dp_field_bits" and record.get("dp") != "distributed")
          or (k == "sanity_client" and not record.get(PRETRAINED_DIGEST))
          # Not a flag: None, the model's initializer, is what every binary's run starts
          # from, and nothing to show beside the seed.
          or (k == INITIAL_WEIGHTS_DIGEST and record[k] is None)}


def checkpoint_rounds(run_dir: str) -> list[int] | None:
  """The rounds of the run's checkpoints, ascending; None without a checkpoint folder."""
  folder = os.path.join(run_dir, CHECKPOINT_DIR)
  if not os.path.isdir(folder):
    return None
  return sorted(int(n[len("round_"):]) for n in os.listdir(folder)
                if n.startswith("round_") and n[len("round_"):].isdigit())


def has_run(run_dir: str) -> bool:
  """Whether `run_dir` holds a file besides its lock file, at any depth.

  Empty folders do not count: a run stopped before its first record (Ctrl-C, SIGTERM
  or an unreachable worker while the process is built) leaves only `checkpoints/` and
  `client_states/`, and the same command must be able to start it again.
  """
  if not os.path.isdir(run_dir):
    return False
  for root, _, files in os.walk(run_dir):
    if any(not (root == run_dir and name == LOCK_FILE) for name in files):
      return True
  return False


@contextlib.contextmanager
def lock_run_dir(run_dir: str) -> Iterator[None]:
  """Creates `run_dir` if needed and holds its exclusive lock inside the `with`.

  Re-entrant within one process (the fine-tuning run holds the lock around
  `run_experiment`, which takes it too).

  Raises:
    RunDirectoryError: another process holds the lock, or the folder cannot be written.
  """
  path = os.path.realpath(os.path.join(run_dir, LOCK_FILE))
  with _held_lock:
    if path in _held:
      _held[path][1] += 1
      reentered = True
    else:
      reentered = False
  if reentered:
    try:
      yield
    finally:
      with _held_lock:
        _held[path][1] -= 1
    return
  created = not os.path.exists(run_dir)
  try:
    os.makedirs(run_dir, exist_ok=True)
    # Append mode: opening never changes the file, so a refused writer touches nothing.
    f = open(path, "a")  # noqa: SIM115 (closed below, or when the process dies)
  except OSError as e:
    raise RunDirectoryError(f"cannot write to {run_dir}: {e.strerror or e}") from None
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    f.close()
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise RunDirectoryError(
          f"{run_dir} is being written by another process (it holds {LOCK_FILE} there); "
          "wait for that run to end, or stop it, before running this one (nothing was "
          "written)") from None
    raise RunDirectoryError(f"cannot lock {path}: {e.strerror or e}") from None
  with _held_lock:
    _held[path] = [f, 1]
  try:
    yield
  except ValueError:
    # Refused before its first record (a bit budget too small for the model, found
    # when the process is built): bad input leaves no run directory behind, as a refusal
    # before the lock does. Removed under the lock, and only the folder this call made.
    if created and not has_run(run_dir):
      shutil.rmtree(run_dir, ignore_errors=True)
    raise
  finally:
    with _held_lock:
      del _held[path]
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()


# ---------------------------------------------------------------------------------------
# The record.


def read_json(path: str) -> Any:
  """The JSON content of `path`; a RunDirectoryError naming the file if it is not JSON."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise RunDirectoryError(
        f"{path} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}); restore "
        "it, or start the run afresh under another --experiment_name") from None
  except UnicodeDecodeError:
    raise RunDirectoryError(f"{path} is not valid JSON (not UTF-8 text)") from None


def read_config(run_dir: str) -> dict[str, Any] | None:
  """The run's `config.json`, or None where there is none."""
  path = os.path.join(run_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  record = read_json(path)
  if not isinstance(record, dict):
    raise RunDirectoryError(f"{path} is not a fedcompress config (a JSON object)")
  return record


def read_run_info(run_dir: str) -> dict[str, Any]:
  """`run_info.json` with `segments` a list (runs of older versions stored a count)."""
  path = os.path.join(run_dir, RUN_INFO_FILE)
  info: dict[str, Any] = {"wall_time_s": 0.0, "segments": []}
  if os.path.exists(path):
    loaded = read_json(path)
    if not isinstance(loaded, dict):
      raise RunDirectoryError(f"{path} is not a fedcompress run record (a JSON object)")
    info.update(loaded)
  if not isinstance(info.get("segments"), list):
    info["segments"] = []
  return info


def _write_json(path: str, value: Any) -> None:
  durable.write_json(path, value, indent=2, sort_keys=True)


def jsonable(value: Any) -> Any:
  """`value` as config.json stores it (what a new value is compared as)."""
  if isinstance(value, (str, int, float, bool)) or value is None:
    return value
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if isinstance(value, np.generic):
    # A notebook's `for seed in np.arange(3)`: stored as "1", the resume with seed=1 was
    # refused as "--seed=1 (recorded 1)".
    return jsonable(value.item())
  # A task's settings may hold these. As their str, an array of over 1,000 values was
  # numpy's elided text (two partitions recorded the same), and a set's order follows
  # the per-process hash seed (a resume in a fresh process was refused).
  if isinstance(value, np.ndarray):
    return jsonable(value.tolist())
  if isinstance(value, (set, frozenset)):
    return sorted((jsonable(v) for v in value), key=json.dumps)
  if isinstance(value, Mapping):
    return {str(k): jsonable(v) for k, v in value.items()}
  return str(value)


def recorded_rounds(run_dir: str) -> int | None:
  """The most rounds this run was ever asked for (config.json and every segment that
  ran a round: a `--resume --rounds=400` stopped before its first round raised the
  floor to 400 for good, with nothing of it in a row or checkpoint)."""
  config = read_config(run_dir) or {}
  segments = read_run_info(run_dir)["segments"]
  asked = [s.get("rounds") for s in segments if not _ran_nothing(s)]
  # config.json holds the first segment's --rounds (runs of older versions recorded no
  # segments): it counts when that segment ran a round, as the others do.
  if not segments or not _ran_nothing(segments[0]):
    asked.append(config.get("rounds"))
  asked = [r for r in asked if isinstance(r, int) and not isinstance(r, bool)]
  return max(asked) if asked else None


def _ran_nothing(segment: Mapping[str, Any]) -> bool:
  first, last = segment.get("first_round"), segment.get("last_round")
  return isinstance(first, int) and isinstance(last, int) and last < first


def _text(value: Any) -> str:
  if isinstance(value, list):
    return ",".join(str(v) for v in value)
  return str(value)


def _same(old: Any, new: Any) -> bool:
  if isinstance(old, bool) or isinstance(new, bool):
    return old is new
  if isinstance(old, (int, float)) and isinstance(new, (int, float)):
    return float(old) == float(new) or (math.isnan(old) and math.isnan(new))
  return old == new


def differences(record: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
  """`--flag=new (recorded old)` for each result-affecting value that differs.

  Keys missing from `record` (a run of an older version) are not compared.
  """
  out = []
  record = {CODEC_REVISIONS: "none", **record}
  for key in sorted(values):
    if key in MAY_DIFFER_ON_RESUME or key not in record:
      continue
    old, new = record[key], jsonable(values[key])
    if not _same(old, new):
      if key in _NOT_FLAGS:
        shown = f"{key} {_text(new)}"
      elif new is None:  # `--x=None` is no value the flag takes, nor one the user gave.
        shown = f"--{key} unset"
      else:
        shown = f"--{key}={_text(new)}"
      out.append(f"{shown} (recorded {_text(old)})")
  return out


def check_rounds_recorded(run_dir: str) -> None:
  """Raises RunDirectoryError where continuing `run_dir` would mislabel or lose rounds.

  - Rounds (rows or checkpoints) without `config.json`: nothing tells what they ran
    with, and a resume wrote the new settings as their record.
  - A checkpoint past metrics.csv's complete rows (the file deleted or cut short): the
    resume would continue from the checkpoint with those rounds' metrics gone (with no
    metrics.csv at all it ran no round and ended in a traceback).
  """
  path = os.path.join(run_dir, METRICS_FILE)
  newest = max(checkpoint_rounds(run_dir) or [], default=0)
  if not os.path.exists(os.path.join(run_dir, CONFIG_FILE)) and (
      newest or os.path.exists(path)):
    raise RunDirectoryError(
        f"cannot resume {run_dir}: it holds rounds but no {CONFIG_FILE}, so what they "
        "ran with is unknown; start a new run under another --experiment_name")
  partial = False
  complete = 0
  if os.path.exists(path):
    try:
      _, rows, partial = reporting.read_metrics_rows(path)
    except reporting.MetricsFileError as e:
      raise RunDirectoryError(f"cannot resume {run_dir}: {e}") from None
    complete = int(rows[-1][m.ROUND]) if rows else 0
  if newest > complete:
    held = ("its last row is cut short, and it holds " if partial else "") + (
        f"complete rows to round {complete}" if os.path.exists(path) else "it is missing")
    past = [f"round_{r}" for r in checkpoint_rounds(run_dir) if r > complete]
    raise RunDirectoryError(
        f"cannot resume {run_dir}: round {newest} was checkpointed but {path}: {held}, "
        f"so the metrics of rounds {complete + 1}-{newest} would be lost; delete "
        f"{', '.join(past)} in {os.path.join(run_dir, CHECKPOINT_DIR)} to redo them")


def record_mismatch(run_dir: str, values: Mapping[str, Any], rounds: int) -> str | None:
  """What keeps a run with `values` and `rounds` from continuing `run_dir`, or None.

  Raises:
    RunDirectoryError: the record cannot be read (names the file), or the run's rounds
      are not all recorded (`check_rounds_recorded`).
  """
  check_rounds_recorded(run_dir)
  record = read_config(run_dir)
  problems = differences(record, values) if record is not None else []
  asked = recorded_rounds(run_dir)
  if asked is not None and rounds < asked:
    problems.append(f"--rounds={rounds} (recorded {asked}; rounds may only go up)")
  return "; ".join(problems) or None


# Variables that set TensorFlow's (and its math libraries') thread counts.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
# Variables that choose TensorFlow's kernels: an error-feedback run on the digits with
# TF_ENABLE_ONEDNN_OPTS=0 differed in 10 of its metrics' cells (eval accuracy 0.2083 against
# 0.1028 at round 2), and a resume under it said nothing. (Not CUDA_VISIBLE_DEVICES: a
# scheduler sets it per job, and on these CPU runs every resume would have warned.)
KERNEL_VARIABLES = ("TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS")
# Packages whose version can change a run's numbers.
VERSIONED_PACKAGES = ("tensorflow", "tensorflow-federated", "tensorflow-model-optimization",
                      "numpy")


def environment() -> dict[str, Any]:
  """What besides the flags decides a run's last digits, for `run_info.json`."""

  def version(package: str) -> str | None:
    try:
      return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      return None

  cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
          else os.cpu_count())
  return {"usable_cpus": cpus,
          "thread_variables": {k: os.environ.get(k) for k in THREAD_VARIABLES},
          "kernel_variables": {k: os.environ.get(k) for k in KERNEL_VARIABLES},
          "packages": {p: version(p) for p in VERSIONED_PACKAGES},
          "python": platform.python_version(), "machine": platform.machine(),
          "cpu": cpu(), "source": source(),
          # Whether the codecs ran their native kernels (fedcompress/native) or their
          # graph ops: the same bits, other round times.
          "native_kernels": native.ops() is not None}


# Instruction sets by which TensorFlow's kernels (oneDNN, Eigen) choose how to add up
# floats: the same code and flags on a CPU with another set can differ in last digits.
CPU_FEATURES = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                "amx_tile")


def cpu() -> dict[str, Any] | None:
  """The CPU's model name and which of `CPU_FEATURES` it has (Linux), else None."""
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    return None
  fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
  fields = {k.strip(): v.strip() for k, v in fields.items()}
  flags = set(fields.get("flags", "").split())
  return {"model": fields.get("model name"),
          "features": [f for f in CPU_FEATURES if f in flags]}


# The checkout fedcompress runs from (in an installed wheel, site-packages: no .git).
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def git_output(*args: str, repo: str = CHECKOUT) -> str:
  """The stripped stdout of `git -C repo ARGS`.

  Raises:
    OSError: no git. subprocess.SubprocessError: git failed or took over 30 s.
  """
  return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                        timeout=30, check=True).stdout.strip()


def source() -> dict[str, Any] | None:
  """The fedcompress commit that ran a segment, and whether tracked files differed from
  it; None outside a git checkout (an installed wheel) or without git.

  Tools that reuse finished runs (sweeps, `make answers`) can then say which code made
  each; a resume on other code is recorded, not refused (docs and tools change often).
  """
  if not os.path.exists(os.path.join(CHECKOUT, ".git")):
    return None
  try:
    return {"commit": git_output("rev-parse", "--short=12", "HEAD"),
            "dirty": bool(git_output("status", "--porcelain", "--untracked-files=no"))}
  except (OSError, subprocess.SubprocessError):
    return None


def source_change(run_dir: str) -> str | None:
  """How the code of the last segment differs from the first's, as far as recorded.

  The commit, and whether tracked files differed from it; uncommitted changes that
  differ between two segments of one commit are not recorded, so not seen.
  """
  recorded = [(s.get("environment") or {}).get("source")
              for s in read_run_info(run_dir)["segments"]]
  if len(recorded) < 2 or not recorded[0] or not recorded[-1]:
    return None
  first, last = recorded[0], recorded[-1]
  differences = []
  if first.get("commit") != last.get("commit"):
    differences.append(f"commit {first.get('commit')} -> {last.get('commit')}")
  if bool(first.get("dirty")) != bool(last.get("dirty")):
    differences.append("uncommitted changes " + " -> ".join(
        "yes" if s.get("dirty") else "no" for s in (first, last)))
  return "; ".join(differences) or None


def environment_change(run_dir: str) -> str | None:
  """What differs between the last segment's environment and the first's, or None.

  For a warning on `--resume`: the run continues, but its later rounds may differ in
  their last digits from an uninterrupted run in the first environment.
  """
  recorded = [s.get("environment") for s in read_run_info(run_dir)["segments"]]
  if len(recorded) < 2 or not recorded[0] or not recorded[-1]:
    return None
  first, last = recorded[0], recorded[-1]
  differences = []
  for key in ("usable_cpus", "thread_variables", "kernel_variables", "packages", "python",
              "machine", "cpu"):
    # A key an older segment did not record is not known to differ ("cpu" since c07c09b).
    if key not in first or key not in last:
      continue
    a, b = first[key], last[key]
    if isinstance(a, dict) and isinstance(b, dict):
      differences += [f"{name} {a.get(name)} -> {b.get(name)}"
                      for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
    elif a != b:
      differences.append(f"{key} {a} -> {b}")
  return "; ".join(differences) or None


def start_segment(run_dir: str, values: Mapping[str, Any], *, rounds: int,
                  first_round: int) -> int:
  """Writes config.json if the run has none and appends a segment to run_info.json.

  Returns:
    The index of the new segment (for `record_segment`).
  """
  config_path = os.path.join(run_dir, CONFIG_FILE)
  record = read_config(run_dir)
  if record is None:
    record = {k: jsonable(v) for k, v in values.items()}
    _write_json(config_path, record)
  info = read_run_info(run_dir)
  changed = {k: jsonable(v) for k, v in sorted(values.items())
             if k in MAY_DIFFER_ON_RESUME and k in record and k not in ("resume", "rounds")
             and not _same(record[k], jsonable(v))}
  segment: dict[str, Any] = {"rounds": jsonable(rounds), "first_round": first_round,
                             "last_round": first_round - 1, "wall_time_s": 0.0,
                             "environment": environment()}
  if changed:
    segment["changed"] = changed
  info["segments"].append(segment)
  _write_json(os.path.join(run_dir, RUN_INFO_FILE), info)
  return len(info["segments"]) - 1


def record_segment(run_dir: str, index: int, *, last_round: int, wall_time_s: float
                   ) -> None:
  """Records how far segment `index` has got and its wall time so far.

  Called after every round, not only when the segment ends, so a segment a SIGKILL
  ended still says which rounds it ran. The run's wall time is its segments' sum.
  """
  info = read_run_info(run_dir)
  segments: Sequence[dict[str, Any]] = info["segments"]
  if index < len(segments):
    segments[index]["last_round"] = last_round
    segments[index]["wall_time_s"] = wall_time_s
  info["wall_time_s"] = float(sum(s.get("wall_time_s") or 0.0 for s in segments))
  _write_json(os.path.join(run_dir, RUN_INFO_FILE), info)
