"""Signal dispositions for the child processes fedcompress starts (no TensorFlow here)."""

from __future__ import annotations

import signal


def restore_default_sigint() -> None:
  """`preexec_fn` for a child that must stop on SIGINT even if we were started ignoring it.

  A shell starts a background job (`cmd &`, `nohup`) with SIGINT ignored, children
  inherit that across exec, and Python then installs no KeyboardInterrupt handler: a
  SIGINT sent to stop a worker or to act as Ctrl-C would do nothing.
  """
  signal.signal(signal.SIGINT, signal.SIG_DFL)
