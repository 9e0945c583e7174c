"""Native TensorFlow kernels for the codecs' loops, in the driver and in TFF's worker.

Some codec steps are sequential loops (a Huffman decoder follows one code after
another). In TensorFlow graph ops they run as a `tf.while_loop` of small vectorized
steps whose cost is per op run, not per value (see the README's speed section). Here
such a loop is one C++ kernel (`src/fc_ops.cc`), used where it is available and
computing the same bits as the graph ops it replaces, which stay as the fallback.

TFF runs every computation in its C++ `worker_binary`, which links TensorFlow statically
and loads no op libraries. `build.py` therefore compiles the kernels twice: for Python
(`tf.load_op_library`) and for the worker, where `LocalWorker` preloads them
(`worker_preload()`). Both come from one decision per process (`ops()`), so a graph that
uses a native op never goes to a worker started without it.

Set `FEDCOMPRESS_NATIVE=0` to use the graph ops only, e.g. for remote workers that run
without the native ops (a graph with one fails there with TensorFlow's "Op type not
registered 'Fedcompress...'"). With no C/C++ compiler the build fails once, says why
on stderr, and the codecs use their graph ops: same bits, slower.
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
_disabled_depth = 0


worker_binary_path = _build.worker_binary_path


def _requested() -> bool:
  return os.environ.get("FEDCOMPRESS_NATIVE", "1").strip().lower() not in ("0", "false", "no",
                                                                            "off")


def _load() -> None:
  if _state:
    return
  if not _requested():
    _state["error"] = "FEDCOMPRESS_NATIVE=0"
    return
  import tensorflow as tf  # Deferred: nothing at import.

  try:
    libraries = _build.build(worker_binary_path(),
                             log=lambda line: print(line, file=sys.stderr, flush=True))
    module = tf.load_op_library(libraries.python)
  except (_build.BuildError, tf.errors.OpError) as e:
    _state["error"] = str(e)
    print(f"fedcompress: native ops unavailable, the codecs use their TensorFlow graph "
          f"ops (same bits, slower): {e}", file=sys.stderr, flush=True)
    return
  _state["libraries"] = libraries
  _state["ops"] = module


def ops() -> ModuleType | None:
  """The native ops' Python module (builds them on first use), or None to use graph ops."""
  with _lock:
    _load()
    if _disabled_depth:
      return None
    return _state.get("ops")  # type: ignore[return-value]


def worker_preload() -> str | None:
  """The library to preload into TFF's worker_binary, or None when ops() is None."""
  with _lock:
    _load()
    libraries = _state.get("libraries")
    return libraries.worker if libraries is not None else None  # type: ignore[union-attr]


def unavailable_reason() -> str | None:
  """Why the native ops are not in use (None when they are)."""
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
