"""Huffman entropy coding: exact round trips, hand-computed codes and bits, TFF use."""

import collections
import heapq

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

import fedcompress
from fedcompress.codecs import CodecSpec, get_codec
from fedcompress.codecs import accounting as bits
from fedcompress.codecs import testing as stage_testing
from fedcompress.codecs.stages import bitio, entropy, huffman
from fedcompress.federated.aggregation import build_mean_factory

UNIFORM = get_codec("uniform")


def _as_int32(word: int) -> int:
  return word - 2**32 if word >= 2**31 else word


# ------------------------------------------------------------ the stage, TE's suite


class HuffmanEncodingStageTest(stage_testing.BaseEncodingStageTest):
  """tensor_encoding's own round-trip suite (one-to-many, many-to-one, graphs)."""

  def default_encoding_stage(self):
    return entropy.HuffmanEncodingStage(4, block_size=16)

  def default_input(self):
    # Skewed symbols in [0, 16) over a rank-2 shape (the stage restores it).
    rng = np.random.default_rng(7)
    symbols = np.minimum(rng.geometric(0.35, size=(5, 40)) - 1, 15)
    return tf.constant(symbols.astype(np.float32))

  @property
  def is_lossless(self):
    return True

  def common_asserts_for_test_data(self, data):
    np.testing.assert_array_equal(data.decoded_x, data.x)
    stream = data.encoded_x[entropy.HuffmanEncodingStage.ENCODED_VALUES_KEY]
    self.assertEqual(stream.dtype, np.int32)
    self.assertEqual(stream[0], 200)  # The header's first word is n.
    # Skewed 4-bit symbols code well below 4 bits each, header and table included.
    self.assertLess(stream.size * 32, 200 * 4)


# ------------------------------------------------------------ hand-computed cases


def test_code_lengths_and_canonical_codes_by_hand():
  # Counts 4, 2, 1, 1: Huffman merges 1+1, then 2+2, then 4+4 -> lengths 1, 2, 3, 3.
  lengths = huffman.huffman_code_lengths(tf.constant([4, 2, 1, 1]), 15)
  np.testing.assert_array_equal(lengths, [1, 2, 3, 3])
  # Canonical: 0, 10, 110, 111.
  np.testing.assert_array_equal(huffman.canonical_codes(lengths, 15), [0b0, 0b10, 0b110, 0b111])
  # Absent symbols get no code; the others keep their order among equal lengths.
  np.testing.assert_array_equal(huffman.huffman_code_lengths(tf.constant([0, 5, 0, 5]), 15),
                                [0, 1, 0, 1])


def test_stream_words_by_hand():
  stream = huffman.huffman_encode(tf.constant([0, 0, 0, 0, 1, 1, 2, 3]), 2, max_code_length=15)
  # n = 8 (32 bits) | bits-1 = 0001 | lengths 0001 0010 0011 0011 | payload
  # 0 0 0 0 10 10 110 111 (14 bits) = 66 bits -> 3 words, the last zero-padded.
  word1 = int("0001" "0001001000110011" "000010101101", 2)
  word2 = int("11" + "0" * 30, 2)
  np.testing.assert_array_equal(stream, [8, _as_int32(word1), _as_int32(word2)])
  np.testing.assert_array_equal(huffman.huffman_decode(stream, max_code_length=15),
                                [0, 0, 0, 0, 1, 1, 2, 3])
  structure = {"flattened_values/quantized_values/huffman_stream": stream}
  assert int(bits.structure_bits_tf(structure)) == 96  # coded: 3 int32 words
  # raw: 8 symbols x 2 bits in one 28-bit-packed word.
  assert int(bits.raw_structure_bits_tf(structure, entropy.RAW_BITS_RULES)) == 32
  assert bits.has_coded_streams(structure, entropy.RAW_BITS_RULES)


