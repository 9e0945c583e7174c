"""Canonical metric names and flattening of TFF's nested round metrics into them.

One name per quantity everywhere (console, CSV columns, TensorBoard tags, plots); see
"Canonical metric names" in ../shared/DESIGN.md.
"""

from __future__ import annotations

from collections.abc import Mapping

ROUND = "round"
TRAIN_LOSS = "train/loss"
TRAIN_ACCURACY = "train/accuracy"
EVAL_LOSS = "eval/loss"
EVAL_ACCURACY = "eval/accuracy"
BROADCAST_BITS = "broadcast/bits"
AGGREGATE_BITS = "aggregate/bits"
BROADCAST_CUMULATIVE_BITS = "broadcast/cumulative_bits"
AGGREGATE_CUMULATIVE_BITS = "aggregate/cumulative_bits"
ROUND_TIME_S = "round_time_s"

CANONICAL = (ROUND, TRAIN_LOSS, TRAIN_ACCURACY, EVAL_LOSS, EVAL_ACCURACY, BROADCAST_BITS,
             AGGREGATE_BITS, BROADCAST_CUMULATIVE_BITS, AGGREGATE_CUMULATIVE_BITS, ROUND_TIME_S)
# Extra per-round quantities some codecs or options report; columns appear when present.
OPTIONAL = ("broadcast/coded_bits", "aggregate/coded_bits", "aggregate/relative_error",
            "aggregate/rejected_clients")
BITS_KEYS = (BROADCAST_BITS, AGGREGATE_BITS)


def flatten_round_metrics(metrics: Mapping) -> dict[str, float]:
  """Canonical train metrics and bits out of `LearningProcessOutput.metrics`.

  TFF nests client training metrics under `client_work/train`; Keras names accuracy
  after its metric class, so any key ending in `accuracy` is taken as the accuracy.
  """
  flat: dict[str, float] = {}
  train = metrics.get("client_work", {}).get("train", {})
  for key, value in train.items():
    if key == "loss":
      flat[TRAIN_LOSS] = float(value)
    elif key.endswith("accuracy"):
      flat[TRAIN_ACCURACY] = float(value)
  for key in BITS_KEYS + OPTIONAL:
    if key in metrics:
      flat[key] = float(metrics[key]) if "error" in key else int(metrics[key])
  return flat
