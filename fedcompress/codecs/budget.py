"""The per-coordinate budget of the `adaptive` codec that makes a round cost a given total."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import tensorflow as tf

from fedcompress.codecs.accounting import tensor_bits
from fedcompress.codecs.spec import DEFAULT_THRESHOLD, CodecSpec
from fedcompress.codecs.stages import _common


def budget_bits_per_coordinate(aggregate_bits_budget: float, clients_per_round: int,
                               value_specs: Iterable[tf.TensorSpec],
                               threshold: int = DEFAULT_THRESHOLD) -> float:
  """The `budget_bits_per_coordinate` that makes a round cost `aggregate_bits_budget`.

  Inverts `build_fedavg`'s uplink accounting with `build_mean_factory`: per client,
  tensors at or under `threshold` (and non-float ones) go through identity at full
  width, the mean's float32 weight costs 32 bits, and the rest is encoded by this
  codec at the per-coordinate budget. So

      budget = (aggregate_bits_budget / clients_per_round - fixed) / encoded_coordinates

  Args:
    aggregate_bits_budget: bits per round, total over the round's clients, that
      `aggregate/coded_bits` aims at (no flag takes it: pass the result to the codec,
      e.g. `--aggregate_encoder_args=budget_bits_per_coordinate=...` for `adaptive`,
      which stays within it with `coder=fixed` where every encoded tensor fits at width
      1, header included (a run says which do not); with Huffman it predicts from last
      round's saving, and a round may go over, see `stages/adaptive.py`).
    clients_per_round: clients sampled per round.
    value_specs: specs of the aggregated tensors (the model's trainable weights).
    threshold: the codec's `CodecSpec.threshold`.

  Raises:
    ValueError: nothing to encode, the budget does not cover the unencoded part, or
      it leaves at most 1 bit per encoded coordinate, which `adaptive` cannot send.
  """
  # NaN and inf totals gave NaN and inf budgets, 2.5 clients a budget of 2.5's.
  if not _common.is_real(aggregate_bits_budget) or not 0 < aggregate_bits_budget < math.inf:
    raise ValueError("aggregate_bits_budget must be a finite number of bits > 0, got "
                     f"{aggregate_bits_budget!r}")
  if not _common.is_integer(clients_per_round) or clients_per_round < 1:
    raise ValueError(f"clients_per_round must be an integer >= 1, got {clients_per_round!r}")
  # One spec or variable alone gave 'no tensor has more than 10000 elements'.
  if hasattr(value_specs, "shape"):
    value_specs = [value_specs]
  elif isinstance(value_specs, Mapping):  # Its keys were named as the specs given.
    raise ValueError("value_specs must be tf.TensorSpecs or tensors (model."
                     "trainable_variables), got a mapping: give its values, "
                     "list(value_specs.values())")
  elif not isinstance(value_specs, Iterable):  # A Keras model: 'not iterable'.
    raise ValueError("value_specs must be tf.TensorSpecs or tensors (model."
                     f"trainable_variables), got a {type(value_specs).__name__}")
  value_specs = list(value_specs)
  if not all(hasattr(spec, "shape") and hasattr(spec, "dtype")
             and tf.TensorShape(spec.shape).is_fully_defined() for spec in value_specs):
    raise ValueError("value_specs must be tf.TensorSpecs or tensors of known shapes (the "
                     "model's trainable weights), got "
                     f"{[getattr(s, 'shape', type(s).__name__) for s in value_specs][:3]}")
  # Variables too (model.trainable_variables), as before the check.
  value_specs = [tf.TensorSpec(spec.shape, spec.dtype) for spec in value_specs]
  policy = CodecSpec("identity", threshold=threshold)
  encoded, fixed = 0, 32  # The mean's float32 weight.
  for spec in value_specs:
    if policy.applies_to(spec):
      encoded += math.prod(spec.shape.as_list())
    else:
      fixed += tensor_bits(spec.shape.as_list(), spec.dtype)
  if encoded == 0:
    # Only float tensors are encoded: an int32 one of 50,000 elements was said to have
    # at most 10,000 (review R6 of s48).
    raise ValueError(f"no float tensor has more than {threshold} elements: nothing to "
                     "encode")
  per_client = aggregate_bits_budget / clients_per_round
  if per_client <= fixed:
    raise ValueError(f"a budget of {aggregate_bits_budget} bits for {clients_per_round} "
                     f"clients does not cover the {fixed} unencoded bits per client")
  budget = (per_client - fixed) / encoded
  if budget <= 1:
    raise ValueError(f"a budget of {aggregate_bits_budget} bits for {clients_per_round} "
                     f"clients leaves {budget:.4g} bits per encoded coordinate, and adaptive "
                     "sends at least 1 (width 1) besides its header")
  return budget