def test_blocks_are_counted_by_hand():
  # 80 symbols (the pattern above x 10), blocks of 32: payload 140 bits; blocks 0 and 1
  # send their lengths (56 bits each) in bit_length(32 * 15) = 9 bits.
  symbols = tf.constant([0, 0, 0, 0, 1, 1, 2, 3] * 10)
  stream = huffman.huffman_encode(symbols, 2, max_code_length=15, block_size=32)
  assert huffman.block_field_bits(32, 15) == 9
  total = 36 + 4 * 4 + 2 * 9 + 140  # = 210 bits -> 7 words
  assert stream.shape == [(total + 31) // 32]
  padded = bitio.padded_words(stream)  # pylint: disable=protected-access
  np.testing.assert_array_equal(bitio.read_fields(padded, [52, 61], 9), [56, 56])
  np.testing.assert_array_equal(
      huffman.huffman_decode(stream, max_code_length=15, block_size=32), symbols)


def test_single_symbol_costs_no_payload():
  symbols = tf.fill([1000], 37)
  stream = huffman.huffman_encode(symbols, 8, max_code_length=15)
  assert stream.shape == [(36 + 256 * 4 + 31) // 32]  # header + table only
  np.testing.assert_array_equal(huffman.huffman_decode(stream, max_code_length=15), symbols)


def test_single_symbol_decodes_in_a_tff_style_graph():
  # TFF traces into a plain graph, where `tensor == 1` is a Python bool: the lone
  # symbol's table entry was never set there, and it decoded as symbol 0.
  with tf.Graph().as_default() as graph:
    symbols = tf.fill([1000], 37)
    decoded = huffman.huffman_decode(huffman.huffman_encode(symbols, 8, max_code_length=15),
                                     max_code_length=15)
  with tf.compat.v1.Session(graph=graph) as session:
    np.testing.assert_array_equal(session.run(decoded), np.full([1000], 37))


def test_fixed_width_stream_by_hand():
  symbols = tf.constant([5, 0, 7, 1, 2, 3, 4, 6, 6, 6])
  stream = huffman.fixed_width_encode(symbols, 3)
  assert stream.shape == [3]  # 36 + 10 x 3 = 66 bits
  n, b = huffman.stream_header(stream)
  assert (int(n), int(b)) == (10, 3)
  np.testing.assert_array_equal(huffman.fixed_width_decode(stream), symbols)


# ------------------------------------------------------------ optimality and limits


def _huffman_cost(counts) -> int:
  """Reference: total payload bits of an (unlimited) Huffman code, by heapq merging."""
  heap = [c for c in counts if c > 0]
  if len(heap) < 2:
    return 0
  heapq.heapify(heap)
  cost = 0
  while len(heap) > 1:
    merged = heapq.heappop(heap) + heapq.heappop(heap)
    cost += merged  # Every symbol under a merge gets one bit deeper.
    heapq.heappush(heap, merged)
  return cost


@pytest.mark.slow
def test_package_merge_is_optimal_when_unconstrained():
  rng = np.random.default_rng(1)
  for trial in range(20):
    k = int(rng.integers(2, 300))
    counts = rng.integers(0, 50, k) * (rng.random(k) < 0.7) + (np.arange(k) < 2)
    lengths = huffman.huffman_code_lengths(tf.constant(counts), 24).numpy()
    assert (lengths > 0).sum() == (counts > 0).sum(), trial
    assert np.sum(2.0 ** -lengths[lengths > 0]) == 1.0  # complete prefix code
    assert int(np.dot(lengths, counts)) == _huffman_cost(counts), trial


def _limited_cost(counts, max_length: int) -> int:
  """Reference: total payload bits of an optimal code with lengths <= max_length.

  Package-merge (Larmore and Hirschberg, J. ACM 37(3), 1990) by plain lists: after
  max_length - 1 rounds of pairing the sorted list and merging the pairs back among the
  symbols' counts, the 2n - 2 lightest entries weigh exactly the optimal cost.
  """
  items = sorted(c for c in counts if c > 0)
  current = list(items)
  for _ in range(max_length - 1):
    packages = [current[i] + current[i + 1] for i in range(0, len(current) - 1, 2)]
    current = sorted(items + packages)
  return sum(current[:2 * len(items) - 2])


def test_limited_cost_reference_by_hand():
  # Counts 1, 1, 2, 4: Huffman lengths 3, 3, 2, 1 (cost 3 + 3 + 4 + 4 = 14); at most 2
  # bits, every length is 2 (cost 16).
  assert _limited_cost([1, 1, 2, 4], 3) == _huffman_cost([1, 1, 2, 4]) == 14
  assert _limited_cost([1, 1, 2, 4], 2) == 16


@pytest.mark.slow
def test_length_limit_holds_on_fibonacci_counts():
  fib = [1, 1]
  while len(fib) < 26:
    fib.append(fib[-1] + fib[-2])
  # Unlimited Huffman gives these lengths 1..25; the limit caps them at 15.
  lengths = huffman.huffman_code_lengths(tf.constant(fib, tf.int64), 15).numpy()
  assert lengths.max() == 15
  assert np.sum(2.0 ** -lengths) == 1.0
  # Not only a valid code within the limit: the cheapest one (package-merge is optimal).
  assert np.dot(lengths, fib) == _limited_cost(fib, 15) > _huffman_cost(fib)
  assert _limited_cost(fib, 25) == _huffman_cost(fib)  # Unlimited needs 25 bits.
  symbols = np.repeat(np.arange(26), fib).astype(np.int32)  # 318k symbols
  stream = huffman.huffman_encode(symbols, 5, max_code_length=15)
  np.testing.assert_array_equal(huffman.huffman_decode(stream, max_code_length=15), symbols)


# ------------------------------------------------------------ exact round trips


@tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
                              tf.TensorSpec([], tf.bool)])
