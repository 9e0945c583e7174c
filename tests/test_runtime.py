"""The worker_binary a fedcompress program starts never outlives it."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import sys, time
import fedcompress
import tensorflow as tf
import tensorflow_federated as tff
from fedcompress import runtime

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
  # Output piped: an orphaned worker holding the pipe would make this hang.
  proc = subprocess.Popen([sys.executable, str(script), mode], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
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
