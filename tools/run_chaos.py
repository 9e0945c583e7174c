"""Interrupts an EMNIST experiment with SIGINT, SIGTERM and SIGKILL, resumes, compares.

  python -m tools.run_chaos --rounds=8 --seed=0 --root_output_dir=runs/chaos

Runs `experiments/emnist_compression.py` on the embedded digits twice: once
uninterrupted, once interrupted at seeded random rounds (one per signal, in turn) and
resumed with --resume each time; checks the run directory after each interruption and
the final metrics.csv and TensorBoard against the uninterrupted run (see
tools/chaos.py). Prints one line per interruption and PASS or FAIL; writes
chaos.json (the report, the settings it ran with and the commit) and the runs' logs
under --root_output_dir. Exit code 0 on PASS, 1 on FAIL.
"""

import os
import shlex
import time

from fedcompress.harness import cli

# Before TensorFlow loads (to read the runs' TensorBoard files): it reads its log level
# only then, and would print its C++ log lines among the progress lines.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.harness.cli import fail, interruptible, parse_flags
from tools.chaos import DEFAULT_EXPERIMENT_FLAGS, SIGNALS, ChaosConfig, run_chaos

FLAGS = flags.FLAGS
flags.DEFINE_string("root_output_dir", None, "Folder of the two runs and chaos.json "
                    "(default runs/chaos/<time>); must not hold them already.")
flags.DEFINE_integer("rounds", 8, "Rounds of each run.")
flags.DEFINE_integer("seed", 0, "Seed of the rounds the signals are sent at.")
flags.DEFINE_list("signals", list(SIGNALS), "Signals to send, one interruption each, "
                  "in this order.")
flags.DEFINE_string("experiment_flags", " ".join(DEFAULT_EXPERIMENT_FLAGS),
                    "Flags of experiments/emnist_compression.py for both runs.")
flags.DEFINE_float("rtol", 1e-3, "Relative tolerance of losses and accuracies.")
flags.DEFINE_bool("parallel_reference", False, "Run the uninterrupted reference at the "
                  "same time as the interrupted run.")


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  root = FLAGS.root_output_dir or os.path.join("runs", "chaos", time.strftime("%Y%m%d-%H%M%S"))
  try:  # Shell quoting, as --common_flags: a codec chain may hold '|' and spaces.
    experiment_flags = tuple(shlex.split(FLAGS.experiment_flags))
  except ValueError as e:
    return fail(f"--experiment_flags: {e} in {FLAGS.experiment_flags!r}")
  config = ChaosConfig(root_dir=root, rounds=FLAGS.rounds, seed=FLAGS.seed,
                       signals=tuple(FLAGS.signals),
                       experiment_flags=experiment_flags,
                       rtol=FLAGS.rtol, parallel_reference=FLAGS.parallel_reference)
  try:
    report = run_chaos(config, log=lambda line: print(line, flush=True))
  except (ValueError, TimeoutError, RuntimeError) as e:
    return fail(str(e))
  print("\n".join(report.summary_lines()))
  print(f"report: {os.path.join(root, 'chaos.json')}")
  return 0 if report.ok else 1


if __name__ == "__main__":
  app.run(interruptible(main), flags_parser=parse_flags)
