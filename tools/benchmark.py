"""What a round costs: fedcompress against plain TFF and a centralized Keras pass.

Four contenders run the same work in one process, interleaved so that load from other
processes hits them alike, and each is timed over several repetitions after warm-up:

  a. plain TFF `tff.learning.algorithms.build_weighted_fed_avg` with TFF's defaults
     (client `build_sgdm(0.02)`, TFF's default server optimizer `build_sgdm(1.0)`);
  b. `fedcompress.build_fedavg`, uncompressed;
  c. `fedcompress.build_fedavg`, uniform 8-bit quantization both ways above 10,000
     elements (the TFF compression tutorial's setting);
  d. one epoch of Keras `model.fit` over the same examples, pooled: the floor;
  e. plain TFF as in (a) but with the client loop fedcompress defaults to
     (`DATASET_ITERATOR`), so that b/e is the cost of the wrapper alone.

A round is 10 clients of 100 examples at batch size 20 with the tutorial CNN, through
the EMNIST client pipeline of `fedcompress.tasks.datasets.emnist` (data: scikit-learn's digits
in EMNIST format). The medians give the ratios b/a (cost of the wrapper), c/b (cost of
compression), c/d (distance to the floor) and b/e. Besides wall time, each repetition's CPU
time is recorded (driver plus local worker, from /proc), which other agents' load
disturbs far less than wall time.

The memory part checks that a round's driver memory does not depend on how many
clients the dataset has: TFF's own SQL writer generates an `emnist_all.sqlite` of N
clients, and a fresh subprocess per N loads it the way experiments do, builds datasets
for the same 10 sampled clients only, runs one round, and reports its peak RSS
(`VmHWM`, the whole driver process: see `peak_rss_bytes`) and the tracemalloc peak of
Python allocations from loading the data to the end of the round.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

LABELS = {
    "a": "plain TFF build_weighted_fed_avg (TFF defaults)",
    "b": "fedcompress build_fedavg, uncompressed",
    "c": "fedcompress build_fedavg, uniform 8-bit both ways",
    "d": "centralized Keras model.fit, one epoch (floor)",
    "e": "plain TFF build_weighted_fed_avg, DATASET_ITERATOR loop (fedcompress's)",
}
RATIOS = (("b", "a"), ("c", "b"), ("c", "d"), ("b", "e"))
# b/a and c/b: issue 15 (fedcompress at most plain TFF's round, 8 bits both ways within
# 5%); c/d: the first speed issue (within 30% of one centralized Keras epoch).
TARGETS = {"b/a": 1.0, "c/b": 1.05, "c/d": 1.3}
MEMORY_TARGET = 1.10
# The codec sweep: every registered codec but identity and the generic `huffman`
# (`uniform_huffman` is its instance), with the options of issue 15's table.
CODEC_OPTIONS: dict[str, dict[str, Any]] = {
    "uniform": {"bits": 8},
    "topk": {"fraction": 0.01},
    "randk": {"fraction": 0.01},
    "hadamard": {"bits": 2},
    "drive": {},
    "eden": {"bits": 1},
    "kashin": {"bits": 2},
    "nonuniform": {},
    "uniform_huffman": {},
    "adaptive": {"budget_bits_per_coordinate": 2.0},
    # Registered after issue 15's table (it sets them no target): the count sketch of
    # FetchSGD's rows, secure aggregation's integers, the rotation alone, and Huffman
    # coding over the nonuniform quantizer.
    "countsketch": {},
    "fixed_int": {"bits": 4, "clip": 0.01},
    "rotation": {},
    "huffman": {"base": "nonuniform"},
}


def peak_rss_bytes() -> int:
  """This process's own peak resident memory (`VmHWM`), in bytes.

  Not `ru_maxrss`: on Linux a child started with fork and exec inherits its parent's
  high-water mark there, so a probe started by a benchmark that had reached 1.37 GB
  reported 1.37 GB whatever it used itself (a 14 MiB child of a 614 MiB parent read
  614). `VmHWM` in /proc/self/status is reset at exec. Elsewhere (no /proc) it falls
  back to `ru_maxrss`, which macOS gives in bytes and Linux in KiB.
  """
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak if sys.platform == "darwin" else peak * 1024


def split_codecs(text: str) -> list[str]:
  """`a,b(x=1,y=2),c` -> ['a', 'b(x=1,y=2)', 'c']: commas inside a codec's options stay."""
  names, depth, start = [], 0, 0
  for i, char in enumerate(text + ","):
    depth += {"(": 1, ")": -1}.get(char, 0)
    if char == "," and depth == 0:
      names.append(text[start:i].strip())
      start = i + 1
  return [n for n in names if n]