def _roundtrip(symbols, num_bits, use_huffman):
  # One graph for every case: shapes and widths are dynamic, as inside TFF.
  def by_huffman():
    return huffman.huffman_decode(
        huffman.huffman_encode(symbols, num_bits, max_code_length=16, block_size=37),
        max_code_length=16, block_size=37)

  def by_fixed():
    return huffman.fixed_width_decode(huffman.fixed_width_encode(symbols, num_bits))

  return tf.cond(use_huffman, by_huffman, by_fixed)


def _cases():
  rng = np.random.default_rng(2)
  yield "empty", np.zeros([0]), 3
  yield "one symbol", np.array([5]), 3
  yield "two symbols", np.array([1, 0]), 1
  yield "all equal", np.full(500, 255), 8
  yield "every symbol once", rng.permutation(2**10), 10
  yield "every symbol of 16 bits", rng.permutation(2**16), 16
  yield "max symbol only", np.full(40, 2**16 - 1), 16
  for i in range(40):
    b = int(rng.integers(1, 13))
    n = int(rng.integers(0, 4000))
    kind = i % 4
    if kind == 0:
      x = rng.integers(0, 2**b, n)
    elif kind == 1:
      x = np.minimum(rng.geometric(rng.uniform(0.05, 0.9), n) - 1, 2**b - 1)
    elif kind == 2:
      x = np.clip(np.round(rng.normal(2 ** (b - 1), 2**b / 30, n)), 0, 2**b - 1)
    else:
      x = rng.choice(rng.integers(0, 2**b, 3), n)
    yield f"random {i} ({b} bits, n={n})", x, b


@pytest.mark.parametrize("use_huffman", [pytest.param(True, marks=pytest.mark.slow), False],
                         ids=["huffman", "fixed"])
def test_exact_roundtrip_on_every_input(use_huffman):
  for name, x, b in _cases():
    x = np.asarray(x, np.int32)
    decoded = _roundtrip(x, b, use_huffman).numpy()
    assert decoded.dtype == np.int32, name
    np.testing.assert_array_equal(decoded, x, err_msg=name)


# ------------------------------------------------------------ codecs and accounting


def _simple_roundtrip(spec: CodecSpec, x: np.ndarray):
  encoder = spec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))

  @tf.function
  def run(value):
    encoded, _ = encoder.encode(value, encoder.initial_state())
    return (encoder.decode(encoded), bits.structure_bits_tf(encoded),
            bits.raw_structure_bits_tf(encoded, entropy.RAW_BITS_RULES))

  decoded, coded, raw = run(tf.constant(x))
  return decoded.numpy(), int(coded), int(raw)


