"""Runs several configurations into one folder and compares them.

  python experiments/sweep.py --root_output_dir=runs/sweep \
      --flagfiles=configs/emnist/original.flags,configs/emnist/compressed_u8.flags \
      --common_flags="--dataset=digits --rounds=20" --baseline=original

  python experiments/sweep.py --root_output_dir=runs/bits \
      --grid="aggregate_encoder=uniform;aggregate_bits=2,4,8" --common_flags="--dataset=digits"

  python experiments/sweep.py --root_output_dir=runs/seeds --seeds=0,1,2 \
      --flagfiles=configs/codecs/baseline.flags,configs/codecs/up_drive.flags \
      --common_flags="--dataset=digits --rounds=20" --baseline=baseline

With --seeds every configuration runs once per seed; summary.md then also gives each
configuration's mean accuracy, std and 95% confidence interval, and its difference to
the baseline paired by seed (summary_seeds.csv, frontier.png).

Every run's flags are checked before the first run starts. Finished runs are skipped
and unfinished ones resumed, so the same command continues an interrupted sweep; a
run directory made with other settings is refused, never reused. Writes summary.csv
and summary.md next to the runs.
"""

import pathlib

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.summary import format_markdown
from fedcompress.harness.sweep import (
  EXPERIMENTS,
  parse_seeds,
  run_sweep,
  runs_from,
  sweep_failure,
)

FLAGS = flags.FLAGS
flags.DEFINE_list("flagfiles", [], "One run per flagfile (with --grid, the grid over each).")
flags.DEFINE_string("grid", "", "Runs over the product of flag values: "
                    "'flag=v1,v2;other=w1,w2' (with --flagfiles, over each flagfile's).")
flags.DEFINE_string("common_flags", "", "Flags added to every run, e.g. '--dataset=digits "
                    "--rounds=20'.")
flags.DEFINE_string("root_output_dir", None, "Folder of the sweep's runs.")
flags.DEFINE_string("baseline", None, "Run the ratios are taken against (default: first).")
flags.DEFINE_list("seeds", [], "Run every configuration once per seed, e.g. 0,1,2, and "
                  "report confidence intervals over them.")
flags.DEFINE_enum("experiment", "emnist", sorted(EXPERIMENTS), "Which experiment's flags "
                  "the runs use.")
flags.mark_flag_as_required("root_output_dir")


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_signal_handlers()
  try:
    runs = runs_from(FLAGS.flagfiles, FLAGS.grid)
    seeds = parse_seeds(FLAGS.seeds)
    summaries = run_sweep(runs, FLAGS.root_output_dir, experiment=FLAGS.experiment,
                          common_flags=FLAGS.common_flags, baseline=FLAGS.baseline,
                          seeds=seeds)
  except Exception as e:  # noqa: BLE001 (what is not a run's failure is re-raised)
    code = sweep_failure(e, experiment=FLAGS.experiment,
                         hint="rerunning the sweep resumes the others")
    if code is None:
      raise
    return code
  if seeds:
    print(pathlib.Path(FLAGS.root_output_dir, "summary.md").read_text(), end="")
  else:
    print(format_markdown(summaries, FLAGS.baseline or summaries[0]["run"]))
  print(f"summary: {FLAGS.root_output_dir}/summary.md")
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  app.run(interruptible(main, "rerun the same command to continue the sweep"),
          flags_parser=parse_flags)
