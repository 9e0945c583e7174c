"""What the runtime frees and checks around remote workers, without starting one."""

import socket
import time

import portpicker
import pytest

from fedcompress.federated import runtime


def test_closing_does_not_wait_for_a_worker_that_stopped_answering(monkeypatch):
  # Disposing of an executor on a stopped worker blocks its call: the driver's exit
  # must not wait for it without end.
  class Stuck:
    def close(self):
      time.sleep(30)

  monkeypatch.setattr(runtime, "_CLOSE_TIMEOUT_S", 0.2)
  runtime._remote_executors.append(Stuck())
  began = time.monotonic()
  runtime._close_remote()
  assert time.monotonic() - began < 5 and runtime._remote_executors == []


def test_a_port_a_worker_listens_on_is_taken():
  # TFF's worker binds with SO_REUSEPORT: a second worker on a served port started,
  # and drivers reached either.
  port = portpicker.pick_unused_port()
  runtime._check_port_free(port)
  with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind(("", port))
    listener.listen()
    with pytest.raises(runtime.PortTakenError, match=f"port {port} is taken"):
      runtime._check_port_free(port)
  runtime._check_port_free(port)


_ABANDONED_TASK = """
import asyncio, grpc
from fedcompress.federated import runtime
runtime._remote_channels.append(grpc.insecure_channel("localhost:1"))
runtime._stop_at_exit()
loop = asyncio.new_event_loop()
async def part_of_a_round():
  raise ValueError("Cannot invoke RPC on closed channel!")
task = loop.create_task(part_of_a_round())
loop.run_until_complete(asyncio.sleep(0.01))
"""


@pytest.mark.slow  # A subprocess with remote workers.
def test_parts_of_a_round_left_on_remote_workers_are_not_logged_at_exit():
  # Interrupted with --workers, the other workers' parts of the round were logged at
  # exit as "Task exception was never retrieved" tracebacks (~100 lines).
  import subprocess
  import sys

  result = subprocess.run([sys.executable, "-c", _ABANDONED_TASK], capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0 and "never retrieved" not in result.stderr, result.stderr
  # The same without a remote context is logged (the test sees what it checks).
  local = _ABANDONED_TASK.replace('runtime._remote_channels.append(grpc.insecure_channel('
                                  '"localhost:1"))', "")
  result = subprocess.run([sys.executable, "-c", local], capture_output=True, text=True,
                          timeout=120, check=False)
  assert "Task exception was never retrieved" in result.stderr