def listed_codecs(text: str) -> list[str]:
  """`split_codecs(text)` for a tool's --codecs, refusing a list it would measure nothing
  of (`codec_cost --codecs=` ended in ZeroDivisionError, `codec_speed` exited 0) or one
  that names a codec twice (`build_time` kept the second's figures only)."""
  names = split_codecs(text)
  if not names:
    raise ValueError("--codecs lists no codec")
  if twice := sorted({n for n in names if names.count(n) > 1}):
    raise ValueError(f"--codecs lists {', '.join(twice)} more than once")
  return names


def codec_options(name: str) -> dict[str, Any]:
  """The options a sweep runs `name` with: `CODEC_OPTIONS`' for a registered codec, and
  none for a codec written with its own, such as `drive(shared_rotation=true)`.

  Raises:
    ValueError: a name that is neither (the message lists the valid ones), or the
      codec's own error for bad inline options.
  """
  if name in CODEC_OPTIONS:
    return CODEC_OPTIONS[name]
  import fedcompress

  fedcompress.quiet_tensorflow()  # Before TensorFlow loads, as in the tools.
  if "(" not in name and "|" not in name:  # A chain is checked whole, below.
    from fedcompress.codecs import registry

    if name in registry.available_codecs():  # One a --codec_modules entry registered.
      return {}
    raise ValueError(f"unknown codecs {[name]}; valid: {', '.join(CODEC_OPTIONS)}, one "
                     "with its options, as drive(shared_rotation=true), or one that a "
                     "--codec_modules entry registers")

  fedcompress.CodecSpec(name)  # Checks the name and its options.
  return {}


# A chain's links run at the library's defaults, not at CODEC_OPTIONS' (eden alone at 1
# bit, in randk|eden at 2): the rows name only what was given.
CODECS_HELP = ("codecs, comma-separated: a registered one runs with CODEC_OPTIONS' options "
               "(hadamard at 2 bits), one written with options as given "
               "(drive(shared_rotation=true)), a chain (randk|eden) with its links' library "
               "defaults where it gives none, or one --codec_modules registers")
CODEC_MODULES_HELP = ("comma-separated .py files or module names to import first, as the "
                      "experiment binaries' --codec_modules: their codecs can then be named")


def load_codec_modules(text: str | None) -> dict[str, list[str]]:
  """Imports the `--codec_modules` entries in `text` (comma-separated `.py` paths or
  module names), as the experiment binaries do, so that a codec of one's own can be
  timed by name; returns what a result records of them (the entries, and their source
  files' fingerprints, `codec_modules.fingerprints`), empty for none.

  Raises:
    ValueError: one line, when an entry cannot be imported.
  """
  entries = [entry.strip() for entry in (text or "").split(",") if entry.strip()]
  if not entries:
    return {}
  import fedcompress

  fedcompress.quiet_tensorflow()  # Before TensorFlow loads, as in the tools.
  from fedcompress.harness import codec_modules

  codec_modules.import_codec_modules(entries)
  return {"codec_modules": entries, "codec_modules_sha256": codec_modules.fingerprints(entries)}


# Issue 15's targets for each codec's uplink CPU ratio to uncompressed.
UPLINK_CPU_TARGETS: dict[str, float] = {
    "uniform": 1.10, "topk": 1.10, "randk": 1.10,
    "hadamard": 1.25, "drive": 1.25, "eden": 1.25, "nonuniform": 1.25,
    "kashin": 1.5, "uniform_huffman": 1.5, "adaptive": 1.5,
}


def pair_ratios(samples: Mapping[str, Mapping[str, list[float]]], x: str, y: str,
                key: str = "cpu_s") -> list[float]:
  """`x`'s time over `y`'s in each repetition (round i of one over round i of the other).

  Each repetition runs every contender once, back to back, so the two rounds of a pair
  ran under the same load: their ratio is what the interleaving measures.
  """
  return [a / b for a, b in zip(samples[x][key], samples[y][key], strict=True)]


def paired_ratio(samples: Mapping[str, Mapping[str, list[float]]], x: str, y: str,
                 key: str = "cpu_s") -> float:
  """The median of `pair_ratios`: the ratio the tables report.

  Not the ratio of the two medians, which may come from rounds run under other loads
  (codec [1, 1, 10] against [1, 10, 10] would read 0.1x; its pairs are 1x).
  """
  return statistics.median(pair_ratios(samples, x, y, key))


def pair_ratio_quartiles(samples: Mapping[str, Mapping[str, list[float]]], direction: str,
                         key: str = "cpu_s") -> tuple[float, float]:
  """First and third quartiles of `direction`'s per-repetition ratio to uncompressed:
  the spread of the measurement itself. Inclusive quartiles, which stay within the
  pairs (the exclusive ones of 3 pairs are their min and max)."""
  pairs = pair_ratios(samples, direction, "none", key)
  q1, _, q3 = (statistics.quantiles(pairs, n=4, method="inclusive") if len(pairs) > 1
               else pairs * 3)
  return q1, q3


