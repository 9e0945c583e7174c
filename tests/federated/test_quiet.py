"""`quiet_tensorflow()` in an interactive session, as a notebook kernel is one."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # A fresh interpreter imports TensorFlow.

_KERNEL_LIKE = """
import sys
sys.ps1 = ">>> "  # What TensorFlow takes for an interactive session (IPython sets it).
from fedcompress.federated import quiet
quiet.quiet_tensorflow()
import tensorflow as tf
tf.get_logger().info("an info line")
tf.get_logger().warning("a warning line")
tf.get_logger().error("an error line")
"""


def test_tensorflow_info_stays_quiet_in_an_interactive_session(repo_root):
  # TensorFlow sets its logger to INFO (to stdout) when it first configures it in an
  # interactive session, after quiet_tensorflow() lowered it: every checkpoint of the
  # notebooks printed "INFO:tensorflow:Assets written to: ..." twice.
  env = {k: v for k, v in os.environ.items() if k != "FEDCOMPRESS_TF_LOGS"}
  result = subprocess.run([sys.executable, "-c", _KERNEL_LIKE], capture_output=True,
                          text=True, cwd=repo_root, env=env, timeout=300, check=True)
  printed = result.stdout + result.stderr
  assert "an info line" not in printed and "a warning line" not in printed, printed
  assert "ERROR:tensorflow:an error line" in printed, printed


def test_tf_logs_undo_the_levels_a_quiet_parent_left_in_the_environment(monkeypatch):
  # tools/run_chaos.py quiets itself, and its runs inherited TF_CPP_MIN_LOG_LEVEL=3 and
  # the rest: a run given --tf_logs skipped quieting but still printed 13 log lines
  # instead of 126.
  from fedcompress.federated import quiet

  names = ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "GRPC_VERBOSITY")
  monkeypatch.delenv("FEDCOMPRESS_TF_LOGS", raising=False)
  monkeypatch.setattr(sys, "argv", ["parent"])
  for name in names + (quiet._SET_BY_QUIET,):
    monkeypatch.delenv(name, raising=False)
  quiet.quiet_tensorflow()  # The parent's call.
  assert all(name in os.environ for name in names)
  monkeypatch.setattr(sys, "argv", ["child", "--tf_logs"])
  quiet.quiet_tensorflow()  # The child's, in the environment it inherited.
  assert not any(name in os.environ for name in names + (quiet._SET_BY_QUIET,))
  # A level the user set is theirs: only what quiet_tensorflow() set is undone.
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
  quiet.quiet_tensorflow()
  assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"
