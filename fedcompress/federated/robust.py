"""Weighted mean that leaves non-finite client updates out of the round and counts them.

`RejectNonFiniteFactory(inner)` wraps any weighted aggregation factory (the encoded
mean of `fedcompress.federated.aggregation`). Before anything is encoded, each client checks its
update: if any value is NaN or +-Inf, or its weight is not a finite positive number, it
sends zeros with weight 0, so the weighted mean ignores it (the secure mean counts only
clients of positive weight; the DP means divide by a fixed count and so count its zeros),
and a `rejected` flag. The
server sums the flags into the measurement `rejected_clients` (int32). When every client
of a round is rejected, the mean would be 0/0: the server returns a zero update instead,
and `inner`'s state stays as it was before the round (FetchSGD's sketches would
otherwise lose the coordinates they hand over to an update that is never applied). A
zero update still goes through the server optimizer: plain SGD leaves the model where
it was, but momentum and Adam move it by what they carry from earlier rounds.

TFF's own FedAvg client work already zeroes a non-finite local update and gives it
weight 0 before the aggregator sees it (its `zero_all_if_any_non_finite`), but counts
nothing (TFF's b/327051011). A zero weight is therefore what marks such a client here;
a client with no examples under `NUM_EXAMPLES` weighting also has weight 0, adds
nothing to the mean, and is counted as left out in the same way.

The flags are instrumentation, like `relative_error`: they are not part of what the
protocol sends and are not counted in any `bits`. The cleaned value and weight go
through `inner` unchanged in type, so bit counts and process state are those of
`inner`.
"""

from __future__ import annotations

import collections

import tensorflow as tf
import tensorflow_federated as tff

REJECTED_CLIENTS = "rejected_clients"


def _is_acceptable(value, weight) -> tf.Tensor:
  """Scalar bool: every floating value finite and the weight finite and > 0."""
  checks = [tf.reduce_all(tf.math.is_finite(t)) for t in tf.nest.flatten(value)
            if t.dtype.is_floating]
  weight = tf.convert_to_tensor(weight)
  if weight.dtype.is_floating:
    checks.append(tf.math.is_finite(weight))
  # `weight > 0` is False for NaN too; with the finiteness test it also rejects +Inf.
  checks.append(weight > tf.zeros_like(weight))
  return tf.reduce_all(tf.stack(checks))


class RejectNonFiniteFactory(tff.aggregators.WeightedAggregationFactory):
  """Leaves clients with a non-finite update (or weight) out of `inner`'s mean.

  Measurements are `inner`'s, plus `rejected_clients`: how many of this round's
  clients were left out (see the module docstring).
  """

  def __init__(self, inner: tff.aggregators.WeightedAggregationFactory):
    if not isinstance(inner, tff.aggregators.WeightedAggregationFactory):
      raise TypeError(f"inner must be a WeightedAggregationFactory, got {type(inner)}")
    self._inner = inner

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    inner = self._inner.create(value_type, weight_type)
    result_type = inner.next.type_signature.result.result.member
    inner_measurements_type = inner.next.type_signature.result.measurements.member

    @tff.tensorflow.computation(value_type, weight_type)
    def screen_fn(value, weight):
      ok = _is_acceptable(value, weight)
      # tf.where, not a multiplication by 0: NaN * 0 is NaN.
      clean_value = tf.nest.map_structure(lambda t: tf.where(ok, t, tf.zeros_like(t)), value)
      clean_weight = tf.where(ok, weight, tf.zeros_like(weight))
      counts = collections.OrderedDict(rejected=tf.cast(tf.logical_not(ok), tf.int32),
                                       accepted=tf.cast(ok, tf.int32))
      return clean_value, clean_weight, counts

    counts_type = screen_fn.type_signature.result[2]
    state_type = inner.initialize.type_signature.result.member

    @tff.tensorflow.computation(state_type, state_type, counts_type)
    def keep_fn(before, after, counts):
      # No accepted client: the round did not happen for the inner aggregator either.
      return tf.nest.map_structure(lambda b, a: tf.where(counts["accepted"] > 0, a, b),
                                   before, after)

    @tff.tensorflow.computation(result_type, counts_type)
    def guard_fn(result, counts):
      # No accepted client: the inner mean divided 0 by 0. Nothing moves instead.
      return tf.nest.map_structure(
          lambda t: tf.where(counts["accepted"] > 0, t, tf.zeros_like(t)), result)

    @tff.tensorflow.computation(inner_measurements_type, counts_type)
    def add_count_fn(measurements, counts):
      out = collections.OrderedDict(measurements)
      out[REJECTED_CLIENTS] = counts["rejected"]
      return out

    @tff.federated_computation(inner.next.type_signature.parameter)
    def next_fn(state, value, weight):
      screened = tff.federated_map(screen_fn, (value, weight))
      output = inner.next(state, screened[0], screened[1])
      counts = tff.federated_sum(screened[2])
      result = tff.federated_map(guard_fn, (output.result, counts))
      measurements = tff.federated_map(add_count_fn, (output.measurements, counts))
      new_state = tff.federated_map(keep_fn, (state, output.state, counts))
      return tff.templates.MeasuredProcessOutput(new_state, result, measurements)

    return tff.templates.AggregationProcess(inner.initialize, next_fn)