@pytest.mark.slow
def test_uniform_huffman_decodes_like_uniform_and_counts_raw_as_uniform():
  x = np.random.default_rng(3).normal(size=(60, 50)).astype(np.float32)
  options = {"bits": 8, "deterministic": True}
  plain, plain_bits, _ = _simple_roundtrip(CodecSpec("uniform", options, threshold=0), x)
  coded, coded_bits, raw_bits = _simple_roundtrip(
      CodecSpec("uniform_huffman", options, threshold=0), x)
  np.testing.assert_array_equal(coded, plain)  # lossless after the same quantizer
  assert plain_bits == UNIFORM.bits(3000, {"bits": 8})
  assert raw_bits == plain_bits
  # Gaussian 8-bit symbols have ~6 bits of entropy.
  assert coded_bits < 0.85 * raw_bits


@pytest.mark.slow
def test_generic_wrapper_over_another_codec():
  x = np.random.default_rng(4).normal(size=(3000,)).astype(np.float32)
  options = {"bits": 3, "deterministic": True}
  plain, _, _ = _simple_roundtrip(CodecSpec("uniform", options, threshold=0), x)
  spec = CodecSpec("huffman", dict(options, base="uniform", block_size=100), threshold=0)
  coded, _, raw = _simple_roundtrip(spec, x)
  np.testing.assert_array_equal(coded, plain)
  assert raw == UNIFORM.bits(3000, {"bits": 3})


@pytest.mark.slow
def test_wrapper_uses_32_bit_raw_size_after_bitpack32():
  # `nonuniform` packs 32 bits per word.
  x = np.random.default_rng(5).normal(size=(4000,)).astype(np.float32)
  options = {"bits": 3, "method": "quantile"}
  plain, plain_bits, _ = _simple_roundtrip(CodecSpec("nonuniform", options, threshold=0), x)
  coded, _, raw = _simple_roundtrip(
      CodecSpec("huffman", dict(options, base="nonuniform"), threshold=0), x)
  np.testing.assert_array_equal(coded, plain)
  assert raw == plain_bits  # ceil(4000 * 3 / 32) words + the 8-level float32 codebook


@pytest.mark.slow
def test_other_dtypes_come_back_with_a_counted_marker():
  x = np.random.default_rng(8).normal(size=(500,))
  options = {"bits": 6, "deterministic": True}
  encoder = CodecSpec("uniform_huffman", options, threshold=0).simple_encoder(
      tf.TensorSpec([500], tf.float64))
  plain = CodecSpec("uniform", options, threshold=0).simple_encoder(
      tf.TensorSpec([500], tf.float64))

  @tf.function
  def run(value):
    encoded, _ = encoder.encode(value, encoder.initial_state())
    plain_encoded, _ = plain.encode(value, plain.initial_state())
    return (encoder.decode(encoded), plain.decode(plain_encoded),
            bits.raw_structure_bits_tf(encoded, entropy.RAW_BITS_RULES),
            bits.structure_bits_tf(plain_encoded))

  decoded, plain_decoded, raw, plain_bits = run(tf.constant(x))
  assert decoded.dtype == tf.float64
  np.testing.assert_array_equal(decoded, plain_decoded)
  # Both carry a float64 marker; min/max are float64 too.
  assert int(raw) == int(plain_bits) == -(-500 * 6 // 28) * 32 + 3 * 64


def test_wrapper_rejects_codecs_without_symbols_and_unknown_coders():
  with pytest.raises(ValueError, match="no bit-packing stage"):
    CodecSpec("huffman", {"base": "identity"})
  with pytest.raises(ValueError, match="valid coders: huffman"):
    entropy.entropy_coded(te.encoders.uniform_quantization(8), "arithmetic")
  with pytest.raises(ValueError, match="already entropy coded"):
    CodecSpec("huffman", {"base": "uniform_huffman"})
  with pytest.raises(ValueError, match="max_code_length"):
    entropy.HuffmanEncodingStage(8, max_code_length=7)


# ------------------------------------------------------------ inside TFF


VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    a=tff.TensorType(np.float32, [6]), b=tff.TensorType(np.float32, [2])))


