"""`durable.replace`: the new file's data reaches the disk before the rename, the rename after.

A power loss cannot be staged here, so the order of the system calls is what is checked:
`os.fsync` and `os.replace` are wrapped (they still run) and the files they acted on
recorded, by the path each descriptor names in /proc.
"""

from __future__ import annotations

import os

import pytest

from fedcompress import metrics as m
from fedcompress.harness import durable, reporting, rundir


@pytest.fixture
def calls(monkeypatch):
  seen = []
  real_fsync, real_replace = os.fsync, os.replace

  def fsync(fd):
    seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
    real_fsync(fd)

  def replace(src, dst):
    seen.append(("replace", os.path.abspath(src), os.path.abspath(dst)))
    real_replace(src, dst)

  monkeypatch.setattr(os, "fsync", fsync)
  monkeypatch.setattr(os, "replace", replace)
  return seen


def test_data_then_rename_then_directory(tmp_path, calls):
  tmp, path = tmp_path / "x.tmp", tmp_path / "x.json"
  tmp.write_text("new")
  path.write_text("old")
  durable.replace(str(tmp), str(path))
  assert path.read_text() == "new" and not tmp.exists()
  assert calls == [("fsync", str(tmp)), ("replace", str(tmp), str(path)),
                   ("fsync", str(tmp_path))]


def test_run_records_go_through_it(tmp_path, calls):
  # config.json and run_info.json (rundir), a metrics.csv rewritten on resume (reporting).
  run_dir = str(tmp_path)
  rundir.start_segment(run_dir, {"seed": 0}, rounds=2, first_round=1)
  for name in (rundir.CONFIG_FILE, rundir.RUN_INFO_FILE):
    path = os.path.join(run_dir, name)
    assert calls.index(("fsync", path + ".tmp")) < calls.index(("replace", path + ".tmp", path))
  assert calls[-1] == ("fsync", run_dir)
  calls.clear()
  metrics = os.path.join(run_dir, rundir.METRICS_FILE)
  first = reporting.CsvReporter(metrics)
  first.start(first_round=1, total_rounds=2)
  for round_num in (1, 2):
    first.write({**{c: 0.5 for c in m.CANONICAL}, m.ROUND: round_num})
  first.close()
  calls.clear()
  reporting.CsvReporter(metrics).start(first_round=2, total_rounds=2)
  assert [r[m.ROUND] for r in reporting.read_metrics_rows(metrics)[1]] == ["1"]
  assert calls == [("fsync", metrics + ".tmp"), ("replace", metrics + ".tmp", metrics),
                   ("fsync", run_dir)]
