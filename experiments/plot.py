"""PNG comparison figure of run directories, one labelled line per run.

  python experiments/plot.py --runs=runs/demo/X/original,runs/demo/X/compressed_u8 \
      --output=comparison.png
"""

from absl import app, flags

from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.plotting import plot_runs

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "Run directories (each with a metrics.csv).")
flags.DEFINE_list("labels", [], "Line labels, one per run (default: folder names, with "
                  "parent folders where two are equal).")
flags.DEFINE_string("output", "comparison.png", "Figure to write: a file (its extension "
                    "picks the format, .png, .pdf, .svg; none gives .png) or a folder "
                    "(an existing one, or a path ending in /: comparison.png in it).")
flags.DEFINE_string("title", None, "Figure title.")


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.labels and len(FLAGS.labels) != len(FLAGS.runs):
    return fail(f"--labels has {len(FLAGS.labels)} entries for {len(FLAGS.runs)} runs")
  try:
    path = plot_runs(FLAGS.runs, FLAGS.output, FLAGS.labels or None, FLAGS.title)
  except (ValueError, OSError) as e:  # OSError: a run that is no directory, unreadable files
    return fail(str(e))
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  app.run(interruptible(main), flags_parser=parse_flags)
