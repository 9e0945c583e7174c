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

The same holds for the plain Python helpers TFF's learning code calls while a FedAvg
process is built (`TFF_HELPER_PACKAGES`: attrs, TFF's structure and type checks, Keras
metric finalizers, optimizers, tensor utilities): their control flow is on Python values
only, and converting them took ~1 s of CPU of each fresh process's first build (the
digits binary's build: 5.6-6.7 -> 4.4-4.9 s of wall time in 4 interleaved pairs, the
metrics identical to the last digit). Where such a function did branch on a tensor,
tracing would fail loudly ("using a tf.Tensor as a Python bool"), not change the graph.
`tf.function`s of those packages are still converted (autograph always converts the
function it is asked to).
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator, Sequence

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

GRAPH_CODE_PACKAGES = ("fedcompress", "tensorflow_model_optimization")
TFF_HELPER_PACKAGES = (
    "attr",
    "tensorflow_federated.python.common_libs",
    "tensorflow_federated.python.learning.metrics",
    "tensorflow_federated.python.learning.optimizers",
    "tensorflow_federated.python.learning.tensor_utils",
)

_lock = threading.RLock()
# Scopes open now, per package, across threads: the rules hold while any scope is open.
_open = collections.Counter()
_saved_rules: tuple = ()


def _set_rules(before: set[str]) -> None:
  """Rewrites autograph's rules if the set of open packages changed from `before`."""
  if set(_open) == before:
    return
  autograph_config.CONVERSION_RULES = tuple(
      autograph_config.DoNotConvert(p) for p in sorted(_open)) + _saved_rules


@contextlib.contextmanager
def unconverted(packages: Sequence[str]) -> Iterator[None]:
  """Within: autograph calls `packages`' functions as they are (nestable, re-entrant).

  Also a decorator. The rules in place before the outermost scope are put back, the
  same tuple, when the last scope closes.
  """
  global _saved_rules
  with _lock:
    if not _open:
      _saved_rules = autograph_config.CONVERSION_RULES
    before = set(_open)
    _open.update(packages)
    _set_rules(before)
  try:
    yield
  finally:
    with _lock:
      before = set(_open)
      _open.subtract(packages)
      for package in [p for p, count in _open.items() if count <= 0]:
        del _open[package]
      if _open:
        _set_rules(before)
      else:
        autograph_config.CONVERSION_RULES = _saved_rules


def graph_code_unconverted():
  """Within: autograph calls `GRAPH_CODE_PACKAGES` functions as they are (re-entrant)."""
  return unconverted(GRAPH_CODE_PACKAGES)


def simple_encoder(encoder: te.core.Encoder, spec: tf.TensorSpec) -> te.core.SimpleEncoder:
  """`te.encoders.as_simple_encoder(encoder, spec)`, traced under `graph_code_unconverted`."""
  with graph_code_unconverted():
    return te.encoders.as_simple_encoder(encoder, spec)
