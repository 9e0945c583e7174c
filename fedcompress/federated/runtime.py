"""TFF execution context whose C++ worker process fedcompress owns.

`import tensorflow_federated` installs a context that starts TFF's `worker_binary` on
first use, with our stdout/stderr inherited, and relies on `__del__` to stop it. In
practice the worker often outlives Python: it keeps a CPU busy and holds the write end
of a pipe, so `python experiments/x.py | tail` never ends. Here the worker:

* is started with `PR_SET_PDEATHSIG`, so the kernel kills it whenever the Python
  process dies, even by SIGKILL;
* is stopped explicitly at interpreter exit (normal exit, exception, SIGINT) and, once
  `install_signal_handlers()` ran, on SIGTERM;
* is installed only when asked: `install()` (idempotent; `run_experiment` and the
  binaries call it), `set_local_context` or `configure`. Importing this module changes
  nothing;
* writes its logs to /dev/null unless TF logs were asked for (`--tf_logs`).

`set_remote_context` runs rounds across remote workers instead (`--workers`, each
started by `experiments/worker.py`, which calls `serve_worker`), through TFF's own
mergeable-computation context; `configure` picks one of the two from the flags.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import ipaddress
import logging
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

import grpc
import portpicker
import tensorflow_federated as tff
from tensorflow_federated.python.core.backends.native import compiler
from tensorflow_federated.python.core.backends.test import compiler as test_compiler
from tensorflow_federated.python.core.environments.tensorflow_frontend import (
  tensorflow_computation,
)
from tensorflow_federated.python.core.impl.context_stack import context_base, context_stack_impl
from tensorflow_federated.python.core.impl.execution_contexts import (
  async_execution_context,
  sync_execution_context,
)
from tensorflow_federated.python.core.impl.executor_stacks import python_executor_stacks
from tensorflow_federated.python.core.impl.executors import (
  cardinalities_utils,
  executors_errors,
  remote_executor,
  remote_executor_grpc_stub,
  remote_executor_stub,
)
from tensorflow_federated.python.core.impl.types import placements

from fedcompress import native
from fedcompress.federated import quiet as _quiet
from fedcompress.federated import signals as _signals

_GRPC_MAX_MESSAGE_BYTES = 2 * 1000 * 1000 * 1000
GRPC_CHANNEL_OPTIONS = [
    ("grpc.max_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE_BYTES),
]
_PR_SET_PDEATHSIG = 1
# How long a remote worker may be unreachable before a round fails (--worker_timeout_s).
DEFAULT_WORKER_TIMEOUT_S = 120.0
_READY_TIMEOUT_S = 120.0

_live_workers: set[LocalWorker] = set()
_lock = threading.Lock()


worker_binary_path = native.worker_binary_path


def _die_with_parent() -> None:
  # Runs in the child between fork and exec. The kernel sends SIGKILL to the worker
  # when the thread that started it ends, so a killed driver never leaves it behind.
  # `stop()` asks with SIGINT first, which must not be left ignored.
  libc = ctypes.CDLL("libc.so.6", use_errno=True)
  libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  _signals.restore_default_sigint()


class LocalWorker:
  """One `worker_binary` process serving TFF's executor service on a local port."""

  def __init__(self, port: int | None = None, max_concurrent_computation_calls: int = -1):
    self.port = port or portpicker.pick_unused_port()
    self.max_concurrent_computation_calls = max_concurrent_computation_calls
    self.process: subprocess.Popen[bytes] | None = None
    self.native_kernels = False  # Whether `start()` gave it the native kernels.

  def start(self) -> LocalWorker:
    args = [
        worker_binary_path(),
        f"--port={self.port}",
        f"--max_concurrent_computation_calls={self.max_concurrent_computation_calls}",
    ]
    out = None if _quiet.tf_logs_requested() else subprocess.DEVNULL
    env = None
    preload = native.worker_preload()
    self.native_kernels = preload is not None
    if preload is not None:  # The codecs' native kernels (fedcompress/native).
      env = dict(os.environ)
      env["LD_PRELOAD"] = " ".join(p for p in (preload, env.get("LD_PRELOAD")) if p)
    self.process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=_die_with_parent,
        env=env)
    with _lock:
      _live_workers.add(self)
    return self

  def alive(self) -> bool:
    return self.process is not None and self.process.poll() is None

  def interrupted(self) -> bool:
    """Whether the worker has exited because of a SIGINT (Ctrl-C)."""
    return self.process is not None and self.process.poll() == -signal.SIGINT

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


