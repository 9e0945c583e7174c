"""Encoded server -> client model distribution, reporting the bits it sends.

A `tff.learning.templates.DistributionProcess` for `build_weighted_fed_avg(...,
model_distributor=...)`: the server encodes each weight tensor with the codec's
`InlineEncoder` (`fedcompress.codecs.inline`), broadcasts the encoded structure, and
every client decodes it. Each client counts the bits of what it received, so
`measurements['bits']` is the total sent to all participating clients this round.
When the codec entropy-codes (see `fedcompress.codecs.stages.entropy`),
`measurements['coded_bits']` is the size actually sent and `bits` the raw size the same
codec would have with plain bit-packing; without an entropy coder only `bits` is
measured (it is then the size sent).

The codec's randomness is seeded: the state is `{'encoders': ..., 'round': int64}` and
tensor number `i` is encoded in the scope of `seeding.encode_key(round_key(seed,
round), i, value)` (`fedcompress.codecs.seeding`), so a rerun sends the same bits.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_federated as tff
import tree
from tensorflow_federated.python.core.impl.types import type_conversions

from fedcompress.codecs import CodecSpec, seeding
from fedcompress.codecs import accounting as bits_lib


def slice_structure(encoders, nested, idx):
  """From a structure of tuples (shaped like `encoders`), the structure of item `idx`."""
  return tree.map_structure_up_to(encoders, lambda t: t[idx], nested)


def encoders_init_fn(encoders) -> tff.Computation:
  """`initialize` of a process whose server state is each encoder's state and the round.

  The round is the key the codec's randomness derives from (`seeding.round_key`).
  """
  @tff.tensorflow.computation
  def initial_state_fn():
    return collections.OrderedDict(
        encoders=tf.nest.map_structure(lambda e: e.initial_state(), encoders),
        round=tf.constant(0, tf.int64))

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(initial_state_fn, tff.SERVER)

  return init_fn


def build_encoded_broadcast_process(
    value_type: tff.types.Type, codec: CodecSpec | str | None = None, *, seed: int = 0
) -> tff.learning.templates.DistributionProcess:
  """Builds the encoded broadcast of values of `value_type` (unplaced) with `codec`.

  `seed` is the run's seed, from which (with the round) the codec's randomness derives.
  """
  codec = CodecSpec.parse(codec)
  value_specs = type_conversions.type_to_tf_tensor_specs(value_type)
  encoders = tf.nest.map_structure(codec.inline_encoder, value_specs)
  indices = tf.nest.pack_sequence_as(encoders, list(range(len(tf.nest.flatten(encoders)))))
  rules = codec.raw_bits_rules

  init_fn = encoders_init_fn(encoders)

  state_type = init_fn.type_signature.result.member

  @tff.tensorflow.computation(value_type, state_type)
  def encode_fn(value, state):
    key = seeding.round_key(seed, state["round"])

    def encode(encoder, index, tensor, encoder_state):
      # The encoder calls get_params inside encode: one scope covers both.
      with seeding.seed_scope(seeding.encode_key(key, index, tensor)):
        return encoder.encode(tensor, encoder_state)

    pairs = tree.map_structure_up_to(encoders, encode, encoders, indices, value,
                                     state["encoders"])
    new_state = collections.OrderedDict(encoders=slice_structure(encoders, pairs, 1),
                                        round=state["round"] + 1)
    return slice_structure(encoders, pairs, 0), new_state

  encoded_type = encode_fn.type_signature.result[0]

  @tff.tensorflow.computation(encoded_type)
  def decode_fn(encoded):
    return tree.map_structure_up_to(encoders, lambda e, x: e.decode(x), encoders, encoded)

  @tff.tensorflow.computation(encoded_type)
  def bits_fn(encoded):
    return bits_lib.bit_counts_tf(encoded, rules)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(value_type, tff.SERVER))
  def next_fn(state, value):
    encoded, new_state = tff.federated_map(encode_fn, (value, state))
    encoded_at_clients = tff.federated_broadcast(encoded)
    decoded = tff.federated_map(decode_fn, encoded_at_clients)
    measurements = tff.federated_sum(tff.federated_map(bits_fn, encoded_at_clients))
    return tff.templates.MeasuredProcessOutput(new_state, decoded, measurements)

  return tff.learning.templates.DistributionProcess(init_fn, next_fn)
