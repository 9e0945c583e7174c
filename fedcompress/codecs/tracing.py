"""te's `SimpleEncoder`, traced without autograph rewriting code that is already graph code.

`SimpleEncoder` traces its encoder inside `tf.function`s, and autograph then converts
every Python function those call outside TensorFlow's own package: it parses each one's
source, rewrites it and loads the result. tensor_encoding's core and fedcompress's stages
are written for graph mode (no Python `if`/`for` on tensor values: tensor_encoding
predates autograph, and our stages also run inside TFF computations, where nothing is
converted), so the rewrite changes no op; it was about a third of a process's first
FedAvg build, paid again by every fresh interpreter (binaries, notebooks, workers).

While a `SimpleEncoder` is built, autograph's rules mark both packages as not to convert
(how autograph already treats `tensorflow`, `numpy` and `keras`), and are put back after.
The `tf.function` bodies of `SimpleEncoder` itself are still converted, as always.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

GRAPH_CODE_PACKAGES = ("fedcompress", "tensorflow_model_optimization")

_lock = threading.RLock()
_depth = 0
_saved_rules: tuple = ()


@contextlib.contextmanager
def graph_code_unconverted() -> Iterator[None]:
  """Within: autograph calls `GRAPH_CODE_PACKAGES` functions as they are (re-entrant)."""
  global _depth, _saved_rules
  with _lock:
    if _depth == 0:
      _saved_rules = autograph_config.CONVERSION_RULES
      autograph_config.CONVERSION_RULES = tuple(
          autograph_config.DoNotConvert(p) for p in GRAPH_CODE_PACKAGES) + _saved_rules
    _depth += 1
  try:
    yield
  finally:
    with _lock:
      _depth -= 1
      if _depth == 0:
        autograph_config.CONVERSION_RULES = _saved_rules


def simple_encoder(encoder: te.core.Encoder, spec: tf.TensorSpec) -> te.core.SimpleEncoder:
  """`te.encoders.as_simple_encoder(encoder, spec)`, traced under `graph_code_unconverted`."""
  with graph_code_unconverted():
    return te.encoders.as_simple_encoder(encoder, spec)
