"""TFF execution context whose C++ worker process fedcompress owns.

`import tensorflow_federated` installs a context that starts TFF's `worker_binary` on
first use, with our stdout/stderr inherited, and relies on `__del__` to stop it. In
practice the worker often outlives Python: it keeps a CPU busy and holds the write end
of a pipe, so `python experiments/x.py | tail` never ends. Here the worker:

* is started with `PR_SET_PDEATHSIG`, so the kernel kills it whenever the Python
  process dies, even by SIGKILL;
* is stopped explicitly at interpreter exit (normal exit, exception, SIGINT) and, once
  `install_signal_handlers()` ran, on SIGTERM;
* writes its logs to /dev/null unless TF logs were asked for (`--tf_logs`).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import grpc
import portpicker
import tensorflow_federated as tff
from tensorflow_federated.python.core.backends.native import compiler
from tensorflow_federated.python.core.environments.tensorflow_frontend import (
    tensorflow_computation,
)
from tensorflow_federated.python.core.impl.context_stack import context_stack_impl
from tensorflow_federated.python.core.impl.execution_contexts import sync_execution_context
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import (
    remote_executor,
    remote_executor_grpc_stub,
)
from tensorflow_federated.python.core.impl.types import placements

from fedcompress import _quiet

_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
GRPC_CHANNEL_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]
_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT_S = 120.0

_live_workers: set[LocalWorker] = set()
_lock = threading.Lock()


def worker_binary_path() -> str:
  """Path of the C++ `worker_binary` shipped inside the TFF wheel."""
  path = os.path.join(os.path.dirname(tff.__file__), "data", "worker_binary")
  if not os.path.isfile(path):
    raise RuntimeError(f"TFF's worker_binary is missing at {path}; reinstall tensorflow-federated.")
  return path


def _die_with_parent() -> None:
  # Runs in the child between fork and exec. The kernel sends SIGKILL to the worker
  # when the thread that started it ends, so a killed driver never leaves it behind.
  libc = ctypes.CDLL("libc.so.6", use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LocalWorker:
  """One `worker_binary` process serving TFF's executor service on a local port."""

  def __init__(self, port: int | None = None, max_concurrent_computation_calls: int = -1):
    self.port = port or portpicker.pick_unused_port()
    self.max_concurrent_computation_calls = max_concurrent_computation_calls
    self.process: subprocess.Popen[bytes] | None = None

  def start(self) -> LocalWorker:
    args = [
        worker_binary_path(),
        f"--port={self.port}",
        f"--max_concurrent_computation_calls={self.max_concurrent_computation_calls}",
    ]
    out = None if _quiet.tf_logs_requested() else subprocess.DEVNULL
    self.process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=_die_with_parent
    )
    with _lock:
      _live_workers.add(self)
    return self

  def alive(self) -> bool:
    return self.process is not None and self.process.poll() is None

  def stop(self, timeout_s: float = 5.0) -> None:
    """Stops the worker: SIGINT, then SIGKILL if it has not exited in time."""
    with _lock:
      _live_workers.discard(self)
    if not self.alive():
      return
    assert self.process is not None
    self.process.send_signal(signal.SIGINT)
    try:
      self.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
      self.process.kill()
      self.process.wait()


def wait_for_stub(target: str, timeout_s: float = _READY_TIMEOUT_S,
                  alive: Callable[[], bool] | None = None):
  """Returns a ready `RemoteExecutorGrpcStub` for `target` ('host:port')."""
  channel = grpc.insecure_channel(target, GRPC_CHANNEL_OPTIONS)
  stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
  deadline = time.monotonic() + timeout_s
  while not stub.is_ready:
    if alive is not None and not alive():
      raise RuntimeError(f"TFF worker for {target} exited before it became ready.")
    if time.monotonic() > deadline:
      raise RuntimeError(f"TFF worker at {target} not ready after {timeout_s:.0f}s.")
    time.sleep(0.05)
  return stub


class _LocalWorkerManager:
  """Starts the local worker on first use and restarts it if it died."""

  def __init__(self, max_concurrent_computation_calls: int):
    self._max_calls = max_concurrent_computation_calls
    self._worker: LocalWorker | None = None
    self._stub = None

  def get_stub(self):
    if self._stub is not None and self._worker is not None and self._worker.alive():
      if self._stub.is_ready:
        return self._stub
    if self._worker is not None:
      self._worker.stop()
    self._worker = LocalWorker(max_concurrent_computation_calls=self._max_calls).start()
    self._stub = wait_for_stub(f"localhost:{self._worker.port}", alive=self._worker.alive)
    return self._stub

  def stop(self) -> None:
    if self._worker is not None:
      self._worker.stop()
    self._worker = None
    self._stub = None


_manager: _LocalWorkerManager | None = None


def default_max_concurrent_clients() -> int:
  """Concurrent client computations for this machine: one per core."""
  return max(1, os.cpu_count() or 1)


def set_local_context(max_concurrent_clients: int | None = None) -> None:
  """Installs a sync TFF context backed by one fedcompress-owned local worker.

  Args:
    max_concurrent_clients: TFF's `max_concurrent_computation_calls`; `None` picks
      `default_max_concurrent_clients()`, a value <= 0 means no limit.
  """
  global _manager
  if _manager is not None:
    _manager.stop()
  calls = default_max_concurrent_clients() if max_concurrent_clients is None else (
      max_concurrent_clients)
  manager = _LocalWorkerManager(calls)

  def stack_fn(cardinalities):
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = 0
    executor = remote_executor.RemoteExecutor(manager.get_stub())
    executor.set_cardinalities(cardinalities)
    return executor

  factory = python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)
  context = sync_execution_context.SyncExecutionContext(
      executor_fn=factory,
      compiler_fn=compiler.desugar_and_transform_to_native,
      transform_args=tensorflow_computation.transform_args,
      transform_result=tensorflow_computation.transform_result,
  )
  context_stack_impl.context_stack.set_default_context(context)
  _manager = manager


def worker_pids() -> list[int]:
  """PIDs of the worker processes this Python process started and has not stopped."""
  with _lock:
    return sorted(w.process.pid for w in _live_workers if w.alive())


def shutdown() -> None:
  """Stops every worker this process started. Safe to call more than once."""
  if _manager is not None:
    _manager.stop()
  with _lock:
    workers = list(_live_workers)
  for worker in workers:
    worker.stop()


def _on_sigterm(signum, frame):  # noqa: ARG001
  # Turn SIGTERM into a normal exit so `finally` blocks and atexit handlers run.
  raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
  """Makes SIGTERM exit like an exception (cleanup runs). Main thread only."""
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)


atexit.register(shutdown)
_quiet.quiet_python_loggers()
# Replace the context TFF installed on import: ours is equally lazy but owns its worker.
set_local_context()


def configure(workers: list[str] | None = None, max_concurrent_clients: int | None = None
              ) -> None:
  """Sets the execution context from the binaries' runtime flags."""
  if workers:
    raise ValueError("--workers is not supported yet")
  set_local_context(max_concurrent_clients)
