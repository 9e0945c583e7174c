"""tensor_encoding's 28-bit bit-packing, word for word, with a fast path for 8-bit values.

`te.stages.BitpackingEncodingStage` writes values least significant bit first into the
low 28 bits of int32 words (so a protobuf varint never needs a fifth byte). For 8-bit
values, the TFF compression tutorial's setting, its `tf_utils` code works column by
column with integer multiply, floordiv and mod, several passes over the tutorial CNN's
1.6M-element dense kernel, three times per client and round (encode, decode before
sum, broadcast decode): most of what 8-bit compression cost on top of uncompressed
FedAvg (`make bench` measures it).

Seven bytes are 56 bits, exactly two words. Packing reads each 7-byte group as one
little-endian uint64 and moves its high 28 bits up by 4, so that its two uint32 halves
are the two words; unpacking reads a pair of words as one uint64, moves the high word
down by 4 bits and reads its seven low bytes back. The words are the same as
tensor_encoding's (the tests compare them for every length modulo 7), so bit counts and
wire format do not change; other bit widths, and big-endian hosts, use
tensor_encoding's own code.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import native
from fedcompress.codecs.stages import _common

_WORD_BITS = _common.TE_BITPACK_WORD_BITS
_LOW_28_U64 = np.uint64((1 << _WORD_BITS) - 1)
_LOW_32_U64 = np.uint64((1 << 32) - 1)
_WORD_BITS_U64 = np.uint64(_WORD_BITS)
_HALF_U64 = np.uint64(32)
# Dtypes tensor_encoding's stage records with a zero of that dtype (float32 needs none).
_MARKED_DTYPES = (tf.float16, tf.bfloat16, tf.float64)
# The value types of the native packing kernels (fedcompress/native).
_NATIVE_DTYPES = _MARKED_DTYPES + (tf.float32,)


def pack_8_in_28(values: tf.Tensor) -> tf.Tensor:
  """Values in [0, 255] (any real or integer dtype, static size n) -> int32 `[words, 1]`.

  Equal to `tf_utils.pack_into_int(tf.cast(values, tf.int32), 8, 28)`.
  """
  n = values.shape.num_elements()
  if n is None:
    raise ValueError("pack_8_in_28 needs a statically known number of values")
  native_ops = native.ops()
  if native_ops is not None and values.dtype in _NATIVE_DTYPES:
    # One pass, the same words: for the CNN's two encoded kernels, one thread, the
    # packing took 2.0 ms on 3cb103f (1.3 of it its zero byte's concat), the kernel
    # 0.49 (README's speed section; docs/speed_history.md).
    return tf.reshape(native_ops.fedcompress_pack8_in28(values),
                      [_common.packed_words(n, 8, _WORD_BITS), 1])
  flat = tf.cast(tf.reshape(values, [-1]), tf.uint8)
  groups = tf.reshape(tf.pad(flat, [[0, -n % 7]]), [-1, 7])
  # Each group as one uint64 (a zero eighth byte), 56 bits: the low 28 stay, the high
  # 28 move up to bit 32, so its two little-endian uint32 halves are the two words. The
  # zero byte is concatenated: `tf.pad` of the column took 0.4 ms more of the kernel's
  # 2.7 ms pack (one thread; 0.2 of 3.2 with the default threads).
  joined = tf.bitcast(tf.concat([groups, tf.zeros_like(groups[:, :1])], 1), tf.uint64)
  split = tf.bitwise.bitwise_or(
      tf.bitwise.bitwise_and(joined, _LOW_28_U64),
      tf.bitwise.left_shift(tf.bitwise.right_shift(joined, _WORD_BITS_U64), _HALF_U64))
  words = tf.reshape(tf.bitcast(split, tf.int32), [-1, 1])
  return words[:_common.packed_words(n, 8, _WORD_BITS)]


def unpack_8_from_28(words: tf.Tensor, shape, dtype: tf.DType = tf.float32) -> tf.Tensor:
  """Inverse of `pack_8_in_28`: the values as `dtype`, reshaped to `shape`."""
  native_ops = native.ops()
  num_values = _common.static_num_elements(shape)
  if native_ops is not None and dtype in _NATIVE_DTYPES and isinstance(num_values, int):
    values = native_ops.fedcompress_unpack8_from28(tf.reshape(words, [-1]), T=dtype,
                                                   num_values=num_values)
    return tf.reshape(values, shape)
  flat = tf.reshape(words, [-1])
  pairs = tf.reshape(tf.pad(flat, [[0, tf.shape(flat)[0] % 2]]), [-1, 2])
  # A pair read as one uint64 is `w0 | w1 << 32`; moving w1 down to bit 28 gives the
  # group's 56 bits, seven bytes.
  both = tf.bitcast(pairs, tf.uint64)
  joined = tf.bitwise.bitwise_or(
      tf.bitwise.bitwise_and(both, _LOW_32_U64),
      tf.bitwise.left_shift(tf.bitwise.right_shift(both, _HALF_U64), _WORD_BITS_U64))
  values = tf.reshape(tf.bitcast(joined, tf.uint8)[:, :7], [-1])[:tf.reduce_prod(shape)]
  return tf.reshape(tf.cast(values, dtype), shape)


class Bitpacking28EncodingStage(te.stages.BitpackingEncodingStage):
  """`te.stages.BitpackingEncodingStage` with the same output, faster for 8 bits.

  Subclasses tensor_encoding's (already tf-style decorated) stage, so its name
  ('bitpacking'), properties, other bit widths and dtype handling stay tensor_encoding's.
  """

  def encode(self, x, encode_params, name=None):
    x = tf.convert_to_tensor(x)
    if not (_common.LITTLE_ENDIAN and self._input_bits == 8 and x.shape.is_fully_defined()
            and x.dtype in _MARKED_DTYPES + (tf.float32,)):
      return super().encode(x, encode_params, name=name)
    with tf.name_scope(name or "bitpacking_encode"):
      encoded = {self.ENCODED_VALUES_KEY: pack_8_in_28(x)}
      if x.dtype != tf.float32:  # As tensor_encoding: one zero records the dtype.
        encoded[self.DUMMY_TYPE_VALUES_KEY] = tf.constant(0.0, dtype=x.dtype)
      return encoded

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None, name=None):
    if not (_common.LITTLE_ENDIAN and self._input_bits == 8):
      return super().decode(encoded_tensors, decode_params, num_summands, shape, name=name)
    with tf.name_scope(name or "bitpacking_decode"):
      marker = encoded_tensors.get(self.DUMMY_TYPE_VALUES_KEY)
      return unpack_8_from_28(encoded_tensors[self.ENCODED_VALUES_KEY], shape,
                              marker.dtype if marker is not None else tf.float32)
