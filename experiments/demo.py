"""`make demo`: the TFF compression tutorial's two runs, offline, side by side.

Runs configs/emnist/original.flags and configs/emnist/compressed_u8.flags on the
embedded scikit-learn digits (no download), with a learning rate and round count that
show learning within about three minutes on two cores, then prints what each run
sent, the compression ratio, the final accuracies and where the logs are.
"""

import os
import shlex
import sys
import time

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness import flags as fc_flags
from fedcompress.harness import plotting, reporting, rundir, summary
from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.experiment import run_experiment, run_failure

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ("original", "compressed_u8")

FLAGS = flags.FLAGS
flags.DEFINE_string("root_output_dir", None, "Where to write the two runs, relative to the "
                    "current folder (default: the repository's runs/demo/<time>).")
flags.DEFINE_integer("rounds", 20, "Rounds of each run.")
flags.DEFINE_float("client_learning_rate", 0.1, "Client learning rate (the tutorial's "
                   "0.02 learns too slowly to see in a demo).")
flags.DEFINE_integer("rounds_per_eval", 5, "Evaluate every N rounds.")
fc_flags.add_number_checks(FLAGS, ["rounds", "client_learning_rate", "rounds_per_eval"])


def run_demo(root: str, rounds: int, client_learning_rate: float, rounds_per_eval: int
             ) -> list[dict]:
  """Runs both tutorial configs on digits into `root`; returns their summaries."""
  for name in RUNS:
    fv = flags.FlagValues()
    fc_flags.define_image_experiment_flags(fv)
    fv(["demo", f"--flagfile=configs/emnist/{name}.flags", "--dataset=digits",
        f"--rounds={rounds}", f"--client_learning_rate={client_learning_rate}",
        f"--rounds_per_eval={rounds_per_eval}", f"--root_output_dir={root}"])
    print(f"== {name}: {fv['broadcast_encoder'].value} broadcast, "
          f"{fv['aggregate_encoder'].value} aggregate, {rounds} rounds on digits", flush=True)
    config = fc_flags.image_config_from_flags(fv)  # As the binary and the sweep make it.
    run_experiment(fc_flags.image_task_from_flags(fv), config,
                   console=reporting.ConsoleReporter(prefix=f"[{name}] "))
  return summary.compare_runs([os.path.join(root, n) for n in RUNS], baseline="original")


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  # A given folder is relative to where the command ran; the default is the repo's.
  given = os.path.abspath(FLAGS.root_output_dir) if FLAGS.root_output_dir else None
  os.chdir(REPO_ROOT)  # The config flagfiles name each other relative to the repo.
  runtime.install_signal_handlers()
  root = given or os.path.join("runs", "demo", time.strftime("%Y%m%d-%H%M%S"))
  began = time.perf_counter()
  # Said here: run_experiment's refusal names --resume and --experiment_name, flags the
  # demo does not have (it starts its runs afresh).
  held = [n for n in RUNS if rundir.has_run(os.path.join(root, n))]
  if held:
    return fail(f"{os.path.abspath(root)} already holds the demo's {' and '.join(held)} "
                "runs: give another --root_output_dir (or none: a new folder under "
                "runs/demo/)")
  try:
    summaries = run_demo(root, FLAGS.rounds, FLAGS.client_learning_rate, FLAGS.rounds_per_eval)
  except Exception as e:  # noqa: BLE001 (what is not a run's failure is re-raised)
    code = run_failure(e, kept="Rerun the demo to start over")
    if code is None:
      raise
    return code
  original, compressed = summaries
  print("\n" + summary.format_markdown(summaries, baseline="original"))
  print(f"\n{summary.format_savings(compressed, original)}; final eval accuracy "
        f"{original['eval/accuracy']:.4f} (original) vs {compressed['eval/accuracy']:.4f} "
        "(compressed).")
  figure = plotting.plot_runs([os.path.join(root, n) for n in RUNS],
                              os.path.join(root, "comparison.png"),
                              title=f"TFF compression tutorial on digits, {FLAGS.rounds} rounds")
  print(f"comparison figure: {os.path.abspath(figure)}")
  # Beside this interpreter: `.venv/bin/tensorboard` was not there from another folder.
  tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  # Quoted: a folder with a space was two arguments when pasted into a shell.
  print(f"TensorBoard: {shlex.quote(tensorboard)} --logdir "
        f"{shlex.quote(os.path.abspath(root))}")
  print(f"demo took {time.perf_counter() - began:.0f}s", file=sys.stdout)
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  app.run(interruptible(main), flags_parser=parse_flags)
