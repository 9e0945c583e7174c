"""Where a codec's share of a round goes: client encode, server decode per client, per round.

  python -m tools.codec_cost [--codecs=nonuniform,uniform_huffman] [--reps=9]
      [--no_round] [--benchmark_json=runs/benchmark.json]

In a FedAvg round with an `EncodedSumFactory` aggregator, each client encodes its
update, the server decodes each client's encoding as far as the codec does not commute
with sum (`decode_before_sum`, inside `federated_aggregate`, once per client) and the
sum of those once (`decode_after_sum`). This times the three parts of every codec's
`GatherEncoder` on the tensors the benchmark encodes (the benchmark CNN's variables of
more than `threshold` elements: the 5x5x32x64 conv kernel and the 3136x512 dense
kernel), N(0, 0.01) values, CPU seconds, median of `reps`, interleaved with one
uncompressed FedAvg round of the benchmark's task (10 clients of 100 examples, on the
local TFF worker; its CPU is this process's and the worker's).

The graphs run in a TF1 session configured as TFF 0.87's worker configures its own
(`tensorflow_federated/cc/core/impl/executors/session_provider.cc`): Grappler's meta
optimizer off, graph optimizer level L0, no JIT. The inputs are fed, not constants:
with constant inputs a session with Grappler folds most of a codec away, and the
figures would be a fraction of what the worker spends.

Each codec's cost per client (encode, decode before sum, and its share of the decode
after sum) over the uncompressed round's CPU per client, measured in the same run (this
machine's speed moves by 30% and more from one minute to the next), is the uplink CPU
ratio that the codec's own arithmetic predicts; `--benchmark_json` (a `make bench`
output with a codec sweep) adds the ratio `make bench` measured beside it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from fedcompress import native
from fedcompress.harness.cli import ArgumentParser, run_script
from tools.benchmark import (
  CODEC_MODULES_HELP,
  CODEC_OPTIONS,
  CODECS_HELP,
  BenchmarkConfig,
  codec_options,
  listed_codecs,
  load_codec_modules,
)

PARTS = ("encode", "decode_before_sum", "decode_after_sum")


def worker_session_config(threads: int = 0):
  """`ConfigProto` with the options TFF 0.87's worker gives its sessions."""
  import tensorflow as tf

  config = tf.compat.v1.ConfigProto(inter_op_parallelism_threads=threads,
                                    intra_op_parallelism_threads=threads)
  config.graph_options.rewrite_options.disable_meta_optimizer = True
  config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
  config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.OFF
  config.experimental.optimize_for_static_graph = True
  config.experimental.disable_output_partition_graphs = True
  config.allow_soft_placement = True
  return config


def set_process_threads(threads: int) -> None:
  """Sizes this process's TensorFlow thread pools, before anything creates them (0: leave).

  A session's `ConfigProto` threads do not size the pools its ops run on once the
  process has others: the intra-op pool is created with the process's first device,
  which the Keras model of `benchmark_tensor_shapes` (eager) creates with TensorFlow's
  default, one thread per core. With `--threads=1` set only on the session, a one-thread
  drive encode still spread its CPU over three threads.
  """
  import tensorflow as tf

  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def benchmark_tensor_shapes(threshold: int = BenchmarkConfig.threshold,
                            num_classes: int = 10) -> list[list[int]]:
  """Shapes of the benchmark CNN's trainable variables of more than `threshold` elements."""
  from fedcompress.tasks.models.cnn import create_original_fedavg_cnn

  model = create_original_fedavg_cnn(num_classes, seed=0)
  return [v.shape.as_list() for v in model.trainable_variables
          if math.prod(v.shape.as_list()) > threshold]


