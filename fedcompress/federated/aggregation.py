"""Encoded client -> server aggregation, reporting the bits clients send.

`EncodedSumFactory` here is TFF's `tff.aggregators.EncodedSumFactory` (same
constructor and `quantize_above_threshold`) whose process also measures `bits`: the
size of every client's whole contribution to `federated_aggregate` — encoded values,
the decode parameters TFF makes clients send back, and adaptive state updates. TFF's
own version reports empty measurements, and TFF 0.87 has no sizing executor left.

`build_mean_factory` puts two of them under `tff.aggregators.MeanFactory`, numerator
and denominator, as the TFF compression tutorial does; the denominator's codec is
always identity, so the weight (a float32 scalar) costs 32 bits per client whatever the
threshold (a threshold of 0 would otherwise quantize it, and a fixed-range codec clip it).

With an entropy-coded codec (`fedcompress.codecs.stages.entropy`) the measurements are
`{'bits', 'coded_bits'}`: `coded_bits` is what clients actually send, `bits` the raw
size with plain bit-packing. Entropy-coded values do not commute with sum; like any
such stage they are decoded per client at the server (`decode_before_sum`) inside
`federated_aggregate`. `build_mean_factory(..., measure_error=True)` adds the
`relative_error` of the decoded mean against the exact mean of the same round.

The next function below follows TFF 0.87's `aggregators/encoded.py` (Apache 2.0)
step for step; the additions are the bit count and its measurement, and seeded codec
randomness: the state is `{'encoders': TFF's, 'round': int64}`, the server broadcasts
the round key `seeding.round_key(seed, round)` with the encode parameters, and each
client encodes every tensor inside `seeding.encode_key(...)`'s scope, which folds in
the tensor's fingerprint (why, and the caveat for bit-identical updates:
`fedcompress.codecs.seeding`). A rerun or a resumed run with the same seed therefore
sends the same bits.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_federated as tff
import tree
from tensorflow_federated.python.core.impl.types import type_conversions
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec, accounting, get_codec, parse_chain, seeding
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.allocated import AllocatedSumFactory
from fedcompress.federated.broadcast import encoders_init_fn, slice_structure


class EncodedSumFactory(tff.aggregators.EncodedSumFactory):
  """TFF's `EncodedSumFactory` whose process measures `{'bits': int64}` per round."""

  def __init__(self, encoder_fn, *, raw_bits_rules: accounting.RawBitsRules | None = None,
               seed: int = 0):
    """Initializer.

    Args:
      encoder_fn: `tf.TensorSpec -> te.core.GatherEncoder`, as for TFF's factory.
      raw_bits_rules: how to count the raw size of coded streams the encoders send
        (`CodecSpec.raw_bits_rules`); none for codecs without an entropy coder.
      seed: the run's seed; the codecs' randomness derives from it, the round and
        each client's own update (`fedcompress.codecs.seeding`).
    """
    super().__init__(encoder_fn)
    self._raw_bits_rules = dict(raw_bits_rules or {})
    self._seed = int(seed)

  @classmethod
  def from_codec(cls, codec: CodecSpec | str | None, *, seed: int = 0) -> EncodedSumFactory:
    codec = CodecSpec.parse(codec)
    return cls(codec.gather_encoder, raw_bits_rules=codec.raw_bits_rules, seed=seed)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    encoders = self._encoders_for_value_type(value_type)

    init_fn = encoders_init_fn(encoders)

    next_fn = _encoded_next_fn(init_fn.type_signature.result, value_type, encoders,
                               self._raw_bits_rules, self._seed)
    return tff.templates.AggregationProcess(init_fn, next_fn)


def _accumulate_state_update(a, b, mode):
  combine = {
      te.core.StateAggregationMode.SUM: tf.add,
      te.core.StateAggregationMode.MIN: tf.minimum,
      te.core.StateAggregationMode.MAX: tf.maximum,
  }
  if mode not in combine:
    raise ValueError(f"state aggregation mode {mode} is not supported")
  return combine[mode](a, b)


def encoded_sum_round(state) -> tf.Tensor:
  """The round counter of the first `EncodedSumFactory` state inside an aggregator's state.

  For code that must draw with the keys the encoded sum uses this round (the client's
  round trip of error feedback): `build_mean_factory`'s state holds the numerator's
  `{'encoders', 'round'}` first. An identity codec keeps no counter and draws nothing,
  so any round will do there (0).
  """
  for path, leaf in tree.flatten_with_path(state):
    if path and path[-1] == "round":
      return leaf
  return tf.constant(0, tf.int64)


