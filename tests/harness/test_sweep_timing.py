"""A finished run a sweep skips keeps its times: a table says which were measured with
other runtime settings than its flags give (R5 of s48).

The title and "Flags given" named the new --max_concurrent_clients beside round times
measured with the old one, without a word.
"""

import pytest

from fedcompress.harness import sweep

pytestmark = pytest.mark.slow  # one real round

COMMON = "--dataset=digits --digits_clients=4 --clients_per_round=2 --rounds=1"


def test_times_of_other_runtime_settings_are_said(tmp_path):
  from tools import codec_table

  runs = sweep.runs_from_grid("client_learning_rate=0.05")
  out = str(tmp_path / "out")
  logs = []
  sweep.run_sweep(runs, out, common_flags=COMMON, log=logs.append)
  assert "timed" not in (tmp_path / "out" / "summary.md").read_text()
  logs.clear()
  summaries = sweep.run_sweep(runs, out, common_flags=f"{COMMON} --max_concurrent_clients=1",
                              log=logs.append)
  assert logs == ["== client_learning_rate-0.05: finished (1 rounds), skipped; its times "
                  "were measured with max_concurrent_clients=None (one per core)"]
  note = ("Times of runs finished before, with other runtime settings than these flags "
          "give: client_learning_rate-0.05 (max_concurrent_clients=None (one per core)); "
          "delete their folders to time them again.")
  assert (tmp_path / "out" / "summary.md").read_text().rstrip().endswith(note)
  rows = codec_table.table_rows(summaries, out, "client_learning_rate-0.05")
  assert codec_table.format_table(rows, "t").endswith(note)
  # The same settings again: nothing to say.
  logs.clear()
  sweep.run_sweep(runs, out, common_flags=COMMON, log=logs.append)
  assert logs == ["== client_learning_rate-0.05: finished (1 rounds), skipped"]
  # A round resumed with other settings counts too: config.json keeps the first start's
  # (R10 of s48).
  longer = sweep.runs_from_grid("client_learning_rate=0.05")
  sweep.run_sweep(longer, out, common_flags=COMMON.replace("--rounds=1", "--rounds=2")
                  + " --max_concurrent_clients=1", log=lambda _: None)
  logs.clear()
  sweep.run_sweep(longer, out, common_flags=COMMON.replace("--rounds=1", "--rounds=2"),
                  log=logs.append)
  assert logs == ["== client_learning_rate-0.05: finished (2 rounds), skipped; its times "
                  "were measured with max_concurrent_clients=1"]


def test_a_finished_budgeted_run_is_skipped_without_building_its_model(tmp_path):
  # The plan check built the task (reading, or downloading, federated EMNIST) for every
  # budgeted run, finished or not: a sweep of finished runs failed without the data
  # (R9 of s48).
  import dataclasses

  common = f"{COMMON} --aggregate_encoder=uniform --aggregate_bits_per_coordinate=4"
  runs = sweep.runs_from_grid("client_learning_rate=0.05")
  out = str(tmp_path / "out")
  sweep.run_sweep(runs, out, common_flags=common, log=lambda _: None)

  def no_data(fv):
    raise ValueError("the model's task reads the dataset")

  kind = dataclasses.replace(sweep.get_experiment("emnist"), model_fn=no_data)
  plan = sweep._plan(kind, runs[0], out, common.split())  # noqa: SLF001
  assert plan.action == "skip"
  with pytest.raises(ValueError, match="the model's task reads the dataset"):
    sweep._plan(kind, runs[0], str(tmp_path / "new"), common.split())  # noqa: SLF001