class WorkerUnavailableError(RuntimeError):
  """A TFF worker did not become ready, or stopped answering, within its time limit."""


class WorkerInterruptedError(WorkerUnavailableError):
  """The local worker got the SIGINT of a Ctrl-C, which reaches the whole process group:
  the run is being interrupted (the main thread may meet this before its own
  KeyboardInterrupt)."""


# What a computation that failed inside a TFF worker (local or remote) raises in the
# driver: gRPC's error, carrying the worker's message (a damaged sqlite read by the
# client's dataset, an op that failed).
COMPUTATION_ERRORS = (grpc.RpcError,)


def describe_computation_error(error: BaseException) -> str:
  """The worker's own message of a failed computation, on one line, without TFF's frame."""
  details = error.details() if callable(getattr(error, "details", None)) else None
  text = (details or str(error) or type(error).__name__).strip()
  # The first line holds the message; the next ones are TensorFlow's node and TFF's
  # block listings, hundreds of characters of generated names.
  first = text.splitlines()[0] if text else type(error).__name__
  for prefix in ("Failed to run computation: ", "Step() failed: "):
    first = first.removeprefix(prefix)
  first = first.split(" [[{{")[0]
  missing = re.search(r"Op type not registered '(Fedcompress\w+)'", first)
  if missing:
    # TensorFlow's line goes on about tf.contrib and lists the binary's ops.
    return (f"the TFF worker has no kernel {missing.group(1)}: it was started without "
            "fedcompress's native kernels (remote workers: start them with "
            "experiments/worker.py where the kernels build, or run this driver with "
            "FEDCOMPRESS_NATIVE=0)")
  return first


def wait_for_stub(target: str, timeout_s: float = _READY_TIMEOUT_S,
                  alive: Callable[[], bool] | None = None):
  """Returns a ready `RemoteExecutorGrpcStub` for `target` ('host:port')."""
  channel = grpc.insecure_channel(target, GRPC_CHANNEL_OPTIONS)
  stub = remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel)
  return _wait_until_ready(stub, target, timeout_s, alive)


def _wait_until_ready(stub, target: str, timeout_s: float,
                      alive: Callable[[], bool] | None = None):
  deadline = time.monotonic() + timeout_s
  while not stub.is_ready:
    if alive is not None and not alive():
      raise WorkerUnavailableError(f"TFF worker for {target} exited before it became ready.")
    if time.monotonic() > deadline:
      raise WorkerUnavailableError(
          f"TFF worker at {target} not ready after {timeout_s:.0f}s; is experiments/worker.py "
          "running there?")
    time.sleep(0.05)
  return stub


class _LocalWorkerManager:
  """Starts the local worker on first use and restarts it if it died."""

  def __init__(self, max_concurrent_computation_calls: int):
    self._max_calls = max_concurrent_computation_calls
    self._worker: LocalWorker | None = None
    self._stub = None

  def get_stub(self):
    if _shut_down.is_set():
      # A round still in flight while the process exits (SIGINT, SIGTERM) must not
      # start a fresh worker: that worker would be forked during gRPC teardown.
      raise RuntimeError("fedcompress.federated.runtime is shut down; no TFF worker is started")
    if self._stub is not None and self._worker is not None and self._worker.alive():
      if self._stub.is_ready:
        return self._stub
    if self._worker is not None and self._worker.interrupted():
      # Ctrl-C reached the worker with the rest of the process group: the run is being
      # interrupted. A worker forked now (from one of TFF's threads, while the main
      # thread handles the KeyboardInterrupt) would make gRPC log its fork warnings
      # under the one error line, and die at exit anyway.
      raise WorkerInterruptedError("the local TFF worker was interrupted (SIGINT); it is "
                                   "not restarted in this run (the next run_experiment, or "
                                   "fedcompress.install_runtime(), starts a fresh one)")
    if self._worker is not None:
      self._worker.stop()
    self._worker = LocalWorker(max_concurrent_computation_calls=self._max_calls).start()
    self._stub = wait_for_stub(f"localhost:{self._worker.port}", alive=self._worker.alive)
    return self._stub

  def interrupted(self) -> bool:
    """Whether the worker was interrupted (SIGINT reached it)."""
    return self._worker is not None and self._worker.interrupted()

  def stop(self) -> None:
    if self._worker is not None:
      self._worker.stop()
    self._worker = None
    self._stub = None


