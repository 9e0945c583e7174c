"""Encoded client -> server aggregation, reporting the bits clients send.

`EncodedSumFactory` here is TFF's `tff.aggregators.EncodedSumFactory` (same
constructor and `quantize_above_threshold`) whose process also measures `bits`: the
size of every client's whole contribution to `federated_aggregate` — encoded values,
the decode parameters TFF makes clients send back, and adaptive state updates. TFF's
own version reports empty measurements, and TFF 0.87 has no sizing executor left.

`build_mean_factory` puts two of them under `tff.aggregators.MeanFactory`, numerator
and denominator, as the TFF compression tutorial does; the weight (a float32 scalar,
under any threshold) then costs 32 bits per client.

The next function below follows TFF 0.87's `aggregators/encoded.py` (Apache 2.0)
step for step; the only additions are the bit count and its measurement.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_federated as tff
import tree
from tensorflow_federated.python.core.impl.types import type_conversions
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import bits as bits_lib
from fedcompress.broadcast import slice_structure
from fedcompress.codecs import CodecSpec


class EncodedSumFactory(tff.aggregators.EncodedSumFactory):
  """TFF's `EncodedSumFactory` whose process measures `{'bits': int64}` per round."""

  @classmethod
  def from_codec(cls, codec: CodecSpec | str | None) -> EncodedSumFactory:
    codec = CodecSpec.parse(codec)
    return cls(codec.gather_encoder)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    encoders = self._encoders_for_value_type(value_type)

    @tff.tensorflow.computation
    def initial_state_fn():
      return tf.nest.map_structure(lambda e: e.initial_state(), encoders)

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(initial_state_fn, tff.SERVER)

    next_fn = _encoded_next_fn(init_fn.type_signature.result, value_type, encoders)
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


def _encoded_next_fn(server_state_type, value_type, encoders):
  """`next` of the encoded sum: encode at clients, aggregate, decode at server."""

  @tff.tensorflow.computation(server_state_type.member)
  def get_params_fn(state):
    params = tree.map_structure_up_to(encoders, lambda e, s: e.get_params(s), encoders, state)
    return tuple(slice_structure(encoders, params, i) for i in range(3))

  encode_params_type, decode_before_sum_params_type, decode_after_sum_params_type = (
      get_params_fn.type_signature.result)

  # Like TFF, decode-before-sum params travel to the clients and back inside the
  # encoded structure, because federated_aggregate cannot see SERVER values.
  @tff.tensorflow.computation(value_type, encode_params_type, decode_before_sum_params_type)
  def encode_fn(x, encode_params, decode_before_sum_params):
    encoded = tree.map_structure_up_to(encoders, lambda e, *a: e.encode(*a), encoders, x,
                                       encode_params)
    return (slice_structure(encoders, encoded, 0), decode_before_sum_params,
            slice_structure(encoders, encoded, 1))

  encoded_type = encode_fn.type_signature.result
  state_update_tensors_type = encoded_type[2]

  @tff.tensorflow.computation(encoded_type)
  def bits_fn(encoded):
    return bits_lib.structure_bits_tf(encoded)

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
    return tree.map_structure_up_to(encoders, lambda e, *a: e.update_state(*a), encoders,
                                    state, state_update_tensors)

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
    sent_bits = tff.federated_sum(tff.federated_map(bits_fn, encoded))
    return tff.templates.MeasuredProcessOutput(
        state=new_state, result=decoded,
        measurements=tff.federated_zip(collections.OrderedDict(bits=sent_bits)))

  return next_fn


def build_mean_factory(codec: CodecSpec | str | None = None) -> tff.aggregators.MeanFactory:
  """Weighted mean whose numerator and denominator are both encoded sums with `codec`."""
  return tff.aggregators.MeanFactory(EncodedSumFactory.from_codec(codec),
                                     EncodedSumFactory.from_codec(codec))
