"""Pure bit-accounting formulas, checked against hand-computed numbers."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import accounting as bits
from fedcompress.codecs import get_codec
from fedcompress.codecs.stages._common import TE_BITPACK_WORD_BITS, dtype_bits, packed_words
from fedcompress.units import format_bits

UNIFORM = get_codec("uniform")


def test_dtype_widths():
  assert dtype_bits(tf.float32) == 32
  assert dtype_bits(np.int64) == 64
  assert dtype_bits("float16") == 16
  assert dtype_bits(tf.bool) == 8
  with pytest.raises(ValueError):
    dtype_bits(tf.string)


def test_tensor_and_specs_bits():
  assert bits.tensor_bits([5, 5, 1, 32], tf.float32) == 800 * 32
  assert bits.tensor_bits([], tf.float32) == 32  # a scalar is one element
  specs = [tf.TensorSpec([3, 4], tf.float32), tf.TensorSpec([2], tf.int64)]
  assert bits.specs_bits(specs) == 12 * 32 + 2 * 64


def test_bitpacking_uses_28_bits_per_word():
  # 8-bit values: 7 values fill 2 words (56 bits).
  assert packed_words(7, 8, TE_BITPACK_WORD_BITS) == 2
  assert packed_words(8, 8, TE_BITPACK_WORD_BITS) == 3
  # The tutorial CNN's two large kernels.
  assert packed_words(51_200, 8, TE_BITPACK_WORD_BITS) == 14_629
  assert packed_words(1_605_632, 8, TE_BITPACK_WORD_BITS) == 458_752
  assert UNIFORM.bits(1_605_632, {"bits": 8}) == 458_752 * 32 + 64


def test_tutorial_cnn_totals():
  # Per-tensor sizes of the original FedAvg CNN; the two > 10,000 are quantized.
  sizes = [800, 32, 51_200, 64, 1_605_632, 512, 5_120, 10]
  assert sum(sizes) == 1_663_370
  uncompressed = sum(sizes) * 32 * 10
  assert uncompressed == 532_278_400
  assert format_bits(uncompressed) == "507.62Mibit"
  compressed = 10 * sum(
      UNIFORM.bits(n, {"bits": 8}) if n > 10_000 else n * 32 for n in sizes)
  assert compressed == 153_575_360
  assert format_bits(compressed) == "146.46Mibit"
  assert format_bits(10 * uncompressed) == "4.96Gibit"


def test_structure_bits_tf_matches_formula():
  structure = {"a": tf.zeros([3, 4], tf.float32),
               "b": (tf.zeros([2], tf.int64), tf.zeros([], tf.int32))}
  assert int(bits.structure_bits_tf(structure)) == 12 * 32 + 2 * 64 + 32
  assert int(bits.structure_bits_tf(())) == 0


def test_format_units():
  assert format_bits(512) == "512bit"
  assert format_bits(2048) == "2.00Kibit"
