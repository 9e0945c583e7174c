"""The shape every federated task hands to the round loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff


@dataclasses.dataclass
class FederatedTask:
  """Data and model of one federated experiment.

  Attributes:
    name: task name, as the `--dataset` flag spells it.
    client_ids: ids of the training clients that may be sampled.
    client_dataset: `(client_id, round_num) -> tf.data.Dataset`, preprocessed for
      training. Called only for the clients sampled in a round, so a dataset with
      thousands of clients is never materialized whole.
    test_dataset: centralized, batched evaluation data for `keras_model`.
    model_fn: no-arg `tff.learning.models.VariableModel` builder for the process.
    keras_model_fn: no-arg builder of the same architecture as a compiled Keras model,
      used to evaluate the global weights.
    input_spec: element spec of the preprocessed client datasets.
    settings: what the task was built with that changes results (dataset, split, client
      epochs and batch size, model, the task's own seed as `task_seed`), under the
      binaries' flag names where they have one: a run records them, and a resume
      compares them, also when the task was built in Python rather than from flags
      (numbers, strings, lists, sets, mappings, arrays; not functions).

  A task's `model_fn` and `keras_model_fn` build a new model on every call, with seeded
  initializers (and seeded dropout): unseeded, two runs of the same seed differ. The
  Keras model is compiled with a loss; its plain accuracy (`metrics.ACCURACY_NAMES`) is
  the one reported.
  """

  name: str
  client_ids: Sequence[str]
  client_dataset: Callable[[str, int], tf.data.Dataset]
  test_dataset: tf.data.Dataset
  model_fn: Callable[[], tff.learning.models.VariableModel]
  keras_model_fn: Callable[[], tf.keras.Model]
  input_spec: object
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
