"""The uplink mean's error a bit-allocation plan counts, against the one measured, per width.

  python -m tools.allocation_bias [--codec=eden] [--widths=0.5,0.9,1,1.95,1.98,2]
      [--clients=10] [--kinds=independent,correlated] [--size=16384] [--seeds=5]
      [--output=runs/allocation_bias.json]

The allocator (`fedcompress/codecs/allocation.py`) prices each width `b` by the codec's
normalized MSE `c(b)`, measured on one encode, and counts the error of the clients' mean
as the sum of their independent errors: `c(b) sum_k ||x_k||^2 / N^2` for N equally
weighted clients. That holds when the errors have mean zero. A width that is not whole
(`eden`'s `keep`) decodes the unsent coordinates as 0, a bias toward 0, and the biases
of clients whose updates agree add up in the mean instead of averaging out.

For each width and kind of client vectors (`tools.mean_error`'s: independent,
correlated, identical) this prints the planned and the measured normalized error of
the decoded mean, `||mean_hat - mean||^2 / ||mean||^2` averaged over `--seeds` rounds,
and their ratio, and writes them to `--output`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

from fedcompress.harness.cli import ArgumentParser, check_output_file, run_script
from tools import mean_error as _mean_error
from tools.benchmark import CODEC_MODULES_HELP, load_codec_modules


def planned_error(c: float, vectors) -> float:
  """`c sum_k ||x_k||^2 / N^2`, normalized by the mean's squared norm."""
  import numpy as np

  vectors = vectors.astype(np.float64)
  mean = vectors.mean(axis=0)
  return float(c * np.sum(vectors**2) / len(vectors)**2 / np.sum(mean**2))


def measure(codec: str, width: float, kind: str, clients: int, size: int,
            seeds: Sequence[int]) -> dict:
  """Planned and measured error of the mean at `width`, averaged over `seeds`."""
  from fedcompress.codecs import CodecSpec, allocation

  base = CodecSpec(codec, {}, threshold=0)
  options = allocation.width_options(base, width)
  if options is None:
    raise ValueError(f"{codec} takes no width {width:g}")
  # The figure the plan uses: measured as `AllocatedCodec` measures it. `options` holds
  # `codec`'s inline ones too, so the codec goes by its bare name.
  c = allocation.normalized_mse(CodecSpec(base.name, options, threshold=0))
  planned = statistics.fmean(
      planned_error(c, _mean_error.client_vectors(kind, clients, size, seed)) for seed in seeds)
  measured = statistics.fmean(
      _mean_error.mean_error(base.name, options, kind, clients, size, seeds))
  return {"width": width, "options": options, "kind": kind, "normalized_mse": c,
          "planned": planned, "measured": measured, "ratio": measured / planned}


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--codec", default="eden")
  parser.add_argument("--widths", default="0.5,0.9,1,1.95,1.98,2")
  parser.add_argument("--clients", type=int, default=10)
  parser.add_argument("--kinds", default="independent,correlated")
  parser.add_argument("--size", type=int, default=2**14)
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--output", default="runs/allocation_bias.json")
  parser.add_argument("--codec_modules", default=None, help=CODEC_MODULES_HELP)
  args = parser.parse_args(argv)
  try:  # Before the work: a folder given as the file lost its figures to a traceback.
    check_output_file(args.output)
  except ValueError as e:
    parser.error(f"--output: {e}")
  if args.clients < 1 or args.size < 1 or args.seeds < 1:
    parser.error("--clients, --size and --seeds must be at least 1")
  kinds = args.kinds.split(",")
  if unknown := [k for k in kinds if k not in _mean_error.KINDS]:
    parser.error(f"--kinds: unknown {unknown} (known: {', '.join(_mean_error.KINDS)})")
  import fedcompress

  fedcompress.quiet_tensorflow()
  from fedcompress.codecs import allocation

  try:
    modules = load_codec_modules(args.codec_modules)
  except ValueError as e:
    parser.error(f"--codec_modules: {e}")
  from fedcompress.harness import rundir

  try:
    widths = allocation.parse_widths(args.widths)
  except ValueError as e:
    parser.error(f"--widths: {e}")
  from fedcompress.codecs import CodecSpec

  try:  # Inline options (eden(block_size=256)) go with every width.
    given = sorted({"bits", "keep"} & set(CodecSpec(args.codec, threshold=0).options))
  except ValueError as e:
    parser.error(f"--codec: {e}")
  if given:
    parser.error(f"--codec: the widths set {' and '.join(given)}; leave them out of "
                 f"{args.codec}")
  print(f"{args.codec}, {args.clients} clients, {args.size} coordinates, mean of "
        f"{args.seeds} rounds: normalized squared error of the decoded mean")
  rows = []
  for kind in kinds:
    for width in widths:
      try:
        row = measure(args.codec, width, kind, args.clients, args.size, range(args.seeds))
      except ValueError as e:
        parser.error(str(e))
      rows.append(row)
      print(f"{kind:12s} width {width:<5g} planned {row['planned']:.5f}  measured "
            f"{row['measured']:.5f}  ({row['ratio']:.2f}x)", flush=True)
  with open(args.output, "w") as f:
    json.dump({"codec": args.codec, "clients": args.clients, "size": args.size,
               "seeds": args.seeds, "source": rundir.source(), "rows": rows, **modules}, f,
              indent=1)
  print(f"wrote {args.output}")


if __name__ == "__main__":
  run_script(main)