def _compile(comp):
  """TFF's native compilation, after lowering the secure-sum intrinsics to plain sums.

  TFF's C++ worker cannot run `federated_secure_sum_bitwidth`/`_modular_sum` ("Cannot
  embed a federated value"); TFF's own test context lowers them the same way, checking
  each summand against the bit width (`fedcompress.federated.secure`). A computation
  without those intrinsics is unchanged.
  """
  comp = test_compiler.replace_secure_intrinsics_with_bodies(comp)
  return compiler.desugar_and_transform_to_native(comp)


_manager: _LocalWorkerManager | None = None
_shut_down = threading.Event()


def _executor_factory(get_stub: Callable[[], remote_executor_grpc_stub.RemoteExecutorGrpcStub],
                      made: list | None = None
                      ) -> python_executor_stacks.ResourceManagingExecutorFactory:
  """One `RemoteExecutor` per cardinality, on the stub `get_stub()` returns; each one
  made is appended to `made` (to be closed: `_close_remote`)."""

  def stack_fn(cardinalities):
    # A computation with no CLIENTS-placed value (e.g. `initialize`) infers no CLIENTS
    # cardinality, and the worker refuses an executor without one.
    if cardinalities.get(placements.CLIENTS) is None:
      cardinalities[placements.CLIENTS] = 0
    executor = remote_executor.RemoteExecutor(_ForgivingDisposeStub(get_stub()))
    executor.set_cardinalities(cardinalities)
    if made is not None:
      made.append(executor)
    return executor

  return python_executor_stacks.ResourceManagingExecutorFactory(executor_stack_fn=stack_fn)


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
  _shut_down.clear()
  _stop_at_exit()
  calls = default_max_concurrent_clients() if max_concurrent_clients is None else (
      max_concurrent_clients)
  manager = _LocalWorkerManager(calls)
  # Its worker is started with the codecs' native kernels where they build: graphs
  # traced from now on use them (before, and in other TFF contexts, the graph ops).
  native.use()

  context = sync_execution_context.SyncExecutionContext(
      executor_fn=_executor_factory(manager.get_stub),
      compiler_fn=_compile,
      transform_args=tensorflow_computation.transform_args,
      transform_result=tensorflow_computation.transform_result,
  )
  _close_remote()
  context_stack_impl.context_stack.set_default_context(context)
  _manager = manager


def parse_worker_address(address: str) -> str:
  """Checks one 'HOST:PORT' worker address and returns it stripped."""
  address = address.strip()
  host, sep, port = address.rpartition(":")
  if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise ValueError(f"worker address must be HOST:PORT, got {address!r}")
  if ":" in host and not (host.startswith("[") and host.endswith("]")):
    # Taken as the host '::1' of another port, it was waited for, then blamed on a
    # worker not running (review R6 of s47).
    raise ValueError(f"worker address must be HOST:PORT with an IPv6 host in brackets "
                     f"([{host}]:{port}), got {address!r}")
  return address


_THIS_HOST = "this host"


@functools.lru_cache(maxsize=1)
def _this_hosts_addresses() -> frozenset[str]:
  """The addresses of this machine's own names (those a listed worker may be called by)."""
  found = set()
  for name in {socket.gethostname(), socket.getfqdn()}:
    try:
      found |= {info[4][0] for info in socket.getaddrinfo(name, None)}
    except (OSError, UnicodeError):
      pass
  return frozenset(found)


def _endpoints(address: str) -> set[tuple[str, int]]:
  """(IP, port) pairs `address` reaches; its own spelling where the host does not resolve."""
  host, _, port = address.rpartition(":")
  try:
    infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
  except (OSError, UnicodeError):  # Said when it is connected to ('a..b' is no name).
    return {(host, int(port))}
  return {(_machine(info[4][0]), int(port)) for info in infos}


def _machine(ip: str) -> str:
  """`ip`, or one name for every address of this machine: 127.0.0.2, ::1, 0.0.0.0 and
  its own interface's address all reach a worker listening here on all interfaces,
  and two of them ran both shares of every round on one worker (review R6 of s47)."""
  address = ipaddress.ip_address(ip.split("%")[0])
  if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:127.0.0.1
    address = address.ipv4_mapped
  if address.is_loopback or address.is_unspecified or ip in _this_hosts_addresses():
    return _THIS_HOST
  return ip


