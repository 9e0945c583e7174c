"""Quiets TensorFlow/TFF log noise before TensorFlow is first imported.

TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once, when its C++ library loads, so this has
to run before `import tensorflow`; absl flags are parsed only later, in `main()`. The
`--tf_logs` flag (see `fedcompress.flags`) is therefore also looked for directly in
`sys.argv` here, and `FEDCOMPRESS_TF_LOGS=1` does the same for notebooks and scripts.
"""

import os
import sys
import warnings


def tf_logs_requested(argv: list[str] | None = None) -> bool:
  """Whether the user asked to see TensorFlow's and TFF's own logs."""
  argv = sys.argv if argv is None else argv
  if os.environ.get("FEDCOMPRESS_TF_LOGS", "") not in ("", "0"):
    return True
  return any(a in ("--tf_logs", "--tf_logs=true", "--tf_logs=True", "--tf_logs=1") for a in argv)


def quiet_tensorflow() -> None:
  """Sets the environment so TensorFlow starts quiet, unless logs were requested."""
  if tf_logs_requested():
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  # The C++ worker binary logs through absl/glog too.
  os.environ.setdefault("GLOG_minloglevel", "2")
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  warnings.filterwarnings("ignore", category=FutureWarning)
  # google.rpc (a TFF dependency) imports pkg_resources, which warns on every start.
  warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def quiet_python_loggers() -> None:
  """Lowers Python-side TF/absl loggers once TensorFlow is imported."""
  if tf_logs_requested():
    return
  import logging

  logging.getLogger("tensorflow").setLevel(logging.ERROR)
  from absl import logging as absl_logging

  absl_logging.set_verbosity(absl_logging.ERROR)
