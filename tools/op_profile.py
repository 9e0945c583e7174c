"""Op by op: where one part of a codec's round spends its CPU, in a worker-like session.

  python -m tools.op_profile --codec=nonuniform [--part=encode] [--threads=1]
      [--options=bits=3] [--shapes=3136x512,5x5x32x64]
      [--reps=9] [--traced=5] [--top=15] [--output=runs/op_profile.json]

`tools.codec_cost` times a codec's three parts (client encode, server decode before
sum, decode after sum) as wholes; this takes one of them apart. The part runs on the
tensors the benchmark encodes (or `--shapes`), with the benchmark's options for the
codec (or `--options`, as the codec flags write them), in the same session as
`codec_cost`'s (TFF 0.87's worker options: no Grappler, fed inputs), first untraced for
its CPU time (median of `reps`), then `traced` times with TensorFlow's step statistics,
which give every op run's time. It prints and writes (JSON) the CPU time, the summed op
time and the number of op runs, then the op types and the name scopes (stage by stage,
per encoded tensor) that took longest.

What the figures are. An op's time is from its start to its end on its thread, with the
tracing's own cost in it, so for a part made of tens of thousands of small ops the
summed op time can exceed the untraced CPU (uniform_huffman's decode before sum: 50.1
ms of op time in 41,991 op runs against 38.9 ms of CPU on 959fbad). With TensorFlow's
default threads (`--threads=0`, as the worker runs) ops of one part overlap and wait on
each other, so the summed times are not CPU; `--threads=1` gives the clean attribution,
and the CPU it does not account for is the executor's own work between ops.
"""

from __future__ import annotations

import collections
import json
import re
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fedcompress import native
from fedcompress.harness.cli import ArgumentParser, check_output_file, run_script
from tools.benchmark import CODEC_MODULES_HELP, CODEC_OPTIONS, codec_options, load_codec_modules
from tools.codec_cost import PARTS, CodecRound, benchmark_tensor_shapes, set_process_threads

# Name scopes that add nothing to where a node sits: tensor_encoding's and TF's wrappers,
# and the numbered branch and body functions of `tf.cond` / `tf.while_loop`.
_NOISE_SCOPE = re.compile(r"^(encoder_(encode|decode\w*)|_\d+|flatten|flattened_values)$")
# `gather_encoder_<part>` (first tensor) or `..._<k>` (tensor k): which tensor a node is of.
_TENSOR_SCOPE = re.compile(r"^gather_encoder_\w+?(?:_(\d+))?$")


def op_type(node_stats) -> str:
  """The op type of a traced node (`timeline_label` reads 'name = Type(inputs)')."""
  label = node_stats.timeline_label
  if " = " in label:
    return label.split(" = ", 1)[1].split("(", 1)[0].strip()
  return node_stats.node_name  # _SOURCE and other executor-internal entries.


def scope_of(node_name: str, depth: int) -> str:
  """'tensor k: stage/.../scope' of a node, `depth` meaningful scopes deep."""
  parts = node_name.split("/")
  match = _TENSOR_SCOPE.match(parts[0])
  tensor = f"tensor {match.group(1) or 0}" if match else parts[0]
  kept = [p for p in parts[1:-1] if not _NOISE_SCOPE.match(p)]
  return f"{tensor}: {'/'.join(kept[:depth]) or '(top)'}"


