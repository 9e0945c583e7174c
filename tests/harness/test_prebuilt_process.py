"""run_experiment(process=...): a prebuilt process must be the config's, and
ExperimentConfig(measure_error=True) writes the relative error without one."""

import types

import pytest

import fedcompress
from fedcompress import metrics as m
from fedcompress.codecs import CodecSpec
from fedcompress.harness import experiment, reporting
from fedcompress.tasks import digits_task


class _OtherStage:
  """A user's stage, registered under a name another held first."""

  def __init__(self, bits: int = 8):
    self.bits = bits


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
  process = types.SimpleNamespace(
      fedcompress_settings=experiment.process_settings(task, built))
  with pytest.raises(ValueError, match=r"the process was built with other settings than "
                     r"config: broadcast_codec 'uniform\(bits=2\)>0' \(config: "
                     r"'identity>10000'\); .*seed 7 \(config: 3\); client_learning_rate 0\.1 "
                     r"\(config: 0\.5\)"):
    fedcompress.run_experiment(task, _config(tmp_path, "run", client_learning_rate=0.5,
                                             seed=3), process=process)
  assert not (tmp_path / "run").exists()
  # The run's loop settings are not the process's: another name, rounds, resume pass.
  same = experiment.process_settings(task, _config(tmp_path, "other", broadcast_codec=two_bits,
                                                   aggregate_codec=two_bits,
                                                   client_learning_rate=0.1, seed=7))
  assert same == process.fedcompress_settings
  # Another task (EF21 weighs a round by the task's client count), and a codec of the
  # user's registered again under its name, are other settings too.
  other_task = digits_task(num_clients=6, seed=0)
  assert experiment.process_settings(other_task, built) != process.fedcompress_settings
  from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

  from fedcompress.codecs import register_stage, unregister

  try:
    register_stage("mine_of_a_process", te.stages.IdentityEncodingStage, overwrite=True)
    mine = CodecSpec("mine_of_a_process", threshold=0)
    first = experiment.process_settings(task, _config(tmp_path, "m", aggregate_codec=mine))
    register_stage("mine_of_a_process", _OtherStage, overwrite=True)
    assert experiment.process_settings(
        task, _config(tmp_path, "m", aggregate_codec=mine)) != first
  finally:
    unregister("mine_of_a_process")


def test_a_process_of_another_model_or_model_seed_is_refused(tmp_path):
  # Digits tasks of two seeds, and of the two image models, have the same clients: a
  # process built for seed 0 ran the seed-1 task from seed 0's weights, recorded as seed
  # 1, and one of the other model failed after a round, config.json written.
  config = _config(tmp_path, "x")
  settings = experiment.process_settings(digits_task(num_clients=4, seed=0), config)
  for other, differing in ((digits_task(num_clients=4, seed=1), "task model_seed 0 .config: 1"),
                           (digits_task(num_clients=4, seed=0, model="fedopt_cnn"),
                            "task model 'fedavg_cnn' .config: 'fedopt_cnn'")):
    assert other.client_ids == digits_task(num_clients=4, seed=0).client_ids
    process = types.SimpleNamespace(fedcompress_settings=settings)
    with pytest.raises(ValueError, match=differing):
      experiment._check_process(process, other, config)


def test_a_codec_spelled_with_its_defaults_is_the_same_process(tmp_path):
  # As on resume: refused as other settings, though it builds the same process.
  task = digits_task(num_clients=4, seed=0)
  built = _config(tmp_path, "x", aggregate_codec=CodecSpec("uniform(bits=8)", threshold=0))
  process = types.SimpleNamespace(
      fedcompress_settings=experiment.process_settings(task, built))
  spelled = CodecSpec("uniform(bits=8,deterministic=False)", threshold=0)
  experiment._check_process(process, task, _config(tmp_path, "y", aggregate_codec=spelled))
  with pytest.raises(ValueError, match=r"aggregate_codec 'uniform\(bits=8\)>0' \(config: "
                     r"'uniform\(bits=2\)>0'\)"):
    experiment._check_process(process, task, _config(
        tmp_path, "z", aggregate_codec=CodecSpec("uniform(bits=2)", threshold=0)))


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
