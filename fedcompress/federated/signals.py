"""Signal dispositions for the child processes fedcompress starts (no TensorFlow here)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import types
import weakref


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


# How long a signal that arrived where Python would drop its exception waits to be sent
# again: long enough for a gc callback or `__del__` to return, short for a user.
REDELIVERY_DELAY_S = 0.05


def raised_here_is_dropped(frame: types.FrameType | None) -> bool:
  """Whether an exception raised at `frame` would be printed and dropped by Python.

  Python runs gc callbacks and `__del__` from C and ignores what they raise ("Exception
  ignored in ..."). A signal handler that raises runs in whatever frame the main thread is
  executing: when that is jax's `_xla_gc_callback`, which TFF's import registers, the
  exception is dropped and the signal lost (measured: a SIGTERM during process building
  left the run going).
  """
  callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
  while frame is not None:
    if (frame.f_code in callbacks or frame.f_code.co_name == "__del__"
        or frame.f_code.co_filename == weakref.__file__):
      # The last: weakref callbacks (a WeakKeyDictionary's `remove`, `finalize`) run from
      # C too; a Ctrl-C raised in one was dropped and the run went on (a review, 4 of 19
      # SIGINTs during a resume's start). Called from Python, code there only has its
      # signal sent again a moment later.
      return True
    frame = frame.f_back
  return False


def raise_or_redeliver(signum: int, frame: types.FrameType | None,
                       error: BaseException) -> None:
  """Raises `error` from a signal handler, or sends `signum` again if it would be dropped."""
  if raised_here_is_dropped(frame):
    timer = threading.Timer(REDELIVERY_DELAY_S, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()
    return
  raise error
