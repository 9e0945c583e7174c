"""FedAvg with lossy compression on federated EMNIST (TFF's compression tutorial).

  python experiments/emnist_compression.py --flagfile=configs/emnist/compressed_u8.flags

`--dataset=digits` runs offline on scikit-learn's handwritten digits in EMNIST format.
Writes <root_output_dir>/<experiment_name>/{config.json, run_info.json, metrics.csv,
events.*, checkpoints/, and client_states/ with --error_feedback}; `--resume` continues a
run from its newest checkpoint.
"""

import sys

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness import flags as fc_flags
from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.experiment import (
  check_run_dir,
  describe_result,
  kept_in,
  resume_hint,
  run_experiment,
  run_failure,
)

FLAGS = flags.FLAGS
fc_flags.define_image_experiment_flags(FLAGS)
# Defined in fedcompress.harness.flags: without this, --help and --helpshort list none.
flags.adopt_module_key_flags(fc_flags)


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_signal_handlers()
  try:
    # The flags first: a refused combination (--secure_aggregation on --workers) is
    # said at once, not after waiting for the workers to accept connections.
    config = fc_flags.image_config_from_flags(FLAGS, module_names=[__name__])
    if not config.resume:
      # A folder holding a run is refused now too, not after waiting for the workers
      # (--worker_timeout_s), and then with the advice to resume a run of other settings.
      check_run_dir(config)
    runtime.configure(FLAGS.workers, FLAGS.max_concurrent_clients, FLAGS.worker_timeout_s)
    task = fc_flags.image_task_from_flags(FLAGS)
    result = run_experiment(task, config)
  except Exception as e:  # noqa: BLE001 (what is not a run's failure is re-raised)
    code = run_failure(e, kept=kept_in(fc_flags.run_dir(FLAGS), FLAGS.rounds), offline=True)
    if code is None:
      raise
    return code
  print(describe_result(result), file=sys.stdout)
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  # Said when the signal comes: the newest checkpoint then, or that there is none yet.
  app.run(interruptible(main, lambda: resume_hint(fc_flags.run_dir(FLAGS), FLAGS.rounds)),
          flags_parser=parse_flags)
