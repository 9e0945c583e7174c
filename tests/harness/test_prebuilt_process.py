"""run_experiment(process=...): a prebuilt process must be the config's, and
ExperimentConfig(measure_error=True) writes the relative error without one."""

import types

import pytest

import fedcompress
from fedcompress import metrics as m
from fedcompress.codecs import CodecSpec
from fedcompress.harness import experiment, reporting
from fedcompress.tasks import digits_task


def _config(tmp_path, name, **kwargs):
  return fedcompress.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name=name,
                                      rounds=1, clients_per_round=2, progress=False, **kwargs)


def test_a_process_built_with_other_settings_is_refused(tmp_path):
  # A process of 2-bit codecs at learning rate 0.1 and seed 7 ran under a record of
  # identity codecs, 0.5 and seed 3 (config.json, HParams and summaries said so).
  task = digits_task(num_clients=4, seed=0)
  two_bits = CodecSpec("uniform(bits=2)", threshold=0)
  built = _config(tmp_path, "x", broadcast_codec=two_bits, aggregate_codec=two_bits,
                  client_learning_rate=0.1, seed=7)
  process = types.SimpleNamespace(fedcompress_settings=experiment.process_settings(built))
  with pytest.raises(ValueError, match=r"the process was built with other settings than "
                     r"config: client_learning_rate 0\.1 \(config: 0\.5\); seed 7 \(config: "
                     r"3\); broadcast_codec 'uniform\(bits=2\)>0' \(config: 'identity>10000'\)"):
    fedcompress.run_experiment(task, _config(tmp_path, "run", client_learning_rate=0.5,
                                             seed=3), process=process)
  assert not (tmp_path / "run").exists()
  # The run's loop settings are not the process's: another name, rounds, resume pass.
  same = experiment.process_settings(_config(tmp_path, "other", broadcast_codec=two_bits,
                                             aggregate_codec=two_bits,
                                             client_learning_rate=0.1, seed=7))
  assert same == process.fedcompress_settings


@pytest.mark.slow
def test_measure_error_is_a_config_setting(tmp_path):
  # It was reachable only through a prebuilt process, whose settings the run did not
  # check.
  task = digits_task(num_clients=4, seed=0)
  codec = CodecSpec("uniform(bits=2)", threshold=0)
  result = fedcompress.run_experiment(task, _config(
      tmp_path, "measured", aggregate_codec=codec, measure_error=True))
  (row,) = reporting.read_metrics_csv(f"{result.run_dir}/metrics.csv")
  assert 0 < row[m.AGGREGATE_RELATIVE_ERROR] < float("inf")  # The column is written.
  with pytest.raises(ValueError, match="measure_error is not available with --error_feedback"):
    _config(tmp_path, "ef", aggregate_codec=codec, measure_error=True,
            error_feedback="ef", client_weighting="uniform").validate()