def indexed_encoders(encoders):
  """`encoders` with each leaf replaced by (its index in flattening order, the encoder)."""
  flat = tf.nest.flatten(encoders)
  return tf.nest.pack_sequence_as(encoders, list(enumerate(flat)))


def seeded_get_params(encoders, state, seed: int):
  """Server side of a round: `((encode_params, key), before_sum, after_sum)`.

  `state` holds the encoders' states (`'encoders'`) and the round counter (`'round'`);
  each encoder's `get_params` draws under its own key of the round's key, which travels
  to the clients with the encode parameters for `seeded_encode`.
  """
  key = seeding.round_key(seed, state["round"])

  def get_params(indexed_encoder, encoder_state):
    index, encoder = indexed_encoder
    with seeding.seed_scope(seeding.params_key(key, index)):
      return encoder.get_params(encoder_state)

  params = tree.map_structure_up_to(encoders, get_params, indexed_encoders(encoders),
                                    state["encoders"])
  encode_params, before_sum, after_sum = (slice_structure(encoders, params, i)
                                          for i in range(3))
  return (encode_params, key), before_sum, after_sum


def seeded_encode(encoders, x, encode_params_and_key):
  """Client side: each tensor's `encoder.encode` under a key of the round's key and of
  the tensor itself (`seeding.encode_key`); the structure of its outputs."""
  encode_params, key = encode_params_and_key

  def encode(indexed_encoder, value, params):
    index, encoder = indexed_encoder
    with seeding.seed_scope(seeding.encode_key(key, index, value)):
      return encoder.encode(value, params)

  return tree.map_structure_up_to(encoders, encode, indexed_encoders(encoders), x,
                                  encode_params)


def _encoded_next_fn(server_state_type, value_type, encoders, rules, seed):
  """`next` of the encoded sum: encode at clients, aggregate, decode at server."""

  @tff.tensorflow.computation(server_state_type.member)
  def get_params_fn(state):
    return seeded_get_params(encoders, state, seed)

  encode_params_type, decode_before_sum_params_type, decode_after_sum_params_type = (
      get_params_fn.type_signature.result)

  # Like TFF, decode-before-sum params travel to the clients and back inside the
  # encoded structure, because federated_aggregate cannot see SERVER values.
  @tff.tensorflow.computation(value_type, encode_params_type, decode_before_sum_params_type)
  def encode_fn(x, encode_params_and_key, decode_before_sum_params):
    encoded = seeded_encode(encoders, x, encode_params_and_key)
    return (slice_structure(encoders, encoded, 0), decode_before_sum_params,
            slice_structure(encoders, encoded, 1))

  encoded_type = encode_fn.type_signature.result
  state_update_tensors_type = encoded_type[2]

  @tff.tensorflow.computation(encoded_type)
  def bits_fn(encoded):
    return accounting.bit_counts_tf(encoded, rules)

  def decode_before_sum(encoded_x, decode_before_sum_params):
    part_decoded = tree.map_structure_up_to(
        encoders, lambda e, *a: e.decode_before_sum(*a), encoders, encoded_x,
        decode_before_sum_params)
    return part_decoded, tf.constant((1,), tf.int32)

  @tff.tensorflow.computation(encoded_type[0:2])
  def _decode_before_sum_for_type(encoded_x, decode_before_sum_params):
    return decode_before_sum(encoded_x, decode_before_sum_params)

  part_decoded_type = _decode_before_sum_for_type.type_signature.result

  @tff.tensorflow.computation(part_decoded_type, decode_after_sum_params_type)
  def decode_after_sum_fn(summed, decode_after_sum_params):
    part_decoded_sum, num_summands = summed
    return tree.map_structure_up_to(
        encoders, lambda e, x, p: e.decode_after_sum(x, p, num_summands), encoders,
        part_decoded_sum, decode_after_sum_params)

  @tff.tensorflow.computation(server_state_type.member, state_update_tensors_type)
  def update_state_fn(state, state_update_tensors):
    return collections.OrderedDict(
        encoders=tree.map_structure_up_to(encoders, lambda e, *a: e.update_state(*a),
                                          encoders, state["encoders"], state_update_tensors),
        round=state["round"] + 1)

  def zeros_like_type(t):
    return tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype),
                                 type_conversions.type_to_tf_tensor_specs(t))

  @tff.tensorflow.computation
  def zero_fn():
    return collections.OrderedDict(values=zeros_like_type(part_decoded_type),
                                   state_update_tensors=zeros_like_type(state_update_tensors_type))

  accumulator_type = zero_fn.type_signature.result
  modes = tf.nest.map_structure(lambda e: tuple(e.state_update_aggregation_modes), encoders)

  def merge_state_updates(a, b):
    return tf.nest.map_structure(_accumulate_state_update, a, b, modes)

  @tff.tensorflow.computation(accumulator_type, encoded_type)
  def accumulate_fn(acc, encoded):
    value, params, state_update_tensors = encoded
    part_decoded = decode_before_sum(value, params)
    return collections.OrderedDict(
        values=tf.nest.map_structure(tf.add, acc["values"], part_decoded),
        state_update_tensors=merge_state_updates(acc["state_update_tensors"],
                                                 state_update_tensors))

  @tff.tensorflow.computation(accumulator_type, accumulator_type)
  def merge_fn(acc1, acc2):
    return collections.OrderedDict(
        values=tf.nest.map_structure(tf.add, acc1["values"], acc2["values"]),
        state_update_tensors=merge_state_updates(acc1["state_update_tensors"],
                                                 acc2["state_update_tensors"]))

  @tff.tensorflow.computation(accumulator_type)
  def report_fn(acc):
    return acc

  @tff.federated_computation(server_state_type, tff.FederatedType(value_type, tff.CLIENTS))
  def next_fn(state, value):
    encode_params, decode_before_sum_params, decode_after_sum_params = tff.federated_map(
        get_params_fn, state)
    encoded = tff.federated_map(encode_fn, [
        value, tff.federated_broadcast(encode_params),
        tff.federated_broadcast(decode_before_sum_params)])
    aggregated = tff.federated_aggregate(encoded, zero_fn(), accumulate_fn, merge_fn,
                                         report_fn)
    decoded = tff.federated_map(decode_after_sum_fn,
                                [aggregated.values, decode_after_sum_params])
    new_state = tff.federated_map(update_state_fn, [state, aggregated.state_update_tensors])
    measurements = tff.federated_sum(tff.federated_map(bits_fn, encoded))
    return tff.templates.MeasuredProcessOutput(state=new_state, result=decoded,
                                               measurements=measurements)

  return next_fn


