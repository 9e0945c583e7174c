"""Huffman streams of quantized symbols, in pure TensorFlow graph ops.

A quantizing codec (uniform, nonuniform, ...) turns a tensor into integer symbols in
`[0, 2**bits)` and normally bit-packs them at a fixed `bits` per symbol. Here they are
Huffman coded instead: a real, exactly decodable bit string whose size is what the
process reports as `coded_bits`, beside the raw (bit-packed) size it reports as `bits`.

Everything is graph ops (no `tf.py_function`), so it runs inside TFF computations in
TFF's C++ worker:

* Code lengths: an optimal length-limited Huffman code (maximum length `L`) from the
  symbol histogram, by package-merge (Larmore and Hirschberg, 1990). It needs `L`
  stable sorts of at most `2m` weights (`m` = distinct symbols), no sequential loop.
* Canonical codes: the code of the i-th symbol in (length, symbol) order is the
  exclusive cumulative sum of `2**(L - length)` over the symbols before it, shifted
  right by `L - length`; one `cumsum`.
* Encoding: bit positions are the cumulative sum of code lengths; codes are summed
  into int32 words with a sorted segment sum (fields never overlap, so sums are ORs;
  `bitio.write_field_runs`, which writes the header and the payload without
  concatenating them). Symbols of up to 8 bits with codes of up to 16 bits are written
  two codes to a field (`_symbol_fields`): half the fields, the same words.
* Decoding: the symbols are cut into blocks of `block_size`; each block's length in
  bits is sent, so all blocks decode in parallel and the decoder runs a vectorized
  step in a `tf.while_loop`: peek 64 bits, take codes from their top (by tables over
  every `L`-bit value, three per step, for `L <= 16`, or over every 16-bit value, two
  codes per lookup and six per step, when no code is longer than 8 bits; by a binary
  search over the canonical code starts, one per step, above), advance.

The stream (one int32 tensor, bit 0 = most significant bit of word 0, 32 bits used
per word) is self-describing and every bit of it is counted as side information:

    n (32 bits) | bits - 1 (4) | K = 2**bits code lengths (bit_length(L) each)
    | lengths of blocks 0..nb-2 in bits (bit_length(block_size * L) each;
      absent when fewer than two distinct symbols) | payload | zero padding

With one distinct symbol the payload is empty: the table names the symbol and `n`
says how many. `n` and `bits` in the header also give the raw size from the stream
alone (`stream_raw_bits`, the coding stage's raw-bits rule): what the bit-packing
stage the coder replaced would have sent, `ceil(n * bits / w) * 32` with `w = 28`
for tensor_encoding's `BitpackingEncodingStage` (key 'huffman_stream') or `w = 32`
for fedcompress's `Bitpack32EncodingStage` (key 'huffman_stream_w32'). The stream
itself uses all 32 bits of each word, so after a 28-bit codec part of the saving
(at most 1 - 28/32 = 12.5%) is denser packing rather than entropy coding.

The encoding stage that writes these streams in place of a bit-packing stage, and the
codecs built on it, are in `entropy.py`; bit I/O is in `bitio.py`.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import tensorflow as tf

from fedcompress import native
from fedcompress.codecs.stages import _common, bitio

COUNT_FIELD_BITS = 32
BITS_FIELD_BITS = 4
HEADER_BITS = COUNT_FIELD_BITS + BITS_FIELD_BITS
MAX_SYMBOL_BITS = 16
# Deflate's limit; 4 bits per code length in the table. Raised to `bits` if larger.
DEFAULT_MAX_CODE_LENGTH = 15
# Decoding runs this many sequential steps; each block costs bit_length(block_size * L)
# bits of side information (14 bits for 1024 x 15: ~0.3% of a 5-bit/symbol payload).
DEFAULT_BLOCK_SIZE = 1024
_MAX_CODE_LENGTH_LIMIT = 24  # A peeked window (<= 24 bits) then spans <= 2 words.
# Up to this maximum code length the decoder looks codes up in tables of 2**L entries.
_MAX_TABLE_CODE_LENGTH = 16
# Decoding steps per iteration of the decoder's loop (see `huffman_decode`).
_UNROLL = 4
# The encoder writes two symbols' codes as one field (`_symbol_fields`) for symbols of
# at most this many bits (a table of 2**(2 * this) pairs) and codes of at most 16 bits.
_MAX_PAIR_SYMBOL_BITS = 8
_MAX_PAIR_CODE_LENGTH = 16
# The decoder finds two codes per table lookup when no code is longer than this.
_MAX_PAIR_DECODE_CODE_LENGTH = 8


def length_field_bits(max_code_length: int) -> int:
  """Bits of one code length in the table (lengths 0..L)."""
  return max_code_length.bit_length()


def block_field_bits(block_size: int, max_code_length: int) -> int:
  """Bits of one block length (at most block_size * L bits)."""
  return (block_size * max_code_length).bit_length()


def check_max_code_length(max_code_length: int, bits: int) -> int:
  # NumPy integers pass (as `_common.check_int`'s options do) and come back as ints: the
  # table's field widths are taken by `int.bit_length`.
  if not _common.is_integer(max_code_length) or not (
      bits <= max_code_length <= _MAX_CODE_LENGTH_LIMIT):
    raise ValueError(f"max_code_length must be an integer in {bits}..{_MAX_CODE_LENGTH_LIMIT} "
                     f"(at least bits={bits}), got {max_code_length!r}")
  return int(max_code_length)


def check_block_size(block_size: int) -> int:
  if not _common.is_integer(block_size) or not 1 <= block_size <= 2**20:
    raise ValueError(f"block_size must be an integer in 1..{2**20}, got {block_size!r}")
  return int(block_size)



def stream_header(stream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(n, bits) of a symbol stream, as int64 scalars."""
  padded = bitio.padded_words(stream)
  n = bitio.read_fields(padded, tf.constant(0, tf.int64), COUNT_FIELD_BITS)
  bits = bitio.read_fields(padded, tf.constant(COUNT_FIELD_BITS, tf.int64), BITS_FIELD_BITS) + 1
  return n, bits


