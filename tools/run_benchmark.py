"""Benchmark: fedcompress vs plain TFF vs a centralized Keras pass, and driver memory.

  python -m tools.run_benchmark --output=benchmark.json

Prints the median round times of (a) plain TFF FedAvg, (b) fedcompress uncompressed,
(c) fedcompress 8-bit both ways, (d) one Keras epoch over the same examples and (e)
plain TFF with fedcompress's client loop, the ratios b/a, c/b, c/d and b/e (each the
median of its interleaved round pairs' ratios), and the driver's peak memory for
generated datasets of 100 and 3,400 clients; writes all of it to --output. With
--codecs=all it also times every codec against uncompressed (uplink only and both ways)
and, with --readme=README.md, writes that table into the README. See tools/benchmark.py.
"""


from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness.cli import check_output_file, fail, interruptible, parse_flags
from tools import benchmark, codec_table

_D = benchmark.BenchmarkConfig()
_OUTPUT = flags.DEFINE_string("output", "benchmark.json", "Where to write the JSON result.")
_ROUNDS = flags.DEFINE_integer("rounds", _D.rounds, "Timed repetitions per contender.")
_WARMUP = flags.DEFINE_integer("warmup_rounds", _D.warmup_rounds, "Untimed repetitions first.")
_CLIENTS = flags.DEFINE_integer("num_clients", _D.num_clients, "Clients per round.")
_EXAMPLES = flags.DEFINE_integer("examples_per_client", _D.examples_per_client,
                                 "Examples per client.")
_BATCH = flags.DEFINE_integer("batch_size", _D.batch_size, "Batch size.")
_SEED = flags.DEFINE_integer("seed", _D.seed, "Seed of data order, init and sampling.")
_MAX_CLIENTS = flags.DEFINE_integer(
    "max_concurrent_clients", None, "Client computations run at once (TFF's "
    "max_concurrent_computation_calls); default one per core, <= 0 for no limit.")
_POPULATIONS = flags.DEFINE_list(
    "memory_populations", [str(n) for n in _D.memory_populations],
    "Clients in each generated dataset of the memory measurement; empty skips it.")
_MEMORY_EXAMPLES = flags.DEFINE_integer("memory_examples_per_client",
                                        _D.memory_examples_per_client,
                                        "Examples per client in the generated datasets.")
_MEMORY_CACHE = flags.DEFINE_string("memory_cache_dir", None, "Keep (and reuse) the generated "
                                    "datasets here instead of a temporary folder.")
_CODECS = flags.DEFINE_list(
    "codecs", [], "Codec sweep: these codecs each against uncompressed, interleaved "
    f"(any of {', '.join(benchmark.CODEC_OPTIONS)}, or 'all'); empty skips it.")
_MODULES = flags.DEFINE_list("codec_modules", [], benchmark.CODEC_MODULES_HELP)
_DIRECTIONS = flags.DEFINE_list("codec_directions", ["uplink", "both"],
                                "Codec sweep: uplink (aggregate only) and/or both.")
_README = flags.DEFINE_string("readme", None, "Write the codec sweep's table into this "
                              "README, between <!-- codec-table:benchmark --> markers.")
flags.DEFINE_bool("tf_logs", False, "Show TensorFlow/TFF logs (quiet by default).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_signal_handlers()
  try:
    config = _config()
  except ValueError as e:
    return fail(str(e))
  # Checked before ~20 minutes of timing, not after: where the results go.
  try:
    check_output_file(_OUTPUT.value)
  except ValueError as e:
    return fail(f"--output: {e}")
  if _README.value:
    if not config.codecs:
      return fail("--readme writes the codec sweep's table: pass --codecs=all")
    try:  # The same check update_readme makes after the runs: both markers, writable.
      codec_table.read_readme(_README.value, "benchmark")
    except ValueError as e:
      return fail(f"--readme: {e}")
    if set(config.codecs) != set(benchmark.CODEC_OPTIONS):
      # The README's table holds every codec: a partial sweep replaced it with its rows.
      return fail("--readme: the README's table holds every codec, and this sweep "
                  f"times {len(config.codecs)} of {len(benchmark.CODEC_OPTIONS)}: pass "
                  "--codecs=all, or leave out --readme")
    if set(config.codec_directions) != {"uplink", "both"}:
      return fail("--readme: the README's table has uplink and both-ways columns: pass "
                  "--codec_directions=uplink,both, or leave out --readme")
  try:
    result = benchmark.run_benchmark(config, _OUTPUT.value)
  except benchmark.MemoryProbeError as e:
    return fail(str(e))  # The probe's own traceback is above it, on its stderr.
  if _README.value and config.codecs:
    codec_table.update_readme(_README.value, "benchmark", benchmark.format_codec_table(result))
  return 0


def _populations() -> tuple[int, ...]:
  try:
    return tuple(int(n) for n in _POPULATIONS.value)
  except ValueError:
    raise ValueError(f"--memory_populations takes client counts, got "
                     f"{','.join(_POPULATIONS.value)}") from None


def _config() -> benchmark.BenchmarkConfig:
  return benchmark.BenchmarkConfig(
      num_clients=_CLIENTS.value, examples_per_client=_EXAMPLES.value,
      batch_size=_BATCH.value, rounds=_ROUNDS.value, warmup_rounds=_WARMUP.value,
      seed=_SEED.value, max_concurrent_clients=_MAX_CLIENTS.value,
      memory_populations=_populations(),
      memory_examples_per_client=_MEMORY_EXAMPLES.value,
      memory_cache_dir=_MEMORY_CACHE.value,
      # absl splits the list at every comma, those inside a codec's options too.
      codecs=(tuple(benchmark.CODEC_OPTIONS) if _CODECS.value == ["all"]
              else tuple(benchmark.split_codecs(",".join(_CODECS.value)))),
      codec_directions=tuple(_DIRECTIONS.value), codec_modules=tuple(_MODULES.value))


if __name__ == "__main__":
  app.run(interruptible(main, "nothing was written"), flags_parser=parse_flags)