def summarize(step_stats_runs: Sequence[Any], depth: int = 3) -> dict[str, Any]:
  """Per-run mean op time (ms) and runs by op type and by scope, over traced runs."""
  by_type = collections.defaultdict(lambda: [0.0, 0])
  by_scope = collections.defaultdict(lambda: [0.0, 0])
  for step_stats in step_stats_runs:
    for device in step_stats.dev_stats:
      for node in device.node_stats:
        us = node.op_end_rel_micros - node.op_start_rel_micros
        for table, key in ((by_type, op_type(node)), (by_scope, scope_of(node.node_name, depth))):
          table[key][0] += us
          table[key][1] += 1
  runs = max(len(step_stats_runs), 1)

  def rows(table):
    ordered = sorted(table.items(), key=lambda kv: -kv[1][0])
    return [{"name": k, "ms": us / runs / 1e3, "runs": count // runs} for k, (us, count) in ordered]

  type_rows = rows(by_type)
  return {"op_time_ms": sum(r["ms"] for r in type_rows),
          "op_runs": sum(r["runs"] for r in type_rows),
          "by_type": type_rows, "by_scope": rows(by_scope)}


def profile(codec: str, part: str, options: Mapping[str, Any] | None = None,
            shapes: Sequence[Sequence[int]] | None = None, threads: int = 1, reps: int = 9,
            traced: int = 5, depth: int = 3, seed: int = 0) -> dict[str, Any]:
  """CPU time and traced op times of one part of `codec` (see the module docstring)."""
  import tensorflow as tf

  if part not in PARTS:
    raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}")
  options = dict(codec_options(codec) if options is None else options)
  shapes = [list(s) for s in (benchmark_tensor_shapes() if shapes is None else shapes)]
  codec_round = CodecRound(codec, options, shapes, seed=seed, threads=threads)
  try:
    for _ in range(2):  # Warm-up: the first runs allocate and build kernels.
      codec_round.run_part(part)
    cpu = []
    for _ in range(reps):
      start = time.process_time()
      codec_round.run_part(part)
      cpu.append(time.process_time() - start)
    traces = []
    for _ in range(traced):
      metadata = tf.compat.v1.RunMetadata()
      codec_round.run_part(part, run_options=tf.compat.v1.RunOptions(
          trace_level=tf.compat.v1.RunOptions.FULL_TRACE), run_metadata=metadata)
      traces.append(metadata.step_stats)
  finally:
    codec_round.close()
  return {"codec": codec, "options": options, "part": part, "shapes": shapes,
          "threads": threads, "reps": reps, "traced": traced,
          "cpu_ms": statistics.median(cpu) * 1e3, **summarize(traces, depth)}


def format_profile(result: Mapping[str, Any], top: int) -> str:
  tensors = " and ".join("x".join(map(str, s)) for s in result["shapes"])
  lines = [f"{result['codec']} {result['part']} on {tensors}, threads={result['threads']}: "
           f"CPU {result['cpu_ms']:.1f} ms (median of {result['reps']}); "
           f"op time {result['op_time_ms']:.1f} ms in {result['op_runs']} op runs "
           f"(mean of {result['traced']} traced runs)"]
  for title, key in (("op type", "by_type"), ("scope", "by_scope")):
    lines.append(f"  {title:72s} {'ms':>7s} {'runs':>7s}")
    lines += [f"  {r['name'][-72:]:72s} {r['ms']:7.2f} {r['runs']:7d}" for r in result[key][:top]]
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--codec", required=True,
                      help=f"one of: {', '.join(CODEC_OPTIONS)}, one with inline options, as "
                      "drive(shared_rotation=true), or one a --codec_modules entry registers")
  parser.add_argument("--part", default="encode", choices=PARTS)
  parser.add_argument("--threads", type=int, default=1,
                      help="inter- and intra-op threads (0: TensorFlow's default, as the "
                           "worker runs; 1 attributes time to ops cleanly)")
  parser.add_argument("--reps", type=int, default=9, help="untraced runs for the CPU median")
  parser.add_argument("--traced", type=int, default=5, help="traced runs for the op times")
  parser.add_argument("--top", type=int, default=15)
  parser.add_argument("--depth", type=int, default=3, help="name scopes kept per node")
  parser.add_argument("--options", default=None,
                      help="the codec's options as key=value,... (default: the benchmark's)")
  parser.add_argument("--shapes", default=None,
                      help="tensors as 3136x512,5x5x32x64 (default: the benchmark's)")
  parser.add_argument("--output", default=None, help="also write the figures to this JSON")
  parser.add_argument("--codec_modules", default=None, help=CODEC_MODULES_HELP)
  args = parser.parse_args(argv)
  if args.output is not None:
    try:  # Before the work: a folder given as the file lost its figures to a traceback.
      check_output_file(args.output)
    except ValueError as e:
      parser.error(f"--output: {e}")
  for name in ("reps", "traced", "top", "depth"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  if args.threads < 0:
    parser.error("--threads must be >= 0")
  import fedcompress

  fedcompress.quiet_tensorflow()  # Before TensorFlow loads: it reads its log level only then.
  set_process_threads(args.threads)  # Before anything creates TensorFlow's thread pools.
  native.use()  # The codecs as TFF's worker runs them: with the native kernels.
  # After: a module of one's own may build tensors when imported.
  try:
    modules = load_codec_modules(args.codec_modules)
  except ValueError as e:
    parser.error(f"--codec_modules: {e}")
  try:
    codec_options(args.codec)  # One with inline options, or a module's: its own check.
  except ValueError as e:
    parser.error(str(e))
  from fedcompress.codecs.spec import CodecSpec, parse_options

  options = None
  if args.options is not None:
    try:
      options = parse_options(args.options)
      CodecSpec(args.codec, options, threshold=0)  # Checks the options now, not mid-build.
    except (TypeError, ValueError) as e:
      parser.error(f"--options: {e}")
  shapes = None
  if args.shapes is not None:
    try:
      shapes = [[int(d) for d in shape.split("x")] for shape in args.shapes.split(",")]
    except ValueError:
      shapes = None
    if not shapes or any(d < 1 for shape in shapes for d in shape):
      parser.error(f"--shapes must be like 3136x512,5x5x32x64, got {args.shapes!r}")
  result = {**profile(args.codec, args.part, options=options, shapes=shapes,
                     threads=args.threads, reps=args.reps, traced=args.traced,
                     depth=args.depth), **modules}
  print(format_profile(result, args.top))
  if args.output:
    with open(args.output, "w") as f:
      json.dump(result, f, indent=1)
    print(f"wrote {args.output}")


if __name__ == "__main__":
  run_script(main)
