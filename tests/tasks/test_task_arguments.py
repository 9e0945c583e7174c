"""The image tasks refuse, in one line naming the argument, what their flags refuse.

In Python `digits_task(epochs=-1)` repeated each client's data forever, so round 1
never ended; 0, a float or a negative seed failed in TensorFlow or scikit-learn
without naming the argument.
"""

import math

import pytest

from fedcompress.tasks import digits_task, emnist_task


@pytest.mark.parametrize("arguments, message", [
    (dict(epochs=-1), "epochs must be an integer >= 1, got -1"),
    (dict(epochs=0), "epochs must be an integer >= 1, got 0"),
    (dict(epochs=1.5), "epochs must be an integer >= 1, got 1.5"),
    (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
    (dict(seed=-1), "seed must be an integer in 0..4294967295, got -1"),
    (dict(num_clients=2.5), "num_clients must be an integer >= 1, got 2.5"),
    (dict(num_clients=True), "num_clients must be an integer >= 1, got True"),
    (dict(alpha=math.nan), "alpha must be a finite number > 0, got nan"),
])
def test_digits_task_arguments(arguments, message):
  with pytest.raises(ValueError, match=f"^{message}$"):
    digits_task(**arguments)


def test_emnist_task_arguments_are_checked_before_the_data_is_read(tmp_path):
  with pytest.raises(ValueError, match="^epochs must be an integer >= 1, got -1$"):
    emnist_task(epochs=-1, cache_dir=str(tmp_path))  # No data there: read after.
