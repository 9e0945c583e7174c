"""Secure aggregation of encoded client updates: the server decodes only their sum.

Secure aggregation (Bonawitz et al., CCS 2017) gives the server the sum of the clients'
vectors in a finite field and nothing else, so only codecs whose encodings add up can
run under it: every stage commutes with sum and the encoded values are integers with a
scale all clients share (`Codec.sum_compatible`; e.g. `fixed_int`, optionally after a
Hadamard rotation whose seed the server broadcasts). Any other codec is refused.

`SecureEncodedSumFactory` encodes each tensor at the clients, sums the integers with
TFF's `SecureModularSumFactory` (the `federated_secure_modular_sum` intrinsic), counts
the clients with `federated_secure_sum_bitwidth`, and decodes the sum on the server.

The field is sized so that the sum of a round's clients cannot overflow: with one
client's integers in `[-L, L]` (`Codec.sum_bound`) and at most `n = clients_per_round`
clients, the sum lies in `[-nL, nL]`, so the modulus is `2nL + 1` and each coordinate
is sent as `B = ceil(log2(2nL + 1))` bits (`field_bits`); no modular wrap-around can
happen. TFF's simulation lowers the intrinsic to a plain sum and a mod, which would
wrap silently with more clients: the server's decode fails instead when a round has
more clients than `clients_per_round`. That plain sum adds the values in their dtype
before the mod, so they travel as int64 (int32 wrapped from 182 clients of 16-bit
`fixed_int` on); only the field's bits are counted.
Each client also sends a 1 for the count, in a field of `ceil(log2(n + 1))` bits. So
the bits each client sends are `B * coordinates + ceil(log2(n + 1))`, where the
coordinates are those of the encoded tensors (padded to a power of two when rotated);
the scale is a codec option and the rotation seed is broadcast, so neither is uplink
side information. Measurements: `bits` (all clients of the round) and `clients`.

In a simulation TFF lowers the secure intrinsics to plain sums (see
`fedcompress.federated.runtime`): the arithmetic, sizes and intrinsics are those of the
protocol, not its cryptography.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tree
from tensorflow_federated.python.core.impl.types import type_conversions
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec, sum_compatible_codecs
from fedcompress.codecs.stages import _common
from fedcompress.federated.aggregation import seeded_encode, seeded_get_params
from fedcompress.federated.broadcast import encoders_init_fn, slice_structure

COUNT_KEY = "clients"


def check_sum_compatible(codec: CodecSpec | str | None) -> CodecSpec:
  """`codec` as a spec if its encodings add up; else ValueError naming those that do."""
  codec = CodecSpec.parse(codec)
  if not codec.codec.sum_compatible:
    # Not "must be decoded per client": a count sketch commutes with sum, but its table
    # holds floats, which a field cannot sum.
    raise ValueError(f"--secure_aggregation needs a codec that sends integers on a scale "
                     f"all clients share, which add up; {codec.name!r} does not; valid "
                     f"codecs: {', '.join(sum_compatible_codecs())}, or a chain of links that "
                     "commute with sum ending in one (e.g. "
                     "countsketch(rows=1,fraction=0.25)|fixed_int(bits=4,clip=0.02))")
  return codec


def field_bits(bound: int, clients: int) -> int:
  """Bits of one coordinate in the field of the sum: `ceil(log2(2 * clients * bound + 1))`."""
  # Values in [-bound, bound] summed exactly: as many as values in [0, 2 bound].
  return unsigned_sum_bits(2 * bound, clients)


def count_bits(clients: int) -> int:
  """Bits of the count each client sends (a 1, summed in a field holding `clients`)."""
  return unsigned_sum_bits(1, clients)


def unsigned_sum_bits(most: int, clients: int) -> int:
  """Bits of one coordinate whose values in `[0, most]` are summed exactly.

  `federated_secure_sum_bitwidth` returns the exact sum, so its field holds
  `clients * most`: `ceil(log2(clients * most + 1))`, at least 1.
  """
  return max(1, math.ceil(math.log2(clients * most + 1)))


def _client_one():
  return tff.federated_eval(tff.tensorflow.computation(lambda: tf.constant(1, tf.int32)),
                            tff.CLIENTS)


class SecureEncodedSumFactory(tff.aggregators.UnweightedAggregationFactory):
  """Sum of client values through a sum-compatible codec and TFF's secure modular sum."""

  def __init__(self, codec: CodecSpec | str, *, clients_per_round: int, seed: int = 0):
    """Initializer.

    Args:
      codec: a sum-compatible codec (`Codec.sum_compatible`), applied to every float
        tensor whatever its size (the spec's threshold does not apply: a float sent
        as is could not be summed in the field).
      clients_per_round: the most clients one round sums; sizes the field.
      seed: the run's seed. As in `EncodedSumFactory`, the codec's draws (rotation
        seeds, stochastic rounding) derive from it, the round and each client's update
        (`fedcompress.codecs.seeding`), so a rerun sums the same integers.

    Raises:
      ValueError: the codec's encodings do not add up, or `clients_per_round` < 1.
    """
    self._codec = check_sum_compatible(codec)
    # A NumPy integer counts (DPConfig takes one): refused, it read "must be an integer
    # >= 1, got 10".
    if not _common.is_integer(clients_per_round) or clients_per_round < 1:
      raise ValueError(f"clients_per_round must be an integer >= 1, got {clients_per_round!r}")
    clients_per_round = int(clients_per_round)
    self._clients = clients_per_round
    self._seed = int(seed)
    self._bound = self._codec.codec.sum_bound(**self._codec.resolved_options())
    self.field_bits = field_bits(self._bound, clients_per_round)
    self.count_bits = count_bits(clients_per_round)
    # The simulation sums n values below the modulus in int64 before reducing (_create).
    if clients_per_round * self.modulus >= 2**63:
      raise ValueError(f"clients_per_round={clients_per_round} with {self._codec.name!r} "
                       f"(values in [-{self._bound}, {self._bound}]) overflows the simulated "
                       "secure sum's int64")

  @property
  def modulus(self) -> int:
    """The field's modulus `2nL + 1` (TFF's symmetric modular sum with modulus `nL + 1`)."""
    return 2 * self._clients * self._bound + 1

  def _encoder(self, spec: tf.TensorSpec) -> te.core.GatherEncoder:
    if not spec.dtype.is_floating:
      raise ValueError(f"secure aggregation encodes float tensors only, got {spec}")
    encoder = self._codec.checked_encoder(spec, summed=True)
    with tf.Graph().as_default():
      gather = te.encoders.as_gather_encoder(encoder, spec)
    if not gather.fully_commutes_with_sum:
      raise ValueError(f"codec {self._codec.name!r} is marked sum-compatible but a stage of "
                       "its encoder does not commute with sum")
    return gather

  def create(self, value_type) -> tff.templates.AggregationProcess:
    """`next(state, value)`: every client adds 1 to the secure count."""
    return self._create(value_type, counted=False)

  def create_counted(self, value_type) -> tff.templates.AggregationProcess:
    """`next(state, value, count)`: each client adds its own int32 count (0 or 1) to the
    secure count, in the same bits (`SecureWeightedMeanFactory` leaves rejected clients
    out that way)."""
    return self._create(value_type, counted=True)

  def _create(self, value_type, counted: bool) -> tff.templates.AggregationProcess:
    specs = type_conversions.type_to_tf_tensor_specs(value_type)
    encoders = tf.nest.map_structure(self._encoder, specs)

    seed = self._seed

    init_fn = encoders_init_fn(encoders)

    state_type = init_fn.type_signature.result

    @tff.tensorflow.computation(state_type.member)
    def get_params_fn(state):
      # One get_params call per encoder: each call draws a fresh rotation seed, and the
      # encode and decode parameters must share it.
      return seeded_get_params(encoders, state, seed)

    encode_params_type, before_params_type, after_params_type = (
        get_params_fn.type_signature.result)

    sent_dtypes = []  # The codec's own integer dtypes, seen when encode_fn is traced.

    # Clients also apply decode_before_sum: a no-op for a fully commuting encoder, but
    # it is what turns te's encoded structure into the summable one.
    # The field's values travel as int64. TFF's simulation lowers the modular sum to a
    # plain sum of the values, in their dtype, then the modulus; its symmetric range sends
    # a negative value x as x + 2nL + 1, so n clients' int32 values wrapped from 2^31 on
    # (from 182 clients of 16-bit `fixed_int`), to a wrong sum with no error. int64 holds
    # n (2nL + 1) (checked in __init__). What is counted is the field's width, as before.
    @tff.tensorflow.computation(value_type, encode_params_type, before_params_type)
    def encode_fn(x, encode_params_and_key, before_params):
      encoded = slice_structure(encoders, seeded_encode(encoders, x, encode_params_and_key), 0)
      summable = tree.map_structure_up_to(encoders, lambda e, v, p: e.decode_before_sum(v, p),
                                          encoders, encoded, before_params)
      sent_dtypes.extend(leaf.dtype for leaf in tf.nest.flatten(summable))
      return tf.nest.map_structure(
          lambda t: tf.cast(t, tf.int64) if t.dtype.is_integer else t, summable)

    for dtype in sent_dtypes:
      if not dtype.is_integer:
        raise ValueError(f"codec {self._codec.name!r} sends {dtype.name} values; the "
                         "secure sum needs integers")
      if self._clients * self._bound > dtype.max:  # The sum goes back in the codec's dtype.
        raise ValueError(f"the sum of clients_per_round={self._clients} clients' values in "
                         f"[-{self._bound}, {self._bound}] does not fit in the "
                         f"{dtype.name} that {self._codec.name!r} decodes")
    summable_type = encode_fn.type_signature.result
    coordinates = sum(math.prod(leaf.shape.as_list()) for leaf in
                      tf.nest.flatten(type_conversions.type_to_tf_tensor_specs(summable_type)))
    self.coordinates = coordinates
    per_client_bits = self.field_bits * coordinates + self.count_bits
    self.per_client_bits = per_client_bits  # What one client sends, counted or not.
    modular_sum = tff.aggregators.SecureModularSumFactory(  # An int64 modulus for int64 values.
        np.int64(self._clients * self._bound + 1), symmetric_range=True).create(summable_type)

    sized_for = self._clients

    @tff.tensorflow.computation(summable_type, after_params_type, tf.int32)
    def decode_fn(summed, after_params, clients):
      # The modular sum wraps silently (TFF's simulation lowers it to a sum and a mod,
      # with no range check): a round of more clients than the field holds must fail.
      check = tf.debugging.assert_less_equal(
          clients, sized_for, message=f"more clients than the field of the secure sum holds "
          f"(clients_per_round={sized_for}): the sum would wrap around")
      with tf.control_dependencies([check]):
        summed = tf.nest.pack_sequence_as(summed, [
            tf.cast(t, dtype) for t, dtype in zip(tf.nest.flatten(summed), sent_dtypes,
                                                  strict=True)])
      return tree.map_structure_up_to(encoders, lambda e, v, p: e.decode_after_sum(v, p, clients),
                                      encoders, summed, after_params)

    @tff.tensorflow.computation(tf.int32)
    def measurements_fn(clients):
      return collections.OrderedDict(
          bits=tf.cast(clients, tf.int64) * per_client_bits, **{COUNT_KEY: clients})

    @tff.tensorflow.computation(state_type.member)
    def next_round_fn(state):
      return collections.OrderedDict(encoders=state["encoders"], round=state["round"] + 1)

    def round_fn(state, value, count):
      encode_params, before_params, after_params = tff.federated_map(get_params_fn, state)
      summable = tff.federated_map(encode_fn, (value, tff.federated_broadcast(encode_params),
                                               tff.federated_broadcast(before_params)))
      summed = modular_sum.next(modular_sum.initialize(), summable).result
      clients = tff.federated_secure_sum_bitwidth(count, 1)
      decoded = tff.federated_map(decode_fn, (summed, after_params, clients))
      # The encoders are stateless between rounds (a fresh rotation seed comes from
      # get_params): only the round counter of the seeds moves.
      return tff.templates.MeasuredProcessOutput(
          state=tff.federated_map(next_round_fn, state), result=decoded,
          measurements=tff.federated_map(measurements_fn, clients))

    clients_value = tff.FederatedType(value_type, tff.CLIENTS)
    if counted:
      @tff.federated_computation(state_type, clients_value,
                                 tff.FederatedType(np.int32, tff.CLIENTS))
      def next_fn(state, value, count):
        return round_fn(state, value, count)
    else:
      @tff.federated_computation(state_type, clients_value)
      def next_fn(state, value):
        return round_fn(state, value, _client_one())

    return tff.templates.AggregationProcess(init_fn, next_fn)


