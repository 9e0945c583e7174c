"""Canonical metric names and flattening of TFF's nested round metrics into them.

One name per quantity everywhere (console, CSV columns, TensorBoard tags, plots), and
this module is where each is defined. `broadcast/bits` is what the server sent to all
sampled clients in a round, `aggregate/bits` what all sampled clients sent to the
server; the cumulative ones add them up over the run. Under an entropy coder these are
the raw (bit-packed) sizes, and `*/coded_bits` the sizes actually sent, which can be
larger on small tensors. What is not counted (round keys, TFF's own metrics and
hyperparameters) is listed in the README's "What counts as a bit".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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
BROADCAST_CODED_BITS = "broadcast/coded_bits"
AGGREGATE_CODED_BITS = "aggregate/coded_bits"
BROADCAST_CUMULATIVE_CODED_BITS = "broadcast/cumulative_coded_bits"
AGGREGATE_CUMULATIVE_CODED_BITS = "aggregate/cumulative_coded_bits"
AGGREGATE_RELATIVE_ERROR = "aggregate/relative_error"
AGGREGATE_REJECTED_CLIENTS = "aggregate/rejected_clients"
# Differential privacy spent so far: epsilon at the run's delta after this round, and
# the noise multiplier it was accounted with (fedcompress.federated.privacy).
PRIVACY_EPSILON = "privacy/epsilon"
PRIVACY_NOISE_MULTIPLIER = "privacy/noise_multiplier"
# --dp=central_adaptive: the clip after this round's update, which the next round clips
# updates to (TFF's `dp_query_metrics`); without it, whether the clip converged or
# collapsed was not seen anywhere.
PRIVACY_CLIP = "privacy/clip"

CANONICAL = (ROUND, TRAIN_LOSS, TRAIN_ACCURACY, EVAL_LOSS, EVAL_ACCURACY, BROADCAST_BITS,
             AGGREGATE_BITS, BROADCAST_CUMULATIVE_BITS, AGGREGATE_CUMULATIVE_BITS, ROUND_TIME_S)
# Extra per-round quantities some codecs or options report; columns appear when present.
# Coded sizes are what an entropy coder actually sent, beside (never instead of) the raw
# bits; without one they equal the raw bits.
OPTIONAL = (BROADCAST_CODED_BITS, AGGREGATE_CODED_BITS, BROADCAST_CUMULATIVE_CODED_BITS,
            AGGREGATE_CUMULATIVE_CODED_BITS, AGGREGATE_RELATIVE_ERROR,
            AGGREGATE_REJECTED_CLIENTS, PRIVACY_EPSILON, PRIVACY_NOISE_MULTIPLIER,
            PRIVACY_CLIP)
_PER_ROUND_OPTIONAL = (BROADCAST_CODED_BITS, AGGREGATE_CODED_BITS, AGGREGATE_RELATIVE_ERROR,
                       AGGREGATE_REJECTED_CLIENTS)
BITS_KEYS = (BROADCAST_BITS, AGGREGATE_BITS)
# With bit allocation (`fedcompress.codecs.allocation`): the width each encoded tensor
# got this round, one metric per tensor, named by prefix + the weight's name (e.g.
# `broadcast/width/dense/kernel`).
BROADCAST_WIDTH_PREFIX = "broadcast/width/"
AGGREGATE_WIDTH_PREFIX = "aggregate/width/"
WIDTH_PREFIXES = (BROADCAST_WIDTH_PREFIX, AGGREGATE_WIDTH_PREFIX)


def is_width(key: str) -> bool:
  """Whether `key` is a per-tensor width metric (its columns appear when present)."""
  return key.startswith(WIDTH_PREFIXES)


# The names Keras gives the plain accuracy, by what a model was compiled with: the strings
# 'accuracy' and 'acc', and the classes. `train/accuracy` and `eval/accuracy` hold the
# first of these a model reports; any name ending in "accuracy" took a top-k accuracy
# listed first (sparse_top_k_categorical_accuracy) as the accuracy, without a word.
ACCURACY_NAMES = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy",
                  "binary_accuracy")


def accuracy_of(results: Mapping[str, Any]) -> float | None:
  """The plain accuracy among a model's metric results (`ACCURACY_NAMES`), or None."""
  return next((float(results[k]) for k in ACCURACY_NAMES if k in results), None)


def other_accuracies(results: Mapping[str, Any]) -> list[str]:
  """Metric names that end in "accuracy" but are not a plain accuracy (top-k, custom)."""
  return sorted(k for k in results if k.endswith("accuracy") and k not in ACCURACY_NAMES)


def flatten_round_metrics(metrics: Mapping) -> dict[str, float | None]:
  """Canonical train metrics and bits out of `LearningProcessOutput.metrics`.

  TFF nests client training metrics under `client_work/train`; the accuracy is Keras'
  plain one (`accuracy_of`).
  A round whose clients held no example trained nothing, and TFF's means of it read 0.0
  (a perfect loss): its train loss and accuracy are None. (Under uniform weighting TFF
  gives an empty client weight 1 and so counts it as a zero update, unlike under example
  weights, where it is left out and counted in `aggregate/rejected_clients`.)
  """
  flat: dict[str, float | None] = {}
  train = metrics.get("client_work", {}).get("train", {})
  trained = train.get("num_examples") != 0
  if "loss" in train:
    flat[TRAIN_LOSS] = float(train["loss"]) if trained else None
  if (accuracy := accuracy_of(train)) is not None:
    flat[TRAIN_ACCURACY] = accuracy if trained else None
  for key in BITS_KEYS + _PER_ROUND_OPTIONAL:
    if key in metrics:
      flat[key] = float(metrics[key]) if "error" in key else int(metrics[key])
  for key, value in metrics.items():
    if isinstance(key, str) and is_width(key):
      # The widths are float32 means over clients; as float64 a width 0.9 was written
      # 0.8999999761581421, which no filter on 0.9 finds. Their shortest float32 decimal.
      flat[key] = float(str(np.float32(value)))
  clip = metrics.get("aggregator", {}).get("dp_query_metrics", {}).get("clip")
  if clip is not None:
    flat[PRIVACY_CLIP] = float(clip)
  return flat