def target_verdict(name: str, cpu_ratio: Mapping[str, float]) -> str:
  """`'<= 1.25x: met'` for a codec's uplink CPU ratio, or '' without uplink or target.

  A ratio the table's two decimals show as the target itself is given to three, so
  that 1.2494 (met) and 1.2541 (not met) do not both read 1.25x.
  """
  target = UPLINK_CPU_TARGETS.get(name)
  if target is None or "uplink" not in cpu_ratio:
    return ""
  ratio = cpu_ratio["uplink"]
  met = "met" if ratio <= target else "not met"
  close = f" ({ratio:.3f})" if f"{ratio:.2f}" == f"{target:.2f}" else ""
  return f"<= {target:.2f}x: {met}{close}"
_TRAIN_SPLIT = "digits_only_train"
_TEST_SPLIT = "digits_only_test"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """Sizes and repetitions of the benchmark.

  Attributes:
    num_clients: clients per round (and in the timing dataset).
    examples_per_client: examples each client holds.
    batch_size: client (and Keras) batch size.
    rounds: timed repetitions of each contender (the median is reported).
    warmup_rounds: untimed repetitions first (tracing, compilation, caches).
    bits: quantization bits of contender c.
    threshold: contender c encodes only tensors with more elements than this.
    seed: data order, model init and client sampling.
    max_concurrent_clients: TFF's `max_concurrent_computation_calls` for the local
      worker (`None`: fedcompress's default for this machine).
    memory_populations: clients in each generated dataset of the memory measurement;
      empty skips it.
    memory_examples_per_client: examples per client in the generated datasets.
    memory_cache_dir: where generated datasets are kept and reused (`None`: a
      temporary folder, deleted afterwards).
    codecs: codecs (keys of `CODEC_OPTIONS`, or codecs with inline options such as
      `drive(shared_rotation=true)`) of the codec sweep, each timed against
      uncompressed in its own interleaved run; empty skips the sweep.
    codec_directions: `uplink` (aggregate codec only) and/or `both` (the same codec
      for the broadcast too).
    codec_modules: `.py` files or module names imported before `codecs` are checked,
      as the binaries' `--codec_modules` (a codec of one's own); the result records
      their sources' fingerprints.
  """

  num_clients: int = 10
  examples_per_client: int = 100
  batch_size: int = 20
  rounds: int = 5
  warmup_rounds: int = 1
  bits: int = 8
  threshold: int = 10_000
  seed: int = 0
  max_concurrent_clients: int | None = None
  memory_populations: tuple[int, ...] = (100, 3400)
  memory_examples_per_client: int = 100
  memory_cache_dir: str | None = None
  codecs: tuple[str, ...] = ()
  codec_directions: tuple[str, ...] = ("uplink", "both")
  codec_modules: tuple[str, ...] = ()

  def __post_init__(self):
    positive = ("num_clients", "examples_per_client", "batch_size", "rounds")
    # A memory step of empty rounds reported a ratio as if it had measured one.
    positive += ("memory_examples_per_client",) if self.memory_populations else ()
    for name in positive:
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.warmup_rounds < 0:
      raise ValueError(f"warmup_rounds must be >= 0, got {self.warmup_rounds}")
    if not 0 <= self.seed < 2**32:  # NumPy's generators take no other (a traceback).
      raise ValueError(f"seed must be in 0..{2**32 - 1}, got {self.seed}")
    if len(set(self.memory_populations)) != len(self.memory_populations):
      # One probe per population: a second one of the same size was dropped unwaited.
      raise ValueError(f"memory_populations repeats a size: {self.memory_populations}")
    load_codec_modules(",".join(self.codec_modules))
    for name in self.codecs:
      codec_options(name)  # Unknown names and bad inline options fail now, not mid-run.
    if set(self.codec_directions) - {"uplink", "both"} or (
        self.codecs and not self.codec_directions):
      raise ValueError(f"codec_directions must be uplink and/or both, got "
                       f"{self.codec_directions}")
    if any(n < self.num_clients for n in self.memory_populations):
      raise ValueError(f"memory_populations must each hold at least num_clients="
                       f"{self.num_clients} clients, got {self.memory_populations}")


# --- timing -------------------------------------------------------------------------


