"""One remote TFF worker for `--workers=HOST:PORT,...`, run in the foreground.

  python experiments/worker.py --port=8000 [--max_concurrent_computation_calls=N]

Starts the C++ `worker_binary` shipped inside the TFF wheel (TFF's gRPC executor
service), prints one line when it accepts connections, and stops it cleanly on Ctrl-C
or SIGTERM; it also dies with this process. The driver and every worker must run the
same TFF version. See the README for the multi-machine recipe.
"""

import signal

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

from fedcompress.federated import runtime
from fedcompress.harness.cli import fail, interruptible, parse_flags

_PORT = flags.DEFINE_integer("port", None, "Port to serve TFF's executor service on.",
                             required=True, lower_bound=1, upper_bound=65535)
_MAX_CALLS = flags.DEFINE_integer(
    "max_concurrent_computation_calls", None,
    "Client computations this worker runs at once; default one per core of this "
    "machine, <= 0 for no limit.")
flags.DEFINE_bool("tf_logs", False, "Show the worker's own logs (quiet by default).")
_SIGNALS = {s.value for s in signal.Signals}


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    code = runtime.serve_worker(_PORT.value, _MAX_CALLS.value,
                                on_ready=lambda line: print(line, flush=True))
  except runtime.PortTakenError as e:
    return fail(f"{e}: stop what serves it (another worker?) or pass another --port", 1)
  except RuntimeError as e:  # The worker exited at once.
    return fail(f"{e} Is port {_PORT.value} in use? --tf_logs shows the worker's log.", 1)
  if code:  # It ended on its own, not on Ctrl-C or SIGTERM: said, not a silent exit.
    how = (f"signal {signal.Signals(-code).name}" if code < 0 and -code in _SIGNALS
           else f"status {code}")
    return fail(f"the TFF worker_binary on port {_PORT.value} exited with {how}: drivers "
                "using it lose it (a dataset file it cannot open ends it, as a relative "
                "--cache_dir did); --tf_logs shows its log", 1)
  return 0


if __name__ == "__main__":
  # Replaces the TFF context `import tensorflow_federated` installed before flags are
  # parsed: torn down at exit after the modules it uses, it prints an ignored exception
  # when a bad flag ends the process early.
  runtime.install()
  app.run(interruptible(main), flags_parser=parse_flags)
