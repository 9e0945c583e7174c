"""The native 8-in-28 packing writes and reads tensor_encoding's words, as the graph ops do."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import native
from fedcompress.codecs.stages import bitpack28


@pytest.fixture(scope="module", autouse=True)
def _native_built(native_ops):
  return native_ops


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16, tf.bfloat16])
@pytest.mark.parametrize("n", [0, 1, 6, 7, 8, 13, 14, 15, 700, 1001])  # every n % 7
def test_same_words_and_values_as_the_graph_ops(n, dtype):
  values = tf.constant(np.random.default_rng(n).integers(0, 256, n), dtype)
  if n:  # The extremes, where a wrong shift or mask would show.
    values = tf.tensor_scatter_nd_update(values, [[0], [n - 1]], tf.constant([255, 0], dtype))
  words = bitpack28.pack_8_in_28(values)
  with native.disabled():
    graph_words = bitpack28.pack_8_in_28(values)
  assert words.shape == graph_words.shape
  np.testing.assert_array_equal(words.numpy(), graph_words.numpy())
  unpacked = bitpack28.unpack_8_from_28(words, [n], dtype)
  with native.disabled():
    graph_unpacked = bitpack28.unpack_8_from_28(words, [n], dtype)
  assert unpacked.dtype == graph_unpacked.dtype == dtype
  np.testing.assert_array_equal(unpacked.numpy(), values.numpy())
  np.testing.assert_array_equal(graph_unpacked.numpy(), values.numpy())


def test_the_words_are_tensor_encodings():
  from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import tf_utils

  values = tf.constant(np.random.default_rng(1).integers(0, 256, 99), tf.float32)
  np.testing.assert_array_equal(
      tf.reshape(bitpack28.pack_8_in_28(values), [-1]).numpy(),
      tf.reshape(tf_utils.pack_into_int(tf.cast(values, tf.int32), 8, 28), [-1]).numpy())


def test_the_shapes_are_static():
  # Grappler rewrites a graph by its static shapes (see huffman.py's decoder).
  graph = tf.Graph()
  with graph.as_default():
    words = bitpack28.pack_8_in_28(tf.zeros([5, 7, 3]))
    values = bitpack28.unpack_8_from_28(words, [5, 7, 3])
    assert words.shape == [30, 1] and values.shape == [5, 7, 3]
    assert {op.type for op in graph.get_operations()} >= {"FedcompressPack8In28",
                                                          "FedcompressUnpack8From28"}


def test_too_few_words_are_an_error():
  with pytest.raises(tf.errors.InvalidArgumentError, match="fewer words than num_values"):
    native.ops().fedcompress_unpack8_from28(tf.zeros([2], tf.int32), T=tf.float32,
                                            num_values=8)
