"""A run directory whose rounds are not all recorded is not continued (review R4).

Both the binaries' resume (`experiment.check_run_dir`) and the sweep's plan go through
`rundir.record_mismatch`, which checks this first.
"""

import pytest

from fedcompress import metrics as m
from fedcompress.harness import reporting, rundir


def _run(tmp_path, *, rows=0, checkpoints=(), config=True):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  if config:
    (run_dir / rundir.CONFIG_FILE).write_text('{"rounds": 3}')
  if rows is not None:
    csv = reporting.CsvReporter(str(run_dir / rundir.METRICS_FILE))
    for r in range(1, rows + 1):
      csv.write({m.ROUND: r})
    csv.close()
  for r in checkpoints:
    (run_dir / rundir.CHECKPOINT_DIR / f"round_{r}").mkdir(parents=True)
  return str(run_dir)


def test_a_run_recorded_round_by_round_continues(tmp_path):
  # A kill after a row and before its checkpoint leaves a row more: the round is redone.
  rundir.check_rounds_recorded(_run(tmp_path, rows=3, checkpoints=(1, 2)))


def test_rounds_without_config_json_are_not_continued(tmp_path):
  # The sweep resumed such a run at other settings and wrote them as its record.
  run_dir = _run(tmp_path, rows=2, checkpoints=(1, 2), config=False)
  with pytest.raises(rundir.RunDirectoryError, match="holds rounds but no config.json"):
    rundir.record_mismatch(run_dir, {"rounds": 3}, 3)


@pytest.mark.parametrize("rows,said", [
    (1, "complete rows to round 1, so the metrics of rounds 2-3 would be lost; delete "
        "round_2, round_3 in "),
    # No metrics.csv: the resume ran no round and ended in a FileNotFoundError traceback.
    (None, "it is missing, so the metrics of rounds 1-3 would be lost; delete round_1, "
           "round_2, round_3 in "),
])
def test_checkpoints_past_the_rows_are_not_continued(tmp_path, rows, said):
  run_dir = _run(tmp_path, rows=rows, checkpoints=(1, 2, 3))
  with pytest.raises(rundir.RunDirectoryError) as info:
    rundir.record_mismatch(run_dir, {"rounds": 3}, 3)
  assert said in str(info.value) and "round 3 was checkpointed" in str(info.value)


def _segments(run_dir, *segments):
  import json
  with open(f"{run_dir}/{rundir.RUN_INFO_FILE}", "w") as f:
    json.dump({"wall_time_s": 0.0, "segments": [
        {"rounds": rounds, "first_round": first, "last_round": last}
        for rounds, first, last in segments]}, f)


def test_a_resume_that_ran_no_round_does_not_raise_the_rounds_floor(tmp_path):
  # `--resume --rounds=12` stopped before its first round (s47 R3): every later resume
  # below 12 was refused as "rounds may only go up", with nothing of 12 in a row,
  # a checkpoint or config.json.
  run_dir = _run(tmp_path, rows=3, checkpoints=(1, 2, 3))
  _segments(run_dir, (3, 1, 3), (12, 4, 3))
  assert rundir.recorded_rounds(run_dir) == 3
  assert rundir.record_mismatch(run_dir, {"rounds": 6}, 6) is None
  _segments(run_dir, (3, 1, 3), (12, 4, 5))  # It ran rounds 4-5 of 12: the floor holds.
  assert rundir.recorded_rounds(run_dir) == 12
  assert "rounds may only go up" in rundir.record_mismatch(run_dir, {"rounds": 6}, 6)


def test_a_first_start_that_ran_no_round_does_not_set_the_floor(tmp_path):
  # config.json is written when the first segment starts: a --rounds=400 stopped in its
  # first round still refused every lower --rounds (R8 of s47).
  run_dir = _run(tmp_path, rows=None)
  (tmp_path / "run" / rundir.CONFIG_FILE).write_text('{"rounds": 400}')
  _segments(run_dir, (400, 1, 0))
  assert rundir.recorded_rounds(run_dir) is None
  assert rundir.record_mismatch(run_dir, {"rounds": 2}, 2) is None
  _segments(run_dir, (400, 1, 1))  # It ran round 1 of 400: the floor holds.
  assert rundir.recorded_rounds(run_dir) == 400
