"""Benchmark: how long building a FedAvg process takes, first and again, in a fresh process.

  python -m tools.build_time [--codecs=none,uniform,drive] [--output=runs/build_time.json]

Each codec is measured in its own fresh interpreter (the first build of a process pays
autograph's source conversion and TensorFlow's first traces; a binary, a notebook kernel
and every test subprocess pay it): `build_fedavg` of the tutorial CNN on the digits
task with the codec both ways (threshold 10,000), twice, wall and CPU seconds of each.
Prints a table and writes the figures to `--output`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("codecs", ["none", "uniform", "drive", "uniform_huffman"],
                  "Codecs to build with ('none' = no codec).")
flags.DEFINE_string("output", "runs/build_time.json", "JSON file of the figures.")


def _measure(codec: str) -> dict[str, float]:
  """In this process: build twice, return wall and CPU seconds of each build."""
  from fedcompress.federated import quiet

  quiet.quiet_tensorflow()
  import tensorflow_federated as tff

  from fedcompress import tasks
  from fedcompress.codecs import CodecSpec
  from fedcompress.federated import runtime
  from fedcompress.federated.fedavg import build_fedavg

  runtime.install()
  task = tasks.digits_task(num_clients=2, seed=0)
  spec = None if codec == "none" else CodecSpec(codec, {}, threshold=10_000)
  out = {}
  for which in ("first", "second"):
    wall, cpu = time.perf_counter(), time.process_time()
    build_fedavg(task.model_fn, tff.learning.optimizers.build_sgdm(0.02),
                 broadcast_codec=spec, aggregate_codec=spec)
    out[f"{which}_wall_s"] = time.perf_counter() - wall
    out[f"{which}_cpu_s"] = time.process_time() - cpu
  return out


def main(argv) -> int:
  del argv
  results = {}
  for codec in FLAGS.codecs:
    probe = subprocess.run([sys.executable, "-m", "tools.build_time", "--probe", codec],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
      sys.stderr.write(probe.stderr[-2000:])
      print(f"error: building with {codec} failed (exit {probe.returncode})", file=sys.stderr)
      return 1
    results[codec] = json.loads(probe.stdout.strip().splitlines()[-1])
    r = results[codec]
    print(f"{codec:16s} first build {r['first_wall_s']:6.1f} s wall {r['first_cpu_s']:6.1f} s "
          f"CPU; again {r['second_wall_s']:6.1f} s wall {r['second_cpu_s']:6.1f} s CPU",
          flush=True)
  os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
  with open(FLAGS.output, "w") as f:
    json.dump({"codecs": results, "loadavg": os.getloadavg()}, f, indent=2, sort_keys=True)
    f.write("\n")
  return 0


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == "--probe":  # One codec, in this fresh process.
    print(json.dumps(_measure(sys.argv[2])))
  else:
    app.run(main)
