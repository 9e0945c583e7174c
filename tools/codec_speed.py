"""Micro-benchmark: encode and decode time of every codec on one large tensor, graph mode.

  python -m tools.codec_speed [--shape=3136,512] [--reps=5] [--codecs=drive,eden]
      [--codec_modules=my_codecs.py]

The tensor is the tutorial CNN's dense kernel (3136 x 512 = 1,605,632 float32). Each
codec's `SimpleEncoder` encode and decode are traced once into `tf.function`s and timed
separately (median of `reps` calls after one warm-up, CPU seconds of this process), next
to a plain `x * 1.0001` pass over the same tensor for scale, timed the same way. Decode is
what the server runs once per client for codecs that do not commute with sum.

`tools.codec_cost` splits the decode into its per-client and per-round parts, times
them on both tensors the benchmark encodes in a session configured like TFF's worker,
and predicts each codec's round ratio from them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedcompress import native
from fedcompress.harness.cli import ArgumentParser, run_script
from tools.benchmark import (
  CODEC_MODULES_HELP,
  CODEC_OPTIONS,
  CODECS_HELP,
  codec_options,
  listed_codecs,
  load_codec_modules,
)


def median_cpu(fn: Callable[[], Any], reps: int) -> float:
  """Median CPU seconds of `reps` calls of `fn`, each until its tensors are NumPy values."""
  import tensorflow as tf

  samples = []
  for _ in range(reps):
    t0 = time.process_time()
    out = fn()
    tf.nest.map_structure(lambda t: t.numpy(), out)
    samples.append(time.process_time() - t0)
  return statistics.median(samples)


def time_codec(name: str, options: Mapping[str, Any], shape: Sequence[int], reps: int,
               seed: int = 0) -> dict[str, float]:
  """Median CPU seconds of encode and decode of `name` on a N(0,1) tensor of `shape`."""
  import tensorflow as tf

  from fedcompress.codecs.spec import CodecSpec

  spec = tf.TensorSpec(shape, tf.float32)
  # The library's own path (`codecs.tracing`); threshold 0 encodes the tensor whatever
  # its size.
  encoder = CodecSpec(name, dict(options), 0).simple_encoder(spec)
  x = tf.random.stateless_normal(shape, [seed, 1])
  state = encoder.initial_state()
  encode = tf.function(lambda x, s: encoder.encode(x, s))
  encoded, _ = encode(x, state)
  decode = tf.function(encoder.decode)
  decode(encoded)
  return {"encode_s": median_cpu(lambda: encode(x, state), reps),
          "decode_s": median_cpu(lambda: decode(encoded), reps)}


def main(argv: Sequence[str] | None = None) -> None:
  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--shape", default="3136,512")
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--codecs", default=",".join(CODEC_OPTIONS), help=CODECS_HELP)
  parser.add_argument("--codec_modules", default=None, help=CODEC_MODULES_HELP)
  args = parser.parse_args(argv)
  # Usage errors are one `error:` line and exit 2 (cli.ArgumentParser), these too.
  if args.reps < 1:
    parser.error(f"--reps must be >= 1, got {args.reps}")
  try:
    shape = [int(d) for d in args.shape.split(",")]
  except ValueError:
    parser.error(f"--shape must be comma-separated integers, got {args.shape!r}")
  if any(d < 1 for d in shape):
    parser.error(f"--shape dimensions must be >= 1, got {args.shape!r}")
  import fedcompress

  fedcompress.quiet_tensorflow()
  native.use()  # The codecs as TFF's worker runs them: with the native kernels.
  try:
    load_codec_modules(args.codec_modules)
  except ValueError as e:
    parser.error(f"--codec_modules: {e}")
  try:
    names = listed_codecs(args.codecs)
  except ValueError as e:
    parser.error(str(e))
  options = {}
  for name in names:
    try:
      options[name] = codec_options(name)
    except ValueError as e:
      parser.error(f"--codecs: {e}")
  import tensorflow as tf

  x = tf.random.stateless_normal(shape, [0, 1])
  scale = tf.function(lambda x: x * 1.0001)
  scale(x)
  print(f"{'x * 1.0001':16s} {median_cpu(lambda: scale(x), args.reps) * 1e3:8.1f} ms")
  for name in names:
    r = time_codec(name, options[name], shape, args.reps)
    print(f"{name:16s} encode {r['encode_s'] * 1e3:8.1f} ms   decode {r['decode_s'] * 1e3:8.1f} ms",
          flush=True)


if __name__ == "__main__":
  run_script(main)
