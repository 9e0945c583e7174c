"""The fast implementations against the ones they replaced, and against definitions.

The references below are the previous implementations, copied verbatim (or, for the
sign masks, the shift path the module keeps for big-endian hosts): packing's and
write_fields' scatter-adds must give bit-identical words (and the Huffman encoder's
pairs of codes the words of one field per code), the count sketch's sparse
product the segment sum's table; the blocked Walsh-Hadamard
transform must equal the explicit Sylvester matrix product and tensor_encoding's
butterflies to float rounding, and the Kashin stage tensor_encoding's own.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import (
  _common,
  adaptive,
  bitio,
  countsketch,
  drive,
  eden,
  huffman,
  kashin,
  nonuniform,
  packing,
  rotation,
)


def _old_pack_bits(values, bits):
  n = values.shape.num_elements()
  num_words = -(-n * bits // 32)
  v = tf.bitwise.bitwise_and(tf.cast(tf.reshape(values, [-1]), tf.int64), (1 << bits) - 1)
  start = tf.range(n, dtype=tf.int64) * bits
  word = start // 32
  shifted = tf.bitwise.left_shift(v, start % 32)
  low = tf.bitwise.bitwise_and(shifted, 0xFFFFFFFF)
  high = tf.bitwise.right_shift(shifted, 32)
  words = (tf.math.unsorted_segment_sum(low, word, num_words + 1)
           + tf.math.unsorted_segment_sum(high, word + 1, num_words + 1))[:num_words]
  return tf.bitcast(tf.cast(words, tf.uint32), tf.int32)


def _old_write_fields(values, widths):
  values = tf.cast(values, tf.int64)
  widths = tf.cast(widths, tf.int64)
  pos = tf.cumsum(widths, exclusive=True)
  num_words = (tf.reduce_sum(widths) + 31) // 32
  word = pos // 32
  shift = tf.cast(64 - pos % 32 - widths, tf.uint64)
  field = tf.cast(tf.bitwise.bitwise_and(
      values, tf.bitwise.left_shift(tf.constant(1, tf.int64), widths) - 1), tf.uint64)
  placed = tf.bitwise.left_shift(field, shift)
  hi = tf.cast(tf.bitwise.right_shift(placed, tf.constant(32, tf.uint64)), tf.int64)
  lo = tf.cast(tf.bitwise.bitwise_and(placed, tf.constant(0xFFFFFFFF, tf.uint64)), tf.int64)
  segments = num_words + 2
  words = (tf.math.unsorted_segment_sum(hi, word, segments)
           + tf.math.unsorted_segment_sum(lo, word + 1, segments))[:num_words]
  return tf.bitcast(tf.cast(words, tf.uint32), tf.int32)


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_bits_words_equal_the_scatter_reference(bits):
  # 1,000 values: not a multiple of 32, so the last group and word are partial.
  values = np.random.default_rng(bits).integers(0, 2**bits, 1000)
  new = packing.pack_bits(tf.constant(values, tf.int64), bits).numpy()
  np.testing.assert_array_equal(new, _old_pack_bits(tf.constant(values), bits).numpy())
  np.testing.assert_array_equal(packing.unpack_bits(tf.constant(new), bits, 1000).numpy(),
                                values)


def test_write_fields_equals_the_scatter_reference():
  rng = np.random.default_rng(0)
  widths = rng.integers(0, 33, 3000)  # Zero widths and full 32-bit fields included.
  values = rng.integers(0, 2**32, 3000)
  np.testing.assert_array_equal(bitio.write_fields(values, widths).numpy(),
                                _old_write_fields(values, widths).numpy())


@pytest.mark.parametrize("cuts", [[0, 3000], [37, 3000], [0, 0, 1, 1, 2999], [5, 1500, 1501]])
def test_write_field_runs_equal_writing_their_concatenation(cuts):
  # Runs that start mid-word, empty runs, a one-field run: the words are those of the
  # concatenated fields, which the runs are never concatenated into.
  rng = np.random.default_rng(len(cuts))
  widths = rng.integers(0, 33, 3000)
  values = rng.integers(0, 2**32, 3000)
  bounds = [0, *cuts, 3000]
  runs = [(tf.constant(values[a:b]), tf.constant(widths[a:b]))
          for a, b in itertools.pairwise(bounds)]
  np.testing.assert_array_equal(bitio.write_field_runs(runs).numpy(),
                                _old_write_fields(values, widths).numpy())


@pytest.mark.parametrize("cuts", [[0, 3000], [37, 3000], [5, 1500, 1501]])
def test_aligned_field_runs_write_the_words_of_right_aligned_ones(cuts):
  # Every other run given left-aligned (the Huffman payload's form), zero widths and
  # full 32-bit fields included: the words of the plain fields.
  rng = np.random.default_rng(len(cuts) + 10)
  widths = rng.integers(0, 33, 3000)
  values = rng.integers(0, 2**32, 3000) & ((1 << widths) - 1)
  aligned = np.array([(v << (64 - w)) & (2**64 - 1) if w else 0
                      for v, w in zip(values.tolist(), widths.tolist(), strict=True)],
                     np.uint64)
  bounds = [0, *cuts, 3000]
  runs = []
  for i, (a, b) in enumerate(itertools.pairwise(bounds)):
    if i % 2:
      runs.append(bitio.AlignedFields(tf.constant(aligned[a:b]), tf.constant(widths[a:b])))
    else:
      runs.append((tf.constant(values[a:b]), tf.constant(widths[a:b])))
  np.testing.assert_array_equal(bitio.write_field_runs(runs, values_fit=True).numpy(),
                                _old_write_fields(values, widths).numpy())


def _sylvester(size):
  h = np.ones([1, 1])
  while h.shape[0] < size:
    h = np.block([[h, h], [h, -h]])
  return h / np.sqrt(size)


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 3000])
def test_field_positions_equal_the_cumulative_sum(n):
  widths = np.random.default_rng(n).integers(0, 33, n)
  np.testing.assert_array_equal(
      bitio.field_positions(tf.constant(widths, tf.int64)).numpy(),
      tf.cumsum(tf.constant(widths, tf.int64), exclusive=True).numpy())


def test_write_fields_without_masking_when_values_fit():
  rng = np.random.default_rng(1)
  widths = rng.integers(0, 33, 3000)
  values = rng.integers(0, 2**32, 3000) % (2**widths)
  np.testing.assert_array_equal(
      bitio.write_fields(values, widths, values_fit=True).numpy(),
      _old_write_fields(values, widths).numpy())


# Code lengths 15 and 16 decode three symbols per step from 16-bit-aligned windows,
# longer ones one per step by binary search; block sizes and counts leave every
# remainder of a block's symbols by 3, and a last block shorter than the others.
@pytest.mark.parametrize("max_code_length", [15, 16, 20, 24])
@pytest.mark.parametrize("block_size,n", [(7, 50), (64, 1000), (1024, 3071), (1024, 1025)])
def test_huffman_decoder_paths_round_trip(max_code_length, block_size, n):
  rng = np.random.default_rng(n + max_code_length)
  bits = 12
  # Geometric symbols give codes of many lengths, up to the limit.
  symbols = np.minimum(rng.geometric(0.25, n) - 1, 2**bits - 1).astype(np.int32)
  symbols[::97] = rng.integers(0, 2**bits, len(symbols[::97]))

  @tf.function
  def round_trip(x):
    stream = huffman.huffman_encode(x, bits, max_code_length=max_code_length,
                                    block_size=block_size)
    return huffman.huffman_decode(stream, max_code_length=max_code_length,
                                  block_size=block_size)

  np.testing.assert_array_equal(round_trip(tf.constant(symbols)).numpy(), symbols)


# Fibonacci counts give Huffman code lengths 1, 2, ..., k-1, k-1 for k symbols: k = 9
# has codes of at most 8 bits (the decoder's two-codes-per-lookup path), k = 10 one of 9
# bits (one code per lookup); here whole copies of them, the rest the commonest symbol.
# Blocks and counts leave remainders by the 12 symbols of a loop iteration, and a short
# last block.
@pytest.mark.parametrize("distinct", [2, 9, 10])
@pytest.mark.parametrize("block_size,n", [(7, 1000), (64, 1001), (1024, 3071), (1024, 1025),
                                          (1000, 5003)])
def test_huffman_decoder_two_codes_per_lookup_round_trip(distinct, block_size, n):
  fib = [1, 1]
  while len(fib) < distinct:
    fib.append(fib[-1] + fib[-2])
  rng = np.random.default_rng(n + distinct)
  # Symbols 16 bits wide: both of a pair's symbols use all 16 bits of the entry.
  values = rng.choice(2**16, distinct, replace=False)
  copies = np.tile(np.repeat(values, fib), n // sum(fib))
  symbols = np.concatenate([copies, np.full(n - len(copies), values[-1])])
  symbols = rng.permutation(symbols).astype(np.int32)
  lengths = huffman.huffman_code_lengths(
      tf.math.bincount(symbols, minlength=2**16), 16).numpy()
  assert lengths.max() == {2: 1, 9: 8, 10: 9}[distinct]
  stream = huffman.huffman_encode(symbols, 16, max_code_length=16, block_size=block_size)
  np.testing.assert_array_equal(
      huffman.huffman_decode(stream, max_code_length=16, block_size=block_size).numpy(),
      symbols)


def test_huffman_decoder_reads_symbols_through_views_as_by_shifts():
  # The decoder's entries hold one symbol in bits 32-47 (and for pairs a second in
  # 48-63) above a length. Reading them through int32 and uint16 views must give what
  # shifts and masks give (the big-endian path), symbols of 16 bits included (their
  # pair's word has bit 31 set).
  rng = np.random.default_rng(5)
  first = rng.integers(0, 2**16, (7, 5), dtype=np.uint64)
  second = rng.integers(0, 2**16, (7, 5), dtype=np.uint64)
  second[0, 0], first[0, 0] = 2**16 - 1, 2**16 - 1
  lengths = rng.integers(1, 17, (7, 5), dtype=np.uint64)
  entries = tf.constant(first << np.uint64(32) | second << np.uint64(48) | lengths)
  words = huffman._symbol_words(entries, little_endian=True)
  np.testing.assert_array_equal(words.numpy(),
                                huffman._symbol_words(entries, little_endian=False).numpy())
  pairs = huffman._split_pairs(tf.transpose(words), little_endian=True).numpy()
  np.testing.assert_array_equal(
      pairs, huffman._split_pairs(tf.transpose(words), little_endian=False).numpy())
  # Block j's row: entry 0's two symbols, then entry 1's, ...
  np.testing.assert_array_equal(pairs[:, 0::2], first.T.astype(np.int64))
  np.testing.assert_array_equal(pairs[:, 1::2], second.T.astype(np.int64))


@tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
def _encode_with_dynamic_bits(symbols, num_bits):
  # As adaptive encodes: the width is a tensor, so pairs or not is decided at run time.
  return huffman.huffman_encode(symbols, num_bits, max_code_length=16, block_size=64)


# Pairs of codes written as one field (symbols of up to 8 bits, codes of up to 16 bits,
# blocks of an even size) against one field per code: the same words. Odd counts leave
# a last symbol of its own, empty and one-symbol streams have no payload, and 9 bits
# (dynamic width) take the one-field path.
@pytest.mark.parametrize("bits", [1, 3, 8])
@pytest.mark.parametrize("n", [0, 1, 2, 63, 64, 129, 2000])
def test_huffman_encoder_pairs_write_the_words_of_one_field_per_code(bits, n):
  rng = np.random.default_rng(n * 10 + bits)
  symbols = np.minimum(rng.geometric(0.2, n) - 1, 2**bits - 1).astype(np.int32)
  symbols[::7] = rng.integers(0, 2**bits, len(symbols[::7]))
  one_field = huffman.huffman_encode(symbols, bits, max_code_length=16, block_size=64,
                                     pairs=False).numpy()
  np.testing.assert_array_equal(
      huffman.huffman_encode(symbols, bits, max_code_length=16, block_size=64).numpy(),
      one_field)
  np.testing.assert_array_equal(_encode_with_dynamic_bits(symbols, bits).numpy(), one_field)


def test_huffman_encoder_without_pairs_where_they_do_not_fit():
  rng = np.random.default_rng(9)
  symbols = rng.integers(0, 2**9, 999).astype(np.int32)
  one_field = huffman.huffman_encode(symbols, 9, max_code_length=16, block_size=64,
                                     pairs=False).numpy()
  np.testing.assert_array_equal(_encode_with_dynamic_bits(symbols, 9).numpy(), one_field)
  # Odd blocks and codes longer than 16 bits: one field per code, decoded back.
  for block_size, max_code_length in [(37, 15), (64, 20)]:
    stream = huffman.huffman_encode(symbols, 9, max_code_length=max_code_length,
                                    block_size=block_size)
    np.testing.assert_array_equal(huffman.huffman_decode(
        stream, max_code_length=max_code_length, block_size=block_size).numpy(), symbols)


@pytest.mark.parametrize("length", [1, 2, 8, 64, 128, 2048, 8192])
def test_walsh_hadamard_equals_the_matrix_product(length):
  x = np.random.default_rng(length).standard_normal([3, length]).astype(np.float32)
  fast = rotation.fast_walsh_hadamard(tf.constant(x)).numpy()
  np.testing.assert_allclose(fast, x.astype(np.float64) @ _sylvester(length), atol=3e-6)
  if length > 1:
    butterflies = te.utils.fast_walsh_hadamard_transform(tf.constant(x)).numpy()
    np.testing.assert_allclose(fast, butterflies, atol=3e-6)


def test_walsh_hadamard_rescales_near_the_largest_float():
  # Above the overflow limit the rows are scaled by their largest magnitude first.
  x = np.random.default_rng(1).standard_normal([2, 2048]).astype(np.float32) * 3e36
  fast = rotation.fast_walsh_hadamard(tf.constant(x)).numpy()
  assert np.all(np.isfinite(fast))
  np.testing.assert_allclose(fast, x.astype(np.float64) @ _sylvester(2048), rtol=1e-5,
                             atol=1e31)


def _walsh_hadamard_checking_the_largest(x):
  # The check `fast_walsh_hadamard` made before its cheaper test: max|x| itself.
  limit = rotation.overflow_limit(x.shape[1], x.dtype)
  scale = tf.reduce_max(tf.abs(x), axis=1, keepdims=True)
  return tf.cond(rotation._common.largest_magnitude(x) > limit,
                 lambda: rotation.orthonormal_wht(tf.math.divide_no_nan(x, scale)) * scale,
                 lambda: rotation.orthonormal_wht(x))


# Ordinary; a norm whose squares overflow (1e20) while max|x| is far below the limit;
# near and above the limit; with a NaN or an infinity; float16 and float64.
@pytest.mark.parametrize("magnitude", [1.0, 1e20, 3e34, 3e36])
@pytest.mark.parametrize("special", [None, np.nan, np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_walsh_hadamard_by_the_norm_test_gives_the_bits_of_checking_the_largest(
    magnitude, special, dtype):
  x = np.random.default_rng(3).standard_normal([4, 256]) * magnitude
  if special is not None:
    x[1, 7] = special
  x = tf.constant(x.astype(dtype) if dtype != np.float16 else
                  np.clip(x, -6e4, 6e4).astype(dtype))
  fast = rotation.fast_walsh_hadamard(x).numpy()
  np.testing.assert_array_equal(fast, _walsh_hadamard_checking_the_largest(x).numpy())


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
def test_the_norm_test_never_passes_a_larger_magnitude(dtype):
  bound = 1000.0
  rng = np.random.default_rng(0)
  cases = [np.full([8, 8], bound), np.eye(8) * bound, rng.standard_normal([8, 8]) * bound,
           np.full([8, 8], np.nan), np.full([8, 8], np.inf)]
  for case in cases:
    for nudge in (1 - 1e-3, 1.0, 1 + 1e-3):
      x = tf.constant(case * nudge, dtype)
      largest = float(np.max(np.abs(x.numpy().astype(np.float64))))
      if bool(rotation._surely_at_most(x, bound)):
        assert largest <= bound
  # And it does pass ordinary values: the test is cheap, not vacuous.
  assert bool(rotation._surely_at_most(tf.constant(np.eye(8) * 0.5, dtype), bound))


def _rotate_checking_every_round(x, seed, rounds, inverse):
  y = x
  for i in (reversed(range(rounds)) if inverse else range(rounds)):
    s = rotation._common.stateless_seed(seed, i)
    y = (rotation.flip_signs(rotation.fast_walsh_hadamard(y), s) if inverse
         else rotation.fast_walsh_hadamard(rotation.flip_signs(y, s)))
  return y


@pytest.mark.parametrize("rounds", [2, 3])
@pytest.mark.parametrize("inverse", [False, True])
# Ordinary values; between the one-check bound and one round's limit (the check falls
# back to checking each round); above the limit (rows rescaled).
@pytest.mark.parametrize("magnitude", [1.0, 3e34, 3e36])
def test_one_overflow_check_per_rotation_gives_the_same_bits(rounds, inverse, magnitude):
  x = tf.constant(np.random.default_rng(rounds).standard_normal([6, 2048]).astype(np.float32)
                  * np.float32(magnitude))
  seed = tf.constant(12345, tf.int32)
  once = rotation._rotate(x, seed, rounds, inverse).numpy()
  every = _rotate_checking_every_round(x, seed, rounds, inverse).numpy()
  assert np.all(np.isfinite(once))
  np.testing.assert_array_equal(once, every)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [[784, 2048], [25, 2048], [3, 7], [1, 64]])
def test_euclidean_norm_op_gives_the_bits_of_tf_norm(dtype, shape):
  # What eden's row norms rely on (eden.py), in a graph as the codecs run.
  rng = np.random.default_rng(len(shape) + shape[0])
  with tf.Graph().as_default(), tf.compat.v1.Session() as session:
    x = tf.compat.v1.placeholder(dtype, shape)
    both = [tf.norm(x, axis=1, keepdims=True),
            tf.math.reduce_euclidean_norm(x, axis=1, keepdims=True)]
    for scale in (1e-3, 1.0, 1e3):
      values = (rng.standard_normal(shape) * scale).astype(dtype)
      values /= np.max(np.abs(values), axis=1, keepdims=True)
      plain, fused = session.run(both, {x: values})
      assert plain.tobytes() == fused.tobytes()


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_eden_selects_what_the_centroid_lookup_gave(bits):
  # The previous EDEN stage: searchsorted indices, gathered centroids, then the scale.
  rows = tf.constant(np.random.default_rng(bits).standard_normal([5, 512]).astype(np.float32))
  stage = eden.EdenEncodingStage(bits)
  encoded = stage.encode(rows, {})
  centroids = tf.constant(eden.gaussian_lloyd_max(bits), tf.float32)
  peak = tf.reduce_max(tf.abs(rows), axis=1, keepdims=True)
  unit = tf.math.divide_no_nan(rows, peak)
  norms = tf.norm(unit, axis=1, keepdims=True)
  z = tf.math.divide_no_nan(unit, norms) * np.sqrt(512)
  indices = tf.searchsorted(tf.broadcast_to((centroids[1:] + centroids[:-1]) / 2, [5, 2**bits - 1]),
                            z, side="right")
  quantized = tf.gather(centroids, indices)
  scales = tf.math.divide_no_nan(norms[:, 0] * np.sqrt(512),
                                 tf.reduce_sum(z * quantized, axis=1)) * peak[:, 0]
  np.testing.assert_array_equal(encoded[stage.ENCODED_VALUES_KEY].numpy(), indices.numpy())
  np.testing.assert_array_equal(encoded[stage.SCALES_KEY].numpy(), scales.numpy())
  decoded = stage.decode(encoded, {})
  np.testing.assert_array_equal(decoded.numpy(), (quantized * scales[:, tf.newaxis]).numpy())


def test_kashin_representation_equals_tensor_encodings():
  x = tf.constant(np.random.default_rng(2).standard_normal([1, 700]).astype(np.float32))
  stages = [kashin.FastKashinHadamardEncodingStage(num_iters=3, eta=0.9, delta=1.0),
            te.stages.research.KashinHadamardEncodingStage(num_iters=3, eta=0.9, delta=1.0)]
  params = stages[1].get_params()[0]
  fast, reference = (s.encode(x, params)[s.ENCODED_VALUES_KEY].numpy() for s in stages)
  np.testing.assert_allclose(fast, reference, atol=1e-5)
  decoded = stages[0].decode({stages[0].ENCODED_VALUES_KEY: tf.constant(fast)}, params,
                             shape=tf.constant([1, 700]))
  np.testing.assert_allclose(decoded.numpy(), x.numpy(), atol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("n", [1, 31, 32, 1000, 4097])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_packing_floats_by_a_product_gives_the_integer_words(bits, n, dtype):
  values = np.random.default_rng(bits * n).integers(0, 2**bits, n)
  # The largest value everywhere too: every field full.
  values[::3] = 2**bits - 1
  by_product = packing.pack_float_bits(tf.constant(values, dtype), bits)
  np.testing.assert_array_equal(by_product.numpy(),
                                packing.pack_bits(tf.constant(values, tf.int32), bits).numpy())


@pytest.mark.parametrize("bits", [1, 4])
def test_out_of_range_floats_are_masked_as_before(bits):
  # Outside [0, 2**bits) the stage takes the integer path, which keeps the low bits.
  values = np.array([0, 2**bits, 2**bits + 1, 3, -1, 1] * 7, np.float32)
  stage = packing.Bitpack32EncodingStage(bits)
  words = stage.encode(tf.constant(values), {})[stage.ENCODED_VALUES_KEY]
  np.testing.assert_array_equal(
      words.numpy(), packing.pack_bits(tf.constant(values.astype(np.int32)), bits).numpy())


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("n", [1, 8, 33, 1000])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16, tf.int32])
def test_unpacking_by_bytes_equals_the_shifts(bits, n, dtype):
  # Byte tables (1, 2, 4 bits) and uint8/uint16 views (8, 16) against the shifts; the
  # other widths take the shifts themselves.
  values = np.random.default_rng(n + bits).integers(0, 2**bits, n)
  values[: min(n, 2)] = [2**bits - 1, 0][: min(n, 2)]
  words = packing.pack_bits(tf.constant(values, tf.int32), bits)
  got = packing.unpack_values(words, bits, n, dtype)
  expected = tf.cast(packing.unpack_bits(words, bits, n), dtype)
  assert got.dtype == dtype and got.shape == [n]
  np.testing.assert_array_equal(got.numpy(), expected.numpy())
  if bits <= 11 or dtype != tf.float16:  # float16 holds integers exactly up to 2^11.
    np.testing.assert_array_equal(got.numpy(), values.astype(dtype.as_numpy_dtype))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(1,), (7, 13), (70000,)])
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_packed_nonuniform_equals_the_quantizer_and_its_packing(bits, shape, dtype):
  # The fused stage against the two stages `build` composed before: the same words
  # and codebook, and the same decoded values (bytes to levels at 1, 2, 4 and 8 bits,
  # the unpacking elsewhere). 70,000 values take the histogram fit.
  x = tf.constant(np.random.default_rng(bits).standard_t(3, size=shape), dtype)
  fused = nonuniform.PackedNonUniformEncodingStage(bits)
  quantizer, _ = fused.split_packing()
  packer = packing.Bitpack32EncodingStage(bits)  # The range checked.
  encoded = fused.encode(x, {})
  reference = quantizer.encode(x, {})
  words = packer.encode(reference[quantizer.ENCODED_VALUES_KEY], {})
  np.testing.assert_array_equal(encoded[fused.ENCODED_VALUES_KEY].numpy(),
                                words[packer.ENCODED_VALUES_KEY].numpy())
  np.testing.assert_array_equal(encoded[fused.CODEBOOK_KEY].numpy(),
                                reference[quantizer.CODEBOOK_KEY].numpy())
  decoded = fused.decode(encoded, {}, shape=x.shape)
  indices = packer.decode(words, {}, shape=x.shape)
  expected = quantizer.decode({quantizer.ENCODED_VALUES_KEY: indices,
                               quantizer.CODEBOOK_KEY: reference[quantizer.CODEBOOK_KEY]}, {})
  assert decoded.dtype == dtype and decoded.shape == x.shape
  np.testing.assert_array_equal(decoded.numpy(), expected.numpy())


@pytest.mark.parametrize("n", [1, 8, 33, 4096])
def test_sign_masks_by_byte_table_equal_the_shifts(n):
  words = tf.constant(np.random.default_rng(n).integers(0, 2**32, -(-n // 32)), tf.uint32)
  by_bytes = rotation.sign_masks(words, n, by_bytes=True).numpy()
  np.testing.assert_array_equal(by_bytes, rotation.sign_masks(words, n, by_bytes=False))
  # Coordinate 32 i + j carries bit j of word i in its top bit, and nothing else.
  bits = (words.numpy()[:, None] >> np.arange(32, dtype=np.uint32)) & 1
  np.testing.assert_array_equal(by_bytes, (bits.reshape(-1)[:n] << 31).astype(np.uint32))


@pytest.mark.parametrize("dtype", [tf.float16, tf.float32, tf.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 5), (3, 64), (2, 2048)])
def test_sign_flip_toggles_the_sign_bits_the_masks_name(dtype, shape):
  x = tf.cast(tf.random.stateless_normal(shape, [5, 6]), dtype)
  x = tf.tensor_scatter_nd_update(tf.reshape(x, [-1]), [[0]], tf.constant([0.0], dtype))
  x = tf.reshape(x, shape)
  width = {16: np.uint16, 32: np.uint32, 64: np.uint64}[dtype.size * 8]
  n = x.shape.num_elements()
  for seed in ([1, 2], [7, 9]):
    words = tf.random.stateless_uniform([-(-n // 32)], seed, dtype=tf.uint32, minval=None,
                                        maxval=None)
    toggled = rotation.sign_masks(words, n, by_bytes=False).numpy() >> 31
    expected = x.numpy().reshape(-1).view(width) ^ (toggled.astype(width)
                                                   << width(dtype.size * 8 - 1))
    new = rotation.flip_signs(x, seed).numpy().reshape(-1).view(width)
    np.testing.assert_array_equal(new, expected)
  # And it flips: magnitudes kept, about half the signs changed.
  flipped = rotation.flip_signs(x, [1, 2]).numpy()
  np.testing.assert_array_equal(np.abs(flipped), np.abs(x.numpy()))
  if x.shape.num_elements() >= 192:
    changed = np.signbit(flipped) != np.signbit(x.numpy())
    assert 0.4 < changed.mean() < 0.6


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.float16])
@pytest.mark.parametrize("n,rows,columns", [(1, 1, 1), (7, 2, 3), (1000, 5, 20), (51200, 5, 512)])
def test_count_sketch_table_equals_the_segment_sum(n, rows, columns, dtype):
  # The previous sketch, verbatim; in a graph as the codec runs (and TFF's worker, with
  # its default threads: the segment sum shards its buckets across them).
  def segment_sum_table(x, buckets, signs):
    signed = tf.cast(signs, x.dtype) * tf.reshape(x, [1, n])
    table = tf.math.unsorted_segment_sum(tf.reshape(signed, [-1]), tf.reshape(buckets, [-1]),
                                         rows * columns)
    return tf.reshape(table, [rows, columns])

  sketch = countsketch.CountSketch(n, rows, columns)
  rng = np.random.default_rng(n + rows)
  values = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
  values[rng.random(n) < 0.3] = 0.0
  values[rng.random(n) < 0.1] = -0.0  # Signed zeros must add as before too.

  @tf.function
  def both(x, seed):
    hashes = sketch.hashes(seed)
    return sketch.sketch(x, hashes), segment_sum_table(x, *hashes)

  for seed in (0, 12345):
    new, old = both(tf.constant(values, dtype), tf.constant(seed))
    width = {16: np.uint16, 32: np.uint32, 64: np.uint64}[dtype.size * 8]
    np.testing.assert_array_equal(new.numpy().view(width), old.numpy().view(width))


@pytest.mark.parametrize("dtype", [tf.int32, tf.int64])
@pytest.mark.parametrize("n,size,high", [(0, 4, 4), (1, 1, 1), (1000, 16, 16), (1000, 16, 40),
                                         (70000, 2**16, 2**16)])
def test_histogram_equals_bincount_with_both_lengths(n, size, high, dtype):
  # Values past the size (`high > size`) are left out by both.
  values = tf.constant(np.random.default_rng(n + high).integers(0, high, n), tf.int32)
  expected = tf.math.bincount(values, minlength=size, maxlength=size, dtype=dtype)
  got = _common.histogram(values, tf.constant(size), dtype)
  assert got.dtype == dtype
  np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("coder", adaptive.CODERS)
@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf, 3e38])
def test_adaptive_symbols_equal_those_of_clipping_the_floats(coder, special):
  # Until 2026-12-04 the adaptive stage clipped its rounded floats to [0, levels] before
  # the cast, and the coders clip the integers again: the symbols those gave, also for
  # non-finite inputs and ranges that overflow.
  values = np.random.default_rng(5).normal(size=3000).astype(np.float32)
  values[[7, 1234]] = special
  stage = adaptive.AdaptiveUniformEncodingStage(6.0, coder=coder, stochastic=False)
  x = tf.constant(values)
  encoded, _ = stage.encode(x, stage.get_params(stage.initial_state())[0])
  stream = encoded[stage.ENCODED_VALUES_KEY]
  _, bits = huffman.stream_header(stream)
  decode = huffman.huffman_decode if coder == "huffman" else huffman.fixed_width_decode
  symbols = decode(stream, max_code_length=15) if coder == "huffman" else decode(stream)

  low, high = tf.reduce_min(x), tf.reduce_max(x)
  levels = tf.cast(tf.bitwise.left_shift(1, tf.cast(bits, tf.int32)) - 1, tf.float32)
  scaled = tf.round(tf.math.divide_no_nan(x - low, high - low) * levels)
  clipped = tf.cast(tf.clip_by_value(scaled, 0.0, levels), tf.int32)
  expected = tf.clip_by_value(clipped, 0, tf.cast(levels, tf.int32))
  assert bits.numpy() > 1
  np.testing.assert_array_equal(symbols.numpy(), expected.numpy())


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("n", [1, 31, 33, 5000])
def test_bitpack32_trusting_the_range_writes_the_checked_words(bits, n):
  values = np.random.default_rng(n + bits).integers(0, 2**bits, n).astype(np.float32)
  x = tf.constant(values)
  checked = packing.Bitpack32EncodingStage(bits).encode(x, {})
  trusted = packing.Bitpack32EncodingStage(bits, in_range=True).encode(x, {})
  np.testing.assert_array_equal(trusted["packed"].numpy(), checked["packed"].numpy())


def _special_rows(length=64):
  rng = np.random.default_rng(9)
  rows = rng.normal(size=(6, length)).astype(np.float32)
  rows[0, 3], rows[1, 5], rows[2, 7] = np.nan, np.inf, -np.inf
  rows[3] = 0.0
  rows[4] = np.where(rows[4] >= 0, 3e38, -3e38)  # Finite, but their norms overflow.
  rows[5, :] = -0.0
  return tf.constant(rows)


@pytest.mark.parametrize("stage", [drive.DriveEncodingStage()]
                         + [eden.EdenEncodingStage(bits) for bits in (1, 2, 4)])
def test_drive_and_eden_values_are_in_range_as_their_packing_trusts(stage):
  # Their Bitpack32 stages skip the range check (`in_range=True`): whatever the input,
  # NaN and infinities included, the values must be integers in [0, 2**bits).
  bits = getattr(stage, "_bits", 1)
  values = stage.encode(_special_rows(), {})[stage.ENCODED_VALUES_KEY].numpy()
  assert values.dtype == np.float32
  np.testing.assert_array_equal(values, np.floor(values))
  assert values.min() >= 0 and values.max() <= 2**bits - 1


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_scaling_by_the_inverse_power_of_two_equals_dividing(dtype):
  # nonuniform multiplies by 2**-e where it divided by 2**e: exact both, and a result
  # below the normal range rounded (or flushed) alike, in a graph as the worker runs it.
  info = np.finfo(dtype.as_numpy_dtype)
  rng = np.random.default_rng(5)
  x = np.concatenate([rng.normal(size=2000), rng.normal(size=2000) * float(info.tiny),
                      [0.0, -0.0, float(info.max), float(info.smallest_subnormal), 3.0]])
  for e in (-100, -7, 0, 1, 2, 30, 100):
    scale = tf.constant(2.0**e, dtype)
    product, quotient = tf.function(lambda v, s: (v * (1 / s), v / s))(
        tf.constant(x.astype(dtype.as_numpy_dtype)), scale)
    np.testing.assert_array_equal(product.numpy().view(np.uint8),
                                  quotient.numpy().view(np.uint8))


@pytest.mark.parametrize("length", [64, 12000])  # 384 values: sorted; 72,000: histogram.
@pytest.mark.parametrize("bits", [1, 4, 8])
def test_nonuniform_indices_are_in_range_as_its_packing_trusts(length, bits):
  # Its packing skips the range check too; above 2^16 values NaN and infinities
  # take the sorted fit (they have no histogram bin) instead of failing.
  stage = nonuniform.NonUniformQuantizationEncodingStage(bits)
  for kept in range(3):  # One of NaN, +inf and -inf at a time.
    rows = _special_rows(length).numpy()
    for row, column in enumerate([3, 5, 7]):
      if row != kept:
        rows[row, column] = 0.0
    values = stage.encode(tf.constant(rows), {})[stage.ENCODED_VALUES_KEY].numpy()
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, np.floor(values))
    assert values.min() >= 0 and values.max() <= 2**bits - 1


@pytest.mark.parametrize("dtype", [tf.uint64, tf.float32, tf.float16, tf.int32])
@pytest.mark.parametrize("index_shape", [[0], [1], [1568], [5, 300], [2, 3, 4]])
def test_take_equals_gather(index_shape, dtype):
  rng = np.random.default_rng(len(index_shape) + dtype.size)
  table = tf.constant(rng.integers(0, 2**15, 700), dtype)
  for index_dtype in (tf.int32, tf.int64):
    indices = tf.constant(rng.integers(0, 700, index_shape), index_dtype)
    got, expected = _common.take(table, indices), tf.gather(table, indices)
    assert got.dtype == dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


def test_take_gathers_rows_as_gather():
  table = tf.constant(np.arange(256 * 8, dtype=np.uint32).reshape(256, 8))
  indices = tf.constant(np.random.default_rng(1).integers(0, 256, [40, 3]), tf.int32)
  np.testing.assert_array_equal(_common.take(table, indices).numpy(),
                                tf.gather(table, indices).numpy())


def test_take_refuses_indices_outside_the_table():
  with pytest.raises(tf.errors.InvalidArgumentError):
    _common.take(tf.range(10), tf.constant([3, 10]))
