"""`build_fedavg`: TFF's weighted FedAvg with encoded broadcast and encoded mean.

The returned `tff.learning.templates.LearningProcess` is TFF's own
`build_weighted_fed_avg` process with our distributor and aggregator plugged in, and
`next` extended so its metrics carry the canonical `broadcast/bits` and
`aggregate/bits` (names in `fedcompress.metrics`; what counts as a bit is in
`fedcompress.codecs.accounting`), and beside them
`broadcast/coded_bits` and `aggregate/coded_bits`: the size actually sent when a
codec entropy-codes (`fedcompress.codecs.stages.entropy`), while `bits` stays the raw size
the same codec has with plain bit-packing. Without an entropy coder the two are
equal. With `measure_error=True` the metrics also carry `aggregate/relative_error`.
Client updates with NaN or Inf are left out of the mean and counted as
`aggregate/rejected_clients` (`fedcompress.federated.robust`; on by default). Under DP
the mean divides by a fixed (or TFF's own) client count: a rejected client's zeros
dilute it there. The secure mean counts only clients of positive weight.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from fedcompress import metrics as m
from fedcompress.codecs import CodecSpec, tracing
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.aggregation import (
  RelativeErrorFactory,
  build_mean_factory,
  check_weighted_codec,
)
from fedcompress.federated.allocated import build_allocated_broadcast_process
from fedcompress.federated.broadcast import build_encoded_broadcast_process
from fedcompress.federated.privacy import DPConfig, build_protected_mean
from fedcompress.federated.robust import REJECTED_CLIENTS, RejectNonFiniteFactory

ClientWeighting = tff.learning.ClientWeighting


def _sum_bits_leaves(measurements, key: str = "bits") -> tf.Tensor:
  """Sum of every `key` entry in a nested measurement structure (in-graph).

  For `key='coded_bits'`, a measurement dict that has `bits` but no `coded_bits` (no
  entropy coder there) contributes its `bits`: what it sends is its raw size.
  """
  total = tf.constant(0, tf.int64)
  if isinstance(measurements, Mapping):
    if key == "coded_bits" and "bits" in measurements and key not in measurements:
      total += tf.cast(measurements["bits"], tf.int64)
    for name, value in measurements.items():
      if name == key:
        total += tf.cast(value, tf.int64)
      elif name != "bits":
        total += _sum_bits_leaves(value, key)
  elif isinstance(measurements, (list, tuple)):
    for value in measurements:
      total += _sum_bits_leaves(value, key)
  return total


def _find_leaf(measurements, key: str):
  """The first `key` entry of a nested measurement structure, or None."""
  if isinstance(measurements, Mapping):
    if key in measurements:
      return measurements[key]
    values = measurements.values()
  elif isinstance(measurements, (list, tuple)):
    values = measurements
  else:
    return None
  for value in values:
    found = _find_leaf(value, key)
    if found is not None:
      return found
  return None


def _measures(type_spec: tff.types.Type, key: str) -> bool:
  """Whether a measurement type holds a `key` field at any depth."""
  if not isinstance(type_spec, tff.types.StructType):
    return False
  return any(name == key or _measures(member, key)
             for name, member in structure.iter_elements(type_spec))


def bit_metrics_computation(metrics_type) -> tff.Computation:
  """`metrics -> metrics` adding the top-level bit metrics (and aggregator instrumentation).

  `metrics_type` is a round's metrics with `distributor` and `aggregator` entries, as
  TFF's composed learning processes report them. Each must measure its `bits`: one that
  does not (TFF's own `MeanFactory`, say) would be reported as sending nothing.
  """
  for key in ("distributor", "aggregator"):
    if not _measures(metrics_type[key], "bits"):
      raise ValueError(
          f"the {key} measures no 'bits', so what it sends cannot be counted (it would "
          f"read 0): give one whose measurements hold each round's 'bits', as "
          "fedcompress's own factories and FetchSGDFactory do")

  @tff.tensorflow.computation(metrics_type)
  def add_bits(metrics):
    out = collections.OrderedDict(metrics)
    out[m.BROADCAST_BITS] = _sum_bits_leaves(metrics["distributor"])
    out[m.AGGREGATE_BITS] = _sum_bits_leaves(metrics["aggregator"])
    out[m.BROADCAST_CODED_BITS] = _sum_bits_leaves(metrics["distributor"], "coded_bits")
    out[m.AGGREGATE_CODED_BITS] = _sum_bits_leaves(metrics["aggregator"], "coded_bits")
    error = _find_leaf(metrics["aggregator"], "relative_error")
    if error is not None:
      out[m.AGGREGATE_RELATIVE_ERROR] = error
    for direction, key in ((m.BROADCAST_WIDTH_PREFIX, "distributor"),
                           (m.AGGREGATE_WIDTH_PREFIX, "aggregator")):
      widths = _find_leaf(metrics[key], "widths")
      for name, width in (widths or {}).items():
        out[direction + name] = width
    rejected = _find_leaf(metrics["aggregator"], REJECTED_CLIENTS)
    if rejected is not None:
      out[m.AGGREGATE_REJECTED_CLIENTS] = rejected
    return out

  return add_bits


def with_bit_metrics(process: tff.learning.templates.LearningProcess
                     ) -> tff.learning.templates.LearningProcess:
  """Adds top-level bit metrics (and aggregator instrumentation) to `next`'s metrics.

  `broadcast/bits`, `aggregate/bits` (raw sizes), `broadcast/coded_bits`,
  `aggregate/coded_bits` (sizes sent), and `aggregate/relative_error` and
  `aggregate/rejected_clients` when the aggregator measures them.
  """
  add_bits = bit_metrics_computation(process.next.type_signature.result.metrics.member)

  @tff.federated_computation(process.next.type_signature.parameter)
  def next_fn(state, client_data):
    output = process.next(state, client_data)
    return tff.learning.templates.LearningProcessOutput(
        state=output.state, metrics=tff.federated_map(add_bits, output.metrics))

  return tff.learning.templates.LearningProcess(
      process.initialize, next_fn, process.get_model_weights, process.set_model_weights,
      get_hparams_fn=process.get_hparams, set_hparams_fn=process.set_hparams)


def _trainable_zeros_creator(next_creator, **kwargs):
  """Variable creator under which trainable variables start as zeros, not random."""
  shape, dtype = kwargs.get("shape"), kwargs.get("dtype")
  if kwargs.get("trainable") is not False and shape is not None and dtype is not None:
    shape = tf.TensorShape(shape)
    if shape.is_fully_defined():
      dtype = tf.as_dtype(dtype).base_dtype
      kwargs["initial_value"] = lambda: tf.zeros(shape, dtype)
  return next_creator(**kwargs)


def zero_initialized(model_fn: Callable[[], tff.learning.models.VariableModel]
                      ) -> Callable[[], tff.learning.models.VariableModel]:
  """`model_fn` whose trainable weights are created as zeros.

  Every client overwrites its model's weights with the broadcast ones before training,
  so their initial values are never used; but TFF runs the initializers on every
  client, every round. For the tutorial CNN, drawing 1.6M Glorot-uniform values costs
  about 6% of a round's CPU time (tools/benchmark.py).
  """

  def fn():
    with tf.variable_creator_scope(_trainable_zeros_creator):
      return model_fn()

  return fn


def _with_initial_weights(process: tff.learning.templates.LearningProcess,
                          model_fn: Callable[[], tff.learning.models.VariableModel]
                          ) -> tff.learning.templates.LearningProcess:
  """`process` whose `initialize` puts `model_fn`'s own initial weights in the state."""

  @tff.tensorflow.computation
  def initial_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  @tff.federated_computation
  def initialize_fn():
    weights = tff.federated_eval(initial_weights_fn, tff.SERVER)
    return tff.federated_map(process.set_model_weights,
                             tff.federated_zip((process.initialize(), weights)))

  return tff.learning.templates.LearningProcess(
      initialize_fn, process.next, process.get_model_weights, process.set_model_weights,
      get_hparams_fn=process.get_hparams, set_hparams_fn=process.set_hparams)


def _weight_names(model_fn: Callable[[], tff.learning.models.VariableModel]) -> list[str]:
  """Names of the model's weights in `ModelWeights` order (trainable first)."""
  with tf.Graph().as_default():
    model = model_fn()
    variables = list(model.trainable_variables) + list(model.non_trainable_variables)
    return [v.name.split(":")[0] for v in variables]


# TFF traces the process's computations right here; its plain Python helpers need no
# autograph rewrite (see `tracing.TFF_HELPER_PACKAGES`).
def default_optimizers(client_optimizer: Any, server_optimizer: Any
                       ) -> tuple[tff.learning.optimizers.Optimizer,
                                  tff.learning.optimizers.Optimizer]:
  """The client and server optimizers, FedAvg's where None (SGD 0.02 and 1.0), checked.

  Raises:
    TypeError: one that is not a TFF optimizer. The TFF tutorial passed Keras ones; here
      they failed inside TFF ("'SGD' object has no attribute 'initialize'").
  """
  client_optimizer = client_optimizer or tff.learning.optimizers.build_sgdm(0.02)
  server_optimizer = server_optimizer or tff.learning.optimizers.build_sgdm(1.0)
  for side, optimizer in (("client", client_optimizer), ("server", server_optimizer)):
    if not isinstance(optimizer, tff.learning.optimizers.Optimizer):
      raise TypeError(f"{side}_optimizer must be a TFF optimizer, as "
                      "tff.learning.optimizers.build_sgdm(learning_rate=0.02), got "
                      f"{type(optimizer).__module__}.{type(optimizer).__name__}")
  return client_optimizer, server_optimizer


# The relative error compares the protected mean with the exact one, a plain
# federated_mean: every client's update would go up in the clear beside the secure sum,
# and the error, released without noise, tells the norm of the exact mean outside epsilon.
MEASURED_PROTECTED_MEAN = (
    "measure_error sends every client's update in the clear (the exact mean it compares "
    "with) and releases its distance to the protected mean without noise: it takes neither "
    "--secure_aggregation nor --dp")


@tracing.unconverted(tracing.TFF_HELPER_PACKAGES)
def build_fedavg(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_optimizer: tff.learning.optimizers.Optimizer | None = None,
    server_optimizer: tff.learning.optimizers.Optimizer | None = None,
    *,
    broadcast_codec: CodecSpec | AllocatedCodec | str | None = None,
    aggregate_codec: CodecSpec | AllocatedCodec | str | None = None,
    client_weighting: ClientWeighting = ClientWeighting.NUM_EXAMPLES,
    measure_error: bool = False,
    reject_non_finite: bool = True,
    aggregator: tff.aggregators.WeightedAggregationFactory | None = None,
    loop_implementation: tff.learning.LoopImplementation = (
        tff.learning.LoopImplementation.DATASET_ITERATOR),
    seed: int = 0,
    secure_aggregation: bool = False,
    clients_per_round: int | None = None,
    dp: DPConfig | None = None,
) -> tff.learning.templates.LearningProcess:
  """Weighted FedAvg with encoded broadcast and encoded mean, bits in its metrics.

  Args:
    model_fn: no-arg function returning a fresh `tff.learning.models.VariableModel`.
    client_optimizer: TFF optimizer for local training; SGD 0.02 (the tutorial's).
    server_optimizer: TFF optimizer applying the mean update; SGD 1.0 (plain FedAvg).
    broadcast_codec: codec for server -> client weights (`None` = identity); an
      `AllocatedCodec` chooses each tensor's width every round at a budget, and the
      metrics then carry `broadcast/width/<weight name>`.
    aggregate_codec: codec for client -> server updates, the numerator of the mean
      (`None` = identity; the denominator, the clients' weights, is an encoded sum of
      identity: one float32 per client); likewise `aggregate/width/<weight name>`.
    client_weighting: `NUM_EXAMPLES` (FedAvg) or `UNIFORM`.
    measure_error: also report `aggregate/relative_error`, the relative error of the
      decoded mean update against the exact mean of the same round (computed with an
      extra, uncounted `federated_mean`; instrumentation for rate-distortion plots).
      Refused with `secure_aggregation` and `dp` (`MEASURED_PROTECTED_MEAN`).
    reject_non_finite: leave client updates with NaN/Inf (or a non-positive weight)
      out of the mean (under DP: replace them by zeros, still counted) and report
      `aggregate/rejected_clients`.
    aggregator: a weighted aggregation factory that replaces the encoded mean (e.g.
      `fedcompress.federated.fetchsgd.FetchSGDFactory`); its measurements' `bits`
      become `aggregate/bits`, and one that measures no `bits` (TFF's `MeanFactory`)
      is refused. `aggregate_codec` must then be identity (None).
    loop_implementation: how clients iterate over their data. `DATASET_ITERATOR`
      (default) gives the same results as TFF's default `DATASET_REDUCE`, about 20%
      faster on CPU workers (tools/benchmark.py measures it); TPUs need
      `DATASET_REDUCE`.
    seed: the run's seed: the codecs' randomness derives from it, the round and each
      client's update (`fedcompress.codecs.seeding`), so reruns send the same bits.
    secure_aggregation: sum the updates with TFF's secure sum; `aggregate_codec` must
      be sum-compatible (`fedcompress.federated.secure`), the mean is unweighted.
    clients_per_round: clients per round, which sizes the secure sum's field.
    dp: differential privacy of the mean (`fedcompress.federated.privacy`).

  Returns:
    A `tff.learning.templates.LearningProcess`; `next(...).metrics` holds
    `broadcast/bits`, `aggregate/bits`, `broadcast/coded_bits` and
    `aggregate/coded_bits` for that round (plus `aggregate/relative_error` if
    asked) and `aggregate/rejected_clients` (with `reject_non_finite`), besides
    TFF's own metrics.
  """
  # ExperimentConfig's and the flags' spellings (dp="central", aggregator="fetchsgd")
  # ended in an AttributeError, or in a TypeError naming an inner factory's parameter.
  if dp is not None and not isinstance(dp, DPConfig):
    raise ValueError("dp must be a fedcompress.federated.privacy.DPConfig (e.g. "
                     f"DPConfig('central', ...)) or None, got {dp!r}")
  if aggregator is not None and not isinstance(
      aggregator, tff.aggregators.WeightedAggregationFactory):
    raise ValueError("aggregator must be a tff.aggregators.WeightedAggregationFactory (an "
                     "AggregatorSpec's .factory()), got "
                     f"{type(aggregator).__name__}")
  client_optimizer, server_optimizer = default_optimizers(client_optimizer, server_optimizer)
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  allocated = (isinstance(broadcast_codec, AllocatedCodec)
               or isinstance(aggregate_codec, AllocatedCodec))
  names = _weight_names(model_fn) if allocated else None
  if secure_aggregation or dp is not None:
    if aggregator is not None or isinstance(aggregate_codec, AllocatedCodec):
      raise ValueError("secure aggregation and DP take the encoded mean's codec: no "
                       "aggregator and no allocated codec")
    if measure_error:
      raise ValueError(MEASURED_PROTECTED_MEAN)
    aggregator = build_protected_mean(aggregate_codec, secure_aggregation=secure_aggregation,
                                      clients_per_round=clients_per_round, dp=dp,
                                      client_weighting=client_weighting, seed=seed)
  elif aggregator is None:
    check_weighted_codec(aggregate_codec, client_weighting)
    aggregator = build_mean_factory(aggregate_codec, measure_error=measure_error, seed=seed,
                                    names=names and names[:len(weights_type.trainable)])
  elif not isinstance(aggregate_codec, AllocatedCodec) and not CodecSpec.parse(
      aggregate_codec).is_identity:
    raise ValueError("an aggregator replaces the encoded mean: leave the aggregate codec "
                     f"as identity, got {CodecSpec.parse(aggregate_codec).describe()}")
  elif isinstance(aggregate_codec, AllocatedCodec):
    raise ValueError("an aggregator replaces the encoded mean: it takes no allocated codec")
  elif measure_error:
    aggregator = RelativeErrorFactory(aggregator)
  if reject_non_finite:
    # Outermost, so the exact mean of `measure_error` never sees a NaN either.
    aggregator = RejectNonFiniteFactory(aggregator)
  # The process trains models whose weights start as zeros (they are overwritten by
  # the broadcast anyway); only `initialize` builds `model_fn`'s real initial weights.
  process = tff.learning.algorithms.build_weighted_fed_avg(
      zero_initialized(model_fn),
      client_optimizer,
      server_optimizer,
      client_weighting=client_weighting,
      model_distributor=(
          build_allocated_broadcast_process(weights_type, broadcast_codec, names, seed=seed)
          if isinstance(broadcast_codec, AllocatedCodec)
          else build_encoded_broadcast_process(weights_type, broadcast_codec, seed=seed)),
      model_aggregator=aggregator,
      loop_implementation=loop_implementation,
  )
  return with_bit_metrics(_with_initial_weights(process, model_fn))
