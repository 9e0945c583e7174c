"""The error of a round's mean: clients rotating independently against one shared rotation.

  python -m tools.mean_error [--clients=10] [--size=65536] [--seeds=20]
      [--output=runs/mean_error.json]

`drive` and `eden` rotate each client's update with its own seed by default, so the
server inverts one rotation per client; with `shared_rotation=true` a round's clients
share one, and the server inverts it once, on the sum (`tools.codec_cost` times both).
Each estimate stays unbiased, but with a shared rotation the clients' errors are
correlated. This measures what that costs: the normalized squared error of the decoded
mean, `||mean_hat - mean||^2 / ||mean||^2`, averaged over `--seeds` rounds (each seed
draws new client vectors and new rotations), for clients whose float32 vectors are

* independent: each N(0, I);
* correlated: a common N(0, I) part plus 0.3 times each client's own (correlation
  0.92 between two clients, like the updates of clients of one model);
* identical: the same vector.

Each round runs as the aggregation does: the codec's `GatherEncoder`, its parameters
drawn once, every client's encode and decode before the sum, the sum, the decode after
it. Prints a row per codec and kind, and writes them to `--output`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from fedcompress.harness.cli import ArgumentParser, check_output_file, run_script

CODECS = (("drive", {}), ("eden", {"bits": 2}))
KINDS = ("independent", "correlated", "identical")
# The clients' own part beside the common one, for `correlated`.
OWN_PART = 0.3


def client_vectors(kind: str, clients: int, size: int, seed: int):
  """The `clients` float32 vectors of one round (see the module docstring)."""
  import numpy as np

  rng = np.random.default_rng(seed)
  common = rng.standard_normal(size)
  if kind == "independent":
    vectors = rng.standard_normal([clients, size])
  elif kind == "correlated":
    vectors = common + OWN_PART * rng.standard_normal([clients, size])
  elif kind == "identical":
    vectors = np.tile(common, [clients, 1])
  else:
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
  return vectors.astype(np.float32)


def mean_error(codec: str, options: dict, kind: str, clients: int, size: int,
               seeds: Sequence[int]) -> list[float]:
  """The normalized squared error of the decoded mean, one figure per seed."""
  import numpy as np
  import tensorflow as tf

  from fedcompress.codecs import CodecSpec

  encoder = CodecSpec(codec, options, threshold=0).gather_encoder(
      tf.TensorSpec([size], tf.float32))
  errors = []
  for seed in seeds:
    vectors = client_vectors(kind, clients, size, seed)
    tf.random.set_seed(seed)
    encode_params, before_params, after_params = encoder.get_params(encoder.initial_state())
    parts = [encoder.decode_before_sum(encoder.encode(tf.constant(x), encode_params)[0],
                                       before_params) for x in vectors]
    total = tf.nest.map_structure(lambda *t: tf.add_n(t), *parts)
    estimate = encoder.decode_after_sum(total, after_params, clients).numpy() / clients
    exact = vectors.astype(np.float64).mean(axis=0)
    errors.append(float(np.sum((estimate - exact)**2) / np.sum(exact**2)))
  return errors


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--clients", type=int, default=10)
  parser.add_argument("--size", type=int, default=2**16)
  parser.add_argument("--seeds", type=int, default=20)
  parser.add_argument("--output", default="runs/mean_error.json")
  args = parser.parse_args(argv)
  try:  # Before the work: a folder given as the file lost its figures to a traceback.
    check_output_file(args.output)
  except ValueError as e:
    parser.error(f"--output: {e}")
  if args.clients < 1 or args.size < 2 or args.seeds < 1:
    # One coordinate rotates exactly: its error is 0, and the ratio divided by it.
    parser.error("--clients and --seeds must be at least 1, and --size at least 2")
  import fedcompress
  from fedcompress.harness import rundir

  fedcompress.quiet_tensorflow()
  rows = []
  print(f"{args.clients} clients, {args.size} coordinates, mean of {args.seeds} rounds: "
        "normalized squared error of the decoded mean")
  for codec, options in CODECS:
    for kind in KINDS:
      row = {"codec": codec, "options": options, "kind": kind}
      for shared in (False, True):
        errors = mean_error(codec, {**options, "shared_rotation": shared}, kind,
                            args.clients, args.size, range(args.seeds))
        row["shared" if shared else "independent_rotations"] = statistics.fmean(errors)
      # None where the own rotations' error is 0 (exact decodes): no ratio to it.
      row["ratio"] = (row["shared"] / row["independent_rotations"]
                      if row["independent_rotations"] else None)
      rows.append(row)
      ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}x"
      print(f"{codec} {options or ''} {kind:12s} own rotations "
            f"{row['independent_rotations']:.5f}  shared {row['shared']:.5f}  "
            f"({ratio})", flush=True)
  with open(args.output, "w") as f:
    # The code that measured, as run records name it (the figures move with the codecs).
    json.dump({"clients": args.clients, "size": args.size, "seeds": args.seeds,
               "own_part": OWN_PART, "source": rundir.source(), "rows": rows}, f, indent=1)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  run_script(main)
