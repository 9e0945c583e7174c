"""run_info.json keeps each segment's rounds and wall time, also for a killed segment."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import pytest

from fedcompress import metrics as m
from fedcompress.harness import experiment


def _segments(run_dir) -> tuple[list[tuple[int, int]], list[float], float]:
  with open(f"{run_dir}/run_info.json") as f:
    info = json.load(f)
  rounds = [(s["first_round"], s["last_round"]) for s in info["segments"]]
  return rounds, [s["wall_time_s"] for s in info["segments"]], info["wall_time_s"]


def test_a_killed_segment_keeps_the_rounds_it_ran(tmp_path):
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="run",
                                       rounds=6, progress=False)
  (tmp_path / "run").mkdir()
  first = experiment._RunRecord(config, began=time.perf_counter() - 2.0)
  first.start(1, 6)
  for r in (1, 2, 3):
    first.write({m.ROUND: r})
  # SIGKILL here: `close` never runs. The resumed process starts a segment of its own.
  second = experiment._RunRecord(config, began=time.perf_counter() - 1.0)
  second.start(3, 6)
  for r in (3, 4, 5, 6):
    second.write({m.ROUND: r})
  second.close()
  rounds, walls, total = _segments(tmp_path / "run")
  assert rounds == [(1, 3), (3, 6)]
  assert walls[0] >= 2.0 and walls[1] >= 1.0
  assert total == sum(walls)


def test_a_resume_of_a_finished_run_adds_no_segment(tmp_path):
  # It ran no round: a segment would name its code among the run's and add its time.
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="run",
                                       rounds=2, progress=False)
  (tmp_path / "run").mkdir()
  first = experiment._RunRecord(config, began=time.perf_counter())
  first.start(1, 2)
  for r in (1, 2):
    first.write({m.ROUND: r})
  first.close()
  before = _segments(tmp_path / "run")
  noop = experiment._RunRecord(config, began=time.perf_counter() - 5.0)
  noop.start(3, 2)
  noop.close()
  assert _segments(tmp_path / "run") == before


def test_a_resume_that_finds_rows_but_no_checkpoint_says_they_are_redone(tmp_path):
  # `checkpoints/` deleted to save space: the resume starts over at round 1 and replaces
  # the rows, which it did without a word.
  from fedcompress.harness import reporting

  run = tmp_path / "run"
  run.mkdir()
  table = reporting.CsvReporter(str(run / "metrics.csv"))
  table.start(1, 3)
  for r in (1, 2, 3):
    table.write({m.ROUND: r, m.TRAIN_LOSS: 1.0})
  table.close()
  said = []
  experiment._warn_rows_without_checkpoint(str(run), said.append)
  assert said == [f"no checkpoint in {run / 'checkpoints'}: rounds 1-3 are run again and "
                  "their rows replaced"]
  (run / "checkpoints" / "round_2").mkdir(parents=True)
  said.clear()
  experiment._warn_rows_without_checkpoint(str(run), said.append)
  assert said == []


def test_a_run_stopped_before_its_first_record_is_not_a_run(tmp_path):
  # What Ctrl-C while the process is built leaves: the lock and empty folders. The same
  # command must start it again rather than be told the folder "already holds a run".
  from fedcompress.harness import rundir

  run = tmp_path / "early"
  (run / "checkpoints").mkdir(parents=True)
  (run / "client_states").mkdir()
  (run / rundir.LOCK_FILE).write_text("")
  assert not rundir.has_run(str(run))
  (run / "checkpoints" / "round_1").mkdir()
  (run / "checkpoints" / "round_1" / "saved_model.pb").write_bytes(b"x")
  assert rundir.has_run(str(run))
  assert not rundir.has_run(str(tmp_path / "missing"))


def _tensorboard_hparams(run_dir) -> dict:
  """The one HParams record of a run's event files, as TensorBoard's plugin reads it."""
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2
  from tensorboard.plugins.hparams import plugin_data_pb2

  records = []
  for path in tf.io.gfile.glob(str(run_dir / "events.out.tfevents.*")):
    for record in tf.data.TFRecordDataset(path):
      for value in event_pb2.Event.FromString(record.numpy()).summary.value:
        if value.tag == "_hparams_/session_start_info":
          data = plugin_data_pb2.HParamsPluginData.FromString(
              value.metadata.plugin_data.content)
          records.append({k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                          for k, v in data.session_start_info.hparams.items()})
  assert len(records) == 1, records
  return records[0]


def test_a_task_built_in_python_is_recorded_and_compared_on_resume(tmp_path):
  # A notebook's run recorded only its ExperimentConfig: config.json claimed seed 3 for
  # data and a model made with seed 0, and a resume on another split was accepted.
  import fedcompress
  from fedcompress.harness import rundir
  from fedcompress.tasks import digits_task

  def config(**kwargs):
    values = dict(root_output_dir=str(tmp_path), experiment_name="lib", rounds=1,
                  clients_per_round=2, seed=3, progress=False)
    return fedcompress.ExperimentConfig(**{**values, **kwargs})

  fedcompress.run_experiment(digits_task(num_clients=4, seed=0), config())
  recorded = rundir.read_config(str(tmp_path / "lib"))
  assert recorded["seed"] == 3 and recorded["task_seed"] == 0
  assert (recorded["dataset"], recorded["digits_clients"], recorded["client_epochs"]) == (
      "digits", 4, 1)
  # TensorBoard's HParams are config.json's record too: they held the task's settings
  # only, no codec, learning rate, rounds or seed.
  from fedcompress.harness import reporting

  # (The codecs as they run: identity, which encodes nothing, shows no threshold.)
  shown = reporting._hparam_values({**recorded, "broadcast_codec": "identity",
                                    "aggregate_codec": "identity"})
  assert _tensorboard_hparams(tmp_path / "lib") == shown
  assert {"aggregate_codec", "client_learning_rate", "rounds", "seed"} <= set(shown)
  other = digits_task(num_clients=6, seed=5, epochs=2)
  with pytest.raises(rundir.RunDirectoryError) as refused:
    fedcompress.run_experiment(other, config(rounds=2, resume=True))
  for fragment in ("--digits_clients=6 (recorded 4)", "task_seed 5 (recorded 0)",
                   "--client_epochs=2 (recorded 1)", "(experiment_name=...)"):
    assert fragment in str(refused.value)
  # A library caller is told the ExperimentConfig fields, not only the flags.
  with pytest.raises(rundir.RunDirectoryError, match=r"already holds a run; pass --resume "
                     r"\(in Python, resume=True\).*\(experiment_name=\.\.\.\)"):
    fedcompress.run_experiment(other, config())
  # A folder of the user's holds no run: told to --resume, a run started among its files.
  notes = tmp_path / "notes"
  notes.mkdir()
  (notes / "notes.txt").write_text("ideas\n")
  with pytest.raises(rundir.RunDirectoryError, match=r"notes holds files but no run "
                     r"\(config.json\): choose another --experiment_name"):
    fedcompress.run_experiment(other, config(experiment_name="notes"))


def test_a_resume_on_another_cpu_is_named(tmp_path):
  # The same code, lock and flags gave the demo's original run 0.9250 in one session and
  # 0.9167 in the next (an AMD EPYC with AVX2, no AVX-512; the first machine's CPU was not
  # recorded): oneDNN and Eigen pick their float kernels by instruction set.
  from fedcompress.harness import rundir

  here = rundir.environment()
  assert here["cpu"] is None or set(here["cpu"]["features"]) <= set(rundir.CPU_FEATURES)
  other = {**here, "cpu": {"model": "Other", "features": ["avx2", "avx512f"]}}
  mine = {**here, "cpu": {"model": "Mine", "features": ["avx2"]}}
  (tmp_path / rundir.RUN_INFO_FILE).write_text(json.dumps(
      {"wall_time_s": 0.0, "segments": [{"environment": other}, {"environment": mine}]}))
  change = rundir.environment_change(str(tmp_path))
  assert "model Other -> Mine" in change and "features ['avx2', 'avx512f'] -> ['avx2']" in change
  # A segment recorded before the CPU was (c07c09b) is not said to have run on another.
  before = {k: v for k, v in here.items() if k != "cpu"}
  (tmp_path / rundir.RUN_INFO_FILE).write_text(json.dumps(
      {"wall_time_s": 0.0, "segments": [{"environment": before}, {"environment": mine}]}))
  assert rundir.environment_change(str(tmp_path)) is None


def test_a_resume_with_other_kernels_is_named(tmp_path, monkeypatch):
  # TF_ENABLE_ONEDNN_OPTS=0 changed an error-feedback run's metrics in 10 cells, and a
  # resume under it said nothing (R3, s41).
  from fedcompress.harness import rundir

  monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
  before = rundir.environment()
  monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
  after = rundir.environment()
  (tmp_path / rundir.RUN_INFO_FILE).write_text(json.dumps(
      {"wall_time_s": 0.0, "segments": [{"environment": before}, {"environment": after}]}))
  assert rundir.environment_change(str(tmp_path)) == "TF_ENABLE_ONEDNN_OPTS None -> 0"
  # Segments recorded before the variables were are not said to differ.
  old = {k: v for k, v in before.items() if k != "kernel_variables"}
  (tmp_path / rundir.RUN_INFO_FILE).write_text(json.dumps(
      {"wall_time_s": 0.0, "segments": [{"environment": old}, {"environment": after}]}))
  assert rundir.environment_change(str(tmp_path)) is None


def test_a_task_with_no_settings_still_records_its_name_and_clients():
  # A task built in Python with empty settings recorded nothing of itself: a resume on a
  # task of other clients and data ran on.
  from fedcompress.harness import rundir
  from fedcompress.tasks.task import FederatedTask

  def task(name, ids):
    return FederatedTask(name, ids, None, None, None, None, None, settings={})

  config = experiment.ExperimentConfig(root_output_dir="/tmp/x", experiment_name="r")
  first = experiment.with_task_settings(task("tiny", ["a", "b", "c"]), config).record()
  assert first["task_name"] == "tiny" and first["task_clients"] == 3
  assert experiment.with_task_settings(task("tiny", ["c", "b", "a"]), config).record() == first
  other = experiment.with_task_settings(task("other", ["a", "b", "d", "e"]), config).record()
  problems = rundir.differences(first, other)
  assert [p.split(" ")[0] for p in problems] == [
      "task_client_ids_sha256", "task_clients", "task_name"], problems
  assert "task_name other (recorded tiny)" in problems


def test_a_run_that_sampled_by_position_is_resumed_only_where_its_ids_are_sorted(tmp_path):
  # Clients are now drawn from the sorted ids; a run recorded before drew them by their
  # position in task.client_ids, the same clients only where those were sorted.
  from fedcompress.harness import rundir
  from fedcompress.tasks.task import FederatedTask

  def task(ids):
    return FederatedTask("tiny", ids, None, None, None, None, None, settings={})

  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="r",
                                       resume=True)
  old = experiment.with_task_settings(task(["a", "b", "c"]), config).record()
  assert old.pop(rundir.CLIENT_SAMPLING) == "sorted ids"
  os.makedirs(config.run_dir)
  with open(os.path.join(config.run_dir, rundir.CONFIG_FILE), "w") as f:
    json.dump({k: rundir.jsonable(v) for k, v in old.items()}, f)
  experiment.check_sampling_on_resume(task(["a", "b", "c"]), config)
  with pytest.raises(rundir.RunDirectoryError, match="not sorted"):
    experiment.check_sampling_on_resume(task(["c", "a", "b"]), config)
  # Fixed clients are not sampled (nor recorded so), and a new start has no record to
  # continue.
  fixed = dataclasses.replace(config, fixed_clients=("a",))
  experiment.check_sampling_on_resume(task(["c", "a", "b"]), fixed)
  assert rundir.CLIENT_SAMPLING not in experiment.with_task_settings(
      task(["c", "a", "b"]), fixed).record()
  experiment.check_sampling_on_resume(task(["c", "a", "b"]),
                                      dataclasses.replace(config, resume=False))
  # A record that has it continues whatever the order.
  with open(os.path.join(config.run_dir, rundir.CONFIG_FILE), "w") as f:
    json.dump({k: rundir.jsonable(v) for k, v in old.items()}
              | {rundir.CLIENT_SAMPLING: "sorted ids"}, f)
  experiment.check_sampling_on_resume(task(["c", "a", "b"]), config)


def _flag_config(root, *args):
  # As the binaries build it: every flag recorded, so `changed` sees the harmless ones.
  from absl import flags

  from fedcompress.harness import flags as fc_flags

  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  fv(["run", "--dataset=digits", f"--root_output_dir={root}", "--experiment_name=run", *args])
  return fc_flags.image_config_from_flags(fv)


def _segment(config, first_round, rounds):
  record = experiment._RunRecord(config, began=time.perf_counter())
  record.start(first_round, rounds)
  for r in range(first_round, rounds + 1):
    record.write({m.ROUND: r})
  record.close()


def test_a_resume_records_the_harmless_flags_it_changed_against_config_json(tmp_path):
  # run_info.json's `changed`: what a segment ran with that config.json (the first start)
  # does not say. --resume and --rounds differ on every resume and are recorded apart.
  (tmp_path / "run").mkdir()
  _segment(_flag_config(tmp_path, "--rounds=2"), 1, 2)
  _segment(_flag_config(tmp_path, "--rounds=3", "--resume", "--rounds_per_eval=2"), 3, 3)
  # Against config.json, not the segment before: this one still evaluates every 2 rounds.
  _segment(_flag_config(tmp_path, "--rounds=4", "--resume", "--rounds_per_eval=2",
                        "--rounds_per_checkpoint=2"), 4, 4)
  with open(tmp_path / "run" / "run_info.json") as f:
    segments = json.load(f)["segments"]
  assert [(s["first_round"], s["last_round"]) for s in segments] == [(1, 2), (3, 3), (4, 4)]
  assert [s.get("changed") for s in segments] == [
      None, {"rounds_per_eval": 2}, {"rounds_per_checkpoint": 2, "rounds_per_eval": 2}]
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["rounds_per_eval"] == 1  # Written once, by the first start.


def test_an_environment_change_is_named_against_the_first_segment(tmp_path, monkeypatch):
  # Environments A, B, B: the third start still warns A -> B, since its rounds continue
  # state computed on A's and B's. Comparing with the segment before (B, B) said nothing.
  from fedcompress.harness import rundir

  here = rundir.environment()
  warnings = []
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="run",
                                       rounds=3, progress=False)
  (tmp_path / "run").mkdir()
  for first_round, cpus in ((1, 4), (2, 2), (3, 2)):
    monkeypatch.setattr(rundir, "environment", lambda cpus=cpus: {**here, "usable_cpus": cpus})
    record = experiment._RunRecord(config, began=time.perf_counter(), warn=warnings.append)
    record.start(first_round, 3)
    record.write({m.ROUND: first_round})
    record.close()
  assert len(warnings) == 2, warnings
  assert all("this run started in another environment (usable_cpus 4 -> 2)" in w
             and "with other TensorFlow kernels, by more" in w for w in warnings), warnings


def test_a_resume_on_other_code_is_said(tmp_path, monkeypatch):
  # The README counts the commit in the environment a resume names, but it was left out
  # of the comparison: a run resumed on a commit that changed a codec said nothing.
  from fedcompress.harness import rundir

  here = rundir.environment()
  warnings = []
  config = experiment.ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="run",
                                       rounds=4, progress=False)
  (tmp_path / "run").mkdir()
  sources = [{"commit": "aaaa", "dirty": False}, {"commit": "aaaa", "dirty": False},
             {"commit": "bbbb", "dirty": True}, None]
  for first_round, source in enumerate(sources, start=1):
    monkeypatch.setattr(rundir, "environment", lambda s=source: {**here, "source": s})
    record = experiment._RunRecord(config, began=time.perf_counter(), warn=warnings.append)
    record.start(first_round, 4)
    record.write({m.ROUND: first_round})
    record.close()
  # The same code: nothing; other code: said; a segment outside a checkout: not known.
  assert warnings == ["this run started on other fedcompress code (commit aaaa -> bbbb; "
                      "uncommitted changes no -> yes); rounds from 3 on run on this "
                      "checkout's, so where the two differ in what a run computes, they "
                      "differ from an uninterrupted run"], warnings