def check_distinct_workers(addresses: Sequence[str]) -> None:
  """Refuses a worker listed twice, under one spelling or two (`localhost`, `127.0.0.1`).

  TFF splits a round's clients across the entries: one worker named twice took both
  shares while the run recorded two workers.
  """
  seen: list[tuple[str, set[tuple[str, int]]]] = []
  for address in addresses:
    ends = _endpoints(address)
    for other, other_ends in seen:
      if ends & other_ends:
        raise ValueError(f"workers {other} and {address} are one worker: list each worker "
                         "once (listed twice, it ran both shares of every round)")
    seen.append((address, ends))


class _RemoteContext(context_base.SyncContext):
  """TFF's mergeable-computation context over remote workers.

  Each round is split into subrounds by TFF's `MergeableCompExecutionContext`: one per
  worker, or more when `max_clients_per_worker` asks for it. TFF hands each worker one
  subround at a time and merges the partial aggregates, so a worker then never holds
  more than `max_clients_per_worker` clients at once. That is the only concurrency
  limit a driver can impose: a worker's own `max_concurrent_computation_calls` is a
  flag of the worker process (`experiments/worker.py`), not part of the gRPC protocol.
  """

  def __init__(self, async_contexts: Sequence[context_base.AsyncContext],
               max_clients_per_worker: int | None):
    self._async_contexts = list(async_contexts)
    self._max_clients = max_clients_per_worker if (
        max_clients_per_worker is not None and max_clients_per_worker > 0) else None
    self._by_subrounds: dict[int, context_base.SyncContext] = {}

  def num_subrounds(self, num_clients: int | None) -> int:
    """Subrounds for a call with `num_clients` CLIENTS values (None: no such value)."""
    workers = len(self._async_contexts)
    if self._max_clients is None or not num_clients:
      return workers
    return max(workers, math.ceil(num_clients / self._max_clients))

  def invoke(self, comp, arg):
    num_clients = None
    if arg is not None:
      num_clients = cardinalities_utils.infer_cardinalities(
          arg, comp.type_signature.parameter).get(placements.CLIENTS)
    subrounds = self.num_subrounds(num_clients)
    context = self._by_subrounds.get(subrounds)
    if context is None:
      context = tff.backends.native.create_mergeable_comp_execution_context(
          self._async_contexts, num_subrounds=subrounds)
      self._by_subrounds[subrounds] = context
    return context.invoke(comp, arg)


class _ForwardingStub(remote_executor_stub.RemoteExecutorStub):
  """A stub that passes every call to another one through `_call`."""

  def __init__(self, stub: remote_executor_stub.RemoteExecutorStub):
    self._stub = stub

  def _call(self, method: str, *args, **kwargs):
    return getattr(self._stub, method)(*args, **kwargs)

  def get_executor(self, request):
    return self._call("get_executor", request)

  def create_value(self, request):
    return self._call("create_value", request)

  def create_struct(self, request):
    return self._call("create_struct", request)

  def create_call(self, request):
    return self._call("create_call", request)

  def create_selection(self, request):
    return self._call("create_selection", request)

  def compute(self, request):
    return self._call("compute", request)

  def dispose(self, request):
    return self._call("dispose", request)

  def dispose_executor(self, request):
    return self._call("dispose_executor", request)

  @property
  def is_ready(self) -> bool:
    return self._stub.is_ready


class _ForgivingDisposeStub(_ForwardingStub):
  """Releasing values on a worker that cannot be reached is a no-op, not an error.

  TFF releases a worker's values from `weakref.finalize` callbacks, and at interpreter
  exit those run before fedcompress's own shutdown. After a Ctrl-C (which the local
  worker, in the same process group, receives too) or a SIGTERM mid-round, the worker
  is gone and every release failed with UNAVAILABLE: a gRPC traceback after the run's
  one `error:` line (seen in the chaos test on a fast machine). A value on a worker
  that is gone has nothing left to release.
  """

  def dispose(self, request):
    try:
      return self._call("dispose", request)
    except executors_errors.RetryableError:
      return None

  def dispose_executor(self, request):
    try:
      return self._call("dispose_executor", request)
    except executors_errors.RetryableError:
      return None


