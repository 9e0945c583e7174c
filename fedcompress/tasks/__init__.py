"""Federated tasks: data loaders and models, registered by dataset name."""

from __future__ import annotations

from collections.abc import Callable

from fedcompress.tasks.task import FederatedTask


def _emnist(**kw) -> FederatedTask:
  from fedcompress.tasks.datasets.emnist import emnist_task

  kw.pop("digits_clients", None)
  kw.pop("digits_alpha", None)
  return emnist_task(**kw)


def _digits(*, only_digits: bool = True, cache_dir: str | None = None,
            digits_clients: int = 20, digits_alpha: float = 1.0, **kw) -> FederatedTask:
  from fedcompress.tasks.datasets.digits import digits_task

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
