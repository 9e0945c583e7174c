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


def _task(**settings):
  return FederatedTask("tiny", ["a", "b"], None, None, None, None, None, settings=settings)


def test_task_settings_are_recorded_the_same_in_every_process():
  # As their str: a set's order follows the per-process hash seed (the resume in a fresh
  # process was refused), and an array of over 1,000 values was numpy's elided text (two
  # partitions recorded the same).
  import numpy as np

  from fedcompress.harness import rundir

  assert rundir.jsonable({"b", "a", "c"}) == ["a", "b", "c"]
  sizes = np.arange(2000)
  other = sizes.copy()
  other[1000] = -1
  assert rundir.jsonable(sizes) == list(range(2000)) != rundir.jsonable(other)
  assert rundir.jsonable({"split": np.int64(3), 2: (1, 2)}) == {"split": 3, "2": [1, 2]}
  config = experiment.ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="r")
  record = experiment.with_task_settings(_task(features={"y", "x"}), config).record()
  assert record["features"] == ["x", "y"]


def test_a_setting_recorded_by_its_address_is_refused():
  # A function's default text holds its address: the run could never be resumed.
  config = experiment.ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="r")
  with pytest.raises(ValueError, match=r"task.settings\['preprocess'\] is recorded as "
                     r"'<function .* at 0x"):
    experiment.with_task_settings(_task(preprocess=lambda x: x), config)


def test_a_run_recorded_with_such_a_setting_as_its_text_still_resumes():
  # Before they were recorded in full, config.json held their str: those runs resumed,
  # and must still (the review's dict and array settings were refused).
  import numpy as np

  from fedcompress.harness import rundir

  config = experiment.ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="r")
  for value in ({"a": 1, "b": 2}, np.arange(5), frozenset({3, 1})):
    new = experiment.with_task_settings(_task(part=value), config)
    old = {**new.record(), "part": str(value)}
    assert rundir.differences(old, new.record_compared_with(old)) == []
    other = {**old, "part": str(np.arange(6))}
    assert rundir.differences(other, new.record_compared_with(other)) != []
