"""The rotation codecs' normalized MSE against their papers' figures, over seeds.

  python -m tools.codec_error [--seeds=10] [--size=1048576] [--block_size=0]
      [--output=runs/codec_error.json]

One round trip of a float32 N(0, 1) vector per seed (a new vector and new rotations
each), `||x - x_hat||^2 / ||x||^2`, averaged over the seeds: DRIVE pi/2 - 1 (Vargaftik
et al., NeurIPS 2021), EDEN at 1-4 bits `D_b / (1 - D_b)` for the Gaussian Lloyd-Max
distortions (Vargaftik et al., ICML 2022; the figures of `tests/codecs/stages/
test_eden.py`). Prints each codec's mean, its standard error, and its deviation from
the figure, and writes them to `--output`. A change to the rotation's random draws
(same distribution, other values) shows here whether the error figures still hold.

The papers' figures are for large blocks: `--block_size=0` (the default) rotates the
whole vector as one block. The codecs' own default, 2048, measures their error as they
run (10 seeds of 2^20 put EDEN's 4 bits at -0.29% there against +0.01% in one block).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence

from fedcompress.harness.cli import ArgumentParser, check_output_file, run_script

# (label, codec, options, published normalized MSE).
CASES = (("drive", "drive", {}, math.pi / 2 - 1),
         ("eden-1bit", "eden", {"bits": 1}, 0.5708),
         ("eden-2bit", "eden", {"bits": 2}, 0.1331),
         ("eden-3bit", "eden", {"bits": 3}, 0.03578),
         ("eden-4bit", "eden", {"bits": 4}, 0.009588))


def normalized_mse(codec: str, options: dict, size: int, seeds: Sequence[int]) -> list[float]:
  """One round trip's normalized MSE per seed (the seed draws the vector and rotations)."""
  import numpy as np
  import tensorflow as tf

  from fedcompress.codecs import testing

  errors = []
  for seed in seeds:
    x = np.random.default_rng(seed).standard_normal(size).astype(np.float32)
    tf.random.set_seed(seed)
    # Built after the seed: SimpleEncoder traces its encode when built, and its draws'
    # seeds are fixed then (built once, every seed had the same rotations, and the first
    # codec's changed from one run to the next).
    encoder = testing.simple_encoder(codec, tf.TensorSpec([size], tf.float32), **options)
    decoded = testing.round_trip(encoder, x)[1].numpy().astype(np.float64)
    x64 = x.astype(np.float64)
    errors.append(float(np.sum((decoded - x64)**2) / np.sum(x64**2)))
  return errors


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=10)
  parser.add_argument("--size", type=int, default=2**20)
  parser.add_argument("--block_size", type=int, default=0,
                      help="rotation block (0: the whole vector, as the papers' figures)")
  parser.add_argument("--output", default="runs/codec_error.json")
  args = parser.parse_args(argv)
  try:  # Before the work: a folder given as the file lost its figures to a traceback.
    check_output_file(args.output)
  except ValueError as e:
    parser.error(f"--output: {e}")
  if args.seeds < 2 or args.size < 1:
    parser.error("--seeds must be at least 2 and --size at least 1")
  import fedcompress
  from fedcompress.harness import rundir

  fedcompress.quiet_tensorflow()
  from fedcompress.codecs.stages import rotation

  try:
    rotation.check_block_size(args.block_size)
  except ValueError as e:
    parser.error(f"--block_size: {e}")
  print(f"{args.seeds} seeds of {args.size} N(0, 1) values, rotation blocks of "
        f"{args.block_size or 'the whole vector'}", flush=True)
  rows = []
  for label, codec, options, expected in CASES:
    options = {**options, "block_size": args.block_size}
    errors = normalized_mse(codec, options, args.size, range(args.seeds))
    mean = statistics.fmean(errors)
    row = {"case": label, "codec": codec, "options": options, "published": expected,
           "mean": mean, "stderr": statistics.stdev(errors) / math.sqrt(len(errors)),
           "deviation": mean / expected - 1, "per_seed": errors}
    rows.append(row)
    print(f"{label:10s} {mean:.6f} +- {row['stderr']:.6f}  published {expected:.6f}  "
          f"{100 * row['deviation']:+.2f}%", flush=True)
  with open(args.output, "w") as f:
    # The code that measured: a change to the rotations' draws is what this is run for.
    json.dump({"seeds": args.seeds, "size": args.size, "block_size": args.block_size,
               "source": rundir.source(),
               "cases": rows}, f, indent=1)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  run_script(main)
