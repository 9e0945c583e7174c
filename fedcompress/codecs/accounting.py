"""Exact bit accounting of what crosses the wire.

A value's cost is every tensor of its (encoded) structure at its dtype's full width:
a bit-packed int32 costs 32 bits however many quantized values it holds, and side
information (min/max, norms, seeds, the mean's weight) is counted like any tensor.
`structure_bits_tf` is what the processes call inside their computations, so
dynamically shaped encodings are counted from their real size; each codec's
`bits_formula` (its record in `fedcompress.codecs.registry`) is the pure-Python
reference the in-graph count is tested against.

Entropy-coded streams have two sizes. `structure_bits_tf` counts what is actually
sent (the processes report it as `coded_bits`); `raw_structure_bits_tf` counts the
same structure with every coded stream replaced by what its symbols would cost
bit-packed (reported as `bits`, so `bits` means the same thing with and without an
entropy coder). A codec that codes streams declares how to compute that in its
record's `raw_bits_rules`, keyed by the coded tensor's key in the encoded structure.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import tensorflow as tf
import tree

from fedcompress.codecs.stages._common import dtype_bits

# Encoded-tensor key (last component of its path) -> in-graph raw size of that tensor.
RawBitsRule = Callable[[tf.Tensor], tf.Tensor]
RawBitsRules = Mapping[str, RawBitsRule]


def tensor_bits(shape: Sequence[int], dtype) -> int:
  """Bits of one dense tensor of a fully known shape."""
  return math.prod(int(d) for d in shape) * dtype_bits(dtype)


def specs_bits(specs: Iterable[tf.TensorSpec]) -> int:
  """Bits of a flat collection of fully defined `tf.TensorSpec`s."""
  return sum(tensor_bits(s.shape.as_list(), s.dtype) for s in specs)


def structure_bits_tf(structure) -> tf.Tensor:
  """In-graph bit count (int64 scalar) of a nested structure of tensors."""
  total = tf.constant(0, tf.int64)
  for t in tf.nest.flatten(structure):
    t = tf.convert_to_tensor(t)
    total += tf.size(t, out_type=tf.int64) * dtype_bits(t.dtype)
  return total


def _leaf_key(path) -> str:
  # tensor_encoding flattens encoded structures to 'a/b/key' strings; nested
  # containers add path components. The stage's own key is the last name.
  return str(path[-1]).rsplit("/", 1)[-1] if path else ""


def has_coded_streams(structure, rules: RawBitsRules) -> bool:
  """Whether any tensor of `structure` is a coded stream of `rules` (Python, static)."""
  return any(_leaf_key(path) in rules for path, _ in tree.flatten_with_path(structure))


def raw_structure_bits_tf(structure, rules: RawBitsRules) -> tf.Tensor:
  """Like `structure_bits_tf`, with coded streams counted at their bit-packed size."""
  total = tf.constant(0, tf.int64)
  for path, t in tree.flatten_with_path(structure):
    t = tf.convert_to_tensor(t)
    rule = rules.get(_leaf_key(path))
    if rule is not None:
      total += tf.cast(rule(t), tf.int64)
    else:
      total += tf.size(t, out_type=tf.int64) * dtype_bits(t.dtype)
  return total


def bit_counts_tf(structure, rules: RawBitsRules | None = None
                  ) -> collections.OrderedDict[str, tf.Tensor]:
  """`{'bits': raw, 'coded_bits': actual}`, or just `{'bits'}` with no coded stream.

  Args:
    structure: an encoded structure (any nesting of tensors).
    rules: the raw-bits rules of the codecs that produced it (`CodecSpec.raw_bits_rules`).

  The key set is decided statically from the structure's names, so processes without
  an entropy coder keep their exact measurement type.
  """
  rules = rules or {}
  counts = collections.OrderedDict(bits=raw_structure_bits_tf(structure, rules))
  if has_coded_streams(structure, rules):
    counts["coded_bits"] = structure_bits_tf(structure)
  return counts