def build_mean_factory(
    codec: CodecSpec | AllocatedCodec | str | None = None, *, measure_error: bool = False,
    names: list[str] | None = None, seed: int = 0
) -> tff.aggregators.WeightedAggregationFactory:
  """Weighted mean whose numerator is an encoded sum with `codec`, and its denominator one
  of identity (the weight, one float32 per client: see below).

  Args:
    codec: codec of the clients' contributions (`None` = identity). An
      `AllocatedCodec` allocates the numerator's widths per tensor
      (`fedcompress.federated.allocated`); the weight's 32 bits are paid from the same
      budget.
    measure_error: also measure `relative_error` (see `RelativeErrorFactory`).
      A fixed-range codec (`fixed_int`) needs weights of 1: the numerator is weight x
      value (`check_weighted_codec`, which `build_fedavg` calls, says so).
    names: names of the value's tensors, for an `AllocatedCodec`'s width measurements.
    seed: the run's seed, from which the codec's randomness derives.

  Returns:
    A `tff.aggregators.MeanFactory`, wrapped in a `RelativeErrorFactory` when
    `measure_error`.
  """
  # The weight is sent as it is: MeanFactory's numerator is weight x value, so a codec
  # on the weight would change the mean's scale, not only its precision.
  weight = EncodedSumFactory.from_codec(None, seed=seed)
  if isinstance(codec, AllocatedCodec):
    weight_bits = CodecSpec.parse(None).tensor_bits(tf.TensorSpec([], tf.float32))
    mean = tff.aggregators.MeanFactory(
        AllocatedSumFactory(codec, names, reserved_bits=weight_bits, seed=seed), weight)
  else:
    mean = tff.aggregators.MeanFactory(EncodedSumFactory.from_codec(codec, seed=seed), weight)
  return RelativeErrorFactory(mean) if measure_error else mean


def moving_state_hint(codec: CodecSpec) -> str:
  """How to hold still the encoder state that `codec` moves, said beside a refusal of it:
  its links' records' `state_hint`s, ' (adaptive's rate offset: use coder=fixed)', or ''."""
  hints = [h for name, _ in codec.resolved_links() if (h := get_codec(name).state_hint)]
  return f" ({'; '.join(hints)})" if hints else ""


