"""`adaptive` codec: uniform quantization whose bit width follows a bits budget.

Each round the codec picks the bit width `b` of uniform (min/max) quantization so
that what a client sends for a tensor is expected to stay within
`budget_bits_per_coordinate` bits per coordinate, side information included: exactly
with `coder="fixed"`; with Huffman, on the mean saving of last round's clients, so a
client whose update codes worse than that mean goes over (one client coding to 1.44
bits per coordinate, then another to 6.11 on a budget of 4.5). Clients of one
distribution go over too, in some rounds: the saving moves by about 0.1 bit per
coordinate from one round to the next (one client of fresh N(0, 1) values each round,
budget 4.0: over in 4 rounds of 16, at most 4.142; ten such clients: rounds 0.4-0.9%
over, and the width of all of them moving between 4 and 5, about 25% more bits, from
round to round; review R2 of s41). The budget holds on average over rounds, not in each.
What a width costs is only partly known in advance:

* known exactly, given `n` and `b`: the stream header, the Huffman code-length
  table (`2**b` entries), block lengths, min/max, the state-update scalars;
* learned from earlier rounds: how far the entropy-coded payload falls below `b`
  bits per symbol (with `coder="fixed"` there is nothing to learn: it is exactly `b`).

So the predicted rate of width `b` is `base(b, n) + offset`, where `base` is the known
part per coordinate (`n * b` payload bits) and `offset` is the mean, over last round's
clients, of (measured rate - base rate at the width they used). Every encode picks the
largest `b` in `1..max_bits` whose prediction meets the budget (`1` if none does; with
Huffman, width 1 only if width 2, coded, would not meet it: two symbols never code
below 1 bit each, so a saving learned at width 1 cannot show that width 2 fits), and
reports its own measured excess (none for a constant tensor, which codes to about a bit
per coordinate at any width) as `state_update_tensors` (summed over clients by
`EncodedSumFactory`, two float32 scalars per client and tensor, counted in
`aggregate/bits` like any client contribution). The offset of a fine uniform
quantizer's entropy is nearly independent of `b` (one more bit halves the cells,
adding about one bit of entropy), so the loop settles within a few rounds; starting
from `offset = 0` it approaches the budget from below.

Not counted: in aggregation the server sends each round's `offset` (one float32 per
tensor) to the clients with the encode parameters, and no metric counts that
server-to-client traffic of an aggregator (`broadcast/bits` is the model's broadcast;
`aggregate/bits` what clients send). It is 32 bits per tensor and client per round,
~1e-6 of a 1.6M-coordinate tensor's 8-bit payload; clients that kept their own copy of
the summed state updates could compute it themselves.

The chosen width travels in the stream header (`fedcompress.codecs.stages.huffman` stream
format), so the server needs no extra parameter to decode, and the codec record
counts the raw size (`bits`) as the `uniform` codec at that width would send it,
`ceil(n * b / 28) * 32 + 64`, while `coded_bits` is the stream actually sent.

Options (`CodecSpec("adaptive", {...})`):
  budget_bits_per_coordinate: required; mean wire bits (`coded_bits`) per encoded
    coordinate per client, side information included. For a per-round total budget,
    see `fedcompress.codecs.budget.budget_bits_per_coordinate`, which inverts the
    accounting.
  coder: "huffman" (entropy-coded, default) or "fixed" (b bits per symbol, 32 per word).
  stochastic: stochastic (unbiased) rounding, default True.
  max_bits: largest width considered, 1..16 (default 12).
  block_size: Huffman decoding block size.

In the broadcast direction the same codec works (its encoder state adapts at
the server), but the state-update scalars it budgets for are not sent there, so it
spends 64 bits per tensor less than budgeted.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, huffman

CODERS = ("huffman", "fixed")
DEFAULT_MAX_BITS = 12
# min/max (2 float32) and the two float32 state-update scalars each client sends.
MIN_MAX_BITS = 64
STATE_UPDATE_BITS = 64


def base_stream_bits(n, bits, coder: str, max_code_length: int, block_size: int):
  """Known part of the stream's size for `n` symbols of `bits` bits (Python or tf).

  For "fixed" this is the exact stream size; for "huffman" it counts the payload at
  `bits` per symbol (the entropy coder's saving is what the codec learns).
  """
  payload = huffman.HEADER_BITS + n * bits
  if coder == "fixed":
    return (payload + 31) // 32 * 32
  table = (2**bits) * huffman.length_field_bits(max_code_length)
  num_blocks = (n + block_size - 1) // block_size
  blocks = (num_blocks - 1) * huffman.block_field_bits(block_size, max_code_length)
  return payload + table + blocks


def _check_budget(budget) -> float:
  if not _common.is_real(budget) or not 0 < budget < float("inf"):
    raise ValueError("budget_bits_per_coordinate must be a positive number (bits per "
                     f"coordinate per client), got {budget!r}")
  if budget <= 1:
    # Width 1 sends a bit per coordinate (its two symbols code to a bit each) before its
    # header: such a budget ran at width 1 and went over it, 3.5x at 0.2, unsaid.
    raise ValueError(f"budget_bits_per_coordinate={budget:g} cannot be met: adaptive sends "
                     "at least 1 bit per coordinate (width 1) besides its header and "
                     "min/max; below that, send fewer coordinates (README, \"Below one bit "
                     "per coordinate\")")
  return float(budget)


def narrowest_rate(num_elements: int, *, direction: str = "aggregate", coder: str = "huffman",
                   max_bits: int = DEFAULT_MAX_BITS,
                   block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> float:
  """Bits per coordinate width 1 sends for a tensor of `num_elements`, side information
  included: the least the codec can send for it (with Huffman too: two symbols code to
  a bit each), so a budget below it goes over on that tensor in every round."""
  max_code_length = max(huffman.DEFAULT_MAX_CODE_LENGTH, max_bits)
  side = MIN_MAX_BITS + (STATE_UPDATE_BITS if _common.check_direction(direction) ==
                         "aggregate" else 0)  # No state update goes up from a broadcast.
  # In whole int32 words: the Huffman stream's known part is its exact size at width 1.
  stream = -(-base_stream_bits(num_elements, 1, coder, max_code_length, block_size) // 32) * 32
  return (stream + side) / num_elements


def budget_note(num_elements, *, direction: str, budget_bits_per_coordinate: float,
                coder: str = "huffman", max_bits: int = DEFAULT_MAX_BITS,
                block_size: int = huffman.DEFAULT_BLOCK_SIZE, **unused_options) -> str | None:
  """What a run says when some of the tensors it encodes (`num_elements`, their sizes)
  are too small for the budget: their header and min/max alone take it up. Its advice
  put the threshold first, which sends more bits (review R6 of s48)."""
  del unused_options
  rates = {n: narrowest_rate(n, direction=direction, coder=coder, max_bits=max_bits,
                             block_size=block_size) for n in set(num_elements)}
  over = sorted(n for n in num_elements if rates[n] > budget_bits_per_coordinate)
  if not over:
    return None
  return (f"cannot meet budget_bits_per_coordinate={budget_bits_per_coordinate:g} on "
          f"{len(over)} of its {len(list(num_elements))} tensors: width 1 sends "
          f"{rates[over[0]]:.3f} bits per coordinate on the one of {over[0]} elements "
          "(its header and min/max included), so each round goes over there; raise the "
          f"budget to {math.ceil(max(rates[n] for n in over) * 1000) / 1000:.3f} to cover "
          f"them, or the threshold (--compression_threshold, or threshold=) to {over[-1]} "
          "to send them unencoded (32 bits a float32 coordinate, more than width 1; the "
          "flag sets both directions)")


@te.core.tf_style_adaptive_encoding_stage
class AdaptiveUniformEncodingStage(te.core.AdaptiveEncodingStageInterface):
  """Uniform quantization + (Huffman or fixed-width) stream, width chosen by budget.

  Encoded structure: `{'adaptive_stream': int32[None], 'min_max': float32[2]}`.
  State: `{'rate_offset': float32}`; state update tensors (SUM over clients):
  `{'rate_excess': float32, 'count': float32}`.
  """

  ENCODED_VALUES_KEY = "adaptive_stream"
  MIN_MAX_KEY = "min_max"
  OFFSET_STATE_KEY = "rate_offset"
  EXCESS_UPDATE_KEY = "rate_excess"
  COUNT_UPDATE_KEY = "count"

  def __init__(self, budget_bits_per_coordinate: float, coder: str = "huffman",
               stochastic: bool = True, max_bits: int = DEFAULT_MAX_BITS,
               block_size: int = huffman.DEFAULT_BLOCK_SIZE):
    self._budget = _check_budget(budget_bits_per_coordinate)
    self._coder = _common.check_choice("coder", coder, CODERS)
    self._stochastic = _common.check_bool("stochastic", stochastic)
    self._max_bits = _common.check_int("max_bits", max_bits, 1, huffman.MAX_SYMBOL_BITS)
    self._max_code_length = max(huffman.DEFAULT_MAX_CODE_LENGTH, self._max_bits)
    self._block_size = huffman.check_block_size(block_size)

  @property
  def name(self):
    return "adaptive_uniform"

  @property
  def compressible_tensors_keys(self):
    return []

  @property
  def commutes_with_sum(self):
    return False

  @property
  def decode_needs_input_shape(self):
    return True

  @property
  def state_update_aggregation_modes(self):
    return {self.EXCESS_UPDATE_KEY: te.core.StateAggregationMode.SUM,
            self.COUNT_UPDATE_KEY: te.core.StateAggregationMode.SUM}

  def initial_state(self):
    return collections.OrderedDict([(self.OFFSET_STATE_KEY, tf.constant(0.0, tf.float32))])

  def update_state(self, state, state_update_tensors):
    count = state_update_tensors[self.COUNT_UPDATE_KEY]
    mean_excess = tf.math.divide_no_nan(state_update_tensors[self.EXCESS_UPDATE_KEY], count)
    # No client encoded this tensor last round (or each sent a constant): keep what we knew.
    offset = tf.where(count > 0, mean_excess, state[self.OFFSET_STATE_KEY])
    return collections.OrderedDict([(self.OFFSET_STATE_KEY, offset)])

  def get_params(self, state):
    encode_params = collections.OrderedDict(
        [(self.OFFSET_STATE_KEY, state[self.OFFSET_STATE_KEY])])
    return encode_params, collections.OrderedDict()

  def _base_rate(self, n: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """Known bits per coordinate at width(s) `bits` (float64 for exactness)."""
    n64 = tf.cast(n, tf.float64)
    stream = base_stream_bits(tf.cast(n, tf.int64), tf.cast(bits, tf.int64), self._coder,
                              self._max_code_length, self._block_size)
    total = tf.cast(stream, tf.float64) + MIN_MAX_BITS + STATE_UPDATE_BITS
    return total / tf.maximum(n64, 1.0)

  def encode(self, x, encode_params):
    if x.dtype == tf.float64:
      # It quantizes in float32 and prices a float32 min/max: a float64 tensor went over
      # a coder=fixed budget by 64 bits, decoded to NaN past float32's range, and lost
      # deviations below its resolution (review R2 of s48).
      raise ValueError("adaptive encodes float32 tensors and narrower (it quantizes in "
                       "float32), got float64")
    flat = tf.reshape(x, [-1])
    n = tf.size(flat)
    offset = tf.cast(encode_params[self.OFFSET_STATE_KEY], tf.float64)
    widths = tf.range(1, self._max_bits + 1, dtype=tf.int32)
    fits = self._base_rate(n, widths) + offset <= self._budget
    # Largest fitting width (rates grow with b); the narrowest when none fits.
    bits = tf.reduce_max(tf.where(fits, widths, 1))

    work = tf.cast(flat, tf.float32)
    low, high = tf.reduce_min(work), tf.reduce_max(work)
    unit = tf.math.divide_no_nan(work - low, high - low)
    # One draw for whichever width is coded (the same draws as when only one was).
    dither = _common.dither16(tf.shape(unit)) if self._stochastic else None

    def stream_at(width):
      return self._stream(unit, dither, width)

    def rate(stream):
      sent = tf.cast(tf.size(stream) * 32 + MIN_MAX_BITS + STATE_UPDATE_BITS, tf.float64)
      return sent / tf.maximum(tf.cast(n, tf.float64), 1.0)

    if self._coder == "huffman" and self._max_bits >= 2:
      # Width 1 is a trap for the learned offset: two symbols never code below 1 bit
      # each, so what a client learns there (a saving of ~0) says nothing of width 2,
      # whose middle levels take most of the mass (~1.5 bits a coordinate for Gaussian
      # updates). At a budget of 2.0 the codec stayed at width 1 for good, since width
      # 2's known part alone is 2.014. So width 1 is sent only when width 2, coded,
      # would not fit the budget.
      def width_two_if_it_fits():
        wider = stream_at(2)
        return tf.cond(rate(wider) <= self._budget, lambda: (wider, tf.constant(2)),
                       lambda: (stream_at(1), tf.constant(1)))

      stream, bits = tf.cond(tf.equal(bits, 1), width_two_if_it_fits,
                             lambda: (stream_at(bits), bits))
    else:
      stream = stream_at(bits)
    excess = tf.cast(rate(stream) - self._base_rate(n, bits), tf.float32)
    # A constant tensor (a client rejected for non-finite values arrives as zeros; a
    # layer that got no gradient) codes to one symbol, about a bit per coordinate at any
    # width: its saving says nothing of other updates, and averaged in it raised every
    # client's width (with a rejected client each round, 3.5 bits per coordinate on a
    # budget of 3.0). It does not count.
    varied = tf.cast(high > low, tf.float32)

    encoded = collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, stream),
        (self.MIN_MAX_KEY, tf.cast(tf.stack([low, high]), x.dtype)),
    ])
    state_update = collections.OrderedDict([
        (self.EXCESS_UPDATE_KEY, excess * varied),
        (self.COUNT_UPDATE_KEY, varied),
    ])
    return encoded, state_update

  def _stream(self, unit: tf.Tensor, dither: tf.Tensor | None, bits: tf.Tensor) -> tf.Tensor:
    """The coded stream of `unit` (values in [0, 1], or NaN) at width `bits`."""
    levels = tf.cast(tf.bitwise.left_shift(1, bits) - 1, tf.float32)
    scaled = unit * levels
    if dither is not None:
      floor = tf.floor(scaled)
      scaled = floor + tf.cast(dither < scaled - floor, tf.float32)
    else:
      scaled = tf.round(scaled)
    # Already in [0, levels] or NaN: `work - low <= high - low` in float too, so the
    # quotient is at most 1, and a value rounds up only from below its top level. A float
    # clip here (two passes) kept NaN as NaN, so the coders' own clip of the integers
    # gave the same symbols.
    symbols = tf.cast(scaled, tf.int32)
    if self._coder == "huffman":
      return huffman.huffman_encode(symbols, bits, max_code_length=self._max_code_length,
                                    block_size=self._block_size)
    return huffman.fixed_width_encode(symbols, bits)

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    stream = encoded_tensors[self.ENCODED_VALUES_KEY]
    _, bits = huffman.stream_header(stream)
    if self._coder == "huffman":
      symbols = huffman.huffman_decode(stream, max_code_length=self._max_code_length,
                                       block_size=self._block_size)
    else:
      symbols = huffman.fixed_width_decode(stream)
    min_max = encoded_tensors[self.MIN_MAX_KEY]
    low, high = tf.cast(min_max[0], tf.float32), tf.cast(min_max[1], tf.float32)
    levels = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.float32)
    values = tf.cast(symbols, tf.float32) / levels * (high - low) + low
    return tf.reshape(tf.cast(values, min_max.dtype), shape)


# Raw size of an adaptive stream, declared in the codec's record: the `uniform` codec's
# 28-bit packing at the width used.
RAW_BITS_RULES = {AdaptiveUniformEncodingStage.ENCODED_VALUES_KEY: huffman.stream_raw_bits}


def state_moves(budget_bits_per_coordinate: float, coder: str = "huffman",
                **unused_options) -> bool:
  """Whether the rate offset (the encoder state) moves from round to round.

  With the Huffman coder it is last round's measured saving; a fixed-width stream is
  exactly its base size, so every client's excess, and the offset, stay 0.
  """
  del budget_bits_per_coordinate, unused_options
  return coder == "huffman"


def check_options(budget_bits_per_coordinate: float | None = None, coder: str = "huffman",
                  stochastic: bool = True, max_bits: int = DEFAULT_MAX_BITS,
                  block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> dict:
  """The `adaptive` codec's options, checked, with their defaults."""
  if budget_bits_per_coordinate is None:
    raise ValueError("the adaptive codec needs budget_bits_per_coordinate (mean bits per "
                     "encoded coordinate per client); see "
                     "fedcompress.codecs.budget.budget_bits_per_coordinate()")
  return {"budget_bits_per_coordinate": _check_budget(budget_bits_per_coordinate),
          "coder": _common.check_choice("coder", coder, CODERS),
          "stochastic": _common.check_bool("stochastic", stochastic),
          "max_bits": _common.check_int("max_bits", max_bits, 1, huffman.MAX_SYMBOL_BITS),
          "block_size": huffman.check_block_size(block_size)}


def build(budget_bits_per_coordinate: float, coder: str = "huffman",
          stochastic: bool = True, max_bits: int = DEFAULT_MAX_BITS,
          block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> te.core.Encoder:
  """The `adaptive` codec's Encoder: flatten, then `AdaptiveUniformEncodingStage`."""
  stage = AdaptiveUniformEncodingStage(budget_bits_per_coordinate, coder=coder,
                                       stochastic=stochastic, max_bits=max_bits,
                                       block_size=block_size)
  return (te.core.EncoderComposer(stage)
          .add_parent(te.stages.FlattenEncodingStage(),
                      te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)
          .make())