class _DeadlineStub(_ForwardingStub):
  """A worker's stub that gives up once the worker has been unreachable for too long.

  TFF marks UNAVAILABLE (and FAILED_PRECONDITION) as retryable and its execution
  context retries them without limit, so a dead worker would leave the driver waiting
  forever. The failures pass through as before (TFF retries them) until the worker has
  failed every call for `timeout_s`; the next failure is a `WorkerUnavailableError`,
  which TFF does not retry. Any answer from the worker resets the clock.
  """

  def __init__(self, stub: remote_executor_stub.RemoteExecutorStub, address: str,
               timeout_s: float):
    super().__init__(stub)
    self._address = address
    self._timeout_s = timeout_s
    self._failing_since: float | None = None

  def _call(self, method: str, *args, **kwargs):
    try:
      result = getattr(self._stub, method)(*args, **kwargs)
    except executors_errors.RetryableError as e:
      now = time.monotonic()
      if self._failing_since is None:
        self._failing_since = now
      elif now - self._failing_since > self._timeout_s:
        raise WorkerUnavailableError(
            f"TFF worker {self._address} has not answered for "
            f"{now - self._failing_since:.0f} s ({e}); is it still running? "
            "(--worker_timeout_s sets how long to wait)") from e
      raise
    self._failing_since = None
    return result


_remote_channels: list[grpc.Channel] = []
# The executors made on remote workers, closed with the channels: a worker keeps what an
# executor holds until the driver disposes of it, and a driver that only closed its
# channels left 150-200 MB in each worker per run (a sweep of runs on long-lived
# workers would run them out of memory).
_remote_executors: list[remote_executor.RemoteExecutor] = []


def is_remote() -> bool:
  """Whether computations now run on remote workers (`set_remote_context`)."""
  return isinstance(tff.framework.get_context_stack().current, _RemoteContext)


# How long closing waits for workers to free their executors. A worker that stopped
# answering without closing its connections (a stopped process, a frozen host) would
# hold a call, and so the driver's exit, without end.
_CLOSE_TIMEOUT_S = 10.0


def _close_executors(executors: list[remote_executor.RemoteExecutor]) -> None:
  for executor in executors:
    try:
      # One DisposeExecutor call (not retried: a worker gone has nothing to free).
      executor.close()
    except Exception:  # noqa: BLE001 (at exit, after whatever ended the run)
      pass


def _close_remote() -> None:
  executors = list(_remote_executors)
  _remote_executors.clear()
  if executors:
    closing = threading.Thread(target=_close_executors, args=(executors,), daemon=True)
    closing.start()
    closing.join(_CLOSE_TIMEOUT_S)  # Past it, closing the channels cancels the calls.
  while _remote_channels:
    _remote_channels.pop().close()


def set_remote_context(workers: Sequence[str], *, max_concurrent_clients: int | None = None,
                       ready_timeout_s: float = 60.0,
                       unavailable_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S) -> None:
  """Runs every computation across remote TFF workers (`experiments/worker.py`).

  Uses TFF's own distributed runtime: `tff.backends.native.
  create_mergeable_comp_execution_context` over one `tff.framework.AsyncExecutionContext`
  per worker, each around a `tff.framework.RemoteExecutor` on a `RemoteExecutorGrpcStub`.
  A round's clients are split across the workers and their partial aggregates merged,
  so a round may use at most one aggregation level (FedAvg and its encoded variants do).
  The local worker, if running, is stopped; `set_local_context()` goes back.

  Args:
    workers: 'HOST:PORT' of each worker; all must run this TFF version.
    max_concurrent_clients: most clients a worker trains at once, enforced by running
      more (sequential) subrounds per worker; `None` or <= 0: one subround per worker,
      bounded only by each worker's own `--max_concurrent_computation_calls`.
    ready_timeout_s: how long to wait for each worker to accept connections.
    unavailable_timeout_s: how long a worker may fail every call (it died, or the
      network is down) before a computation raises `WorkerUnavailableError` instead
      of TFF retrying it forever.

  Raises:
    ValueError: `workers` is empty, an address is not HOST:PORT, or two name one worker.
    RuntimeError: a worker did not become ready in time.
  """
  global _manager
  addresses = [parse_worker_address(w) for w in workers]
  if not addresses:
    raise ValueError("set_remote_context needs at least one worker address")
  # experiments/worker.py starts its worker with the native kernels where they build
  # (FEDCOMPRESS_NATIVE=0 here if they cannot there: `describe_computation_error`).
  native.use()
  check_distinct_workers(addresses)
  channels, contexts = [], []
  try:
    for address in addresses:
      channel = grpc.insecure_channel(address, GRPC_CHANNEL_OPTIONS)
      channels.append(channel)
      stub = _DeadlineStub(
          _wait_until_ready(remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel),
                            address, ready_timeout_s), address, unavailable_timeout_s)
      contexts.append(async_execution_context.AsyncExecutionContext(
          # Executors are made as computations first run, after the old ones are closed.
          executor_fn=_executor_factory(lambda stub=stub: stub, _remote_executors),
          compiler_fn=_compile,
          transform_args=tensorflow_computation.transform_args,
          transform_result=tensorflow_computation.transform_result,
      ))
  except BaseException:
    for channel in channels:
      channel.close()
    raise
  if _manager is not None:
    _manager.stop()
    _manager = None
  _close_remote()
  _stop_at_exit()
  _remote_channels.extend(channels)
  context_stack_impl.context_stack.set_default_context(
      _RemoteContext(contexts, max_concurrent_clients))


