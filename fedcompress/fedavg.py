"""`build_fedavg`: TFF's weighted FedAvg with encoded broadcast and encoded mean.

The returned `tff.learning.templates.LearningProcess` is TFF's own
`build_weighted_fed_avg` process with our distributor and aggregator plugged in, and
`next` extended so its metrics carry the canonical `broadcast/bits` and
`aggregate/bits` (see ../shared/DESIGN.md, "What counts as a bit").
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.aggregation import build_mean_factory
from fedcompress.broadcast import build_encoded_broadcast_process
from fedcompress.codecs import CodecSpec

BROADCAST_BITS = "broadcast/bits"
AGGREGATE_BITS = "aggregate/bits"

ClientWeighting = tff.learning.ClientWeighting


def _sum_bits_leaves(measurements) -> tf.Tensor:
  """Sum of every `bits` entry in a nested measurement structure (in-graph)."""
  total = tf.constant(0, tf.int64)
  if isinstance(measurements, Mapping):
    for key, value in measurements.items():
      if key == "bits":
        total += tf.cast(value, tf.int64)
      else:
        total += _sum_bits_leaves(value)
  elif isinstance(measurements, (list, tuple)):
    for value in measurements:
      total += _sum_bits_leaves(value)
  return total


def with_bit_metrics(process: tff.learning.templates.LearningProcess
                     ) -> tff.learning.templates.LearningProcess:
  """Adds top-level `broadcast/bits` and `aggregate/bits` to `process.next`'s metrics."""
  metrics_type = process.next.type_signature.result.metrics.member

  @tff.tensorflow.computation(metrics_type)
  def add_bits(metrics):
    out = collections.OrderedDict(metrics)
    out[BROADCAST_BITS] = _sum_bits_leaves(metrics["distributor"])
    out[AGGREGATE_BITS] = _sum_bits_leaves(metrics["aggregator"])
    return out

  @tff.federated_computation(process.next.type_signature.parameter)
  def next_fn(state, client_data):
    output = process.next(state, client_data)
    return tff.learning.templates.LearningProcessOutput(
        state=output.state, metrics=tff.federated_map(add_bits, output.metrics))

  return tff.learning.templates.LearningProcess(
      process.initialize, next_fn, process.get_model_weights, process.set_model_weights,
      get_hparams_fn=process.get_hparams, set_hparams_fn=process.set_hparams)


def build_fedavg(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_optimizer: tff.learning.optimizers.Optimizer | None = None,
    server_optimizer: tff.learning.optimizers.Optimizer | None = None,
    *,
    broadcast_codec: CodecSpec | str | None = None,
    aggregate_codec: CodecSpec | str | None = None,
    client_weighting: ClientWeighting = ClientWeighting.NUM_EXAMPLES,
) -> tff.learning.templates.LearningProcess:
  """Weighted FedAvg with encoded broadcast and encoded mean, bits in its metrics.

  Args:
    model_fn: no-arg function returning a fresh `tff.learning.models.VariableModel`.
    client_optimizer: TFF optimizer for local training; SGD 0.02 (the tutorial's).
    server_optimizer: TFF optimizer applying the mean update; SGD 1.0 (plain FedAvg).
    broadcast_codec: codec for server -> client weights (`None` = identity).
    aggregate_codec: codec for client -> server updates, numerator and denominator of
      the mean (`None` = identity).
    client_weighting: `NUM_EXAMPLES` (FedAvg) or `UNIFORM`.

  Returns:
    A `tff.learning.templates.LearningProcess`; `next(...).metrics` holds
    `broadcast/bits` and `aggregate/bits` for that round, besides TFF's own metrics.
  """
  client_optimizer = client_optimizer or tff.learning.optimizers.build_sgdm(0.02)
  server_optimizer = server_optimizer or tff.learning.optimizers.build_sgdm(1.0)
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  process = tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer,
      server_optimizer,
      client_weighting=client_weighting,
      model_distributor=build_encoded_broadcast_process(weights_type, broadcast_codec),
      model_aggregator=build_mean_factory(aggregate_codec),
  )
  return with_bit_metrics(process)
