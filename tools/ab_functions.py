"""A codec's parts with another checkout's version of some functions, interleaved in one process.

  git worktree add /tmp/base <commit>
  python -m tools.ab_functions --base=/tmp/base --module=fedcompress.codecs.stages.rotation
      --names=_rotate,fast_walsh_hadamard --codecs=drive,eden [--reps=41] [--threads=1]

`tools.op_profile` run on two checkouts one after the other compares processes under
whatever load each met. Here one process builds each codec twice on the benchmark's
tensors (`tools.codec_cost.CodecRound`): once with `--names` taken from `--module` as
the `--base` checkout has them, once with this checkout's, then times the encode and
the decode before sum of both in turn, `--reps` times. It prints the median CPU ms and
quartiles of each. Functions are swapped by name in the module, so what they call is
looked up in their own module (base functions call base code). Naming a function the
two checkouts share gives the spread between two builds of the same code.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import statistics
import time
from collections.abc import Sequence

from fedcompress import native
from fedcompress.harness.cli import ArgumentParser, run_script

PARTS = ("encode", "decode_before_sum")


def load_base(base: str, module: str):
  """`module` as the checkout at `base` has it, imported under another name."""
  path = os.path.join(base, *module.split(".")) + ".py"
  if not os.path.exists(path):
    raise ValueError(f"{path} does not exist: --base must be a checkout holding {module}")
  spec = importlib.util.spec_from_file_location(module + "_base", path)
  loaded = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(loaded)
  return loaded


def compare(base: str, module: str, names: Sequence[str], codecs: Sequence[str],
            reps: int = 41, threads: int = 1) -> dict[tuple[str, str, str], list[float]]:
  """`{(codec, 'base' | 'head', part): [CPU seconds per rep]}`."""
  from tools.benchmark import codec_options
  from tools.codec_cost import CodecRound, benchmark_tensor_shapes

  head = importlib.import_module(module)
  old = load_base(base, module)
  missing = [n for n in names if not hasattr(head, n) or not hasattr(old, n)]
  if missing:
    raise ValueError(f"not in both versions of {module}: {', '.join(missing)}")
  own = {n: getattr(head, n) for n in names}
  shapes = [list(s) for s in benchmark_tensor_shapes()]
  rounds = {}
  try:
    for codec in codecs:
      for side, source in (("base", old), ("head", head)):
        for n in names:
          setattr(head, n, getattr(source, n) if side == "base" else own[n])
        rounds[(codec, side)] = CodecRound(codec, codec_options(codec), shapes, threads=threads)
  finally:
    for n in names:
      setattr(head, n, own[n])
  times = {(c, side, p): [] for (c, side) in rounds for p in PARTS}
  for _ in range(reps):
    for (codec, side, part), samples in times.items():
      start = time.process_time()
      rounds[(codec, side)].run_part(part)
      samples.append(time.process_time() - start)
  for r in rounds.values():
    r.close()
  return times


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", required=True, help="a checkout of the other commit")
  parser.add_argument("--module", required=True)
  parser.add_argument("--names", required=True, help="functions or classes, comma-separated")
  parser.add_argument("--codecs", required=True)
  parser.add_argument("--reps", type=int, default=41)
  parser.add_argument("--threads", type=int, default=1)
  args = parser.parse_args(argv)
  # Zero reps leave nothing to take quartiles of, after both versions are built.
  if args.reps < 1:
    parser.error(f"--reps must be >= 1, got {args.reps}")
  if args.threads < 0:  # TensorFlow aborts the process on it (SIGABRT, a core dump).
    parser.error(f"--threads must be >= 0, got {args.threads}")
  import fedcompress
  from tools.benchmark import listed_codecs
  from tools.codec_cost import set_process_threads

  # set_process_threads imports TensorFlow, which reads its log level only then.
  fedcompress.quiet_tensorflow()
  try:  # Before anything is built: an unknown one was a 24-line ModuleNotFoundError.
    found = importlib.util.find_spec(args.module)  # (Its package may import TensorFlow.)
  except ImportError:  # Its package is missing too.
    found = None
  if found is None:
    parser.error(f"--module: no module named {args.module!r}")
  try:  # Before the threads are set: an empty list measured nothing, and exited 0.
    codecs = listed_codecs(args.codecs)
  except ValueError as e:
    parser.error(str(e))
  set_process_threads(args.threads)
  native.use()  # The codecs as TFF's worker runs them: with the native kernels.
  try:
    times = compare(args.base, args.module, args.names.split(","), codecs, args.reps,
                    args.threads)
  except ValueError as e:
    parser.error(str(e))
  except ImportError as e:  # --module names no module of the base's checkout.
    parser.error(f"--module: {e}")
  for (codec, side, part), samples in times.items():
    q1, median, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else samples * 3
    print(f"{codec:24s} {side:4s} {part:18s} {median * 1e3:7.2f} ms "
          f"(quartiles {q1 * 1e3:.2f}-{q3 * 1e3:.2f})")


if __name__ == "__main__":
  run_script(main)
