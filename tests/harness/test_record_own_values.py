"""config.json records what runs: a config's own values and its task's settings win over
the flags' record it was built with.

A notebook's `dataclasses.replace(config_from_flags, client_learning_rate=0.5)` ran 0.5
while config.json said 0.1, and a resume at yet another rate compared 0.1 with 0.1 and
was accepted, mixing two settings in one run.
"""

import dataclasses

from absl import flags

from fedcompress.codecs import CodecSpec
from fedcompress.harness import experiment, rundir
from fedcompress.harness import flags as fc_flags
from fedcompress.tasks import digits_task


def _from_flags(tmp_path, *args):
  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  fv(["binary", "--dataset=digits", f"--root_output_dir={tmp_path}",
      "--broadcast_encoder=uniform", "--aggregate_encoder=uniform", "--aggregate_bits=8",
      *args])
  return fc_flags.image_config_from_flags(fv)


def test_a_replaced_setting_is_what_the_record_holds(tmp_path):
  config = _from_flags(tmp_path)
  changed = dataclasses.replace(config, client_learning_rate=0.5, seed=7, rounds=3,
                                aggregate_codec=CodecSpec("uniform", {"bits": 2}))
  record = changed.record()
  assert (record["client_learning_rate"], record["seed"], record["rounds"]) == (0.5, 7, 3)
  assert record["aggregate_codec"] == "uniform(bits=2)>10000"
  # The flags that spelt the codec it no longer runs go with it; the broadcast's stay.
  assert not {"aggregate_encoder", "aggregate_bits"} & set(record)
  assert record["broadcast_encoder"] == "uniform"
  # Unchanged, a config from flags records what it did.
  assert config.record()["aggregate_bits"] == 8
  assert config.record()["client_learning_rate"] == 0.02


def test_a_resume_at_another_setting_is_told_apart(tmp_path):
  first = dataclasses.replace(_from_flags(tmp_path), client_learning_rate=0.5)
  recorded = {k: rundir.jsonable(v) for k, v in first.record().items()}
  again = dataclasses.replace(_from_flags(tmp_path), client_learning_rate=0.02)
  assert rundir.differences(recorded, again.record_compared_with(recorded)) == [
      "--client_learning_rate=0.02 (recorded 0.5)"]
  assert rundir.differences(recorded, first.record_compared_with(recorded)) == []


def test_the_tasks_settings_win_over_the_flags(tmp_path):
  # A config from flags (1 epoch, 20 digits clients) on a task built with 5 epochs and
  # 6 clients recorded the flags' values.
  config = _from_flags(tmp_path)
  task = digits_task(num_clients=6, epochs=5, batch_size=10)
  recorded = experiment.with_task_settings(task, config).recorded
  assert (recorded["client_epochs"], recorded["digits_clients"],
          recorded["client_batch_size"]) == (5, 6, 10)
  # The task of the flags themselves changes none of their values.
  same = experiment.with_task_settings(digits_task(num_clients=20, epochs=1, batch_size=20),
                                       config).recorded
  assert {k: rundir.jsonable(same[k]) for k in config.recorded} == {
      k: rundir.jsonable(v) for k, v in config.recorded.items()}


def test_initial_weights_of_another_kind_are_one_line(tmp_path):
  import pytest

  task = digits_task(num_clients=4)
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="w",
                                       rounds=1, clients_per_round=2)
  weights = task.keras_model_fn().get_weights()
  with pytest.raises(ValueError, match=r"^initial_weights must be tff.learning.models."
                     r"ModelWeights \(of a Keras model: .*\), got list$"):
    experiment.run_experiment(task, config, initial_weights=weights)
  assert not (tmp_path / "w").exists()
