"""Runs every codec config against the uncompressed baseline and writes the table.

  python -m tools.compare_codecs --update_readme

Each configs/codecs/*.flags is one run (up_* compress the uplink, down_* the
downlink). Runs go through the sweep (finished runs are skipped, unfinished resumed);
the table of final eval accuracy, bits each way, ratios to the baseline, bits per
coordinate and round time is written to <root>/codec_table.md and, with
--update_readme, into README.md.
"""

import glob
import os

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.sweep import EXPERIMENTS, run_sweep, runs_from_flagfiles, sweep_failure
from tools import codec_table

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("root_output_dir", "runs/codecs", "Folder of the runs.")
flags.DEFINE_list("configs", ["configs/codecs/*.flags"],
                  "Comma-separated globs of the run flagfiles (e.g. the baseline and the uplink "
                  "codecs only: configs/codecs/baseline.flags,configs/codecs/up_*.flags).")
flags.DEFINE_string("common_flags", "--dataset=digits --rounds=60 --client_learning_rate=0.1 "
                    "--rounds_per_eval=10 --rounds_per_checkpoint=20 "
                    "--compression_threshold=100", "Flags of every run.")
flags.DEFINE_enum("experiment", "emnist", sorted(EXPERIMENTS), "Experiment the runs use.")
flags.DEFINE_string("baseline", "baseline", "Run the ratios are taken against.")
flags.DEFINE_string("title", None, "Table title (default: the common flags).")
flags.DEFINE_bool("update_readme", False, "Write the table into README.md.")
flags.DEFINE_string("readme_block", None, "README block name (default: --experiment).")


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  os.chdir(REPO_ROOT)
  runtime.install_signal_handlers()
  patterns = [p for p in FLAGS.configs if p.strip()]  # A trailing comma gives ''.
  if not patterns:
    return fail("--configs names no flagfile")
  if unmatched := [pattern for pattern in patterns if not glob.glob(pattern)]:
    # A typo dropped its row from the table (and, with --update_readme, the README's).
    return fail(f"--configs: {unmatched[0]} matches no flagfile")
  paths = sorted({path for pattern in patterns for path in glob.glob(pattern)})
  if FLAGS.update_readme:
    try:
      codec_table.read_readme("README.md", FLAGS.readme_block or FLAGS.experiment)
    except ValueError as e:
      return fail(f"--update_readme --readme_block: {e}")
  try:
    runs = runs_from_flagfiles(paths)
    summaries = run_sweep(runs, FLAGS.root_output_dir, experiment=FLAGS.experiment,
                          common_flags=FLAGS.common_flags, baseline=FLAGS.baseline,
                          same_rounds_for="the codec table")
  except Exception as e:  # noqa: BLE001 (what is not a run's failure is re-raised)
    code = sweep_failure(e, experiment=FLAGS.experiment)
    if code is None:
      raise
    return code
  rows = codec_table.table_rows(summaries, FLAGS.root_output_dir, FLAGS.baseline)
  title = FLAGS.title or f"{FLAGS.experiment}: {FLAGS.common_flags}"
  table = codec_table.format_table(rows, title)
  with open(os.path.join(FLAGS.root_output_dir, "codec_table.md"), "w") as f:
    f.write(table + "\n")
  print(table)
  if FLAGS.update_readme:
    codec_table.update_readme("README.md", FLAGS.readme_block or FLAGS.experiment, table)
    print("README.md updated")
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  app.run(interruptible(main, "finished runs are kept; rerun the same command to continue"),
          flags_parser=parse_flags)
