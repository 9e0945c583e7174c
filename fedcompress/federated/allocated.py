"""Broadcast and sum whose codec width is allocated per tensor each round at a budget.

TFF types are static, but a codec's encoded shapes depend on its width. So every
encoded tensor has one encoder per candidate width, and the encoded structure holds,
for every candidate, its tensors flattened to rank 1: the chosen candidate's hold its
encoding (selected with `tf.switch_case`, which runs only that branch), every other
candidate's are empty (`[0]`). The wire value therefore is exactly the chosen
encoding, plus one uint8 per encoded tensor naming the choice, and
`accounting.structure_bits_tf` counts it like any other structure (empty tensors cost
0 bits). The decoder switches on that byte.

The choice is `fedcompress.codecs.allocation`'s policy evaluated in-graph, by whoever
encodes, on the squared norms of the very tensors it encodes:

* broadcast: the server allocates on the weights it sends this round;
* sum (under `MeanFactory`, see `aggregation.build_mean_factory`): each client allocates
  on its own (weighted) update, at the client, before encoding. The error of the mean
  is the sum of the clients' independent errors, each `c_i(b) ||x_ki||^2` for client
  `k`'s tensor `i`, and every client has its own budget, so minimizing each client's
  own expected error minimizes the mean's: per-client allocation is the optimum of the
  whole, for this round's data, from round 1 on (for unbiased widths: a width that is
  not whole is biased, and clients whose updates agree share its bias; see
  `allocation`). A shared allocation on last round's
  decoded mean is not: what cancels out of the mean still costs each client bits. The
  choice byte each client already sends tells the server how to decode it; nothing
  else is sent.

Both report the width chosen for each encoded tensor as `measurements['widths']`
(name -> float32; for the sum, the mean over the round's clients, computed at the
server from the choice bytes), beside `bits`.

Randomness is seeded as in the other codecs (`fedcompress.codecs.seeding`): the state
holds a round counter, and tensor number `i` is encoded, whichever width it gets,
inside the scope of `seeding.encode_key(round_key(seed, round), i, tensor)`, so a
rerun with the same seed sends the same bits.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.types import type_conversions

from fedcompress.codecs import accounting, seeding, tracing
from fedcompress.codecs.allocation import (
    CHOICE_DTYPE,
    AllocatedCodec,
    AllocationPlan,
    TensorPlan,
    allocate_tf,
)


class _SwitchedTensor:
  """One encoded tensor: its candidate SimpleEncoders and their encoded layouts."""

  def __init__(self, spec: tf.TensorSpec, tensor: TensorPlan, codec: str):
    self.spec = spec
    self.encoders = [tracing.simple_encoder(c.checked_encoder(spec), spec)
                     for c in tensor.specs]
    # Per candidate: [(key, shape, dtype)] of its flat encoded dict, read off the encode
    # function SimpleEncoder traced when it was made (a private attribute of the pinned
    # tensor_encoding). A trial `encode` in a graph of its own traced the whole encoder
    # again: 20% of the build of the digits CNN's allocated EDEN sum (19.6 -> 15.5 s).
    self.layouts = [
        [(key, t.shape, t.dtype) for key, t in
         encoder._encode_fn.get_concrete_function().structured_outputs[0].items()]
        for encoder in self.encoders]
    self._check_costs(codec, tensor)

  def _check_costs(self, codec: str, tensor: TensorPlan) -> None:
    """Raises ValueError unless each candidate's encoding is the size its bit formula
    priced it at (`tensor`: the plan's `TensorPlan`), which the budget is planned with.

    A user's codec whose formula said 4 bits a coordinate while its stage sent int8 went
    2x over its budget, without a word. Sizes the trace leaves unknown (a packed stream
    of 3-bit fields) are checked in-graph instead, at each encode.
    """
    self.costs = tensor.costs
    self.mispriced = [
        f"codec {codec!r} at width {width:g}: its bits_formula prices {tensor.name} "
        f"({tensor.num_elements} elements) at {cost} bits, but its encoder sends {{}}; the "
        "budget is planned with the formula" for width, cost in zip(tensor.widths, tensor.costs,
                                                                   strict=True)]
    for c, layout in enumerate(self.layouts):
      if _static(layout):
        sent = sum(accounting.tensor_bits(tf.TensorShape(shape).as_list(), dtype)
                   for _, shape, dtype in layout)
        if sent != self.costs[c]:
          raise ValueError(self.mispriced[c].format(sent))

  def encode(self, x: tf.Tensor, choice: tf.Tensor) -> list[tf.Tensor]:
    def branch(chosen):
      def fn():
        encoded, _ = self.encoders[chosen].encode(x, self.encoders[chosen].initial_state())
        if not _static(self.layouts[chosen]):
          check = tf.debugging.assert_equal(
              accounting.structure_bits_tf(encoded), tf.constant(self.costs[chosen], tf.int64),
              message=self.mispriced[chosen].format("another size"))
          with tf.control_dependencies([check]):
            encoded = tf.nest.map_structure(tf.identity, encoded)
        out = []
        for c, layout in enumerate(self.layouts):
          for key, _, dtype in layout:
            out.append(tf.reshape(encoded[key], [-1]) if c == chosen else tf.zeros([0], dtype))
        return out
      return fn

    return tf.switch_case(tf.cast(choice, tf.int32), [branch(c) for c in range(len(self.encoders))])

  def decode(self, flat: Sequence[tf.Tensor], choice: tf.Tensor) -> tf.Tensor:
    parts, start = [], 0
    for layout in self.layouts:
      parts.append(flat[start:start + len(layout)])
      start += len(layout)

    def branch(chosen):
      def fn():
        encoded = collections.OrderedDict(
            (key, tf.reshape(t, _reshape_target(shape)))
            for (key, shape, _), t in zip(self.layouts[chosen], parts[chosen], strict=True))
        return tf.reshape(self.encoders[chosen].decode(encoded), self.spec.shape)
      return fn

    return tf.switch_case(tf.cast(choice, tf.int32), [branch(c) for c in range(len(self.encoders))])


def _static(layout) -> bool:
  return all(tf.TensorShape(shape).is_fully_defined() for _, shape, _ in layout)


def _reshape_target(shape) -> list[int]:
  """A layout's shape as `tf.reshape` takes it: an encoder output whose length depends on
  the data (a packed stream, shape `(None,)`) keeps its one unknown dimension as -1."""
  return [-1 if d is None else d for d in tf.TensorShape(shape).as_list()]


class _Allocated:
  """The plan and switched encoders of a flat list of tensors, and their in-graph use."""

  def __init__(self, codec: AllocatedCodec, value_specs: Sequence[tf.TensorSpec],
               names: Sequence[str] | None, direction: str, reserved_bits: int = 0):
    self.plan: AllocationPlan = codec.plan(value_specs, names, direction=direction,
                                           reserved_bits=reserved_bits)
    self.specs = list(value_specs)
    self.switched = [_SwitchedTensor(s, t, codec.name) if t.encoded else None
                     for s, t in zip(value_specs, self.plan.tensors, strict=True)]
    self.encoded_index = [i for i, t in enumerate(self.plan.tensors) if t.encoded]
    self.costs, self.unit_mse = self.plan.tables()
    self.widths = np.array([t.widths for t in self.plan.encoded], np.float32)
    # Names become keys of the measurement structure.
    self.names = [t.name for t in self.plan.encoded]

  def squared_norms(self, flat_values) -> tf.Tensor:
    return tf.stack([tf.reduce_sum(tf.square(tf.cast(flat_values[i], tf.float64)))
                     for i in self.encoded_index])

  def choose(self, squared_norms: tf.Tensor) -> tf.Tensor:
    distortions = tf.constant(self.unit_mse) * tf.cast(squared_norms, tf.float64)[:, None]
    return allocate_tf(self.costs, distortions, self.plan.allocatable)

  def width_measurements(self, widths: tf.Tensor) -> collections.OrderedDict:
    """float32 [T] widths -> name -> width."""
    return collections.OrderedDict((name, widths[j]) for j, name in enumerate(self.names))

  def chosen_widths(self, choice: tf.Tensor) -> tf.Tensor:
    """float32 [T]: the width of each encoded tensor's chosen candidate."""
    return tf.gather(tf.constant(self.widths), tf.cast(choice, tf.int32), batch_dims=1)

  def encode(self, flat_values, choice: tf.Tensor, key: tf.Tensor) -> collections.OrderedDict:
    """The encoded structure; tensor `i` draws under `seeding.encode_key(key, i, x_i)`."""
    tensors, j = [], 0
    for i, x in enumerate(flat_values):
      if self.switched[i] is None:
        tensors.append([x])
      else:
        # The scope is open while switch_case traces every branch: each candidate's
        # draws are functions of the key, whichever runs.
        with seeding.seed_scope(seeding.encode_key(key, i, x)):
          tensors.append(self.switched[i].encode(x, choice[j]))
        j += 1
    return collections.OrderedDict(choice=tf.cast(choice, CHOICE_DTYPE), tensors=tensors)

  def decode(self, encoded) -> list[tf.Tensor]:
    choice = tf.cast(encoded["choice"], tf.int32)
    out, j = [], 0
    for i, flat in enumerate(encoded["tensors"]):
      if self.switched[i] is None:
        out.append(flat[0])
      else:
        out.append(self.switched[i].decode(flat, choice[j]))
        j += 1
    return out


def _merge_measurements(bits, widths):
  out = collections.OrderedDict(bits)
  out["widths"] = widths
  return out


def build_allocated_broadcast_process(
    value_type: tff.types.Type, codec: AllocatedCodec, names: Sequence[str] | None = None,
    *, seed: int = 0
) -> tff.learning.templates.DistributionProcess:
  """Encoded broadcast of `value_type` values, widths allocated per tensor each round.

  Args:
    value_type: the unplaced type of the broadcast value (e.g. the model weights).
    codec: the codec, candidate widths and budget (bits per coordinate per client).
    names: names of the flattened value's tensors, for the width measurements.
    seed: the run's seed, from which (with the round) the codecs' randomness derives.

  Returns:
    A `DistributionProcess` whose state is `{'choice': int32 [T], the last choice (for
    inspection), 'round': int64}`.
  """
  value_specs = type_conversions.type_to_tf_tensor_specs(value_type)
  alloc = _Allocated(codec, tf.nest.flatten(value_specs), names, "broadcast")

  @tff.tensorflow.computation
  def initial_state_fn():
    return collections.OrderedDict(choice=tf.zeros([len(alloc.names)], tf.int32),
                                   round=tf.constant(0, tf.int64))

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(initial_state_fn, tff.SERVER)

  state_type = init_fn.type_signature.result.member

  @tff.tensorflow.computation(value_type, state_type)
  def encode_fn(value, state):
    flat = tf.nest.flatten(value)
    choice = alloc.choose(alloc.squared_norms(flat))
    encoded = alloc.encode(flat, choice, seeding.round_key(seed, state["round"]))
    new_state = collections.OrderedDict(choice=choice, round=state["round"] + 1)
    return encoded, new_state, alloc.width_measurements(alloc.chosen_widths(choice))

  encoded_type = encode_fn.type_signature.result[0]

  @tff.tensorflow.computation(encoded_type)
  def decode_fn(encoded):
    return tf.nest.pack_sequence_as(value_specs, alloc.decode(encoded))

  @tff.tensorflow.computation(encoded_type)
  def bits_fn(encoded):
    return accounting.bit_counts_tf(encoded, codec.raw_bits_rules)

  bits_type = bits_fn.type_signature.result
  widths_type = encode_fn.type_signature.result[2]

  @tff.tensorflow.computation(bits_type, widths_type)
  def merge_fn(bits, widths):
    return _merge_measurements(bits, widths)

  @tff.federated_computation(init_fn.type_signature.result,
                             tff.FederatedType(value_type, tff.SERVER))
  def next_fn(state, value):
    encoded, new_state, widths = tff.federated_map(encode_fn, (value, state))
    encoded_at_clients = tff.federated_broadcast(encoded)
    decoded = tff.federated_map(decode_fn, encoded_at_clients)
    bits = tff.federated_sum(tff.federated_map(bits_fn, encoded_at_clients))
    measurements = tff.federated_map(merge_fn, (bits, widths))
    return tff.templates.MeasuredProcessOutput(new_state, decoded, measurements)

  return tff.learning.templates.DistributionProcess(init_fn, next_fn)


class AllocatedSumFactory(tff.aggregators.UnweightedAggregationFactory):
  """Sum of client values, each client allocating its widths on its own value.

  Each client's contribution is budgeted at `codec.bits_per_coordinate` per coordinate
  of the value, minus `reserved_bits` sent beside it (the mean's weight). The state is
  the round counter of the seeded randomness (int64).
  """

  def __init__(self, codec: AllocatedCodec, names: Sequence[str] | None = None, *,
               reserved_bits: int = 0, seed: int = 0):
    self._codec = codec
    self._names = names
    self._reserved_bits = reserved_bits
    self._seed = int(seed)

  def create(self, value_type) -> tff.templates.AggregationProcess:
    value_specs = type_conversions.type_to_tf_tensor_specs(value_type)
    flat_specs = tf.nest.flatten(value_specs)
    alloc = _Allocated(self._codec, flat_specs, self._names, "aggregate",
                       self._reserved_bits)
    seed = self._seed

    @tff.tensorflow.computation
    def initial_state_fn():
      return tf.constant(0, tf.int64)

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(initial_state_fn, tff.SERVER)

    state_type = init_fn.type_signature.result.member

    @tff.tensorflow.computation(state_type)
    def key_fn(round_num):
      return seeding.round_key(seed, round_num), round_num + 1

    key_type = key_fn.type_signature.result[0]

    @tff.tensorflow.computation(value_type, key_type)
    def encode_fn(value, key):
      flat = tf.nest.flatten(value)
      return alloc.encode(flat, alloc.choose(alloc.squared_norms(flat)), key)

    encoded_type = encode_fn.type_signature.result

    @tff.tensorflow.computation(encoded_type)
    def bits_fn(encoded):
      return accounting.bit_counts_tf(encoded, self._codec.raw_bits_rules)

    @tff.tensorflow.computation
    def zero_fn():
      # The sum, and (for the width measurements) the sum of the chosen widths and the
      # number of clients: the server reads them off the choice bytes it decodes with.
      return collections.OrderedDict(values=[tf.zeros(s.shape, s.dtype) for s in flat_specs],
                                     widths=tf.zeros([len(alloc.names)], tf.float32),
                                     clients=tf.constant(0, tf.int32))

    accumulator_type = zero_fn.type_signature.result

    @tff.tensorflow.computation(accumulator_type, encoded_type)
    def accumulate_fn(acc, encoded):
      return collections.OrderedDict(
          values=[a + d for a, d in zip(acc["values"], alloc.decode(encoded), strict=True)],
          widths=acc["widths"] + alloc.chosen_widths(encoded["choice"]),
          clients=acc["clients"] + 1)

    @tff.tensorflow.computation(accumulator_type, accumulator_type)
    def merge_fn(a, b):
      return collections.OrderedDict(
          values=[x + y for x, y in zip(a["values"], b["values"], strict=True)],
          widths=a["widths"] + b["widths"], clients=a["clients"] + b["clients"])

    @tff.tensorflow.computation(accumulator_type)
    def report_fn(acc):
      widths = tf.math.divide_no_nan(acc["widths"], tf.cast(acc["clients"], tf.float32))
      return collections.OrderedDict(
          values=tf.nest.pack_sequence_as(value_specs, list(acc["values"])),
          widths=alloc.width_measurements(widths))

    report_type = report_fn.type_signature.result
    bits_type = bits_fn.type_signature.result

    @tff.tensorflow.computation(bits_type, report_type)
    def measure_fn(bits, report):
      return _merge_measurements(bits, report["widths"])

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS))
    def next_fn(state, value):
      key, new_state = tff.federated_map(key_fn, state)
      encoded = tff.federated_map(encode_fn, (value, tff.federated_broadcast(key)))
      report = tff.federated_aggregate(encoded, zero_fn(), accumulate_fn, merge_fn, report_fn)
      bits = tff.federated_sum(tff.federated_map(bits_fn, encoded))
      measurements = tff.federated_map(measure_fn, (bits, report))
      return tff.templates.MeasuredProcessOutput(new_state, report.values, measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)