def _digits_pixels(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`count` EMNIST-format digits (cycled when more than scikit-learn's 1,797)."""
  from fedcompress.tasks.datasets.digits import digits_images

  pixels, labels = digits_images()
  order = np.random.default_rng(seed).permutation(len(labels))
  order = np.resize(order, count)
  return pixels[order], labels[order]


def build_timing_task(config: BenchmarkConfig):
  """The timing data: (`FederatedTask` of num_clients x examples_per_client, (pixels, labels)).

  The clients' data stays in numpy, one `from_tensor_slices` per client dataset built.
  TFF's `TestClientData` serves a client that way too, but its
  `create_tf_dataset_from_all_clients` (the task's test set, the Keras pass) traces
  one graph holding every client's data as constants: at 100 clients of 100 examples
  that held the driver ~3.9 MiB per client for 0.3 MiB of pixels, which is most of
  what was measured as the driver's growth with the cohort. The test set (the task
  needs one; nothing here evaluates) is the first client's data alone.
  """
  import tensorflow_federated as tff

  from fedcompress.tasks.image import image_task

  n = config.examples_per_client
  pixels, labels = _digits_pixels(config.num_clients * n, config.seed)
  width = len(str(config.num_clients - 1))
  train = tff.simulation.datasets.TestClientData({
      f"bench_{c:0{width}d}": collections.OrderedDict(
          label=labels[c * n:(c + 1) * n], pixels=pixels[c * n:(c + 1) * n])
      for c in range(config.num_clients)})
  test = tff.simulation.datasets.TestClientData({
      "bench_test": collections.OrderedDict(label=labels[:n], pixels=pixels[:n])})
  task = image_task("benchmark", train, test, num_classes=10, epochs=1,
                    batch_size=config.batch_size, seed=config.seed)
  return task, (pixels, labels)


def round_runner(process, task, metrics: dict[str, Any] | None = None
                 ) -> Callable[[int], None]:
  """`run(repetition)`: one round of `process` from its own state, over all of `task`'s clients.

  Every call builds the clients' datasets afresh (as a training loop does each round),
  with a shuffle seed that depends on the repetition. With `metrics`, each round's
  output metrics replace its contents (the last round's stay).
  """
  state = [process.initialize()]

  def run(repetition: int) -> None:
    data = [task.client_dataset(cid, repetition) for cid in task.client_ids]
    output = process.next(state[0], data)
    state[0] = output.state
    if metrics is not None:
      metrics.clear()
      metrics.update(output.metrics)

  return run


def build_contenders(config: BenchmarkConfig) -> dict[str, Callable[[int], None]]:
  """`{'a'..'e': run(repetition)}`; each call runs one round (a-c, e) or one pass (d).

  Every call builds its datasets afresh (as a training loop does each round), with the
  same pipeline and a shuffle seed that depends on the repetition.
  """
  import tensorflow as tf
  import tensorflow_federated as tff

  import fedcompress
  from fedcompress.tasks.datasets import emnist

  task, (pixels, labels) = build_timing_task(config)
  codec = fedcompress.CodecSpec("uniform", {"bits": config.bits}, threshold=config.threshold)
  processes = {
      "a": tff.learning.algorithms.build_weighted_fed_avg(
          task.model_fn, tff.learning.optimizers.build_sgdm(0.02)),
      "b": fedcompress.build_fedavg(task.model_fn),
      "c": fedcompress.build_fedavg(task.model_fn, broadcast_codec=codec,
                                    aggregate_codec=codec),
      "e": tff.learning.algorithms.build_weighted_fed_avg(
          task.model_fn, tff.learning.optimizers.build_sgdm(0.02),
          loop_implementation=tff.learning.LoopImplementation.DATASET_ITERATOR),
  }
  # Same model, loss, metric and learning rate as the clients' local training.
  keras_model = task.keras_model_fn()
  keras_model.compile(optimizer=tf.keras.optimizers.SGD(0.02),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  def keras_pass(repetition: int) -> None:
    pooled = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(label=labels,
                                                                        pixels=pixels))
    dataset = emnist.preprocess(pooled, epochs=1,
                                batch_size=config.batch_size,
                                seed=config.seed * 100_003 + repetition)
    # Keras takes (x, y) tuples where TFF takes the OrderedDict(x=, y=) of the task.
    keras_model.fit(dataset.map(lambda e: (e["x"], e["y"])), epochs=1, verbose=0)

  runners = {name: round_runner(process, task) for name, process in processes.items()}
  runners["d"] = keras_pass
  return runners


def _worker_cpu_s() -> float:
  """CPU seconds used so far by this process's live local workers (0 without /proc)."""
  from fedcompress.federated import runtime

  total = 0.0
  for pid in runtime.worker_pids():
    try:
      with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
  return total


def time_interleaved(runners: Mapping[str, Callable[[int], None]], rounds: int,
                     warmup_rounds: int = 1) -> dict[str, dict[str, list[float]]]:
  """Runs every contender once per repetition, rotating the order, and times each.

  Returns:
    `{name: {'wall_s': [...], 'cpu_s': [...]}}` over the timed repetitions; CPU time is
    this process's plus its local workers'.
  """
  names = list(runners)
  samples = {name: {"wall_s": [], "cpu_s": []} for name in names}
  for repetition in range(warmup_rounds + rounds):
    shift = repetition % len(names)
    for name in names[shift:] + names[:shift]:
      cpu0, worker0 = time.process_time(), _worker_cpu_s()
      wall0 = time.perf_counter()
      runners[name](repetition)
      wall = time.perf_counter() - wall0
      cpu = time.process_time() - cpu0 + _worker_cpu_s() - worker0
      if repetition >= warmup_rounds:
        samples[name]["wall_s"].append(wall)
        samples[name]["cpu_s"].append(cpu)
  return samples


def ratios(samples: Mapping[str, Mapping[str, list[float]]], key: str) -> dict[str, float]:
  """`{'b/a': .., 'c/b': .., 'c/d': .., 'b/e': ..}`, each the median of its round pairs."""
  return {f"{x}/{y}": paired_ratio(samples, x, y, key) for x, y in RATIOS
          if x in samples and y in samples}


# --- codec sweep --------------------------------------------------------------------


def run_codec_sweep(config: BenchmarkConfig, log: Callable[[str], None] | None = print
                    ) -> dict[str, Any]:
  """Every codec of `config.codecs` against uncompressed, one interleaved run each.

  Each run interleaves uncompressed (`none`) with the codec in each of
  `config.codec_directions`, so the ratio compares rounds under the same load.

  Returns:
    `{codec: {'options', 'wall_s': {contender: median}, 'cpu_s': {...},
    'cpu_ratio': {direction: ..}, 'wall_ratio': {direction: ..},
    'round_bits': {contender: {'broadcast', 'aggregate'}}}}` (the bits of each
    contender's last round) plus the process's peak RSS under `peak_rss_bytes`.
  """
  import tensorflow_federated as tff

  import fedcompress
  from fedcompress import metrics as m
  from fedcompress.federated.aggregation import fixed_range_links

  task, _ = build_timing_task(config)
  uncompressed = {}  # Client weighting -> the uncompressed process, built once.
  out: dict[str, Any] = {}
  for name in config.codecs:
    spec = fedcompress.CodecSpec(name, codec_options(name), threshold=config.threshold)
    # Fixed-range codecs (fixed_int) run under uniform weights (see
    # aggregation.check_weighted_codec), and so does the round they are compared with.
    weighting = (tff.learning.ClientWeighting.UNIFORM if fixed_range_links(spec)
                 else tff.learning.ClientWeighting.NUM_EXAMPLES)
    if weighting not in uncompressed:
      uncompressed[weighting] = fedcompress.build_fedavg(task.model_fn,
                                                         client_weighting=weighting)
    processes = {"none": uncompressed[weighting]}
    for direction in config.codec_directions:
      processes[direction] = fedcompress.build_fedavg(
          task.model_fn, aggregate_codec=spec, client_weighting=weighting,
          broadcast_codec=spec if direction == "both" else None)
    last_metrics = {key: {} for key in processes}
    samples = time_interleaved({key: round_runner(process, task, last_metrics[key])
                                for key, process in processes.items()},
                               config.rounds, config.warmup_rounds)
    wall = {k: statistics.median(v["wall_s"]) for k, v in samples.items()}
    cpu = {k: statistics.median(v["cpu_s"]) for k, v in samples.items()}
    out[name] = {
        "options": codec_options(name), "wall_s": wall, "cpu_s": cpu, "samples": samples,
        "wall_ratio": {d: paired_ratio(samples, d, "none", "wall_s")
                       for d in config.codec_directions},
        "cpu_ratio": {d: paired_ratio(samples, d, "none") for d in config.codec_directions},
        "uplink_cpu_target": UPLINK_CPU_TARGETS.get(name),
        "cpu_ratio_quartiles": {d: pair_ratio_quartiles(samples, d)
                                for d in config.codec_directions},
        # What the timed rounds sent, beside their time (and the sign the codec ran).
        "round_bits": {k: {"broadcast": int(v[m.BROADCAST_BITS]),
                           "aggregate": int(v[m.AGGREGATE_BITS])}
                       for k, v in last_metrics.items()},
    }
    if log:
      verdict = target_verdict(name, out[name]["cpu_ratio"])
      log(f"{name}: " + "; ".join(
          f"{d} wall {out[name]['wall_ratio'][d]:.2f}x CPU {out[name]['cpu_ratio'][d]:.2f}x"
          for d in config.codec_directions) + f" (uncompressed {wall['none']:.3f} s"
          + (f"; uplink CPU target {verdict}" if verdict else "") + ")")
  return {"codecs": out,
          "peak_rss_bytes": peak_rss_bytes()}


def _measured_on(result: Mapping[str, Any]) -> str:
  """`; measured on <commit> (with changes), <date>`, from what the result recorded."""
  source, date = result.get("source"), result.get("date")
  if not source and not date:
    return ""  # A result from before both were recorded.
  code = (f"{source['commit']}{' with uncommitted changes' if source['dirty'] else ''}"
          if source else "code outside a git checkout")
  return f"; measured on {code}" + (f", {date}" if date else "")


def format_codec_table(result: Mapping[str, Any]) -> str:
  """Markdown table of a `run_benchmark` result's codec sweep (what the README shows)."""
  config = result["config"]
  sweep = result["codec_sweep"]["codecs"]
  directions = config["codec_directions"]
  head = " | ".join(f"{d} wall | {d} CPU" for d in directions)
  lines = [f"Round time vs uncompressed: the median of {config['rounds']} interleaved "
           f"round pairs' ratios, after {config['warmup_rounds']} warm-up; "
           f"{config['num_clients']} clients of "
           f"{config['examples_per_client']} examples; tensors over {config['threshold']:,} "
           f"elements encoded; load average {result['environment']['loadavg_before'][0]:.1f} "
           f"on {result['environment']['cpu_count']} cores at the start"
           + _measured_on(result) + ".", "",
           f"| codec | options | uncompressed s | {head} | uplink CPU, middle half of "
           "round pairs | uplink CPU target |",
           "|---|---|---:|" + "---:|---:|" * len(directions) + "---:|---|"]
  # In CODEC_OPTIONS' order, also for a result read back from JSON with sorted keys.
  order = {name: i for i, name in enumerate(CODEC_OPTIONS)}
  for name in sorted(sweep, key=lambda n: order.get(n, len(order))):
    r = sweep[name]
    options = ", ".join(f"{k}={v}" for k, v in r["options"].items())
    cells = " | ".join(f"{r['wall_ratio'][d]:.2f}x | {r['cpu_ratio'][d]:.2f}x"
                       for d in directions)
    verdict = target_verdict(name, r["cpu_ratio"]) or (
        "none set" if name not in UPLINK_CPU_TARGETS else "")
    spread = ""
    if "uplink" in directions and "samples" in r:
      q1, q3 = pair_ratio_quartiles(r["samples"], "uplink")
      spread = f"{q1:.2f}-{q3:.2f}x"
    lines.append(f"| {name} | {options} | {r['wall_s']['none']:.3f} | {cells} | {spread} "
                 f"| {verdict} |")
  return "\n".join(lines)


# --- memory -------------------------------------------------------------------------


def write_population_sqlite(path: str, num_clients: int, examples_per_client: int,
                            seed: int = 0) -> None:
  """An `emnist_all.sqlite` of `num_clients` digits-only training clients.

  Written by TFF's own `save_to_sql_client_data`; client `f{i:04d}`'s examples depend
  only on (seed, i), so two populations share their first clients exactly. The index
  TFF's published databases carry is added, so a client's query does not scan the file.
  Written to `path.partial` and renamed: `path` exists only whole. TFF refuses to write
  over a file, so a `.partial` left by a write that was killed is removed first.
  """
  import tensorflow as tf
  import tensorflow_federated as tff

  splits = {population_client_id(i, num_clients): _TRAIN_SPLIT for i in range(num_clients)}
  splits["test_0"] = _TEST_SPLIT

  def dataset_fn(client_id: str) -> tf.data.Dataset:
    index = num_clients if client_id == "test_0" else int(client_id[1:])
    rng = np.random.default_rng([seed, index])
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        label=rng.integers(0, 10, examples_per_client).astype(np.int32),
        pixels=rng.random((examples_per_client, 28, 28), dtype=np.float32)))

  partial = path + ".partial"
  if os.path.exists(partial):
    os.remove(partial)
  tff.simulation.datasets.save_to_sql_client_data(
      list(splits), dataset_fn, partial, split_names_by_client_id=splits)
  with sqlite3.connect(partial) as connection:
    connection.execute("CREATE INDEX idx_examples_client_id_split "
                       "ON examples (split_name, client_id)")
    connection.execute("CREATE INDEX idx_metadata_client_id ON client_metadata (client_id)")
  os.replace(partial, path)