def check_weighted_codec(codec: CodecSpec | AllocatedCodec | str | None,
                         client_weighting: tff.learning.ClientWeighting) -> None:
  """Refuses a fixed-range codec (`fixed_int`) under the example-weighted mean.

  `MeanFactory` encodes weight x update, and with `NUM_EXAMPLES` the weight is the
  client's example count: a codec whose range is absolute (its record has a
  `sum_bound`: `fixed_int`'s `clip`) would clip the update at clip / weight, shrinking
  the mean by about the weight. Uniform weighting (the weight is 1) and secure
  aggregation (which requires it) are fine.
  """
  fixed = fixed_range_links(codec)
  if fixed and client_weighting != tff.learning.ClientWeighting.UNIFORM:
    raise ValueError(f"{fixed[0]} clips and scales absolute values, but the example-weighted "
                     "mean encodes weight x update: pass --client_weighting=uniform (which "
                     "--secure_aggregation needs too)")


def fixed_range_links(codec: CodecSpec | AllocatedCodec | str | None) -> list[str]:
  """The links of `codec` whose range is absolute (their record has a `sum_bound`)."""
  spec = codec.base if isinstance(codec, AllocatedCodec) else CodecSpec.parse(codec)
  links = parse_chain(spec.name) if spec.is_chain else [(spec.name, {})]
  return [name for name, _ in links if get_codec(name).sum_bound is not None]


def relative_error_tf(decoded, exact) -> tf.Tensor:
  """||decoded - exact|| / ||exact|| over all tensors of a structure (0 if exact is 0)."""
  decoded, exact = tf.nest.flatten(decoded), tf.nest.flatten(exact)
  # float64 so that tiny errors of nearly exact codecs do not round away.
  diff = tf.linalg.global_norm([tf.cast(d, tf.float64) - tf.cast(e, tf.float64)
                                for d, e in zip(decoded, exact, strict=True)])
  norm = tf.linalg.global_norm([tf.cast(e, tf.float64) for e in exact])
  return tf.cast(tf.math.divide_no_nan(diff, norm), tf.float32)


class RelativeErrorFactory(tff.aggregators.WeightedAggregationFactory):
  """Adds `relative_error` = ||mean - exact mean|| / ||exact mean|| to a weighted mean.

  The exact mean of the same round is computed beside the encoded one with
  `tff.federated_mean` of the unencoded values: instrumentation for rate-distortion
  plots. In a simulation it doubles the uplink, but it is not part of the protocol
  and is not counted in any `bits`. Measurements become the inner factory's, plus a
  float32 `relative_error` (0.0 when the exact mean is all zeros).
  """

  def __init__(self, inner: tff.aggregators.WeightedAggregationFactory):
    self._inner = inner

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    inner = self._inner.create(value_type, weight_type)
    result_type = inner.next.type_signature.result.result.member
    inner_measurements_type = inner.next.type_signature.result.measurements.member

    @tff.tensorflow.computation(result_type, result_type)
    def error_fn(decoded, exact):
      return relative_error_tf(decoded, exact)

    @tff.tensorflow.computation(inner_measurements_type, tf.float32)
    def add_error_fn(measurements, error):
      out = collections.OrderedDict(measurements)
      out["relative_error"] = error
      return out

    value_member = inner.next.type_signature.parameter[1].member
    weight_member = inner.next.type_signature.parameter[2].member

    @tff.tensorflow.computation(value_member, weight_member)
    def weigh_fn(value, weight):
      return tf.nest.map_structure(lambda v: v * tf.cast(weight, v.dtype), value)

    @tff.tensorflow.computation(value_member, weight_member)
    def divide_fn(total, weights):
      # 0, not NaN, in a round whose clients all have weight 0 (all rejected or empty):
      # tff.federated_mean divides by that 0.
      return tf.nest.map_structure(
          lambda t: tf.math.divide_no_nan(t, tf.cast(weights, t.dtype)), total)

    @tff.federated_computation(inner.next.type_signature.parameter)
    def next_fn(state, value, weight):
      output = inner.next(state, value, weight)
      exact = tff.federated_map(divide_fn, (
          tff.federated_sum(tff.federated_map(weigh_fn, (value, weight))),
          tff.federated_sum(weight)))
      error = tff.federated_map(error_fn, (output.result, exact))
      measurements = tff.federated_map(add_error_fn, (output.measurements, error))
      return tff.templates.MeasuredProcessOutput(output.state, output.result, measurements)

    return tff.templates.AggregationProcess(inner.initialize, next_fn)
