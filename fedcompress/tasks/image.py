"""Image tasks: EMNIST-format client data with a CNN, by dataset and model name.

`build_image_task("emnist" | "digits", ...)` is what `--dataset` selects: real federated
EMNIST through TFF's loader, or the embedded scikit-learn digits in EMNIST's format.
`IMAGE_MODELS` is what `--model` selects: the tutorial's CNN (McMahan et al. 2017) or the
FedOpt paper's (Reddi et al. 2021).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.tasks.datasets import digits, emnist, pipeline
from fedcompress.tasks.errors import cached_path, file_fingerprint
from fedcompress.tasks.models.cnn import create_fedopt_cnn, create_original_fedavg_cnn
from fedcompress.tasks.task import FederatedTask

# `(num_classes, seed) -> uncompiled Keras model` of 28x28x1 images, by `--model` name.
IMAGE_MODELS: dict[str, Callable[..., tf.keras.Model]] = {
    "fedavg_cnn": create_original_fedavg_cnn,  # TFF's compression tutorial.
    "fedopt_cnn": create_fedopt_cnn,  # Adaptive Federated Optimization, with dropout.
}
DEFAULT_IMAGE_MODEL = "fedavg_cnn"


def _check_whole(name: str, value, low: int, high: int | None = None) -> None:
  # What the binaries' flags refuse when parsed; in Python, epochs=-1 repeated the
  # clients' data forever (round 1 never ended), and 0, a float or a negative seed
  # failed in TensorFlow or scikit-learn without naming the argument.
  if (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low
      or (high is not None and value > high)):
    span = f">= {low}" if high is None else f"in {low}..{high}"
    raise ValueError(f"{name} must be an integer {span}, got {value!r}")


def _check_task_arguments(epochs, batch_size, seed) -> None:
  _check_whole("epochs", epochs, 1)
  _check_whole("batch_size", batch_size, 1)
  _check_whole("seed", seed, 0, 2**32 - 1)  # scikit-learn's and NumPy's seeds.


def image_task(name: str, train, test, *, num_classes: int, epochs: int,
               batch_size: int, seed: int, model_seed: int | None = None,
               model: str = DEFAULT_IMAGE_MODEL,
               settings: dict | None = None) -> FederatedTask:
  """A `FederatedTask` for EMNIST-shaped client data and the `IMAGE_MODELS` CNN `model`.

  `settings`: the data's own (split, classes), added to the task's record.
  """
  if model not in IMAGE_MODELS:
    raise ValueError(f"unknown model {model!r}; valid: {', '.join(sorted(IMAGE_MODELS))}")
  _check_task_arguments(epochs, batch_size, seed)
  create_cnn = IMAGE_MODELS[model]
  model_seed = seed if model_seed is None else model_seed

  dataset_for = pipeline.traced_client_datasets(
      train, lambda dataset, shuffle_seed: emnist.preprocess(
          dataset, epochs=epochs, batch_size=batch_size, seed=shuffle_seed))

  def client_dataset(client_id: str, round_num: int) -> tf.data.Dataset:
    # Shuffle order depends on (seed, round), so a resumed run sees the same data.
    return dataset_for(client_id, seed * 100_003 + round_num)

  def keras_model_fn() -> tf.keras.Model:
    model = create_cnn(num_classes, seed=model_seed)
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
    return model

  def model_fn() -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
        create_cnn(num_classes, seed=model_seed),
        input_spec=emnist.INPUT_SPEC,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  recorded = {"dataset": name, **(settings or {}), "client_epochs": epochs,
              "client_batch_size": batch_size, "model": model, "task_seed": seed,
              "model_seed": model_seed}
  return FederatedTask(name=name, client_ids=list(train.client_ids),
                       client_dataset=client_dataset, test_dataset=emnist.test_dataset(test),
                       model_fn=model_fn, keras_model_fn=keras_model_fn,
                       input_spec=emnist.INPUT_SPEC, settings=recorded)


def emnist_task(*, only_digits: bool = True, cache_dir: str | None = None, epochs: int = 1,
                batch_size: int = 20, seed: int = 0,
                model: str = DEFAULT_IMAGE_MODEL) -> FederatedTask:
  _check_task_arguments(epochs, batch_size, seed)  # Before the data is read.
  train, test = emnist.load_emnist(only_digits, cache_dir)
  data = file_fingerprint(cached_path(cache_dir, emnist.EMNIST_SQLITE))
  return image_task("emnist", train, test, num_classes=10 if only_digits else 62,
                    epochs=epochs, batch_size=batch_size, seed=seed, model=model,
                    settings={"only_digits": only_digits, "data_file_fingerprint": data})


def digits_task(*, num_clients: int = 20, alpha: float = 1.0, epochs: int = 1,
                batch_size: int = 20, seed: int = 0,
                model: str = DEFAULT_IMAGE_MODEL) -> FederatedTask:
  _check_task_arguments(epochs, batch_size, seed)  # Before the data is split.
  _check_whole("num_clients", num_clients, 1)
  if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not (
      0 < alpha < math.inf):
    raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
  train, test = digits.digits_client_data(num_clients, alpha, seed)
  return image_task("digits", train, test, num_classes=10, epochs=epochs,
                    batch_size=batch_size, seed=seed, model=model,
                    settings={"digits_clients": num_clients, "digits_alpha": alpha})


def _emnist(**kw) -> FederatedTask:
  kw.pop("digits_clients", None)
  kw.pop("digits_alpha", None)
  return emnist_task(**kw)


def _digits(*, only_digits: bool = True, cache_dir: str | None = None,
            digits_clients: int = 20, digits_alpha: float = 1.0, **kw) -> FederatedTask:
  del cache_dir  # Embedded in scikit-learn: nothing to load.
  if not only_digits:
    raise ValueError("--dataset=digits has only the 10 digit classes; --noonly_digits "
                     "needs --dataset=emnist")
  return digits_task(num_clients=digits_clients, alpha=digits_alpha, **kw)


IMAGE_TASKS: dict[str, Callable[..., FederatedTask]] = {"emnist": _emnist, "digits": _digits}


def build_image_task(name: str, **kwargs) -> FederatedTask:
  if name not in IMAGE_TASKS:
    raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(sorted(IMAGE_TASKS))}")
  return IMAGE_TASKS[name](**kwargs)