class CodecRound:
  """One codec's three parts on `shapes`, built once into a graph and session."""

  def __init__(self, name: str, options: Mapping[str, Any], shapes: Sequence[Sequence[int]],
               seed: int = 0, threads: int = 0):
    import numpy as np
    import tensorflow as tf

    from fedcompress.codecs.spec import CodecSpec

    spec = CodecSpec(name, dict(options), threshold=0)
    rng = np.random.default_rng(seed)
    self.values = [rng.standard_normal(shape).astype(np.float32) * 0.01 for shape in shapes]
    self.graph = tf.Graph()
    with self.graph.as_default():
      encoders = [spec.gather_encoder(tf.TensorSpec(shape, tf.float32)) for shape in shapes]
      self._inputs = [tf.compat.v1.placeholder(tf.float32, shape) for shape in shapes]
      params = [e.get_params(e.initial_state()) for e in encoders]
      self._encoded = [e.encode(x, p[0])[0] for e, x, p in zip(encoders, self._inputs, params,
                                                                strict=True)]
      # The server's parts read placeholders of what the previous part gave.
      self._encoded_in = [tf.nest.map_structure(
          lambda t: tf.compat.v1.placeholder(t.dtype, t.shape), enc) for enc in self._encoded]
      self._parts = [e.decode_before_sum(enc, p[1]) for e, enc, p in zip(
          encoders, self._encoded_in, params, strict=True)]
      self._parts_in = [tf.nest.map_structure(
          lambda t: tf.compat.v1.placeholder(t.dtype, t.shape), part) for part in self._parts]
      self._decoded = [e.decode_after_sum(part, p[2], 1) for e, part, p in zip(
          encoders, self._parts_in, params, strict=True)]
    self.session = tf.compat.v1.Session(graph=self.graph, config=worker_session_config(threads))
    self._feeds = {}
    self.run_all()

  def _feed(self, placeholders, values) -> dict:
    import tensorflow as tf

    return dict(zip(tf.nest.flatten(placeholders), tf.nest.flatten(values), strict=True))

  def run_all(self) -> list:
    """Runs the three parts in turn; returns the decoded tensors (and keeps each feed)."""
    self._feeds["encode"] = dict(zip(self._inputs, self.values, strict=True))
    encoded = self.session.run(self._encoded, self._feeds["encode"])
    self._feeds["decode_before_sum"] = self._feed(self._encoded_in, encoded)
    parts = self.session.run(self._parts, self._feeds["decode_before_sum"])
    self._feeds["decode_after_sum"] = self._feed(self._parts_in, parts)
    return self.session.run(self._decoded, self._feeds["decode_after_sum"])

  def run_part(self, part: str, run_options=None, run_metadata=None) -> None:
    """Runs one of `PARTS` again on the inputs `run_all` gave it.

    `run_options` and `run_metadata` go to `Session.run` (`tools.op_profile` traces).
    """
    fetch = {"encode": self._encoded, "decode_before_sum": self._parts,
             "decode_after_sum": self._decoded}[part]
    self.session.run(fetch, self._feeds[part], options=run_options, run_metadata=run_metadata)

  def close(self) -> None:
    self.session.close()


def uncompressed_round(config: BenchmarkConfig | None = None):
  """`run(repetition)`: one uncompressed fedcompress round of the benchmark's task.

  Installs fedcompress's local TFF context (its worker's CPU counts in the timing).
  """
  import fedcompress
  from fedcompress.federated import runtime
  from tools.benchmark import build_timing_task, round_runner

  config = config or BenchmarkConfig()
  runtime.set_local_context(config.max_concurrent_clients)
  task, _ = build_timing_task(config)
  return round_runner(fedcompress.build_fedavg(task.model_fn), task)


