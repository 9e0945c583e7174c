"""tensor_encoding's uniform quantization, with stochastic rounding in fewer passes.

`te.stages.UniformQuantizationEncodingStage` rounds stochastically as
`floor(y) + (u < y - floor(y))` with `y = (x - min) / (max - min) * (2^bits - 1)`: nine
elementwise passes over the tensor besides drawing `u`. Here the same rounding is
`min(floor(y + u), 2^bits - 1)` with `y = (x - min) * scale`: `floor(y + u)` is
`floor(y) + 1` exactly when `u >= 1 - frac(y)`, with probability `frac(y)`, so the
quantized values have the same distribution (unbiased, as tensor_encoding's), in four
passes. The clip guards `y + u` rounding up to `2^bits` in float32 at the top level.
`u` is 16-bit dither (`_common.dither16`: the same probabilities to within 2^-17, about
the float32 spacing of `y + u` at the top levels) from the stateless Philox kernel,
half the random bits of a float32 uniform; the draw is most of the encode's cost.

Encoded structure, decoding, and deterministic rounding (and fixed `min_max`) are
tensor_encoding's own.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common
from fedcompress.codecs.stages.bitpack28 import Bitpacking28EncodingStage
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage

# Payload bits per int32 word: tensor_encoding's 28 (the tutorial's, the default) or all
# 32 (`packing.py`, as `hadamard` packs: `rotation|uniform(word_bits=32)` is `hadamard`).
_PACKINGS = {28: Bitpacking28EncodingStage, 32: Bitpack32EncodingStage}


def _smallest_normal(dtype: tf.dtypes.DType) -> float:
  # bfloat16 has float32's exponent range; numpy's finfo does not know bfloat16.
  return float(np.finfo(np.float32 if dtype == tf.bfloat16 else dtype.as_numpy_dtype).tiny)


# Half-precision dtypes hold integers exactly only up to 2^11 (float16) and 2^8
# (bfloat16): the widest levels they can carry.
_HALF_EXACT_BITS = {tf.float16: 11, tf.bfloat16: 8}


class UniformQuantizationStage(te.stages.UniformQuantizationEncodingStage):
  """`te.stages.UniformQuantizationEncodingStage`, faster stochastic rounding.

  Half-precision input is quantized in float32 and its levels sent in its own dtype:
  tensor_encoding computes in the input dtype, where `y + u` loses the dither near the
  top levels (stochastic rounding turns into biased rounding to nearest) and, past the
  dtype's exact integers, the top level rounds up to `2^bits`, which the bit-packing
  wraps to 0 (the maximum decoded as the minimum). Widths past those integers (12+
  bits for float16, 9+ for bfloat16) are refused.
  """

  def encode(self, x, encode_params, name=None):
    x = tf.convert_to_tensor(x)
    if x.dtype in _HALF_EXACT_BITS:
      return self._encode_half(x, encode_params, name)
    if not self._stochastic or self.MIN_MAX_VALUES_KEY in encode_params:
      return super().encode(x, encode_params, name=name)
    with tf.name_scope(name or "uniform_quantization_encode"):
      x = tf.convert_to_tensor(x)
      min_x, max_x = tf.reduce_min(x), tf.reduce_max(x)
      max_value = tf.cast(encode_params[self.MAX_INT_VALUE_PARAMS_KEY], x.dtype)
      scale = tf.math.divide_no_nan(max_value, max_x - min_x)  # 0 for a constant x
      shifted = x - min_x
      # For ranges above (2^bits - 1) / tiny (1 and 2 bits in float32) the scale is
      # subnormal, flushed to zero, and every value would become the minimum; for an
      # infinite range it is 0 too. tensor_encoding's order, dividing first, keeps the
      # values there (and gives its NaNs for an infinite range): take it in those
      # cases only, so that ordinary ranges keep the one-pass product.
      y = tf.cond(scale >= _smallest_normal(x.dtype),
                  lambda: shifted * scale,
                  lambda: tf.math.divide_no_nan(shifted, max_x - min_x) * max_value)
      quantized = tf.minimum(tf.floor(y + _common.dither16(tf.shape(y), x.dtype)),
                             max_value)
      return collections.OrderedDict([(self.ENCODED_VALUES_KEY, quantized),
                                      (self.MIN_MAX_VALUES_KEY, tf.stack([min_x, max_x]))])

  def _encode_half(self, x, encode_params, name):
    limit = _HALF_EXACT_BITS[x.dtype]
    if self._bits > limit:
      raise ValueError(f"uniform quantization to {self._bits} bits needs float32 or float64 "
                       f"values: {x.dtype.name} holds levels of at most {limit} bits")
    params = dict(encode_params)
    if self.MIN_MAX_VALUES_KEY in params:  # The range as the decoder will see it.
      params[self.MIN_MAX_VALUES_KEY] = tf.cast(
          tf.cast(params[self.MIN_MAX_VALUES_KEY], x.dtype), tf.float32)
    encoded = self.encode(tf.cast(x, tf.float32), params, name=name)
    # Levels up to 2^limit and the tensor's own min and max are exact in x's dtype.
    return collections.OrderedDict((k, tf.cast(v, x.dtype)) for k, v in encoded.items())

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None, name=None):
    dtype = encoded_tensors[self.ENCODED_VALUES_KEY].dtype
    if dtype not in _HALF_EXACT_BITS:
      return super().decode(encoded_tensors, decode_params, num_summands, shape, name=name)
    # In float32 too: in float16, `q / max_value * range` errs by up to a level at 11 bits.
    encoded = collections.OrderedDict((k, tf.cast(v, tf.float32))
                                      for k, v in encoded_tensors.items())
    params = dict(decode_params)
    if self.MIN_MAX_VALUES_KEY in params:  # A fixed range, rounded as the encoder's was.
      params[self.MIN_MAX_VALUES_KEY] = tf.cast(
          tf.cast(params[self.MIN_MAX_VALUES_KEY], dtype), tf.float32)
    return tf.cast(super().decode(encoded, params, num_summands, shape, name=name), dtype)


# The `uniform` codec: the TFF tutorial's, tensor_encoding's `uniform_quantization`
# encoder stage for stage, with this stage and `bitpack28.Bitpacking28EncodingStage`
# in place of tensor_encoding's quantization and bit-packing (same words).


def _check_word_bits(word_bits) -> int:
  # 28.0 == 28, but a float would make the codec's name and bit counts floats.
  if not _common.is_integer(word_bits) or word_bits not in _PACKINGS:
    raise ValueError(f"word_bits must be 28 or 32, got {word_bits!r}")
  return int(word_bits)


def check_options(bits: int = 8, deterministic: bool = False, word_bits: int = 28) -> dict:
  """The `uniform` codec's options, checked, with their defaults.

  Stochastic rounding (tensor_encoding's default) is unbiased; deterministic rounding
  halves the worst-case error and makes results exactly reproducible.
  """
  return {"bits": _common.check_int("bits", bits, 1, 16),
          "deterministic": _common.check_bool("deterministic", deterministic),
          "word_bits": _check_word_bits(word_bits)}


def build(bits: int = 8, deterministic: bool = False, word_bits: int = 28) -> te.core.Encoder:
  """Flatten, quantize to `bits` between the tensor's min and max, pack `word_bits` per word."""
  flatten = te.stages.FlattenEncodingStage
  return (te.core.EncoderComposer(_PACKINGS[_check_word_bits(word_bits)](bits))
          .add_parent(UniformQuantizationStage(bits, stochastic=not deterministic),
                      UniformQuantizationStage.ENCODED_VALUES_KEY)
          .add_parent(flatten(), flatten.ENCODED_VALUES_KEY)
          .make())


def bits_formula(num_elements: int, *, bits: int = 8, deterministic: bool = False,
                 word_bits: int = 28, direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one tensor through `uniform`, either way.

  `ceil(n * bits / word_bits)` int32 words, min and max at the tensor's dtype, and for a
  dtype other than float32 one zero of that dtype (both bit-packings record the dtype
  that way).
  """
  del deterministic, direction
  width = _common.dtype_bits(dtype)
  marker = width if tf.as_dtype(dtype) != tf.float32 else 0
  words = _common.packed_words(num_elements, bits, word_bits)
  return words * 32 + 2 * width + marker


def relative_error_bound(num_elements: int, *, bits: int = 8,
                         deterministic: bool = False, word_bits: int = 28) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  The range `max - min` is at most `2 max|x| <= 2 ||x||`; a value moves by at most half
  a step (deterministic) or a step (stochastic) of `range / (2**bits - 1)`.
  """
  del word_bits
  steps = 1 if deterministic else 2
  return steps * math.sqrt(num_elements) / (2**bits - 1)