def stream_raw_bits(stream: tf.Tensor, word_bits: int = _common.TE_BITPACK_WORD_BITS
                    ) -> tf.Tensor:
  """What the stream's symbols cost bit-packed `word_bits` per int32: ceil(n*bits/wb)*32.

  `word_bits` is 28 for tensor_encoding's `BitpackingEncodingStage`, 32 for
  fedcompress's `Bitpack32EncodingStage`.
  """
  n, bits = stream_header(stream)
  return (n * bits + word_bits - 1) // word_bits * 32


def _header(n: tf.Tensor, num_bits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  values = tf.stack([tf.cast(n, tf.int64), tf.cast(num_bits, tf.int64) - 1])
  widths = tf.constant([COUNT_FIELD_BITS, BITS_FIELD_BITS], tf.int64)
  return values, widths



# ---------------------------------------------------------------------------------
# Huffman code construction.
# ---------------------------------------------------------------------------------


def huffman_code_lengths(counts: tf.Tensor, max_length: int) -> tf.Tensor:
  """Optimal code lengths, each at most `max_length`, for a symbol histogram.

  Package-merge: list_L is the leaves sorted by weight; list_l (l < L) merges the
  leaves with the pairs ("packages") of list_(l+1). Selecting the first 2m - 2 items
  of list_1 and expanding packages recursively, a leaf's code length is the number of
  levels it is selected at. Packages are formed from list prefixes, so the selection
  at every level is a prefix: with c_l leaves in the selected prefix of list_l and
  p_l packages, the prefix of list_(l+1) has 2 p_l items, and the leaf of rank i
  (ascending weight) has length #{l : i < c_l}.

  Args:
    counts: rank-1 integer histogram of length K; zero entries get length 0.
    max_length: L, with 2**L >= number of nonzero counts.

  Returns:
    int32 tensor [K]. A lone nonzero count gets length 0 (no code is needed).
  """
  counts = tf.cast(counts, tf.int64)
  present = tf.cast(tf.where(counts > 0)[:, 0], tf.int32)
  weights = tf.gather(counts, present)
  order = tf.argsort(weights, stable=True)
  leaves = tf.gather(weights, order)
  m = tf.size(leaves)
  leaf_flags = tf.ones([m], tf.bool)

  # flags[l] marks which items of list_(l+1) are leaves, in list order. Both passes are
  # while_loops over the levels, not Python loops: unrolled, the L - 1 merges (each a
  # stable argsort) made this most of a Huffman codec's graph, built again for every
  # encoded tensor of every TFF build. Each level's ops are the same either way.
  flags = tf.TensorArray(tf.bool, size=max_length, infer_shape=False,
                         element_shape=tf.TensorShape([None]))
  flags = flags.write(max_length - 1, leaf_flags)

  def merge(level_num, level, flags):
    num_packages = tf.size(level) // 2
    packages = tf.reduce_sum(tf.reshape(level[:2 * num_packages], [-1, 2]), axis=1)
    merged = tf.concat([leaves, packages], 0)
    # Stable: on ties leaves precede packages, consistently at every level.
    merge_order = tf.argsort(merged, stable=True)
    flags = flags.write(level_num - 1, tf.gather(
        tf.concat([leaf_flags, tf.zeros([num_packages], tf.bool)], 0), merge_order))
    return level_num - 1, tf.gather(merged, merge_order), flags

  _, _, flags = tf.while_loop(
      lambda level_num, *_: level_num > 0, merge, (max_length - 1, leaves, flags),
      shape_invariants=(tf.TensorShape([]), tf.TensorShape([None]), None))
  # flags.read(0) is list_1.

  rank = tf.range(m)

  def select(level_num, lengths_by_rank, selected):
    num_leaves = tf.reduce_sum(tf.cast(flags.read(level_num)[:selected], tf.int32))
    return (level_num + 1, lengths_by_rank + tf.cast(rank < num_leaves, tf.int32),
            2 * (selected - num_leaves))

  _, lengths_by_rank, _ = tf.while_loop(
      lambda level_num, *_: level_num < max_length, select,
      (0, tf.zeros([m], tf.int32), tf.maximum(2 * m - 2, 0)))
  symbols_by_rank = tf.gather(present, order)
  return tf.scatter_nd(symbols_by_rank[:, None], lengths_by_rank, tf.shape(counts))


def _canonical_order(lengths: tf.Tensor, max_length: int):
  """Symbols sorted by (length, symbol), absent ones last; their lengths and starts.

  `starts[i]` is the i-th code left-aligned to `max_length` bits: the exclusive
  cumulative sum of 2**(L - length) over the codes before it.
  """
  lengths = tf.cast(lengths, tf.int64)
  k = tf.cast(tf.size(lengths), tf.int64)
  key = tf.where(lengths > 0, lengths, max_length + 1) * k + tf.range(k)
  order = tf.argsort(key)
  sorted_lengths = tf.gather(lengths, order)
  interval = tf.where(sorted_lengths > 0,
                      tf.bitwise.left_shift(tf.constant(1, tf.int64),
                                            max_length - sorted_lengths), 0)
  starts = tf.cumsum(interval, exclusive=True)
  return order, sorted_lengths, starts


def canonical_codes(lengths: tf.Tensor, max_length: int) -> tf.Tensor:
  """Canonical prefix codes (int64, right-aligned) for the given code lengths."""
  order, sorted_lengths, starts = _canonical_order(lengths, max_length)
  codes = tf.bitwise.right_shift(starts, tf.maximum(max_length - sorted_lengths, 0))
  codes = tf.where(sorted_lengths > 0, codes, 0)
  return tf.scatter_nd(order[:, None], codes, tf.shape(order))


# ---------------------------------------------------------------------------------
# Streams.
# ---------------------------------------------------------------------------------


_WIDTH_MASK = np.uint64(63)
_ALIGNED_MASK = ~_WIDTH_MASK


def _aligned_entries(codes: tf.Tensor, widths: tf.Tensor) -> tf.Tensor:
  """uint64 table entries: each code left-aligned at bit 63, its width (<= 32) in bits 0-5.

  A code of at most 32 bits so aligned lies in bits 32-63, clear of the width. Codes of
  width 0 are 0 (canonical codes are, and a lone symbol's payload width is 0).
  """
  thirty_two = tf.constant(32, tf.uint64)
  aligned = tf.bitwise.left_shift(tf.bitwise.left_shift(codes, thirty_two), thirty_two - widths)
  return tf.bitwise.bitwise_or(aligned, widths)


def _entry_fields(entries: tf.Tensor) -> bitio.AlignedFields:
  """The fields of gathered `_aligned_entries`: a mask each for the code and the width."""
  return bitio.AlignedFields(tf.bitwise.bitwise_and(entries, _ALIGNED_MASK),
                             tf.bitcast(tf.bitwise.bitwise_and(entries, _WIDTH_MASK), tf.int64))


def _symbol_fields(symbols: tf.Tensor, codes: tf.Tensor, widths: tf.Tensor, block_size: int,
                   pairs: bool):
  """The payload's field runs and the bits of each block, from each symbol's entry.

  `codes[s]` and `widths[s]` (uint64) are symbol s's code and its payload width. Every
  pass over the payload's fields (their positions, the shifts that place them, the
  segment sum into words) costs per field, so with `pairs` two consecutive symbols are
  one field: the first's code followed by the second's, `length_0 + length_1 <= 2 L <=
  32` bits, the same bits in the same place. Their entry comes from a table over every
  pair of symbols (2^16 entries for symbols of up to 8 bits), indexed by the pair read
  as one uint64 (two int32 symbols side by side, so no pass builds the index but a shift
  and a mask). Blocks hold an even number of symbols, so no pair straddles two; an odd
  last symbol is its own run. On the CNN's 1.6M-symbol kernel the encode took ~30% less
  CPU (see README).

  The gathered entries hold each code left-aligned (`_aligned_entries`), so the writer
  places it with one shift (`bitio.AlignedFields`).

  Returns:
    (`bitio.AlignedFields` runs for `bitio.write_field_runs`: one where the number of
    symbols is statically even, else two, the second the odd last symbol or empty (the
    same structure with and without pairs); int64 bits per block, the last block's short
    or wrong).
  """
  n = tf.size(symbols)
  num_blocks = (n + block_size - 1) // block_size
  # A run costs some twenty ops in each trace of the encoder; tensors of an even size
  # (the CNN's all are) need no second.
  known_even = symbols.shape[0] is not None and symbols.shape[0] % 2 == 0
  if not pairs:
    runs = [_entry_fields(_common.take(_aligned_entries(codes, widths), symbols))]
    if not known_even:
      runs.append(bitio.AlignedFields(tf.zeros([0], tf.uint64), tf.zeros([0], tf.int64)))
    per_block = block_size
  else:
    side = 2**_MAX_PAIR_SYMBOL_BITS
    single_codes = tf.pad(codes, [[0, side - tf.size(codes)]])
    single_widths = tf.pad(widths, [[0, side - tf.size(widths)]])
    # A pair read as one uint64 holds the symbol stored first in its low half on a
    # little-endian machine, so index = second * 2^8 + first: rows are second symbols.
    if sys.byteorder == "little":
      first_codes, first_widths = single_codes[tf.newaxis], single_widths[tf.newaxis]
      second_codes, second_widths = single_codes[:, tf.newaxis], single_widths[:, tf.newaxis]
    else:
      first_codes, first_widths = single_codes[:, tf.newaxis], single_widths[:, tf.newaxis]
      second_codes, second_widths = single_codes[tf.newaxis], single_widths[tf.newaxis]
    pair_codes = tf.bitwise.bitwise_or(tf.bitwise.left_shift(first_codes, second_widths),
                                       second_codes)
    pair_table = tf.reshape(_aligned_entries(pair_codes, first_widths + second_widths), [-1])
    even = n // 2 * 2
    both = symbols if known_even else symbols[:even]
    words = tf.bitcast(tf.reshape(both, [-1, 2]), tf.uint64)
    index = tf.bitwise.bitwise_or(
        tf.bitwise.right_shift(words, tf.constant(32 - _MAX_PAIR_SYMBOL_BITS, tf.uint64)),
        tf.bitwise.bitwise_and(words, tf.constant(side - 1, tf.uint64)))
    runs = [_entry_fields(_common.take(pair_table, tf.bitcast(index, tf.int64)))]
    if not known_even:
      single_table = _aligned_entries(single_codes, single_widths)
      runs.append(_entry_fields(_common.take(single_table, symbols[even:])))
    per_block = block_size // 2
  # Blocks are consecutive runs of fields: padded to whole blocks, a row sum each. With
  # pairs an odd last symbol is left out, but only the last block, whose bits are not
  # sent, holds it.
  widths = runs[0][1]
  block_bits = tf.reduce_sum(tf.reshape(
      tf.pad(widths, [[0, num_blocks * per_block - tf.size(widths)]]), [-1, per_block]), 1)
  return runs, block_bits


def huffman_encode(symbols: tf.Tensor, num_bits, *, max_code_length: int = 16,
                   block_size: int = DEFAULT_BLOCK_SIZE, pairs: bool | None = None
                   ) -> tf.Tensor:
  """Huffman-codes integer symbols in [0, 2**num_bits) into an int32 stream.

  Args:
    symbols: integer tensor (any shape; read flattened). Values are clipped to range.
    num_bits: alphabet size exponent, 1..16; a Python int or an int32 scalar tensor.
    max_code_length: L, a Python int >= the largest possible `num_bits`, <= 24.
    block_size: symbols per independently decodable block (a Python int).
    pairs: write consecutive symbols' codes as one field (`_symbol_fields`) where the
      codes allow it; None (the default) does wherever it can, False never (the same
      words either way; tests compare the two).

  Returns:
    The int32 stream described in the module docstring.
  """
  num_bits_in = num_bits
  num_bits = tf.cast(num_bits, tf.int32)
  alphabet = tf.bitwise.left_shift(1, num_bits)
  symbols = tf.clip_by_value(tf.reshape(tf.cast(symbols, tf.int32), [-1]), 0, alphabet - 1)
  n = tf.size(symbols)
  counts = _common.histogram(symbols, alphabet, tf.int64)
  distinct = tf.math.count_nonzero(counts, dtype=tf.int32)
  lengths = huffman_code_lengths(counts, max_code_length)
  # A lone symbol is named in the table by length 1 but costs no payload bits.
  # tf.equal, not ==: in the graphs TFF traces, `tensor == 1` is a Python bool (False).
  lengths = tf.where(tf.equal(distinct, 1) & (counts > 0), 1, lengths)
  codes = canonical_codes(lengths, max_code_length)
  multi = distinct >= 2
  # A lone symbol costs no payload: its width here is 0 (the header's table still gives
  # it length 1). Unsigned: an arithmetic shift of int64 has no vector instruction below
  # AVX-512, and took ~7 ms over the CNN's kernel against ~0.5 for the logical one.
  native_ops = native.ops()
  if native_ops is not None:
    # The fields below written by one C++ kernel, the same words: uniform_huffman's
    # encode of the CNN's kernels 29.0 -> 13.0 ms per client (`tools.codec_cost`,
    # docs/speed_history.md).
    header_values, header_widths = _header(n, num_bits)
    return native_ops.fedcompress_huffman_encode(
        symbols, codes, tf.where(multi, tf.cast(lengths, tf.int64), 0),
        tf.concat([header_values, tf.cast(lengths, tf.int64)], 0),
        tf.concat([header_widths, tf.fill([alphabet], tf.constant(
            length_field_bits(max_code_length), tf.int64))], 0),
        tf.cast(tf.where(multi, block_field_bits(block_size, max_code_length), 0), tf.int64),
        block_size=block_size)
  fields = functools.partial(
      _symbol_fields, symbols, tf.bitcast(codes, tf.uint64),
      tf.bitcast(tf.where(multi, tf.cast(lengths, tf.int64), 0), tf.uint64), block_size)
  if pairs is None:
    pairs = max_code_length <= _MAX_PAIR_CODE_LENGTH and block_size % 2 == 0
  if not pairs:
    runs, block_bits = fields(False)
  elif isinstance(num_bits_in, int):
    runs, block_bits = fields(num_bits_in <= _MAX_PAIR_SYMBOL_BITS)
  else:
    runs, block_bits = tf.cond(num_bits <= _MAX_PAIR_SYMBOL_BITS, lambda: fields(True),
                               lambda: fields(False))
  num_blocks = (n + block_size - 1) // block_size
  block_width = tf.where(multi, block_field_bits(block_size, max_code_length), 0)
  header_values, header_widths = _header(n, num_bits)
  side_values = tf.concat([header_values, tf.cast(lengths, tf.int64),
                           block_bits[:tf.maximum(num_blocks - 1, 0)]], 0)
  side_widths = tf.concat([
      header_widths,
      tf.fill([alphabet], tf.constant(length_field_bits(max_code_length), tf.int64)),
      tf.fill([tf.maximum(num_blocks - 1, 0)], tf.cast(block_width, tf.int64))], 0)
  # Every field fits its width: the header's by its range, a length in bit_length(L)
  # bits, a block's bit count in bit_length(block_size * L), a canonical code of
  # length l is below 2**l (and 0 where the width is 0).
  return bitio.write_field_runs([(side_values, side_widths), *runs], values_fit=True)


def _symbol_words(entries: tf.Tensor, little_endian: bool = _common.LITTLE_ENDIAN
                  ) -> tf.Tensor:
  """int32 high words (the symbols) of the decoder's uint64 entries.

  Read through an int32 view: a strided copy of half the bytes, where a shift and a cast
  (and for pairs, two more shifts, of uint64) made passes over all of them. The CNN
  kernels' adaptive decode before sum, `python -m tools.op_profile --codec=adaptive
  --part=decode_before_sum`, four interleaved pairs: 24.3 -> 20.5 ms (medians).
  """
  if little_endian:
    return tf.bitcast(entries, tf.int32)[..., 1]
  return tf.bitcast(tf.cast(tf.bitwise.right_shift(entries, tf.constant(32, tf.uint64)),
                            tf.uint32), tf.int32)


def _split_pairs(words: tf.Tensor, little_endian: bool = _common.LITTLE_ENDIAN) -> tf.Tensor:
  """`[blocks, rows]` words of two 16-bit symbols, first lowest -> `[blocks, 2 rows]` int32."""
  if little_endian:  # The two uint16 halves, lowest first, are the symbols in order.
    halves = tf.bitcast(words, tf.uint16)
  else:
    halves = tf.stack([tf.bitwise.bitwise_and(words, 0xFFFF),
                       tf.bitwise.bitwise_and(tf.bitwise.right_shift(words, 16), 0xFFFF)], -1)
  return tf.cast(tf.reshape(halves, [tf.shape(words)[0], -1]), tf.int32)


def huffman_decode(stream: tf.Tensor, *, max_code_length: int = 16,
                   block_size: int = DEFAULT_BLOCK_SIZE) -> tf.Tensor:
  """Inverse of `huffman_encode` (same `max_code_length`, `block_size`): int32 [n]."""
  padded = bitio.padded_words(stream)
  n, num_bits = stream_header(stream)
  alphabet = tf.bitwise.left_shift(tf.constant(1, tf.int64), num_bits)
  len_width = length_field_bits(max_code_length)
  lengths = bitio.read_fields(padded, HEADER_BITS + tf.range(alphabet) * len_width, len_width)
  distinct = tf.math.count_nonzero(lengths, dtype=tf.int32)
  table_end = HEADER_BITS + alphabet * len_width

  def single_symbol():
    # n copies of the only symbol with a code (n = 0 when there is none).
    symbol = tf.cast(tf.argmax(lengths), tf.int32)
    return tf.fill(tf.cast(n[None], tf.int32), symbol)

  def blocks():
    num_blocks = (n + block_size - 1) // block_size
    blk_width = block_field_bits(block_size, max_code_length)
    block_bits = bitio.read_fields(padded, table_end + tf.range(num_blocks - 1) * blk_width,
                             blk_width)
    payload_start = table_end + (num_blocks - 1) * blk_width
    pos = payload_start + tf.cumsum(tf.concat([block_bits, [0]], 0), exclusive=True)

    order, sorted_lengths, starts = _canonical_order(lengths, max_code_length)
    code_symbols = tf.cast(order[:distinct], tf.int32)
    code_lengths = sorted_lengths[:distinct]
    code_starts = starts[:distinct]
    native_ops = native.ops()
    if native_ops is not None:
      # The loop below as one C++ kernel, the same symbols: decode before sum of
      # uniform_huffman's CNN kernels 47.9 -> 6.5 ms per client (`tools.codec_cost`,
      # docs/speed_history.md).
      decoded = native_ops.fedcompress_huffman_decode_blocks(
          tf.reshape(tf.cast(stream, tf.int32), [-1]), tf.cast(pos, tf.int64), code_symbols,
          code_lengths, code_starts, n, block_size=block_size,
          max_code_length=max_code_length)
      # A slice that copies nothing, for the graph's shapes: like the loop's output below
      # (and the other branch's `fill`), the symbols' length is now the header's `n`.
      # TFF's Grappler pass (arithmetic optimization) rewrites the server's `sum +
      # (q * scale + min)` into `(sum + q * scale) + min` only where it can tell the two
      # summands' shapes equal; without the slice it could not, and the rounding of
      # the sums, so the run's later rounds, differed.
      return decoded[:tf.cast(n, tf.int32)]
    symbols_per_block = tf.cast(tf.minimum(n, block_size), tf.int32)
    # The step below runs about `block_size / per_step` times over only `num_blocks`
    # values, so its cost is mostly per op: measured single-threaded on the CNN's
    # kernel (1,568 blocks), ~6 us for a shift or mask, ~15 us for a table gather and
    # ~38 us for the gather of the stream bits. For L <= 16 a step reads the 64 stream
    # bits from the 16-bit boundary at or before the block's position (one gather from
    # `windows`, every such 64-bit run), shifts out the <= 15 bits before the position,
    # and finds three codes in a row (15 + 3 * 16 <= 64): each code is the top L bits,
    # whose entry (symbol << 32 | length, one gather from a table over every L-bit value)
    # gives the length to shift it out by. Longer codes: one symbol per step, by a
    # binary search over the code starts. `tail` zero words keep a finished block's
    # extra steps inside the array. Positions are uint64 in the loop: int64's arithmetic
    # shift has no vector instruction below AVX-512, and with TensorFlow's default
    # threads the decode took ~15% less CPU with them unsigned (3 runs of 31 pairs).
    table = max_code_length <= _MAX_TABLE_CODE_LENGTH
    per_step = 3 if table else 1
    # Each loop iteration runs `_UNROLL` steps. An iteration also runs the loop's own ops,
    # about four per loop variable and captured tensor (TFF's worker runs graphs without
    # Grappler to trim them). When a step was ~35 ops, two steps per iteration took ~5%
    # less CPU than one for the CNN kernel's decode and four were no better; at 14 ops a
    # step the loop's own ops weigh more: four steps took 10% less CPU than two for
    # uniform_huffman's decode before sum (45.5 -> 40.7 ms per client, default threads,
    # `tools.ab_functions`, 41 interleaved reps) and 7% less for adaptive's (26.0 -> 24.1);
    # eight were no better than four.
    # With pairs (below) an iteration decodes twice as many symbols, at most 8 bits each.
    tail = -(-(block_size + 2 * per_step * _UNROLL) * max_code_length // 32) + 2
    words = tf.concat([padded[:-2], tf.zeros([tail + 2], tf.uint64)], 0)
    # The 64 bits from bit 32 i of the stream (and, with tables, from bit 32 i + 16).
    windows = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(words[:-2], tf.constant(32, tf.uint64)), words[1:-1])
    granule = 5
    sixteen = tf.constant(16, tf.uint64)
    thirty_two = tf.constant(32, tf.uint64)
    length_bits = tf.constant(31, tf.uint64)
    if table:
      halves = tf.bitwise.bitwise_or(tf.bitwise.left_shift(windows, sixteen),
                                     tf.bitwise.right_shift(words[2:], sixteen))
      windows = tf.reshape(tf.stack([windows, halves], 1), [-1])
      granule = 4
    # The loop's gathers are GatherNd (`_common.take`: ~35% less time than GatherV2 on
    # the 1,568 blocks) of tables shaped [size, 1] by positions shaped [blocks, 1], so that
    # every value in the loop keeps that shape and no step reshapes.
    windows = windows[:, tf.newaxis]

    if not table:
      entry_table = tf.bitwise.bitwise_or(
          tf.bitwise.left_shift(tf.cast(code_symbols, tf.uint64), thirty_two),
          tf.cast(code_lengths, tf.uint64))

      def lookup(window):
        index = tf.searchsorted(code_starts, window[:, 0], side="right") - 1
        return _common.take(entry_table, index)[:, tf.newaxis]

      pairs = tf.constant(False)
      top = tf.constant(64 - max_code_length, tf.uint64)
    else:
      # The code whose left-aligned interval [start, start + 2**(L-len)) holds window,
      # as one entry per window, symbol << 32 | length: one gather per code found.
      index = tf.searchsorted(code_starts,
                              tf.range(2**max_code_length, dtype=tf.int64), side="right") - 1
      entry_of = tf.bitwise.bitwise_or(
          tf.bitwise.left_shift(tf.cast(_common.take(code_symbols, index), tf.uint64), thirty_two),
          tf.cast(_common.take(code_lengths, index), tf.uint64))

      def pair_of():
        # With codes of at most 8 bits the first two codes of any 16 bits lie inside
        # them: one entry per 16-bit window gives both (the first symbol in bits 32-47,
        # the second in 48-63, their joint length in the low bits), so each gather finds
        # two codes and a block takes half the steps (three 16-bit windows per 64 stream
        # bits read, as three L-bit ones). adaptive at a few bits per coordinate, and
        # huffman over nonuniform, have such codes. One loop serves both tables: a second
        # loop for pairs made the codecs' builds ~15% longer.
        window = tf.cast(tf.range(2**16, dtype=tf.int64), tf.uint64)
        first = _common.take(entry_of, tf.bitcast(
            tf.bitwise.right_shift(window, tf.constant(16 - max_code_length, tf.uint64)),
            tf.int64))
        rest = tf.bitwise.bitwise_and(
            tf.bitwise.left_shift(window, tf.bitwise.bitwise_and(first, length_bits)),
            tf.constant(0xFFFF, tf.uint64))
        second = _common.take(entry_of, tf.bitcast(
            tf.bitwise.right_shift(rest, tf.constant(16 - max_code_length, tf.uint64)),
            tf.int64))
        # first's bits 48-63 are zero and the joint length is at most 16: no carries.
        return first + tf.bitwise.left_shift(
            tf.bitwise.right_shift(second, thirty_two), tf.constant(48, tf.uint64)
        ) + tf.bitwise.bitwise_and(second, length_bits)

      pairs = tf.reduce_max(code_lengths) <= _MAX_PAIR_DECODE_CODE_LENGTH
      entries = tf.cond(pairs, pair_of, lambda: entry_of)
      top = tf.where(pairs, tf.constant(48, tf.uint64),
                     tf.constant(64 - max_code_length, tf.uint64))

      entries = entries[:, tf.newaxis]

      def lookup(window):
        return tf.gather_nd(entries, window)

    granule_mask = tf.constant(2**granule - 1, tf.uint64)
    shift = tf.constant(granule, tf.uint64)
    per_iteration = per_step * _UNROLL
    per_entry = tf.where(pairs, 2, 1)
    iterations = (symbols_per_block + per_iteration * per_entry - 1) // (
        per_iteration * per_entry)

    def body(iteration, pos, out):
      entries = []
      for _ in range(_UNROLL):
        bits = tf.gather_nd(windows, tf.bitcast(tf.bitwise.right_shift(pos, shift), tf.int64))
        bits = tf.bitwise.left_shift(bits, tf.bitwise.bitwise_and(pos, granule_mask))
        lengths = []
        for i in range(per_step):
          entries.append(lookup(tf.bitcast(tf.bitwise.right_shift(bits, top), tf.int64)))
          lengths.append(tf.bitwise.bitwise_and(entries[-1], length_bits))
          if i + 1 < per_step:
            bits = tf.bitwise.left_shift(bits, lengths[-1])
        pos = pos + tf.add_n(lengths)
      return iteration + 1, pos, out.write(iteration, tf.stack(entries))

    out = tf.TensorArray(tf.uint64, size=iterations,
                         element_shape=tf.TensorShape([per_iteration, None, 1]))
    _, _, out = tf.while_loop(lambda iteration, *_: iteration < iterations, body,
                              (tf.constant(0), tf.bitcast(pos, tf.uint64)[:, tf.newaxis], out))
    # Row r of the stacked entries is entry r of every block, its symbol (or two) in the
    # high 32 bits: row j of the transposed words, split into their two symbols when
    # pairs, cut to the block's symbols, is block j. The rows past the block's symbols
    # (the last iteration's extra steps) are cut before the transpose: a slice of whole
    # rows takes no copy, where cutting the transposed columns copied every symbol.
    rows = (symbols_per_block + per_entry - 1) // per_entry
    by_block = tf.transpose(_symbol_words(
        tf.reshape(out.stack(), [iterations * per_iteration, -1])[:rows]))
    if table:
      by_block = tf.cond(pairs, lambda: _split_pairs(by_block), lambda: by_block)
    decoded = tf.reshape(by_block[:, :symbols_per_block], [-1])
    return decoded[:tf.cast(n, tf.int32)]

  return tf.cond(distinct >= 2, blocks, single_symbol)


def fixed_width_encode(symbols: tf.Tensor, num_bits) -> tf.Tensor:
  """The same stream header, then every symbol at `num_bits` bits (no table)."""
  num_bits = tf.cast(num_bits, tf.int32)
  symbols = tf.reshape(tf.cast(symbols, tf.int64), [-1])
  symbols = tf.clip_by_value(symbols, 0, tf.bitwise.left_shift(tf.constant(1, tf.int64),
                                                               tf.cast(num_bits, tf.int64)) - 1)
  header_values, header_widths = _header(tf.size(symbols), num_bits)
  widths = tf.fill(tf.shape(symbols), tf.cast(num_bits, tf.int64))
  # Clipped to [0, 2**num_bits): every field fits its width.
  return bitio.write_field_runs([(header_values, header_widths), (symbols, widths)],
                                values_fit=True)


def fixed_width_decode(stream: tf.Tensor) -> tf.Tensor:
  """Inverse of `fixed_width_encode`: int32 [n]."""
  padded = bitio.padded_words(stream)
  n, num_bits = stream_header(stream)
  pos = HEADER_BITS + tf.range(n) * num_bits
  return tf.cast(bitio.read_fields(padded, pos, num_bits), tf.int32)