def time_codecs(names: Sequence[str], shapes: Sequence[Sequence[int]], reps: int,
                seed: int = 0, threads: int = 0, round_runner=None
                ) -> dict[str, dict[str, float]]:
  """`{codec: {part: median CPU seconds}}` (and `{'round': ..}`), all runs interleaved.

  Args:
    round_runner: if given, `run(repetition)` of the uncompressed round, timed with the
      codecs' parts under the key 'round'. Every contender runs once untimed first.
  """
  from tools.benchmark import time_interleaved

  rounds = {name: CodecRound(name, codec_options(name), shapes, seed, threads) for name in names}
  runners = {f"{name}/{part}": (lambda rep, r=rounds[name], p=part: r.run_part(p))
             for name in names for part in PARTS}
  if round_runner is not None:
    runners["round"] = round_runner
  # One untimed pass of every part: without the round there was none, and the first
  # codec's first encode (~1 s cold against ~7 ms) was the figure printed at --reps=1.
  samples = time_interleaved(runners, reps, warmup_rounds=1)
  for codec_round in rounds.values():
    codec_round.close()
  out = {name: {part: statistics.median(samples[f"{name}/{part}"]["cpu_s"]) for part in PARTS}
         for name in names}
  if round_runner is not None:
    out["round"] = {"cpu_s": statistics.median(samples["round"]["cpu_s"])}
  return out


def per_client_s(costs: Mapping[str, float], num_clients: int) -> float:
  """A codec's uplink CPU per client: encode and decode before sum, plus a share of the rest."""
  return (costs["encode"] + costs["decode_before_sum"]
          + costs["decode_after_sum"] / num_clients)


def predicted_ratio(costs: Mapping[str, float], round_cpu_s: float, num_clients: int) -> float:
  """1 + (codec CPU per client) / (uncompressed round CPU per client)."""
  return 1 + per_client_s(costs, num_clients) / (round_cpu_s / num_clients)


def measured_ratios(benchmark: Mapping[str, Any]) -> dict[str, float]:
  """`{codec: uplink CPU ratio}` of a `make bench` JSON's codec sweep.

  Raises:
    ValueError: the sweep's codecs are not objects of ratios (R8 of s48: a list there
      ended in an AttributeError traceback).
  """
  codecs = benchmark.get("codec_sweep", {}).get("codecs", {})

  def ratio_ok(run) -> bool:  # A string or null ratio failed at the table, after timing.
    ratios = run.get("cpu_ratio", {}) if isinstance(run, dict) else None
    uplink = ratios.get("uplink", 1.0) if isinstance(ratios, dict) else None
    return isinstance(uplink, int | float) and not isinstance(uplink, bool)

  if not isinstance(codecs, dict) or not all(ratio_ok(run) for run in codecs.values()):
    raise ValueError("its codec_sweep.codecs is not an object of codecs and their ratios")
  return {name: run["cpu_ratio"]["uplink"] for name, run in codecs.items()
          if "uplink" in run.get("cpu_ratio", {})}


# The settings a round's cost depends on, which a `make bench` JSON must share with the
# prediction for its ratios to stand beside it.
_ROUND_SETTINGS = ("num_clients", "examples_per_client", "batch_size", "threshold",
                   "max_concurrent_clients")


def _recorded_options(benchmark_result: Mapping[str, Any], name: str) -> Any:
  return benchmark_result["codec_sweep"]["codecs"][name].get("options")


