"""The native Huffman kernels write and read the very words the graph ops do.

`fedcompress.native.disabled()` traces the pure-TensorFlow path; everything else here
runs the C++ kernels (built on first use). Cases cover both decoders' tables (codes of
up to 8 bits, whose graph decoder reads pairs of codes; up to 16; above 16, by search),
blocks that are full, partial and single, one distinct symbol, and no symbol.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import native
from fedcompress.codecs import CodecSpec, seeding
from fedcompress.codecs.stages import huffman

CASES = [  # (n, bits, max_code_length, block_size)
    (5000, 8, 15, 1024),   # four full blocks side by side, then a partial one
    (4096, 8, 15, 1024),   # whole blocks only
    (3001, 2, 8, 1024),    # short codes: the graph decoder's pairs
    (100, 3, 16, 7),
    (9000, 8, 20, 64),     # codes above 16 bits: the search
    (1500, 5, 24, 64),
    (2048, 8, 15, 1024),   # two blocks: no group of four
    (1, 4, 15, 1024),
    (0, 4, 15, 1024),
    (999, 1, 15, 10),
]


def _symbols(n, bits, seed):
  rng = np.random.default_rng(seed)
  p = rng.dirichlet(np.full(2**bits, 0.3))
  return tf.constant(rng.choice(2**bits, size=n, p=p), tf.int32)


@pytest.fixture(scope="module", autouse=True)
def _native_built(native_ops):
  return native_ops


@pytest.mark.parametrize("n,bits,length,block", CASES)
def test_same_stream_and_symbols_as_the_graph_ops(n, bits, length, block):
  for symbols in (_symbols(n, bits, seed=n + bits), tf.fill([n], 2**bits - 1)):
    stream = huffman.huffman_encode(symbols, bits, max_code_length=length, block_size=block)
    with native.disabled():
      graph_stream = huffman.huffman_encode(symbols, bits, max_code_length=length,
                                            block_size=block)
    np.testing.assert_array_equal(stream.numpy(), graph_stream.numpy())
    decoded = huffman.huffman_decode(stream, max_code_length=length, block_size=block)
    with native.disabled():
      graph_decoded = huffman.huffman_decode(stream, max_code_length=length,
                                             block_size=block)
    np.testing.assert_array_equal(decoded.numpy(), symbols.numpy())
    np.testing.assert_array_equal(graph_decoded.numpy(), symbols.numpy())


def test_the_native_path_is_the_one_traced():
  # Otherwise the test above compares the graph ops with themselves.
  def op_types(disable):
    graph = tf.Graph()
    with graph.as_default(), (native.disabled() if disable else _nothing()):
      stream = huffman.huffman_encode(tf.zeros([10], tf.int32) + tf.range(10) % 3, 2)
      huffman.huffman_decode(stream)
    graph_def = graph.as_graph_def()  # The decoder's branches are library functions.
    return ({node.op for node in graph_def.node}
            | {node.op for f in graph_def.library.function for node in f.node_def})

  assert {"FedcompressHuffmanEncode", "FedcompressHuffmanDecodeBlocks"} <= op_types(False)
  assert not any(t.startswith("Fedcompress") for t in op_types(True))


class _nothing:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


def _round_trip(codec, x):
  """Encode under a seed scope and decode, in one graph, as TFF traces them."""
  with tf.Graph().as_default() as graph:
    value = tf.constant(x)
    key = seeding.encode_key(seeding.round_key(3, tf.constant(1, tf.int64)), 0, value)
    encoder = codec.inline_encoder(tf.TensorSpec(x.shape, tf.float32))
    with seeding.seed_scope(key):
      encoded, _ = encoder.encode(value, encoder.initial_state())
    decoded = encoder.decode(encoded)
    with tf.compat.v1.Session(graph=graph) as session:
      return session.run((encoded, decoded))


@pytest.mark.parametrize("name,options", [
    ("uniform_huffman", {}), ("adaptive", {"budget_bits_per_coordinate": 2.0}),
    ("huffman", {}), ("nonuniform|huffman", {})])
def test_codecs_encode_and_decode_the_same_bits(name, options):
  codec = CodecSpec(name, options, threshold=0)
  x = (np.random.default_rng(5).standard_normal([300, 70]) * 0.01).astype(np.float32)
  encoded, decoded = _round_trip(codec, x)
  with native.disabled():
    graph_encoded, graph_decoded = _round_trip(codec, x)
  assert list(encoded) == list(graph_encoded)
  for key in encoded:
    np.testing.assert_array_equal(encoded[key], graph_encoded[key], err_msg=key)
  np.testing.assert_array_equal(decoded.view(np.int32), graph_decoded.view(np.int32))


def test_a_bad_stream_is_an_error_not_a_crash():
  ops = native.ops()
  words = tf.constant([0, 0], tf.int32)
  with pytest.raises(tf.errors.InvalidArgumentError, match="one position per block"):
    ops.fedcompress_huffman_decode_blocks(
        words, tf.constant([0], tf.int64), tf.constant([0, 1]), tf.constant([1, 1], tf.int64),
        tf.constant([0, 1 << 14], tf.int64), tf.constant(5000, tf.int64), block_size=1024,
        max_code_length=15)
  with pytest.raises(tf.errors.InvalidArgumentError, match="starts increasing"):
    ops.fedcompress_huffman_decode_blocks(
        words, tf.constant([0], tf.int64), tf.constant([0, 1]), tf.constant([1, 1], tf.int64),
        tf.constant([0, 0], tf.int64), tf.constant(3, tf.int64), block_size=1024,
        max_code_length=15)
  with pytest.raises(tf.errors.InvalidArgumentError, match="outside the alphabet"):
    ops.fedcompress_huffman_encode(
        tf.constant([0, 7]), tf.constant([0, 1], tf.int64), tf.constant([1, 1], tf.int64),
        tf.constant([2], tf.int64), tf.constant([32], tf.int64), tf.constant(0, tf.int64),
        block_size=1024)


def test_a_cut_stream_is_an_error():
  # The graph decoder's table path fails where its gathers leave its padded words (a
  # stream cut to its first 40 words), and reads zeros short of that (its search path,
  # codes over 16 bits, clamps); the kernel fails on any block that reads past the
  # stream's last word.
  symbols = _symbols(5000, 8, seed=9)
  with pytest.raises(tf.errors.InvalidArgumentError):
    with native.disabled():
      huffman.huffman_decode(huffman.huffman_encode(symbols, 8, max_code_length=15)[:40],
                             max_code_length=15)
  for length in (15, 20):
    stream = huffman.huffman_encode(symbols, 8, max_code_length=length)
    for cut in (stream[:40], stream[:-40], stream[:-1]):
      with pytest.raises(tf.errors.InvalidArgumentError, match="ends before its symbols"):
        huffman.huffman_decode(cut, max_code_length=length)
    np.testing.assert_array_equal(huffman.huffman_decode(stream, max_code_length=length),
                                  symbols.numpy())
