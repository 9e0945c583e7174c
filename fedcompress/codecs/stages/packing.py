"""Bit packing into all 32 bits of each int32 word, and its encoding stage.

tensor_encoding's `BitpackingEncodingStage` fills 28 of 32 bits so a protobuf varint
never needs a fifth byte. fedcompress counts every int32 at 32 bits whatever its
serialization, so the research codecs pack 32 bits per word: `n` values of `b` bits
cost exactly `ceil(n * b / 32)` words. One sign per coordinate then costs 1.0 bit per
coordinate instead of 32/28 = 1.14.

Values may straddle two words (e.g. 3-bit values); bit `i` of the stream is bit
`i % 32` of word `i // 32`, least significant first.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common

_MAX_BITS = 16


def _word_layout(bits: int) -> tuple[np.ndarray, np.ndarray]:
  """Word (0..bits-1) and bit offset of each of 32 consecutive values in its group.

  32 values of `bits` bits fill exactly `bits` words, so the stream is a sequence of
  such groups with the same static layout: packing needs no per-value index arithmetic.
  """
  start = np.arange(32) * bits
  return start // 32, start % 32


def pack_bits(values: tf.Tensor, bits: int) -> tf.Tensor:
  """Packs a rank-1 integer tensor of values in [0, 2**bits) into int32 words.

  Args:
    values: integer tensor of statically known size `n`.
    bits: bits per value, 1..16.

  Returns:
    int32 tensor of shape `[ceil(n * bits / 32)]`.
  """
  n = values.shape.num_elements()
  num_words = _common.packed_words(n, bits)
  if n == 0:
    return tf.zeros([0], tf.int32)
  mask = (1 << bits) - 1
  if 32 % bits == 0:
    # Whole values per word (1, 2, 4, 8, 16 bits): each row of the reshape is one word,
    # and the disjoint shifted fields sum to it. Only one field holds bit 31, so the
    # int32 sum never overflows. A reshape and a sum are several times faster than the
    # general scatter-add below (`python -m tools.codec_speed` measures the codecs).
    per_word = 32 // bits
    v = tf.bitwise.bitwise_and(tf.cast(tf.reshape(values, [-1]), tf.int32), mask)
    v = tf.reshape(tf.pad(v, [[0, num_words * per_word - n]]), [num_words, per_word])
    return tf.reduce_sum(
        tf.bitwise.left_shift(v, tf.constant(np.arange(per_word) * bits, tf.int32)), 1)
  # Otherwise in groups of 32 values = `bits` words. A value shifted to its offset spans
  # at most 16 + 31 bits: the low 32 go to its word, the rest to the next one (never
  # past the group, which ends on a word boundary). Fields never overlap, so sums never
  # carry; summing over the group's 32 values (segment ids static and sorted) is a pass
  # of row adds where a scatter by computed word indices was 2-3 times slower.
  groups = -(-n // 32)
  word, offset = _word_layout(bits)
  v = tf.bitwise.bitwise_and(tf.cast(tf.reshape(values, [-1]), tf.int64), mask)
  v = tf.reshape(tf.pad(v, [[0, groups * 32 - n]]), [groups, 32])
  shifted = tf.transpose(tf.bitwise.left_shift(v, tf.constant(offset, tf.int64)))
  low = tf.bitwise.bitwise_and(shifted, 0xFFFFFFFF)
  high = _common.shift_right_nonnegative(shifted, 32)
  words = (tf.math.segment_sum(low, tf.constant(word))
           + tf.math.segment_sum(high, tf.constant(np.minimum(word + 1, bits - 1))))
  words = tf.reshape(tf.transpose(words), [-1])[:num_words]
  return tf.bitcast(tf.cast(words, tf.uint32), tf.int32)


def unpack_bits(words: tf.Tensor, bits: int, num_values: int) -> tf.Tensor:
  """Inverse of `pack_bits`: integer tensor of shape `[num_values]`.

  int32 when `bits` divides 32 (what the shifts produce; every value fits), else int64:
  the decoder casts it to the values' dtype in one pass, not two.
  """
  if num_values == 0:
    return tf.zeros([0], tf.int32 if 32 % bits == 0 else tf.int64)
  mask = (1 << bits) - 1
  if 32 % bits == 0:
    per_word = 32 // bits
    shifts = tf.constant(np.arange(per_word) * bits, tf.int32)
    # The arithmetic shift copies bit 31 down; the mask drops those copies.
    v = tf.bitwise.right_shift(tf.reshape(words, [-1, 1]), shifts)
    return tf.reshape(tf.bitwise.bitwise_and(v, mask), [-1])[:num_values]
  groups = -(-num_values // 32)
  word, offset = _word_layout(bits)
  u = tf.cast(tf.bitcast(tf.reshape(words, [-1]), tf.uint32), tf.int64)
  u = tf.reshape(tf.pad(u, [[0, groups * bits - tf.size(u)]]), [groups, bits])
  # Only the low 16 bits of the next word can belong to a value of <= 16 bits, so
  # shifting them up by 32 stays far below the int64 sign bit. (A group's last value
  # never straddles, so its clipped "next word" is masked away by the final shift.)
  nxt = np.minimum(word + 1, bits - 1)
  combined = tf.bitwise.bitwise_or(
      tf.gather(u, word, axis=1),
      tf.bitwise.left_shift(tf.bitwise.bitwise_and(tf.gather(u, nxt, axis=1), 0xFFFF), 32))
  v = tf.bitwise.bitwise_and(_common.shift_right_nonnegative(combined, offset), mask)
  return tf.reshape(v, [-1])[:num_values]


def _half_word_weights(bits: int, dtype) -> tf.Tensor:
  """[32 / bits, 2]: value j's place value in the low (column 0) or high 16 bits."""
  per_word, per_half = 32 // bits, 16 // bits
  weights = np.zeros([per_word, 2])
  for j in range(per_word):
    weights[j, j // per_half] = 2.0 ** (bits * (j % per_half))
  return tf.constant(weights, dtype)


def pack_float_bits(values: tf.Tensor, bits: int) -> tf.Tensor:
  """`pack_bits` of integer-valued floats in [0, 2**bits), `bits` dividing 16.

  Each word's two 16-bit halves are one product of the values, as a `[words, 32 / bits]`
  matrix, by their place values: every partial sum is an integer below 2^16, exact in
  float32 in any summation order, so the words are `pack_bits`'. One read of the values
  against `pack_bits`' cast, mask, shift and sum passes: 1.4-1.6 ms instead of 3.0-4.3
  for the CNN's 1.6M-element kernel at 1-4 bits, 3.3 instead of 9.6 at 8 (measured op
  by op on 7ea924a). Values outside the range would spill into their neighbours instead
  of being masked, so the caller checks it.
  """
  n = values.shape.num_elements()
  per_word = 32 // bits
  num_words = _common.packed_words(n, bits)
  v = tf.reshape(tf.pad(tf.reshape(values, [-1]), [[0, num_words * per_word - n]]),
                 [num_words, per_word])
  halves = tf.cast(tf.matmul(v, _half_word_weights(bits, values.dtype)), tf.int32)
  return tf.bitwise.bitwise_or(halves[:, 0], tf.bitwise.left_shift(halves[:, 1], 16))


def byte_fields(bits: int) -> np.ndarray:
  """[256, 8 // bits]: the `bits`-bit fields of byte b, least significant first."""
  per_byte = 8 // bits
  return (np.arange(256)[:, np.newaxis] >> (np.arange(per_byte) * bits)) & ((1 << bits) - 1)


# Byte b's eight bits as floats, least significant first: one-bit unpacking as a gather
# of eight values per byte (the byte views assume a little-endian host).
BIT_TABLE = byte_fields(1).astype(np.float32)


def expand_bytes(words: tf.Tensor, table, num_values: int) -> tf.Tensor:
  """Value i is `table[byte, i % k]` of byte i // k of the 32-bit `words`' bytes.

  One gather of a row of `k` (the table's columns) per byte: on a little-endian host
  byte i // k holds the stream's bits `8 (i // k)` onwards (bit j of word j // 32 least
  significant first), so a table whose row b lists a function of b's fields, least
  significant first, maps every field of the stream at once.
  """
  octets = tf.cast(tf.bitcast(tf.reshape(words, [-1]), tf.uint8), tf.int32)
  return tf.reshape(_common.take(tf.convert_to_tensor(table), octets), [-1])[:num_values]


def unpack_values(words: tf.Tensor, bits: int, num_values: int, dtype) -> tf.Tensor:
  """`tf.cast(unpack_bits(words, bits, num_values), dtype)`: the same values, fewer passes.

  On a little-endian host the fields of 1, 2 and 4 bits are one gather of a row of
  `8 / bits` floats per byte, and those of 8 and 16 bits the words viewed as uint8 or
  uint16, cast: no shift, mask or int32 pass. Single-threaded, on the CNN's 1.6M-value
  kernel: 4 bits 3.3 -> 2.1 ms, 2 bits 2.6 -> 1.2, 8 bits 4.4 -> 0.7. Every field is an
  integer below 2^16, which each path converts to `dtype` as the cast of the int32 did.
  """
  if not _common.LITTLE_ENDIAN or num_values == 0 or bits not in (1, 2, 4, 8, 16):
    return tf.cast(unpack_bits(words, bits, num_values), dtype)
  if bits >= 8:
    view = tf.bitcast(tf.reshape(words, [-1]), tf.uint8 if bits == 8 else tf.uint16)
    return tf.cast(tf.reshape(view, [-1])[:num_values], dtype)
  values = expand_bytes(words, byte_fields(bits).astype(np.float32), num_values)
  return values if dtype == tf.float32 else tf.cast(values, dtype)


@te.core.tf_style_encoding_stage
class Bitpack32EncodingStage(_common.StatelessStage):
  """Lossless: integer-valued floats in [0, 2**bits) -> int32 words, 32 bits each.

  The encoded structure is `{'packed': int32[ceil(n * bits / 32)]}`. For inputs other
  than float32 it also holds one zero of the input dtype so decoding can restore the
  dtype (tensor_encoding's own bitpacking does the same); that element is counted.

  `in_range=True` is the caller's promise that the values are integer-valued floats in
  `[0, 2**bits)` whatever the input (DRIVE's signs and EDEN's indices are casts of
  comparisons): the two reductions that check it are skipped (0.5 ms of the CNN
  kernel's 1.6M values, one thread), the words are the same.
  """

  ENCODED_VALUES_KEY = "packed"
  DUMMY_TYPE_VALUES_KEY = "dtype_marker"

  def __init__(self, bits: int, in_range: bool = False):
    if tf.is_tensor(bits):
      raise TypeError("bits cannot be a TensorFlow value")
    self._bits = _common.check_int("bits", bits, 1, _MAX_BITS)
    self._in_range = _common.check_bool("in_range", in_range)

  STAGE_NAME = "bitpack32"
  # Packed words are not to be transformed further.
  COMPRESSIBLE_KEYS = ()
  DECODE_NEEDS_INPUT_SHAPE = True

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    if not x.shape.is_fully_defined():
      raise ValueError(f"bitpack32 needs a statically known shape, got {x.shape}")
    bits = self._bits
    flat = tf.reshape(x, [-1])

    def by_integers():
      return pack_bits(tf.cast(flat, tf.int32), bits)

    if x.dtype in (tf.float32, tf.float64) and 16 % bits == 0 and flat.shape[0]:
      # Integer-valued floats in range (what every quantizer here gives) pack by a
      # product; anything else takes the integer path, which masks as before.
      if self._in_range:
        packed = pack_float_bits(flat, bits)
      else:
        in_range = tf.logical_and(tf.reduce_min(flat) >= 0,
                                  tf.reduce_max(flat) <= 2.0**bits - 1)
        packed = tf.cond(in_range, lambda: pack_float_bits(flat, bits), by_integers)
    else:
      packed = by_integers()
    encoded = collections.OrderedDict([(self.ENCODED_VALUES_KEY, packed)])
    if x.dtype != tf.float32:
      encoded[self.DUMMY_TYPE_VALUES_KEY] = tf.zeros([], x.dtype)
    return encoded

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    num_values = _common.static_num_elements(shape)
    if not isinstance(num_values, int):
      raise ValueError("bitpack32 needs a statically known input shape to decode")
    dummy = encoded_tensors.get(self.DUMMY_TYPE_VALUES_KEY)
    dtype = dummy.dtype if dummy is not None else tf.float32
    values = unpack_values(encoded_tensors[self.ENCODED_VALUES_KEY], self._bits, num_values,
                           dtype)
    return tf.reshape(values, shape)