@pytest.fixture(scope="module")
def mean_process():
  codec = CodecSpec("uniform_huffman", {"bits": 2, "deterministic": True}, threshold=3)
  return build_mean_factory(codec).create(VALUE_TYPE, tff.TensorType(np.float32))


@pytest.mark.slow
def test_encoded_mean_decodes_before_sum_and_counts_both_sizes(mean_process):
  measurements_type = mean_process.next.type_signature.result.measurements.member
  assert measurements_type.mean_value == tff.to_type(
      collections.OrderedDict(bits=np.int64, coded_bits=np.int64))
  assert measurements_type.mean_weight == tff.to_type(collections.OrderedDict(bits=np.int64))
  values = [
      collections.OrderedDict(a=np.array([0, 0, 0, 1, 2, 3], np.float32),
                              b=np.array([1.0, 2.0], np.float32)),
      collections.OrderedDict(a=np.array([1, 0, 0, 0, 2, 3], np.float32),
                              b=np.array([-1.0, 0.5], np.float32)),
  ]
  output = mean_process.next(mean_process.initialize(), values, [1.0, 3.0])
  # Client 2 sends [3, 0, 0, 0, 6, 9], on its 2-bit levels {0, 3, 6, 9}: exact.
  np.testing.assert_allclose(output.result["a"], [0.75, 0, 0, 0.25, 2, 3], atol=1e-6)
  np.testing.assert_allclose(output.result["b"], [-0.5, 0.875], atol=1e-6)
  # Each client's 'a' has symbol counts {3, 1, 1, 1}: Huffman lengths 1, 2, 3, 3 cost
  # 3 + 2 + 3 + 3 = 11 bits; stream 36 + 4 x 4 + 11 = 63 bits -> 2 words (64) + min/max.
  # Raw: 6 x 2 bits in one 28-bit word (32) + min/max. 'b' is identity (64).
  assert output.measurements["mean_value"]["coded_bits"] == 2 * (64 + 64 + 64)
  assert output.measurements["mean_value"]["bits"] == 2 * (32 + 64 + 64)
  assert output.measurements["mean_weight"]["bits"] == 2 * 32


def _dense_model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(40,)),
      tf.keras.layers.Dense(64, activation="relu",
                            kernel_initializer=tf.keras.initializers.GlorotNormal(seed=0)),
      tf.keras.layers.Dense(2, kernel_initializer=tf.keras.initializers.GlorotNormal(seed=1))])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=(tf.TensorSpec([None, 40], tf.float32),
                               tf.TensorSpec([None, 1], tf.int32)),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _clients(num_clients=3):
  rng = np.random.default_rng(6)
  return [tf.data.Dataset.from_tensor_slices((
      rng.normal(size=(16, 40)).astype(np.float32),
      rng.integers(0, 2, (16, 1)).astype(np.int32))).batch(8) for _ in range(num_clients)]


@pytest.mark.slow  # Builds and runs a TFF process.
def test_fedavg_reports_coded_bits_beside_raw_bits():
  codec = CodecSpec("uniform_huffman", {"bits": 8}, threshold=1000)
  process = fedcompress.build_fedavg(_dense_model_fn, broadcast_codec=codec,
                                     aggregate_codec=codec)
  metrics = process.next(process.initialize(), _clients()).metrics
  # The plain uniform codec: the 40 x 64 kernel at 8 bits in 28-bit words plus min/max;
  # bias (64), kernel (128) and bias (2) at float32.
  per_client = UNIFORM.bits(2560, {"bits": 8}) + (64 + 128 + 2) * 32
  assert metrics["broadcast/bits"] == 3 * per_client
  assert metrics["aggregate/bits"] == 3 * (per_client + 32)
  assert 0 < metrics["broadcast/coded_bits"] < metrics["broadcast/bits"]
  assert 0 < metrics["aggregate/coded_bits"] < metrics["aggregate/bits"]
  # Only the kernel is entropy coded: the rest counts the same in both.
  assert metrics["aggregate/bits"] - metrics["aggregate/coded_bits"] > 0.2 * 3 * 2560 * 8
