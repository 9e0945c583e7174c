"""Benchmark: how long building a FedAvg process takes, first and again, in a fresh process.

  python -m tools.build_time [--codecs=none,uniform,drive] [--output=runs/build_time.json]

Each codec is measured in its own fresh interpreter (the first build of a process pays
autograph's source conversion and TensorFlow's first traces; a binary, a notebook kernel
and every test subprocess pay it): `build_fedavg` of the tutorial CNN on the digits
task with the codec both ways (threshold 10,000; a codec with the options `make bench`
sweeps it with, or its own: `--codecs=none,uniform(bits=2,word_bits=32)`), twice, wall
and CPU seconds of each. The codecs are checked before anything is built. Prints a table
and writes the figures to `--output`, with the task's settings, the threshold and the
commit; a codec whose build fails is named there and on stderr, and the others' figures
are kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from absl import app, flags

from fedcompress.federated import quiet
from fedcompress.harness import rundir
from fedcompress.harness.cli import check_output_file, fail, interruptible, parse_flags
from tools.benchmark import CODEC_MODULES_HELP, codec_options, listed_codecs, load_codec_modules

FLAGS = flags.FLAGS
# A string, split by `listed_codecs`: absl's list flag would split a codec's options too.
flags.DEFINE_string("codecs", "none,uniform,drive,uniform_huffman",
                    "Codecs to build with, comma-separated ('none' = no codec; a codec may "
                    "carry its options, as uniform(bits=2,word_bits=32)).")
flags.DEFINE_string("output", "runs/build_time.json", "JSON file of the figures.")
flags.DEFINE_string("codec_modules", None, CODEC_MODULES_HELP)
THRESHOLD = 10_000


def _measure(codec: str) -> dict[str, Any]:
  """In this process: build twice, return wall and CPU seconds of each build, and the
  task's settings."""
  import tensorflow_federated as tff

  from fedcompress import tasks
  from fedcompress.codecs import CodecSpec
  from fedcompress.federated import runtime
  from fedcompress.federated.fedavg import build_fedavg

  runtime.install()
  task = tasks.digits_task(num_clients=2, seed=0)
  # The options `make bench` sweeps a codec with, those main() checked.
  spec = None if codec == "none" else CodecSpec(codec, codec_options(codec),
                                                threshold=THRESHOLD)
  out = {"task": dict(task.settings), "options": dict(spec.options) if spec else {}}
  for which in ("first", "second"):
    wall, cpu = time.perf_counter(), time.process_time()
    build_fedavg(task.model_fn, tff.learning.optimizers.build_sgdm(0.02),
                 broadcast_codec=spec, aggregate_codec=spec)
    out[f"{which}_wall_s"] = time.perf_counter() - wall
    out[f"{which}_cpu_s"] = time.process_time() - cpu
  return out


def main(argv) -> int:
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    codecs = listed_codecs(FLAGS.codecs)
  except ValueError as e:
    return fail(str(e))
  try:
    modules = load_codec_modules(FLAGS.codec_modules)
  except ValueError as e:
    return fail(f"--codec_modules: {e}")
  try:
    for codec in codecs:
      if codec != "none":
        codec_options(codec)  # Unknown names and bad options fail now, not in a child.
  except ValueError as e:
    return fail(f"--codecs: {e}")
  try:  # Checked now, not after the builds: a bad --output would lose their figures.
    check_output_file(FLAGS.output)
  except ValueError as e:
    return fail(f"--output: {e}")
  results, failed, task = {}, {}, None
  for codec in codecs:
    probe = subprocess.run([sys.executable, "-m", "tools.build_time", "--probe", codec,
                            *modules.get("codec_modules", [])],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
      # The child's own last lines (its traceback), then on with the other codecs.
      sys.stderr.write(probe.stderr[-2000:])
      print(f"{codec:16s} failed (exit {probe.returncode})", flush=True)
      failed[codec] = {"exit": probe.returncode, "stderr": probe.stderr[-2000:]}
      continue
    r = results[codec] = json.loads(probe.stdout.strip().splitlines()[-1])
    task = r.pop("task")  # Every child builds the same task: recorded once.
    print(f"{codec:16s} first build {r['first_wall_s']:6.1f} s wall {r['first_cpu_s']:6.1f} s "
          f"CPU; again {r['second_wall_s']:6.1f} s wall {r['second_cpu_s']:6.1f} s CPU",
          flush=True)
  with open(FLAGS.output, "w") as f:
    json.dump({"codecs": results, "failed": failed, "threshold": THRESHOLD, "task": task,
               "source": rundir.source(), "loadavg": os.getloadavg(), **modules},
              f, indent=2, sort_keys=True)
    f.write("\n")
  if failed:
    return fail(f"building with {', '.join(failed)} failed (see above); the figures of "
                f"the others are in {FLAGS.output}", 1)
  return 0


if __name__ == "__main__":
  # First: TensorFlow reads its log level once, when it loads (in a child's build and in
  # main's check of a codec's options).
  quiet.quiet_tensorflow()
  if len(sys.argv) >= 3 and sys.argv[1] == "--probe":  # One codec, in this fresh process.
    load_codec_modules(",".join(sys.argv[3:]))  # The --codec_modules entries, if any.
    print(json.dumps(_measure(sys.argv[2])))
  else:
    app.run(interruptible(main), flags_parser=parse_flags)
