"""Federated tasks: datasets and models apart, assembled into a `FederatedTask` per task.

`datasets/` loads and preprocesses client data, `models/` builds the models; `image.py`
(EMNIST, digits) and `shakespeare.py` (fine-tuning a pretrained char-RNN) put them
together for the round loop.
"""

from fedcompress.tasks.image import (
  DEFAULT_IMAGE_MODEL,
  IMAGE_MODELS,
  IMAGE_TASKS,
  build_image_task,
  digits_task,
  emnist_task,
)
from fedcompress.tasks.shakespeare import SHAKESPEARE_MODELS
from fedcompress.tasks.task import FederatedTask

__all__ = ["DEFAULT_IMAGE_MODEL", "IMAGE_MODELS", "IMAGE_TASKS", "SHAKESPEARE_MODELS",
           "FederatedTask",
           "build_image_task", "digits_task", "emnist_task"]