def _divide_by_count(inner: tff.templates.AggregationProcess):
  """`(sum, measurements) -> sum / measurements[COUNT_KEY]` for `inner`'s types."""
  result_type = inner.next.type_signature.result.result.member
  measurements_type = inner.next.type_signature.result.measurements.member

  @tff.tensorflow.computation(result_type, measurements_type)
  def divide_fn(total, measurements):
    clients = tf.cast(measurements[COUNT_KEY], tf.float32)
    return tf.nest.map_structure(lambda t: tf.math.divide_no_nan(t, tf.cast(clients, t.dtype)),
                                 total)

  return divide_fn


class SecureWeightedMeanFactory(tff.aggregators.WeightedAggregationFactory):
  """The secure mean over the clients of positive weight, for FedAvg's weighted slot.

  The mean is unweighted (each counted client counts once); the weight only says whether
  a client counts. `RejectNonFiniteFactory` leaves a client out by sending zeros with
  weight 0: the unweighted mean this replaced (under TFF's `as_weighted_aggregator`)
  dropped the weight, so that client was still counted and diluted the round's mean.
  Here each client adds `weight > 0` to the secure count instead of 1: the same count
  bits.
  """

  def __init__(self, sum_factory: SecureEncodedSumFactory):
    self._sum = sum_factory

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    inner = self._sum.create_counted(value_type)
    divide_fn = _divide_by_count(inner)
    # Every client sends its field values and its count, counted or not.
    per_client_bits = self._sum.per_client_bits
    measurements_type = inner.next.type_signature.result.measurements.member

    @tff.tensorflow.computation(weight_type)
    def counts_fn(weight):
      return tf.cast(tf.greater(weight, tf.zeros_like(weight)), tf.int32)

    @tff.tensorflow.computation(measurements_type, tf.int32)
    def bits_fn(measurements, senders):
      out = collections.OrderedDict(measurements)
      out["bits"] = tf.cast(senders, tf.int64) * per_client_bits
      return out

    state_type, value_type_at_clients, _ = inner.next.type_signature.parameter

    @tff.federated_computation(state_type, value_type_at_clients,
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      output = inner.next(state, value, tff.federated_map(counts_fn, weight))
      mean = tff.federated_map(divide_fn, (output.result, output.measurements))
      # How many clients sent is no secret (the server sampled them); how many of them
      # count stays in the secure sum.
      senders = tff.federated_sum(_client_one())
      return tff.templates.MeasuredProcessOutput(
          output.state, mean, tff.federated_map(bits_fn, (output.measurements, senders)))

    return tff.templates.AggregationProcess(inner.initialize, next_fn)


def build_secure_mean_factory(codec: CodecSpec | str, *, clients_per_round: int, seed: int = 0
                              ) -> tff.aggregators.WeightedAggregationFactory:
  """Mean of client updates under secure aggregation with `codec`, for FedAvg.

  Unweighted over the clients of positive weight (`SecureWeightedMeanFactory`).
  """
  return SecureWeightedMeanFactory(SecureEncodedSumFactory(
      codec, clients_per_round=clients_per_round, seed=seed))