def _other_settings(benchmark_result: Mapping[str, Any], config: BenchmarkConfig) -> list[str]:
  """`name=recorded (here value)` for each round setting the JSON ran with otherwise."""
  recorded = benchmark_result.get("config", {})
  return [f"{k}={recorded.get(k)} (here {getattr(config, k)})" for k in _ROUND_SETTINGS
          if recorded.get(k) != getattr(config, k)]


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--codecs", default=",".join(CODEC_OPTIONS), help=CODECS_HELP)
  parser.add_argument("--reps", type=int, default=9)
  parser.add_argument("--threads", type=int, default=0,
                      help="TensorFlow inter- and intra-op threads of this process, which "
                           "runs the codecs (0: TensorFlow's default, as in TFF's worker)")
  parser.add_argument("--no_round", action="store_true",
                      help="time the codecs only, not the uncompressed round (no prediction)")
  parser.add_argument("--benchmark_json", default=None,
                      help="a `make bench` JSON with a codec sweep: its measured ratios")
  parser.add_argument("--codec_modules", default=None, help=CODEC_MODULES_HELP)
  args = parser.parse_args(argv)
  if args.reps < 1:
    parser.error("--reps must be >= 1")
  if args.threads < 0:  # TensorFlow aborts the process on it (SIGABRT, a core dump).
    parser.error(f"--threads must be >= 0, got {args.threads}")
  measured = {}
  if args.benchmark_json:
    try:
      with open(args.benchmark_json) as f:
        benchmark_result = json.load(f)
      if not (isinstance(benchmark_result, dict)
              and isinstance(benchmark_result.get("config"), dict)
              and isinstance(benchmark_result.get("codec_sweep"), dict)):
        # A list, or a config that is not one, ended in an AttributeError traceback, and
        # a benchmark without a codec sweep left the column out unsaid (R7 of s48).
        raise ValueError("not a `make bench` JSON with a codec sweep (`config` and "
                         "`codec_sweep` objects)")
      measured = measured_ratios(benchmark_result)
    except (OSError, ValueError) as e:
      parser.error(f"cannot read --benchmark_json {args.benchmark_json}: {e}")
    if differing := _other_settings(benchmark_result, BenchmarkConfig()):
      # Its ratios would stand beside predictions for another round (a 2-client
      # benchmark's topk read 10.37x here against a predicted 1.08x, without a word).
      print(f"warning: {args.benchmark_json} was measured with other settings "
            f"({', '.join(differing)}): its ratios are left out", flush=True)
      measured = {}
  import fedcompress

  fedcompress.quiet_tensorflow()  # Before TensorFlow loads, as in the other tools.
  set_process_threads(args.threads)
  native.use()  # The codecs as TFF's worker runs them: with the native kernels.
  # After: a module of one's own may build tensors when imported.
  try:
    load_codec_modules(args.codec_modules)
  except ValueError as e:
    parser.error(f"--codec_modules: {e}")
  try:
    names = listed_codecs(args.codecs)
  except ValueError as e:
    parser.error(str(e))
  for name in names:
    try:
      codec_options(name)
    except ValueError as e:
      parser.error(str(e))
  if stale := [n for n in names if n in measured and _recorded_options(benchmark_result, n)
               != codec_options(n)]:
    # Its ratio was of other options (a 2-bit run beside an 8-bit prediction).
    print(f"warning: {args.benchmark_json} timed {', '.join(stale)} with other options than "
          "these: their ratios are left out", flush=True)
    measured = {n: r for n, r in measured.items() if n not in stale}
  shapes = benchmark_tensor_shapes()
  config = BenchmarkConfig()
  round_runner = None if args.no_round else uncompressed_round(config)
  print(f"tensors: {', '.join('x'.join(map(str, s)) for s in shapes)}; median CPU ms of "
        f"{args.reps} interleaved runs", flush=True)
  try:
    costs = time_codecs(names, shapes, args.reps, threads=args.threads,
                        round_runner=round_runner)
  finally:
    if round_runner is not None:
      from fedcompress.federated import runtime
      runtime.shutdown()
  header = f"{'codec':16s} {'encode':>8s} {'decode<sum':>11s} {'decode>sum':>11s}"
  if round_runner is not None:
    round_cpu_s = costs["round"]["cpu_s"]
    print(f"uncompressed round: {round_cpu_s * 1e3:.1f} ms of CPU, "
          f"{round_cpu_s / config.num_clients * 1e3:.1f} per client")
    header += f" {'per client':>11s} {'predicted':>10s}"
    if measured:
      header += f" {'make bench':>11s}"
  print(header)
  for name in names:
    c = costs[name]
    line = (f"{name:16s} {c['encode'] * 1e3:8.1f} {c['decode_before_sum'] * 1e3:11.1f} "
            f"{c['decode_after_sum'] * 1e3:11.1f}")
    if round_runner is not None:
      line += (f" {per_client_s(c, config.num_clients) * 1e3:11.1f} "
               f"{predicted_ratio(c, round_cpu_s, config.num_clients):9.2f}x")
      if name in measured:
        line += f" {measured[name]:10.2f}x"
    print(line)


if __name__ == "__main__":
  run_script(main)