def population_client_id(index: int, num_clients: int) -> str:
  """Client `index`'s id in `write_population_sqlite`'s file of `num_clients` clients."""
  return f"f{index:0{max(4, len(str(num_clients - 1)))}d}"


def sampled_clients(config: BenchmarkConfig) -> list[int]:
  """The round's clients, by index: drawn from the first (shared) clients of every
  population. Each population names them its own way (`population_client_id`): ids
  grow a digit past 10,000 clients."""
  from fedcompress.harness.loop import sample_clients

  smallest = min(config.memory_populations)
  common = [population_client_id(i, smallest) for i in range(smallest)]
  return [int(c[1:]) for c in sample_clients(common, config.num_clients, config.seed, 1)]


def driver_memory_probe(cache_dir: str, client_ids: Sequence[str], batch_size: int,
                        seed: int, max_concurrent_clients: int | None) -> dict[str, Any]:
  """One round on sampled clients of `<cache_dir>/emnist_all.sqlite`; peak memory.

  Meant to run in a fresh process (see `measure_driver_memory`): its peak RSS is a
  high-water mark over the process's whole life.
  """
  import tracemalloc

  import fedcompress
  from fedcompress.federated import runtime
  from fedcompress.tasks.image import emnist_task

  runtime.set_local_context(max_concurrent_clients)
  began = time.perf_counter()
  # Python allocations are traced while the data is loaded and the round runs, but not
  # while TFF traces the process: tracemalloc slows that Python-heavy step several times
  # over, and it is the same for every population. The loaded task and datasets stay
  # alive through the round, so its peak counts on top of what loading left.
  tracemalloc.start()
  task = emnist_task(only_digits=True, cache_dir=cache_dir, batch_size=batch_size, seed=seed)
  data = [task.client_dataset(cid, 1) for cid in client_ids]
  loaded, loading_peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  process = fedcompress.build_fedavg(task.model_fn)
  state = process.initialize()
  tracemalloc.start()
  output = process.next(state, data)
  _, round_peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  elapsed = time.perf_counter() - began
  return {
      "population": len(task.client_ids),
      "examples_in_round": int(output.metrics["client_work"]["train"]["num_examples"]),
      "peak_rss_bytes": peak_rss_bytes(),
      "tracemalloc_peak_bytes": int(max(loading_peak, loaded + round_peak)),
      "seconds": elapsed,
  }


