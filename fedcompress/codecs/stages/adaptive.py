"""`adaptive` codec: uniform quantization whose bit width follows a bits budget.

Each round the codec picks the bit width `b` of uniform (min/max) quantization so
that what a client sends for a tensor stays within `budget_bits_per_coordinate` bits
per coordinate, side information included. What a width costs is only partly known
in advance:

* known exactly, given `n` and `b`: the stream header, the Huffman code-length
  table (`2**b` entries), block lengths, min/max, the state-update scalars;
* learned from earlier rounds: how far the entropy-coded payload falls below `b`
  bits per symbol (with `coder="fixed"` there is nothing to learn: it is exactly `b`).

So the predicted rate of width `b` is `base(b, n) + offset`, where `base` is the known
part per coordinate (`n * b` payload bits) and `offset` is the mean, over last round's
clients, of (measured rate - base rate at the width they used). Every encode picks the
largest `b` in `1..max_bits` whose prediction meets the budget (`1` if none does),
and reports its own measured excess as `state_update_tensors` (summed over clients by
`EncodedSumFactory`, two float32 scalars per client and tensor, counted in
`aggregate/bits` like any client contribution). The offset of a fine uniform
quantizer's entropy is nearly independent of `b` (one more bit halves the cells,
adding about one bit of entropy), so the loop settles within a few rounds; starting
from `offset = 0` it approaches the budget from below.

The chosen width travels in the stream header (`fedcompress.stages.entropy` stream
format), so the server needs no extra parameter to decode, and `fedcompress.bits`
counts the raw size (`bits`) as the `uniform` codec at that width would send it,
`ceil(n * b / 28) * 32 + 64`, while `coded_bits` is the stream actually sent.

Options (`CodecSpec("adaptive", {...})`):
  budget_bits_per_coordinate: required; mean wire bits (`coded_bits`) per encoded
    coordinate per client, side information included. For a per-round total budget,
    see `budget_bits_per_coordinate(...)` below, which inverts the accounting.
  coder: "huffman" (entropy-coded, default) or "fixed" (b bits per symbol, 32 per word).
  stochastic: stochastic (unbiased) rounding, default True.
  max_bits: largest width considered, 1..16 (default 12).
  block_size: Huffman decoding block size.

In the broadcast direction the same codec works (its SimpleEncoder state adapts at
the server), but the state-update scalars it budgets for are not sent there, so it
spends 64 bits per tensor less than budgeted.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import accounting as bits_lib
from fedcompress.codecs import spec as codecs
from fedcompress.codecs.stages import _common, entropy

NAME = "adaptive"
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
  payload = entropy.HEADER_BITS + n * bits
  if coder == "fixed":
    return (payload + 31) // 32 * 32
  table = (2**bits) * entropy.length_field_bits(max_code_length)
  num_blocks = (n + block_size - 1) // block_size
  blocks = (num_blocks - 1) * entropy.block_field_bits(block_size, max_code_length)
  return payload + table + blocks


def _check_budget(budget) -> float:
  if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not (
      0 < budget < float("inf")):
    raise ValueError("budget_bits_per_coordinate must be a positive number (bits per "
                     f"coordinate per client), got {budget!r}")
  return float(budget)


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
               block_size: int = entropy.DEFAULT_BLOCK_SIZE):
    self._budget = _check_budget(budget_bits_per_coordinate)
    if coder not in CODERS:
      raise ValueError(f"coder must be one of {', '.join(CODERS)}; got {coder!r}")
    self._coder = coder
    if not isinstance(stochastic, bool):
      raise ValueError(f"stochastic must be a bool, got {stochastic!r}")
    self._stochastic = stochastic
    if isinstance(max_bits, bool) or not isinstance(max_bits, int) or not (
        1 <= max_bits <= entropy.MAX_SYMBOL_BITS):
      raise ValueError(f"max_bits must be an integer in 1..{entropy.MAX_SYMBOL_BITS}, "
                       f"got {max_bits!r}")
    self._max_bits = max_bits
    self._max_code_length = max(entropy.DEFAULT_MAX_CODE_LENGTH, max_bits)
    self._block_size = entropy.check_block_size(block_size)

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
    # No client encoded this tensor last round: keep what we knew.
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
    flat = tf.reshape(x, [-1])
    n = tf.size(flat)
    offset = tf.cast(encode_params[self.OFFSET_STATE_KEY], tf.float64)
    widths = tf.range(1, self._max_bits + 1, dtype=tf.int32)
    fits = self._base_rate(n, widths) + offset <= self._budget
    # Largest fitting width (rates grow with b); the narrowest when none fits.
    bits = tf.reduce_max(tf.where(fits, widths, 1))

    work = tf.cast(flat, tf.float32)
    low, high = tf.reduce_min(work), tf.reduce_max(work)
    levels = tf.cast(tf.bitwise.left_shift(1, bits) - 1, tf.float32)
    scaled = tf.math.divide_no_nan(work - low, high - low) * levels
    if self._stochastic:
      floor = tf.floor(scaled)
      scaled = floor + tf.cast(_common.dither16(tf.shape(scaled)) < scaled - floor,
                               tf.float32)
    else:
      scaled = tf.round(scaled)
    symbols = tf.cast(tf.clip_by_value(scaled, 0.0, levels), tf.int32)

    if self._coder == "huffman":
      stream = entropy.huffman_encode(symbols, bits, max_code_length=self._max_code_length,
                                      block_size=self._block_size)
    else:
      stream = entropy.fixed_width_encode(symbols, bits)
    sent = tf.cast(tf.size(stream) * 32 + MIN_MAX_BITS + STATE_UPDATE_BITS, tf.float64)
    measured_rate = sent / tf.maximum(tf.cast(n, tf.float64), 1.0)
    excess = tf.cast(measured_rate - self._base_rate(n, bits), tf.float32)

    encoded = collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, stream),
        (self.MIN_MAX_KEY, tf.cast(tf.stack([low, high]), x.dtype)),
    ])
    state_update = collections.OrderedDict([
        (self.EXCESS_UPDATE_KEY, excess),
        (self.COUNT_UPDATE_KEY, tf.constant(1.0, tf.float32)),
    ])
    return encoded, state_update

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    stream = encoded_tensors[self.ENCODED_VALUES_KEY]
    _, bits = entropy.stream_header(stream)
    if self._coder == "huffman":
      symbols = entropy.huffman_decode(stream, max_code_length=self._max_code_length,
                                       block_size=self._block_size)
    else:
      symbols = entropy.fixed_width_decode(stream)
    min_max = encoded_tensors[self.MIN_MAX_KEY]
    low, high = tf.cast(min_max[0], tf.float32), tf.cast(min_max[1], tf.float32)
    levels = tf.cast(tf.bitwise.left_shift(tf.constant(1, tf.int64), bits) - 1, tf.float32)
    values = tf.cast(symbols, tf.float32) / levels * (high - low) + low
    return tf.reshape(tf.cast(values, min_max.dtype), shape)


# Raw size of an adaptive stream: the `uniform` codec's 28-bit packing at the width used.
bits_lib.register_raw_bits_rule(AdaptiveUniformEncodingStage.ENCODED_VALUES_KEY,
                                entropy.stream_raw_bits)


def build(budget_bits_per_coordinate: float | None = None, coder: str = "huffman",
          stochastic: bool = True, max_bits: int = DEFAULT_MAX_BITS,
          block_size: int = entropy.DEFAULT_BLOCK_SIZE) -> te.core.Encoder:
  """The `adaptive` codec's Encoder: flatten, then `AdaptiveUniformEncodingStage`."""
  if budget_bits_per_coordinate is None:
    raise ValueError("the adaptive codec needs budget_bits_per_coordinate (mean bits per "
                     "encoded coordinate per client); see budget_bits_per_coordinate()")
  stage = AdaptiveUniformEncodingStage(budget_bits_per_coordinate, coder=coder,
                                       stochastic=stochastic, max_bits=max_bits,
                                       block_size=block_size)
  return (te.core.EncoderComposer(stage)
          .add_parent(te.stages.FlattenEncodingStage(),
                      te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)
          .make())


