"""Native TensorFlow kernels for the codecs' loops, in the driver and in TFF's worker.

Some codec steps are sequential loops (a Huffman decoder follows one code after
another). In TensorFlow graph ops they run as a `tf.while_loop` of small vectorized
steps whose cost is per op run, not per value (see the README's speed section). Here
such a loop is one C++ kernel (`src/fc_ops.cc`), used where it is available and
computing the same bits as the graph ops it replaces, which stay as the fallback.

TFF runs every computation in its C++ `worker_binary`, which links TensorFlow statically
and loads no op libraries. `build.py` therefore compiles the kernels twice: for Python
(`tf.load_op_library`) and for the worker, where `LocalWorker` preloads them
(`worker_preload()`). Only workers fedcompress starts have them, so graphs use them only
after `use()`, which `fedcompress.federated.runtime` calls where it sets up such workers;
a graph run in TFF's default context keeps the graph ops.

`FEDCOMPRESS_NATIVE=0` (or false, no, off) keeps the graph ops everywhere, e.g. for remote
workers that run without the kernels (a graph with one fails there with TensorFlow's "Op
type not registered 'Fedcompress...'"). With no C/C++ compiler the build fails once,
says why on stderr, and the codecs use their graph ops: same bits, slower. The build's
cache is `FEDCOMPRESS_NATIVE_CACHE`, else `$XDG_CACHE_HOME/fedcompress/native`, else
`~/.cache/fedcompress/native`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from types import ModuleType

from fedcompress.native import build as _build

_lock = threading.Lock()
_state: dict[str, object] = {}  # "libraries", "ops" or "error", filled on first use.
_in_use = False  # Set by `use()`: the workers that run this process's graphs have them.
_disabled_depth = 0

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


worker_binary_path = _build.worker_binary_path


def _requested() -> tuple[bool, str | None]:
  """(wanted, the reason to say when FEDCOMPRESS_NATIVE was not understood)."""
  value = os.environ.get("FEDCOMPRESS_NATIVE", "1").strip().lower()
  if value in _ON or value in _OFF:
    return value in _ON, None
  return False, (f"FEDCOMPRESS_NATIVE={value!r} is none of {', '.join(_ON + _OFF)}; "
                 "taken as off")


def _say_unavailable(reason: str) -> None:
  print(f"fedcompress: native kernels unavailable, the codecs use their TensorFlow graph "
        f"ops (same bits, slower): {reason}", file=sys.stderr, flush=True)


def _load() -> None:
  if _state:
    return
  wanted, not_understood = _requested()
  if not wanted:
    _state["error"] = not_understood or "turned off by FEDCOMPRESS_NATIVE"
    if not_understood:
      _say_unavailable(not_understood)
    return
  import tensorflow as tf  # Deferred: nothing at import.

  try:
    libraries = _build.build(worker_binary_path(),
                             log=lambda line: print(line, file=sys.stderr, flush=True))
    module = tf.load_op_library(libraries.python)
  except (_build.BuildError, tf.errors.OpError) as e:
    _state["error"] = str(e)
    _say_unavailable(str(e))
    return
  _state["libraries"] = libraries
  _state["ops"] = module


def use() -> bool:
  """Puts the kernels in the graphs traced from now on; whether they are available.

  `fedcompress.federated.runtime` calls it where it starts its own worker (which gets
  them, `worker_preload()`) or connects to `experiments/worker.py`s: only TFF workers
  that fedcompress starts have the kernels, so graphs run elsewhere (TFF's default
  context) keep the graph ops. Tools that time codecs in a session of their own call
  it too, to time what the workers run. Builds them on first use.
  """
  global _in_use
  with _lock:
    _load()
    _in_use = "ops" in _state
    return _in_use


def ops() -> ModuleType | None:
  """The kernels' Python module after `use()`, or None: trace the graph ops."""
  with _lock:
    if not _in_use or _disabled_depth:
      return None
    return _state.get("ops")  # type: ignore[return-value]


def worker_preload() -> str | None:
  """The library to preload into TFF's worker_binary, or None when unavailable."""
  with _lock:
    _load()
    libraries = _state.get("libraries")
    return libraries.worker if libraries is not None else None  # type: ignore[union-attr]


def unavailable_reason() -> str | None:
  """Why the kernels cannot be used (None when they can)."""
  with _lock:
    _load()
    return _state.get("error")  # type: ignore[return-value]


@contextlib.contextmanager
def disabled():
  """Graphs traced inside use the TensorFlow graph ops (for comparing the two)."""
  global _disabled_depth
  with _lock:
    _disabled_depth += 1
  try:
    yield
  finally:
    with _lock:
      _disabled_depth -= 1
