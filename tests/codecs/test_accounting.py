"""Pure bit-accounting formulas, checked against hand-computed numbers."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import accounting as bits


def test_dtype_widths():
  assert bits.dtype_bits(tf.float32) == 32
  assert bits.dtype_bits(np.int64) == 64
  assert bits.dtype_bits("float16") == 16
  assert bits.dtype_bits(tf.bool) == 8
  with pytest.raises(ValueError):
    bits.dtype_bits(tf.string)


def test_tensor_and_specs_bits():
  assert bits.tensor_bits([5, 5, 1, 32], tf.float32) == 800 * 32
  assert bits.tensor_bits([], tf.float32) == 32  # a scalar is one element
  specs = [tf.TensorSpec([3, 4], tf.float32), tf.TensorSpec([2], tf.int64)]
  assert bits.specs_bits(specs) == 12 * 32 + 2 * 64


def test_bitpacking_uses_28_bits_per_word():
  # 8-bit values: 7 values fill 2 words (56 bits).
  assert bits.bitpacked_int32_count(7, 8) == 2
  assert bits.bitpacked_int32_count(8, 8) == 3
  # The tutorial CNN's two large kernels.
  assert bits.bitpacked_int32_count(51_200, 8) == 14_629
  assert bits.bitpacked_int32_count(1_605_632, 8) == 458_752
  assert bits.uniform_quantized_bits(1_605_632, 8) == 458_752 * 32 + 64


def test_tutorial_cnn_totals():
  # Per-tensor sizes of the original FedAvg CNN; the two > 10,000 are quantized.
  sizes = [800, 32, 51_200, 64, 1_605_632, 512, 5_120, 10]
  assert sum(sizes) == 1_663_370
  uncompressed = sum(sizes) * 32 * 10
  assert uncompressed == 532_278_400
  assert bits.format_bits(uncompressed) == "507.62Mibit"
  compressed = 10 * sum(
      bits.uniform_quantized_bits(n, 8) if n > 10_000 else n * 32 for n in sizes)
  assert compressed == 153_575_360
  assert bits.format_bits(compressed) == "146.46Mibit"
  assert bits.format_bits(10 * uncompressed) == "4.96Gibit"


def test_structure_bits_tf_matches_formula():
  structure = {"a": tf.zeros([3, 4], tf.float32),
               "b": (tf.zeros([2], tf.int64), tf.zeros([], tf.int32))}
  assert int(bits.structure_bits_tf(structure)) == 12 * 32 + 2 * 64 + 32
  assert int(bits.structure_bits_tf(())) == 0


def test_format_units():
  assert bits.format_bits(512) == "512bit"
  assert bits.format_bits(2048) == "2.00Kibit"
