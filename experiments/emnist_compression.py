"""FedAvg with lossy compression on federated EMNIST (TFF's compression tutorial).

  python experiments/emnist_compression.py --flagfile=configs/emnist/compressed_u8.flags

`--dataset=digits` runs offline on scikit-learn's handwritten digits in EMNIST format.
Writes <root_output_dir>/<experiment_name>/{config.json, run_info.json, metrics.csv,
events.*, checkpoints/, and client_states/ with --error_feedback}; `--resume` continues a
run from its newest checkpoint.
"""

import sys

from fedcompress.federated import quiet

quiet.quiet_tensorflow()  # Before TensorFlow loads: it reads its log level only then.

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness import flags as fc_flags
from fedcompress.harness.cli import interruptible, parse_flags
from fedcompress.harness.experiment import (
  NonFiniteModelError,
  describe_result,
  fail,
  run_experiment,
)
from fedcompress.tasks.errors import DatasetUnavailableError

FLAGS = flags.FLAGS
fc_flags.define_image_experiment_flags(FLAGS)
# Defined in fedcompress.harness.flags: without this, --help and --helpshort list none.
flags.adopt_module_key_flags(fc_flags)


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  runtime.install_signal_handlers()
  try:
    runtime.configure(FLAGS.workers, FLAGS.max_concurrent_clients, FLAGS.worker_timeout_s)
    config = fc_flags.image_config_from_flags(FLAGS, module_names=[__name__])
    task = fc_flags.image_task_from_flags(FLAGS)
    result = run_experiment(task, config)
  except DatasetUnavailableError as e:
    return fail(f"{e} Or run offline with --dataset=digits.")
  except ValueError as e:
    return fail(str(e))
  except runtime.WorkerUnavailableError as e:
    return fail(f"{e} Checkpoints written so far are kept (--resume continues).", 1)
  except runtime.COMPUTATION_ERRORS as e:
    return fail(f"a round failed in the TFF worker: {runtime.describe_computation_error(e)}. "
                "Checkpoints written so far are kept (--resume continues).", 1)
  except NonFiniteModelError as e:
    return fail(str(e), 1)
  print(describe_result(result), file=sys.stdout)
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  app.run(interruptible(main, "the last checkpoint is kept; rerun with --resume to continue"),
          flags_parser=parse_flags)
