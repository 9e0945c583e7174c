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
