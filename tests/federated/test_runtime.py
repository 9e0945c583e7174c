"""The worker_binary a fedcompress program starts never outlives it."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from fedcompress.federated import signals as _signals

pytestmark = pytest.mark.slow  # each case starts Python, TFF and a worker

SCRIPT = """
import sys, time
import fedcompress
import tensorflow as tf
import tensorflow_federated as tff
from fedcompress.federated import runtime

runtime.install()  # What run_experiment and the binaries do; importing does not.
runtime.install_signal_handlers()

@tff.tensorflow.computation(tf.int32)
def add_one(x):
  return x + 1

assert add_one(1) == 2
print("worker", *runtime.worker_pids(), flush=True)
mode = sys.argv[1]
if mode == "exception":
  raise RuntimeError("boom")
if mode == "wait":
  print("waiting", flush=True)
  time.sleep(600)
"""


def _is_worker(pid: int) -> bool:
  try:
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
  except FileNotFoundError:
    return False
  stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  return b"worker_binary" in cmdline and ") Z " not in stat


def _wait_gone(pid: int, timeout_s: float = 15.0) -> bool:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if not _is_worker(pid):
      return True
    time.sleep(0.1)
  return False


@pytest.mark.parametrize("mode,sig,expected_rc", [
    ("exit", None, 0),
    ("exception", None, 1),
    ("wait", signal.SIGINT, -signal.SIGINT),
    ("wait", signal.SIGTERM, 128 + signal.SIGTERM),
])
def test_worker_is_stopped(tmp_path, mode, sig, expected_rc):
  script = tmp_path / "prog.py"
  script.write_text(SCRIPT)
  # Output piped: an orphaned worker holding the pipe would make this hang. SIGINT is
  # reset to its default as for a foreground job (a suite run from a background shell
  # job would otherwise pass it on ignored, and the SIGINT case would wait forever).
  proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                          preexec_fn=_signals.restore_default_sigint)
  try:
    first = proc.stdout.readline().decode().split()
    assert first and first[0] == "worker", proc.stderr.read().decode()[-2000:]
    pids = [int(p) for p in first[1:]]
    assert len(pids) == 1
    if sig is not None:
      assert proc.stdout.readline().decode().strip() == "waiting"
      # Only a program that is still running is sure to have its worker alive: in the
      # exit/exception cases it may already have stopped it by the time we look.
      assert _is_worker(pids[0])
      proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == expected_rc, err.decode()[-2000:]
  assert _wait_gone(pids[0]), f"worker_binary {pids[0]} outlived its program"
  if mode == "exception":
    assert b"RuntimeError: boom" in err


IGNORED_SIGINT_SCRIPT = """
import signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # As a background shell job starts us.
import tensorflow as tf
import tensorflow_federated as tff
from fedcompress.federated import runtime

runtime.install()

@tff.tensorflow.computation(tf.int32)
def add_one(x):
  return x + 1

assert add_one(1) == 2
(worker,) = runtime._live_workers
start = time.monotonic()
runtime.shutdown()
print(worker.process.returncode, time.monotonic() - start, flush=True)
"""


def test_worker_stops_on_sigint_even_when_started_with_sigint_ignored(tmp_path):
  # stop() asks with SIGINT and kills after 5 s; an inherited SIG_IGN would always
  # end in the kill (returncode -9) and cost those 5 s.
  script = tmp_path / "prog.py"
  script.write_text(IGNORED_SIGINT_SCRIPT)
  done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120,
                        check=True)
  returncode, seconds = done.stdout.decode().split()
  assert int(returncode) != -signal.SIGKILL, f"worker killed after {seconds} s"
  assert float(seconds) < 5.0


AFTER_SHUTDOWN = """
import fedcompress
import tensorflow as tf
import tensorflow_federated as tff
from fedcompress.federated import runtime

runtime.install()

@tff.tensorflow.computation(tf.int32)
def add_one(x):
  return x + 1

assert add_one(1) == 2
runtime.shutdown()
try:
  add_one(2)
except Exception as e:
  print("refused:", "shut down" in str(e), runtime.worker_pids(), flush=True)
else:
  print("ran", runtime.worker_pids(), flush=True)
runtime.set_local_context()
print("again:", add_one(2), len(runtime.worker_pids()), flush=True)
"""


def test_no_worker_is_started_after_shutdown(tmp_path):
  # What a round still in flight at exit would do: it must fail, not fork a new worker.
  script = tmp_path / "prog.py"
  script.write_text(AFTER_SHUTDOWN)
  done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.splitlines()[-2:] == ["refused: True []", "again: 3 1"], done.stdout


AFTER_WORKER_SIGINT = """
import os, signal, time
import fedcompress
import tensorflow as tf
import tensorflow_federated as tff
from fedcompress.federated import runtime

runtime.install()

@tff.tensorflow.computation(tf.int32)
def add_one(x):
  return x + 1

assert add_one(1) == 2
(pid,) = runtime.worker_pids()
os.kill(pid, signal.SIGINT)  # What Ctrl-C does to the worker, in the driver's group.
while runtime.worker_pids():
  time.sleep(0.05)
try:
  add_one(2)
except Exception as e:
  print("refused:", "interrupted" in str(e), runtime.worker_pids(), flush=True)
else:
  print("ran", runtime.worker_pids(), flush=True)
"""


def test_no_worker_is_restarted_after_an_interrupt(tmp_path):
  # Issue 13, item 10: after Ctrl-C, one of TFF's threads restarted the worker the
  # signal had stopped, and gRPC logged its fork warnings under the one error line.
  script = tmp_path / "prog.py"
  script.write_text(AFTER_WORKER_SIGINT)
  done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.splitlines()[-1] == "refused: True []", done.stdout
