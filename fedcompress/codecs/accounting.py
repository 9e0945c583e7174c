"""Exact bit accounting of what crosses the wire.

A value's cost is every tensor of its (encoded) structure at its dtype's full width:
a bit-packed int32 costs 32 bits however many quantized values it holds, and side
information (min/max, norms, seeds, the mean's weight) is counted like any tensor.
The pure-Python functions here are the reference the in-graph counter is tested
against; `structure_bits_tf` is what the processes call inside their computations, so
dynamically shaped encodings are counted from their real size.

Entropy-coded streams have two sizes. `structure_bits_tf` counts what is actually
sent (the processes report it as `coded_bits`); `raw_structure_bits_tf` counts the
same structure with every coded stream replaced by what its symbols would cost
bit-packed (reported as `bits`, so `bits` means the same thing with and without an
entropy coder). A lossless coding stage declares how to compute that from its
stream with `register_raw_bits_rule(key, rule)`, keyed by its encoded-tensor key.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf
import tree

from fedcompress.units import GIBIT, MIBIT, format_bits  # noqa: F401  (re-exported)

# tensor_encoding's BitpackingEncodingStage fills only 28 of each int32's 32 bits, so
# a serialized value never needs a fifth protobuf varint byte.
BITPACK_TARGET_BITS = 28


def dtype_bits(dtype: tf.dtypes.DType | np.dtype | str) -> int:
  """Width in bits of one element of `dtype` (bool counts as 8, as serialized)."""
  dtype = tf.as_dtype(dtype)
  if dtype == tf.bool:
    return 8
  if dtype == tf.string:
    raise ValueError("string tensors have no fixed width; count their bytes instead")
  return dtype.size * 8


def tensor_bits(shape: Sequence[int], dtype) -> int:
  """Bits of one dense tensor of a fully known shape."""
  return math.prod(int(d) for d in shape) * dtype_bits(dtype)


def specs_bits(specs: Iterable[tf.TensorSpec]) -> int:
  """Bits of a flat collection of fully defined `tf.TensorSpec`s."""
  return sum(tensor_bits(s.shape.as_list(), s.dtype) for s in specs)


def bitpacked_int32_count(num_elements: int, bits: int) -> int:
  """Number of int32 words tensor_encoding's bitpacking uses for `num_elements` values."""
  return math.ceil(num_elements * bits / BITPACK_TARGET_BITS)


def uniform_quantized_bits(num_elements: int, bits: int) -> int:
  """Bits of one tensor through the `uniform` codec: packed words plus float32 min/max."""
  return bitpacked_int32_count(num_elements, bits) * 32 + 2 * 32


def structure_bits_tf(structure) -> tf.Tensor:
  """In-graph bit count (int64 scalar) of a nested structure of tensors."""
  total = tf.constant(0, tf.int64)
  for t in tf.nest.flatten(structure):
    t = tf.convert_to_tensor(t)
    total += tf.size(t, out_type=tf.int64) * dtype_bits(t.dtype)
  return total


# Encoded-tensor key (last component of its path) -> in-graph raw size of that tensor.
RawBitsRule = Callable[[tf.Tensor], tf.Tensor]
_RAW_BITS_RULES: dict[str, RawBitsRule] = {}


def register_raw_bits_rule(key: str, rule: RawBitsRule) -> None:
  """Declares that encoded tensors named `key` are coded streams.

  Args:
    key: the encoded-tensor key of a lossless coding stage (e.g. 'huffman_stream').
    rule: `stream -> int64 scalar`, the stream's symbols' bit-packed size in bits.
  """
  if not key or "/" in key:
    raise ValueError(f"raw-bits rule key must be a non-empty name without '/', got {key!r}")
  _RAW_BITS_RULES[key] = rule


def _leaf_key(path) -> str:
  # tensor_encoding flattens encoded structures to 'a/b/key' strings; nested
  # containers add path components. The stage's own key is the last name.
  return str(path[-1]).rsplit("/", 1)[-1] if path else ""


def has_coded_streams(structure) -> bool:
  """Whether any tensor of `structure` is a registered coded stream (Python, static)."""
  return any(_leaf_key(path) in _RAW_BITS_RULES
             for path, _ in tree.flatten_with_path(structure))


def raw_structure_bits_tf(structure) -> tf.Tensor:
  """Like `structure_bits_tf`, with coded streams counted at their bit-packed size."""
  total = tf.constant(0, tf.int64)
  for path, t in tree.flatten_with_path(structure):
    t = tf.convert_to_tensor(t)
    rule = _RAW_BITS_RULES.get(_leaf_key(path))
    if rule is not None:
      total += tf.cast(rule(t), tf.int64)
    else:
      total += tf.size(t, out_type=tf.int64) * dtype_bits(t.dtype)
  return total


def bit_counts_tf(structure) -> collections.OrderedDict[str, tf.Tensor]:
  """`{'bits': raw, 'coded_bits': actual}`, or just `{'bits'}` with no coded stream.

  The key set is decided statically from the structure's names, so processes without
  an entropy coder keep their exact measurement type.
  """
  counts = collections.OrderedDict(bits=raw_structure_bits_tf(structure))
  if has_coded_streams(structure):
    counts["coded_bits"] = structure_bits_tf(structure)
  return counts
