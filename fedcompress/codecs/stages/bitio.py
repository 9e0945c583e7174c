"""Bit I/O in graph ops: fields of 0..32 bits, most significant bit first, 32 per int32.

The entropy coders write their streams with `write_fields` and read them back with
`read_fields` on `padded_words(stream)`; everything is vectorized (cumulative sums and
sorted segment sums), so it runs inside TFF computations with no Python loop over bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from fedcompress.codecs.stages import _common

# `field_positions` sums widths in groups of this many by one matrix product.
_GROUP = 32
# [j, i] = 1 where j < i: a row of widths times it gives each one's exclusive prefix sum.
_BEFORE = np.triu(np.ones([_GROUP, _GROUP], np.float32), 1)


def _low_mask(widths: tf.Tensor) -> tf.Tensor:
  """int64 masks of the low `widths` (0..32) bits."""
  return tf.bitwise.left_shift(tf.constant(1, tf.int64), widths) - 1


def field_positions(widths: tf.Tensor, start=0) -> tf.Tensor:
  """`start + tf.cumsum(widths, exclusive=True)` as int64, for rank-1 widths in 0..32.

  TensorFlow's cumulative sum runs at ~6 ns per element on CPU (10 ms for the CNN's
  1.6M-symbol kernel). Here groups of 32 widths are summed by one float32 product with
  a triangular matrix (every partial sum at most 31 * 32, exact in float32 in any
  order) and only the group totals by `tf.cumsum`: the same integers, in ~5 ms.
  """
  w = tf.cast(widths, tf.float32)
  n = tf.size(w)
  groups = (n + _GROUP - 1) // _GROUP
  rows = tf.reshape(tf.pad(w, [[0, groups * _GROUP - n]]), [groups, _GROUP])
  starts = tf.cumsum(tf.cast(tf.reduce_sum(rows, 1), tf.int64), exclusive=True) + tf.cast(
      start, tf.int64)
  inner = tf.cast(tf.matmul(rows, _BEFORE), tf.int64)
  return tf.reshape(inner + starts[:, tf.newaxis], [-1])[:n]


class AlignedFields(NamedTuple):
  """A run of fields given left-aligned, for `write_field_runs`.

  Field i's value is in the top `widths[i]` (0..32) bits of the uint64 `aligned[i]`,
  every other bit zero. `write_field_runs` places such a field with one shift right by
  its offset in its word; a right-aligned value first needs the shift `64 - offset -
  width`, two passes more over the fields (~1 ms for the CNN kernel's 0.8M Huffman pair
  fields). A table lookup can give the aligned value as cheaply as the right-aligned one.
  """

  aligned: tf.Tensor
  widths: tf.Tensor


def write_fields(values: tf.Tensor, widths: tf.Tensor, *, values_fit: bool = False
                 ) -> tf.Tensor:
  """Concatenates `values[i]` as `widths[i]`-bit fields into int32 words.

  Args:
    values: rank-1 integer tensor; only the low `widths[i]` bits of each are written.
    widths: rank-1 integer tensor of field widths in 0..32, same length.
    values_fit: the caller guarantees `0 <= values[i] < 2**widths[i]` (as for Huffman
      codes), so the masking pass is skipped. Values that do not fit then corrupt
      their neighbours.

  Returns:
    int32 tensor of shape `[ceil(sum(widths) / 32)]`, the last word zero-padded.
  """
  return write_field_runs([(values, widths)], values_fit=values_fit)


def write_field_runs(runs: Sequence[tuple[tf.Tensor, tf.Tensor] | AlignedFields], *,
                     values_fit: bool = False) -> tf.Tensor:
  """`write_fields` of the runs' fields one after another, without concatenating them.

  Each run is `(values, widths)` (right-aligned values, as `write_fields` takes) or
  `AlignedFields`.

  A stream's header is a few fields and its payload one per symbol; concatenating the
  two copied both of the payload's int64 tensors (~4 ms each for the CNN's 1.6M-symbol
  kernel). Instead each run's fields are placed from the bit where the run before it
  ends, and the runs' words, which share at most the word where a run starts, are
  added: fields never overlap, so the sum is their OR. The same words.
  """
  start = tf.constant(0, tf.int64)
  run_sums = []
  for run in runs:
    values, widths = run
    widths = tf.cast(widths, tf.int64)
    pos = field_positions(widths, start)
    # Positions are >= 0: a shift and a mask are the quotient and remainder by 32.
    word = _common.shift_right_nonnegative(pos, 5)
    offset = tf.bitwise.bitwise_and(pos, tf.constant(31, tf.int64))
    # A field (<= 32 bits) starting at bit offset <= 31 of its word fits in the 64-bit
    # pair (word, word + 1); place it there, left aligned after `offset` bits.
    if isinstance(run, AlignedFields):
      placed = tf.bitwise.right_shift(values, tf.bitcast(offset, tf.uint64))
    else:
      values = tf.cast(values, tf.int64)
      shift = tf.bitcast(64 - offset - widths, tf.uint64)
      field = values if values_fit else tf.bitwise.bitwise_and(values, _low_mask(widths))
      placed = tf.bitwise.left_shift(tf.bitcast(field, tf.uint64), shift)
    # The fields that start in one word sum, without a carry, to that word's 64-bit
    # pair (as int64 too: addition without carries is the same in two's complement).
    # Positions only grow, so word ids are sorted and the sorted segment sum is one
    # sequential pass; its output ends at the run's last word id.
    run_sums.append(tf.math.segment_sum(tf.bitcast(placed, tf.int64), word))
    start = start + tf.reduce_sum(widths)
  num_words = (start + 31) // 32
  size = num_words + 2
  pair_sums = tf.add_n([tf.pad(sums, [[0, size - tf.size(sums, out_type=tf.int64)]])
                        for sums in run_sums])
  pair_sums = tf.bitcast(pair_sums, tf.uint64)
  # Each pair's high half goes to its word and its low half to the next.
  hi = tf.cast(tf.bitwise.right_shift(pair_sums, tf.constant(32, tf.uint64)), tf.int64)
  lo = tf.cast(tf.bitwise.bitwise_and(pair_sums, tf.constant(0xFFFFFFFF, tf.uint64)), tf.int64)
  words = (hi + tf.pad(lo[:-1], [[1, 0]]))[:num_words]
  return tf.bitcast(tf.cast(words, tf.uint32), tf.int32)


def padded_words(stream: tf.Tensor) -> tf.Tensor:
  """uint64 copy of the stream's words with two zero words appended (safe peeking)."""
  words = tf.cast(tf.bitcast(tf.reshape(tf.cast(stream, tf.int32), [-1]), tf.uint32),
                  tf.uint64)
  return tf.concat([words, tf.zeros([2], tf.uint64)], 0)


def read_fields(padded: tf.Tensor, pos: tf.Tensor, width) -> tf.Tensor:
  """Reads `width`-bit fields (<= 32) at bit positions `pos` of `padded_words` output.

  Positions past the end read zeros (or garbage from clamping), never fail; callers
  only use fields they wrote.
  """
  pos = tf.cast(pos, tf.int64)
  width = tf.cast(width, tf.int64)
  last = tf.cast(tf.size(padded), tf.int64) - 2
  # Fields are read at positions >= 0: a shift and a mask are `// 32` and `% 32`.
  word = tf.minimum(_common.shift_right_nonnegative(pos, 5), last)
  pair = tf.bitwise.bitwise_or(
      tf.bitwise.left_shift(_common.take(padded, word), tf.constant(32, tf.uint64)),
      _common.take(padded, word + 1))
  offset = tf.bitwise.bitwise_and(pos, tf.constant(31, tf.int64))
  shifted = tf.bitwise.right_shift(pair, tf.cast(64 - offset - width, tf.uint64))
  return tf.bitwise.bitwise_and(tf.cast(shifted, tf.int64), _low_mask(width))