def measure_driver_memory(config: BenchmarkConfig) -> dict[str, Any]:
  """Peak driver memory for each population size, one fresh subprocess each."""
  indices = sampled_clients(config)
  with tempfile.TemporaryDirectory(prefix="fedcompress_bench_") as tmp:
    root = config.memory_cache_dir or tmp
    probes = {}
    results = {}
    # One try for the writing too: a probe started before a later population's file
    # fails (or Ctrl-C) must not be left running.
    try:
      for population in config.memory_populations:
        cache_dir = os.path.join(
            root, f"pop{population}_ex{config.memory_examples_per_client}_seed{config.seed}")
        path = os.path.join(cache_dir, "emnist_all.sqlite")
        if not os.path.exists(path):
          os.makedirs(cache_dir, exist_ok=True)
          write_population_sqlite(path, population, config.memory_examples_per_client,
                                  config.seed)
        ids = [population_client_id(i, population) for i in indices]
        args = json.dumps([cache_dir, ids, config.batch_size, config.seed,
                           config.max_concurrent_clients])
        # Probes run side by side: each is its own process, so its VmHWM is its own.
        probes[population] = (path, subprocess.Popen(
            [sys.executable, "-m", "tools.benchmark", "--memory-probe", args],
            stdout=subprocess.PIPE, text=True))
      for population, (path, probe) in probes.items():
        stdout, _ = probe.communicate()
        if probe.returncode != 0:
          raise RuntimeError(f"memory probe for {population} clients failed "
                             f"(exit {probe.returncode}); its stderr is above")
        result = json.loads(stdout.strip().splitlines()[-1])
        result["database_bytes"] = os.path.getsize(path)
        results[str(population)] = result
    finally:
      for _, probe in probes.values():
        if probe.poll() is None:
          probe.kill()
          probe.wait()
  smallest = min(config.memory_populations)
  return {"sampled_clients": [population_client_id(i, smallest) for i in indices],
          "populations": results, **memory_ratios(results)}


