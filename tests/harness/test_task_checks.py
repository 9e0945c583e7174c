"""What run_experiment refuses of a task built in Python, before any round."""

import pytest

from fedcompress.harness import experiment
from fedcompress.tasks.task import FederatedTask


def test_a_task_listing_a_client_twice_is_refused():
  # Sampled by position, the client was drawn up to three times a round, and DP's epsilon
  # was accounted for the population with its copies counted.
  task = FederatedTask("tiny", ["a", "b", "a"], None, None, None, None, None, settings={})
  with pytest.raises(ValueError, match="task.client_ids lists a more than once"):
    experiment.check_experiment(task, experiment.ExperimentConfig(
        root_output_dir="/tmp/unused", experiment_name="r", clients_per_round=2))