codecs.register_codec(NAME, build)


def budget_bits_per_coordinate(aggregate_bits_budget: float, clients_per_round: int,
                               value_specs: Iterable[tf.TensorSpec],
                               threshold: int = codecs.DEFAULT_THRESHOLD) -> float:
  """The `budget_bits_per_coordinate` that makes a round cost `aggregate_bits_budget`.

  Inverts `build_fedavg`'s uplink accounting with `build_mean_factory`: per client,
  tensors at or under `threshold` (and non-float ones) go through identity at full
  width, the mean's float32 weight costs 32 bits, and the rest is encoded by this
  codec at the per-coordinate budget. So

      budget = (aggregate_bits_budget / clients_per_round - fixed) / encoded_coordinates

  Args:
    aggregate_bits_budget: bits per round, total over the round's clients (the value
      of `--aggregate_bits_budget`), met by `aggregate/coded_bits`.
    clients_per_round: clients sampled per round.
    value_specs: specs of the aggregated tensors (the model's trainable weights).
    threshold: the codec's `CodecSpec.threshold`.

  Raises:
    ValueError: nothing to encode, or the budget does not cover the unencoded part.
  """
  if clients_per_round < 1:
    raise ValueError(f"clients_per_round must be >= 1, got {clients_per_round}")
  policy = codecs.CodecSpec("identity", threshold=threshold)
  encoded, fixed = 0, 32  # The mean's float32 weight.
  for spec in value_specs:
    if policy.applies_to(spec):
      encoded += math.prod(spec.shape.as_list())
    else:
      fixed += bits_lib.tensor_bits(spec.shape.as_list(), spec.dtype)
  if encoded == 0:
    raise ValueError(f"no tensor has more than {threshold} elements: nothing to encode")
  per_client = aggregate_bits_budget / clients_per_round
  if per_client <= fixed:
    raise ValueError(f"a budget of {aggregate_bits_budget} bits for {clients_per_round} "
                     f"clients does not cover the {fixed} unencoded bits per client")
  return (per_client - fixed) / encoded
