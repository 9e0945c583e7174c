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


class Terminated(SystemExit):
  """Raised in the main thread on SIGTERM (see `runtime.install_signal_handlers`).

  A `SystemExit` with code 128 + SIGTERM, so code that does not know it still exits the
  way a shell expects, with `finally` blocks and atexit handlers run; the binaries'
  `interruptible` catches it to print their one error line first.
  """

  def __init__(self, signum: int = signal.SIGTERM):
    super().__init__(128 + signum)