def configure(workers: Sequence[str] | None = None, max_concurrent_clients: int | None = None,
              worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S) -> None:
  """Sets the execution context from the binaries' runtime flags.

  Args:
    workers: `--workers` ('HOST:PORT' list); empty or None runs on the local worker.
    max_concurrent_clients: `--max_concurrent_clients`; see `set_local_context` and
      `set_remote_context`.
    worker_timeout_s: `--worker_timeout_s`, how long a remote worker may take to
      accept connections and may be unreachable later (see `set_remote_context`).
  """
  if workers:
    set_remote_context(workers, max_concurrent_clients=max_concurrent_clients,
                       ready_timeout_s=worker_timeout_s, unavailable_timeout_s=worker_timeout_s)
  else:
    set_local_context(max_concurrent_clients)


def worker_pids() -> list[int]:
  """PIDs of the worker processes this Python process started and has not stopped."""
  with _lock:
    return sorted(w.process.pid for w in _live_workers if w.alive())


class PortTakenError(RuntimeError):
  """A worker's port has a listener already."""


def _check_port_free(port: int) -> None:
  """Raises PortTakenError if something listens on `port` already.

  TFF's worker binds its port with SO_REUSEPORT: a second worker on a port served
  already started, was found ready (answered by either), and the kernel then spread the
  drivers' connections over both, an old worker of another checkout among them. A plain
  bind (SO_REUSEADDR, so that a worker stopped a moment ago does not count) fails
  wherever a socket listens.
  """
  try:  # IPv6's wildcard takes IPv4's too; a host without IPv6 has only IPv4.
    probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
  except OSError:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  with probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("", port))
    except OSError as e:
      raise PortTakenError(f"port {port} is taken ({e.strerror})") from None


