"""Federated tasks: datasets and models apart, assembled into a `FederatedTask` per task.

`datasets/` loads and preprocesses client data, `models/` builds the models; `image.py`
(EMNIST, digits) and `shakespeare.py` (fine-tuning a pretrained char-RNN) put them
together for the round loop.

The names below are imported on first use: importing one module of `datasets/` or
`models/` (the text reader imports nothing but the standard library) imported TFF and
every task and model with it, ~4 s.
"""

import importlib

_LAZY = {
    "DEFAULT_IMAGE_MODEL": "fedcompress.tasks.image",
    "IMAGE_MODELS": "fedcompress.tasks.image",
    "IMAGE_TASKS": "fedcompress.tasks.image",
    "build_image_task": "fedcompress.tasks.image",
    "digits_task": "fedcompress.tasks.image",
    "emnist_task": "fedcompress.tasks.image",
    "SHAKESPEARE_MODELS": "fedcompress.tasks.shakespeare",
    "FederatedTask": "fedcompress.tasks.task",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f"module 'fedcompress.tasks' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *__all__])
