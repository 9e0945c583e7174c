"""A signal while a binary starts (TensorFlow still importing) is one line, not a traceback."""

import signal
import subprocess
import sys

import pytest

from fedcompress.harness import cli

_SCRIPT = """
import os, signal, sys, time
from fedcompress.harness import cli
cli.start_binary("__main__")
if sys.argv[1] == "main":
  def main(argv):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
  sys.exit(cli.interruptible(main, "nothing to keep")([]))
os.kill(os.getpid(), getattr(signal, sys.argv[1]))
time.sleep(30)  # Stands for TensorFlow's imports.
"""


@pytest.mark.parametrize("moment, line, code", [
    ("SIGINT", "error: interrupted while starting; nothing was written", 130),
    ("SIGTERM", "error: terminated (SIGTERM) while starting; nothing was written", 143),
    # From main on, the binary's own line (and what it says is kept).
    ("main", "error: interrupted; nothing to keep", 130),
])
def test_a_signal_while_starting_is_one_line(moment, line, code):
  # Ctrl-C in the seconds TensorFlow and TFF take to import printed a KeyboardInterrupt
  # traceback from inside them; SIGTERM ended the process without a word.
  # SIGINT as a terminal's foreground job has it: the suite's workers may run with it
  # ignored, which the child would inherit (and keep, as a background job does).
  result = subprocess.run([sys.executable, "-c", _SCRIPT, moment], capture_output=True,
                          text=True, timeout=60, check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  assert (result.returncode, result.stderr) == (code, line + "\n")


def test_an_imported_binary_keeps_the_process_s_handlers():
  # Tests import the binaries: their handlers stay the test process's.
  before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
  cli.start_binary("experiments.emnist_compression")
  assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


_INTERRUPTED_MAIN = """
import atexit, os, signal, sys, time
from fedcompress.federated import signals
from fedcompress.harness import cli
cli.start_binary("__main__")
atexit.register(lambda: print("atexit ran", flush=True))

class Finalized:
  # Python's finalization of the module, which stopped TFF's and gRPC's native threads
  # mid-call after an interrupt: a C++ abort, exit -6 (review R3 of s47).
  def __del__(self):
    print("finalized", flush=True)

mark = Finalized()

def main(argv):
  # SIGTERM as the binaries have it once their runtime is installed: an exception.
  signal.signal(signal.SIGTERM, lambda n, f: signals.raise_or_redeliver(
      n, f, signals.Terminated(n)))
  try:
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    time.sleep(30)
  finally:
    print("finally ran", flush=True)

sys.exit(cli.interruptible(main, "kept")([]))
"""


@pytest.mark.parametrize("sig, line, code", [
    ("SIGINT", "error: interrupted; kept", 130),
    ("SIGTERM", "error: terminated (SIGTERM); kept", 143),
])
def test_an_interrupted_binary_ends_after_its_finally_and_atexit_not_later(sig, line, code):
  result = subprocess.run([sys.executable, "-c", _INTERRUPTED_MAIN, sig], capture_output=True,
                          text=True, timeout=60, check=False,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  assert (result.returncode, result.stderr) == (code, line + "\n")
  # Its `finally` and atexit handlers ran, and then no finalization.
  assert result.stdout == "finally ran\natexit ran\n"
