"""Quiets TensorFlow/TFF log noise for the binaries, when they ask, before TensorFlow loads.

Nothing here runs at import: `import fedcompress` leaves the user's warning filters,
logger levels and environment alone. The binaries (and notebooks that want it) call
`quiet_tensorflow()` first thing, because TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once,
when its C++ library loads. absl flags are parsed only later, in `main()`, so the
`--tf_logs` flag (see `fedcompress.harness.flags`) is also looked for directly in
`sys.argv` here, and `FEDCOMPRESS_TF_LOGS=1` does the same for notebooks and scripts.
"""

import os
import sys
import warnings

# absl's spellings of a true boolean flag (any case).
_TRUE = ("true", "t", "1")
_quieted = False
# Names the variables `quiet_tensorflow()` set, for a child that asks for logs to undo.
_SET_BY_QUIET = "FEDCOMPRESS_QUIETED_ENV"


def tf_logs_requested(argv: list[str] | None = None) -> bool:
  """Whether the user asked to see TensorFlow's and TFF's own logs.

  Only the command line itself and FEDCOMPRESS_TF_LOGS are seen this early: a
  `--tf_logs` inside a flagfile is read after TensorFlow loads (`quieted` tells).
  """
  argv = sys.argv if argv is None else argv
  if os.environ.get("FEDCOMPRESS_TF_LOGS", "") not in ("", "0"):
    return True
  for arg in argv:
    name, sep, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "tf_logs" and (not sep or value.lower() in _TRUE):
      return True
  return False


def _below_error(record) -> bool:
  """A logging filter: False (dropped) for records under ERROR."""
  import logging

  return record.levelno >= logging.ERROR


# tensor_encoding's own files (a user's folder named tensor_encoding_study is not).
_TENSOR_ENCODING = os.path.join("tensorflow_model_optimization", "python", "core", "internal",
                                "tensor_encoding", "")


def _not_tensor_encodings_warning(record) -> bool:
  """A root-logger filter: False (dropped) for tensor_encoding's records under ERROR."""
  import logging

  return record.levelno >= logging.ERROR or _TENSOR_ENCODING not in record.pathname


def quieted() -> bool:
  """Whether `quiet_tensorflow()` quieted this process (no logs were requested then)."""
  return _quieted


def quiet_tensorflow() -> None:
  """Starts TensorFlow quiet in this process, unless logs were requested.

  Sets the C++ log levels of TensorFlow and TFF's worker (environment), ignores
  deprecation and future warnings, and lowers the Python `tensorflow` and absl loggers
  to errors (the `tensorflow` logger's records under ERROR are filtered out, so that
  TensorFlow's own INFO level in interactive sessions does not bring them back), and
  drops tensor_encoding's warnings under ERROR from Python's root logger.
  For binaries and notebooks; the library itself never calls it.
  """
  global _quieted
  if tf_logs_requested():
    # A quiet parent (a sweep, tools/run_chaos.py) put its levels into the environment
    # this process inherited: undone, so that --tf_logs shows the logs it asks for.
    for name in os.environ.pop(_SET_BY_QUIET, "").split(","):
      os.environ.pop(name, None)
    return
  _quieted = True
  # Set, not defaulted: `import tensorflow` itself puts TF_CPP_MIN_LOG_LEVEL=1 into
  # os.environ, so every binary started by a process that imported TensorFlow (a sweep,
  # tools/chaos.py, a notebook) would inherit it and print TensorFlow's C++ warnings.
  # --tf_logs (or FEDCOMPRESS_TF_LOGS=1) is the switch for seeing them.
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  # The C++ worker binary logs through absl/glog too.
  os.environ["GLOG_minloglevel"] = "2"
  # gRPC's C++ core (in this process) logs lines of its own: INFO about fork handlers,
  # and at shutdown after Ctrl-C under load an ERROR "Kick failed: eventfd_write: Bad
  # file descriptor" from a channel torn down mid-poll. Failures that matter reach us as
  # Python exceptions (grpc.RpcError) and are reported as one error line, so none of
  # the core's own lines are shown unless logs were asked for.
  os.environ["GRPC_VERBOSITY"] = "NONE"
  os.environ[_SET_BY_QUIET] = "TF_CPP_MIN_LOG_LEVEL,GLOG_minloglevel,GRPC_VERBOSITY"
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  warnings.filterwarnings("ignore", category=FutureWarning)
  # google.rpc (a TFF dependency) imports pkg_resources, which warns on every start.
  warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
  import logging

  from absl import logging as absl_logging

  tf_logger = logging.getLogger("tensorflow")
  tf_logger.setLevel(logging.ERROR)
  # And a filter, which holds where the level does not: in an interactive session (a
  # notebook kernel has `sys.ps1`) TensorFlow sets its logger back to INFO when it first
  # configures it, after this, and every checkpoint printed "INFO:tensorflow:Assets
  # written to: ..." twice. (addFilter adds the same function once.)
  tf_logger.addFilter(_below_error)
  absl_logging.set_verbosity(absl_logging.ERROR)
  # tensor_encoding warns through Python's root logger ("This code path can temporarily
  # allocate extra memory", each time it packs other widths than 6, 7, 8 and 12 into 28
  # bits): the binaries' absl handler holds it back, a script's or a notebook's root
  # logger printed it, 18 times for the README's build_fedavg example at 2 bits.
  logging.getLogger().addFilter(_not_tensor_encodings_warning)