def memory_ratios(results: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
  """Peak RSS and tracemalloc peak of the largest population over the smallest's.

  By population size, not by the order given: `--memory_populations=3400,100` divided the
  smaller by the larger, and a driver that grew 30% read 0.77.
  """
  if len(results) < 2:
    return {}
  sizes = sorted(results, key=int)
  small, large = results[sizes[0]], results[sizes[-1]]
  return {"peak_rss_ratio": large["peak_rss_bytes"] / small["peak_rss_bytes"],
          "tracemalloc_peak_ratio": (large["tracemalloc_peak_bytes"]
                                     / small["tracemalloc_peak_bytes"])}


# --- the whole benchmark ------------------------------------------------------------


def run_benchmark(config: BenchmarkConfig = BenchmarkConfig(),
                  output: str | os.PathLike[str] | None = "benchmark.json",
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
  """Runs the timing and memory benchmarks; writes `output` (JSON) unless None.

  Returns:
    The JSON-able result: `times_s` (medians of wall time per contender a-d),
    `ratios` (b/a, c/b, c/d, b/e: each the median of its round pairs' ratios), `cpu_s`
    and `cpu_ratios` (the same from CPU time), every sample, `memory`, `targets`, and the
    environment.
  """
  from fedcompress import native
  from fedcompress.federated import runtime
  from fedcompress.harness import rundir

  runtime.set_local_context(config.max_concurrent_clients)
  load_before = os.getloadavg()
  began = time.perf_counter()
  samples = time_interleaved(build_contenders(config), config.rounds, config.warmup_rounds)
  times = {name: statistics.median(s["wall_s"]) for name, s in samples.items()}
  cpu = {name: statistics.median(s["cpu_s"]) for name, s in samples.items()}
  result: dict[str, Any] = {
      "labels": LABELS,
      "times_s": times,
      "ratios": ratios(samples, "wall_s"),
      "cpu_s": cpu,
      "cpu_ratios": ratios(samples, "cpu_s"),
      "targets": TARGETS,
      "samples": samples,
      "timing_seconds": time.perf_counter() - began,
      "config": dataclasses.asdict(config),
      # The code that measured: the README's figures name a commit, and a dirty tree says so.
      "source": rundir.source(),
      "date": time.strftime("%Y-%m-%d"),
      "environment": {
          "cpu_count": os.cpu_count(),
          "loadavg_before": load_before,
          "loadavg_after_timing": os.getloadavg(),
          "max_concurrent_clients": (config.max_concurrent_clients
                                     if config.max_concurrent_clients is not None
                                     else runtime.default_max_concurrent_clients()),
          # The codecs' native kernels or their graph ops (fedcompress/native).
          "native_kernels": native.ops() is not None,
          "keras_floor": "model.fit, one epoch, same pipeline and examples",
          "memory_metric": "VmHWM of a fresh driver process; tracemalloc peak",
      },
      "peak_rss_bytes_after_timing": peak_rss_bytes(),
      **load_codec_modules(",".join(config.codec_modules)),  # Imported: their record.
  }
  if log:
    log(format_timing(result))
  if config.codecs:
    result["codec_sweep"] = run_codec_sweep(config, log)
    if log:
      log(format_codec_table(result))
  if config.memory_populations:
    try:
      result["memory"] = measure_driver_memory(config)
    except RuntimeError as e:
      # The timing and the codec sweep (most of `make bench`) are kept, and the failure
      # is recorded with them.
      result["memory"] = {"error": str(e)}
      _write_result(result, output)
      raise MemoryProbeError(f"{e}; the timing{' and the codec sweep' if config.codecs else ''}"
                             f" {'are' if config.codecs else 'is'} kept in {output}"
                             if output else str(e)) from e
    result["memory"]["target_peak_rss_ratio"] = MEMORY_TARGET
    if log:
      log(format_memory(result["memory"]))
  _write_result(result, output)
  return result


class MemoryProbeError(RuntimeError):
  """A driver-memory probe failed after the timing, which was written."""


def _write_result(result: Mapping[str, Any], output: str | None) -> None:
  if output is not None:
    with open(output, "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
      f.write("\n")


def format_timing(result: Mapping[str, Any]) -> str:
  lines = [f"median of {result['config']['rounds']} after {result['config']['warmup_rounds']}"
           " warm-up, interleaved (wall s / CPU s incl. worker):"]
  for name, label in LABELS.items():
    lines.append(f"  {name}  {result['times_s'][name]:7.3f}  {result['cpu_s'][name]:7.3f}  "
                 f"{label}")
  parts = [f"{k} {v:.3f} (CPU {result['cpu_ratios'][k]:.3f}"
           + (f", target <= {TARGETS[k]})" if k in TARGETS else ")")
           for k, v in result["ratios"].items()]
  lines.append("ratios: " + "; ".join(parts))
  return "\n".join(lines)


def format_memory(memory: Mapping[str, Any]) -> str:
  parts = [f"{p} clients: peak RSS {r['peak_rss_bytes'] / 2**20:.1f} MiB, Python peak "
           f"{r['tracemalloc_peak_bytes'] / 2**20:.1f} MiB"
           for p, r in memory["populations"].items()]
  line = (f"driver memory, the same round of {len(memory['sampled_clients'])} sampled "
          "clients: " + "; ".join(parts))
  if "peak_rss_ratio" in memory:
    line += (f"; ratio {memory['peak_rss_ratio']:.3f} (target <= "
             f"{memory.get('target_peak_rss_ratio', MEMORY_TARGET)})")
  return line


def _memory_probe_main(argv: Sequence[str]) -> None:
  cache_dir, ids, batch_size, seed, max_concurrent_clients = json.loads(argv[0])
  result = driver_memory_probe(cache_dir, ids, batch_size, seed, max_concurrent_clients)
  print(json.dumps(result), flush=True)


if __name__ == "__main__":
  if sys.argv[1:2] != ["--memory-probe"]:  # Ran as a tool, it did nothing and exited 0.
    raise SystemExit("tools/benchmark.py is the library of `make bench`: run python -m "
                     "tools.run_benchmark (--help for its flags)")
  _memory_probe_main(sys.argv[2:])