def serve_worker(port: int, max_concurrent_computation_calls: int | None = None, *,
                 on_ready: Callable[[str], None] = print) -> int:
  """Runs one `worker_binary` on `port` in the foreground until it exits or is signalled.

  SIGINT and SIGTERM are forwarded to the worker, which is then waited for (and killed
  if it does not stop within 5 s). The worker also dies with this process, by any signal.

  Args:
    port: port the worker serves TFF's executor service on (all interfaces).
    max_concurrent_computation_calls: the worker's limit on client computations run at
      once; `None` picks `default_max_concurrent_clients()` for this machine, <= 0 means
      no limit.
    on_ready: called with one line once the worker accepts connections.

  Returns:
    0 after a signalled, clean stop; otherwise the worker's own exit status.
  """
  calls = (default_max_concurrent_clients() if max_concurrent_computation_calls is None
           else max_concurrent_computation_calls)
  worker = LocalWorker(port, calls)
  received: list[int] = []

  def forward(signum, frame):  # noqa: ARG001
    received.append(signum)
    if worker.alive():
      worker.process.send_signal(signum)

  _check_port_free(port)
  previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    worker.start()
    if received:  # Signalled while starting: the handler had no process to forward to.
      worker.process.send_signal(received[-1])
    target = f"localhost:{port}"
    channel = grpc.insecure_channel(target, GRPC_CHANNEL_OPTIONS)
    try:
      _wait_until_ready(remote_executor_grpc_stub.RemoteExecutorGrpcStub(channel), target,
                        _READY_TIMEOUT_S, lambda: worker.alive() and not received)
    except RuntimeError:
      if not received:
        raise
    finally:
      channel.close()
    if not received:
      kernels = ("with fedcompress's native kernels" if worker.native_kernels else
                 f"WITHOUT fedcompress's native kernels ({native.unavailable_reason()}): "
                 "drivers must run with FEDCOMPRESS_NATIVE=0")
      on_ready(f"TFF worker ready on port {port} (pid {worker.process.pid}, "
               f"max_concurrent_computation_calls={calls}), {kernels}; Ctrl-C or SIGTERM "
               "stops it.")
    # Polled, not one untimed wait: a signal arriving during an untimed wait leaves it
    # untimed (the syscall resumes), so a worker that did not stop on the forwarded
    # signal was never killed (seen once: worker.py still up 30 s after SIGTERM).
    stop_deadline = None
    while True:
      try:
        code = worker.process.wait(timeout=0.5)
        break
      except subprocess.TimeoutExpired:
        if received and stop_deadline is None:
          stop_deadline = time.monotonic() + 5.0
        if stop_deadline is not None and time.monotonic() > stop_deadline:
          worker.process.kill()
  finally:
    worker.stop()
    for s, handler in previous.items():
      signal.signal(s, handler)
  return 0 if received else code


def shutdown() -> None:
  """Stops every worker this process started, for good. Safe to call more than once.

  Runs at interpreter exit. Afterwards no local worker is started again (until
  `set_local_context()` is called anew).
  """
  _shut_down.set()
  if _remote_channels:
    # A round interrupted on remote workers leaves the other workers' parts pending on
    # TFF's event loop; once their channels close, asyncio logged each as a "Task
    # exception was never retrieved" traceback (~100 lines after the run's one line).
    # The run is over: nothing is left to retrieve them.
    logging.getLogger("asyncio").disabled = True
  _close_remote()
  if _manager is not None:
    _manager.stop()
  with _lock:
    workers = list(_live_workers)
  for worker in workers:
    worker.stop()


def _on_sigterm(signum, frame):
  # Turn SIGTERM into a normal exit so `finally` blocks and atexit handlers run.
  _signals.raise_or_redeliver(signum, frame, _signals.Terminated(signum))


def _on_sigint(signum, frame):
  # Python's own handler, except that a Ctrl-C arriving inside a gc callback is not lost.
  _signals.raise_or_redeliver(signum, frame, KeyboardInterrupt())


def install_signal_handlers() -> None:
  """Makes SIGTERM exit like an exception (cleanup runs). Main thread only.

  Neither SIGTERM nor SIGINT is lost when it arrives inside a gc callback or `__del__`
  (see `signals.raise_or_redeliver`). A SIGINT the process was started ignoring stays
  ignored.
  """
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
      signal.signal(signal.SIGINT, _on_sigint)


_atexit_registered = False


def _stop_at_exit() -> None:
  global _atexit_registered
  if not _atexit_registered:
    atexit.register(shutdown)
    _atexit_registered = True


def installed() -> bool:
  """Whether a fedcompress context (local or remote workers) is in place."""
  return _manager is not None or bool(_remote_channels)


def install(max_concurrent_clients: int | None = None) -> None:
  """Makes TFF run computations on a worker this process owns; idempotent.

  Importing fedcompress changes nothing in the process: TFF keeps the context it
  installed on `import tensorflow_federated`, whose worker may outlive Python. This
  replaces it with `set_local_context(max_concurrent_clients)` unless a fedcompress
  context is already in place (then it does nothing). The binaries call it through
  `configure`, `run_experiment` calls it before its first round, and a notebook or
  script that builds and runs a process by hand calls it once (also as
  `fedcompress.install_runtime()`).

  Args:
    max_concurrent_clients: see `set_local_context`.
  """
  if _manager is not None and _manager.interrupted():
    # Jupyter's "Interrupt kernel" signals the worker with the kernel: every later run of
    # the kernel failed until a restart. A run starting now gets a fresh worker (not one
    # forked mid-run, while the interrupted round unwinds: see `get_stub`).
    _manager.stop()
  if not installed():
    set_local_context(max_concurrent_clients)

