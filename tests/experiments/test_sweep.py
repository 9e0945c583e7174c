"""experiments/sweep.py: three flagfiles, summary ratios from the runs' own CSVs."""

import csv
import json
import os
import re

import pytest
from absl.testing import flagsaver

from fedcompress import metrics as m
from fedcompress.harness import reporting, rundir

pytestmark = pytest.mark.slow  # runs the sweep binary end to end

COMMON = ("--dataset=digits --digits_clients=16 --clients_per_round=2 --rounds=2 "
          "--rounds_per_eval=2 --client_learning_rate=0.05")


@pytest.fixture(scope="module")
def binary(load_binary):
  with load_binary("experiments/sweep.py") as module:
    yield module


@pytest.fixture
def flagfiles(tmp_path):
  specs = {"base": [], "u8": ["--broadcast_encoder=uniform", "--aggregate_encoder=uniform"],
           "u4_up": ["--aggregate_encoder=uniform", "--aggregate_bits=4"]}
  paths = []
  for name, lines in specs.items():
    path = tmp_path / f"{name}.flags"
    path.write_text("\n".join(lines) + "\n")
    paths.append(str(path))
  return paths


def _sweep(binary, root, flagfiles):
  with flagsaver.flagsaver(flagfiles=flagfiles, root_output_dir=str(root), baseline="base",
                           common_flags=COMMON, grid=""):
    return binary.main(["sweep"])


def test_sweep_summary_matches_runs_and_resumes(binary, flagfiles, tmp_path, capsys):
  root = tmp_path / "sweep"
  assert _sweep(binary, root, flagfiles) == 0
  with open(root / "summary.csv", newline="") as f:
    summary = {r["run"]: r for r in csv.DictReader(f)}
  assert set(summary) == {"base", "u8", "u4_up"}
  finals = {name: reporting.read_metrics_csv(str(root / name / "metrics.csv"))[-1]
            for name in summary}
  base = finals["base"]
  for name, row in summary.items():
    final = finals[name]
    assert int(row["rounds"]) == final[m.ROUND] == 2
    assert int(row["broadcast/cumulative_bits"]) == final[m.BROADCAST_CUMULATIVE_BITS]
    assert float(row["aggregate_ratio"]) == pytest.approx(
        base[m.AGGREGATE_CUMULATIVE_BITS] / final[m.AGGREGATE_CUMULATIVE_BITS])
    assert float(row["eval/accuracy"]) == pytest.approx(final[m.EVAL_ACCURACY])
    # Each run's own: their accuracies are all at chance (0.1) here, their losses not.
    assert float(row["eval/loss"]) == pytest.approx(final[m.EVAL_LOSS])
  assert len({float(row["eval/loss"]) for row in summary.values()}) == 3
  # u4_up compresses only the uplink: broadcast ratio 1, aggregate ratio well above u8's.
  assert float(summary["u4_up"]["broadcast_ratio"]) == 1.0
  assert float(summary["u4_up"]["aggregate_ratio"]) > float(summary["u8"]["aggregate_ratio"]) > 3

  markdown = (root / "summary.md").read_text()
  # The table names the code that made its runs (here, this checkout's).
  source = rundir.source()
  label = source["commit"] + ("+modified" if source["dirty"] else "")
  assert f"Runs made on {label} (base, u8, u4_up)." in markdown
  for name, row in summary.items():
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {name} |"))
    ratios = re.findall(r"([0-9.]+)x", line)
    assert [float(r) for r in ratios] == pytest.approx(
        [float(row["broadcast_ratio"]), float(row["aggregate_ratio"])], abs=0.006)

  # Interrupt u8 after round 1: drop its last row and checkpoint. The next sweep skips
  # the finished runs and resumes u8 only.
  metrics_path = root / "u8" / "metrics.csv"
  lines = metrics_path.read_text().splitlines()
  metrics_path.write_text("\n".join(lines[:-1]) + "\n")
  import shutil

  shutil.rmtree(root / "u8" / "checkpoints" / "round_2")
  before = {n: os.path.getmtime(root / n / "metrics.csv") for n in ("base", "u4_up")}
  capsys.readouterr()
  assert _sweep(binary, root, flagfiles) == 0
  out = capsys.readouterr().out
  assert "base: finished (2 rounds), skipped" in out and "u8: resuming after round 1" in out
  assert before == {n: os.path.getmtime(root / n / "metrics.csv") for n in ("base", "u4_up")}
  rows = reporting.read_metrics_csv(str(metrics_path))
  assert [r[m.ROUND] for r in rows] == [1, 2]

  # Killed after its last row but before its last checkpoint: not finished, resumed.
  shutil.rmtree(root / "u4_up" / "checkpoints" / "round_2")
  capsys.readouterr()
  assert _sweep(binary, root, flagfiles) == 0
  assert "u4_up: resuming after round 1" in capsys.readouterr().out
  assert (root / "u4_up" / "checkpoints" / "round_2").is_dir()
  rows = reporting.read_metrics_csv(str(root / "u4_up" / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == [1, 2]

  # Unfinished, with `checkpoints/` deleted: the run starts over, and says so (the sweep
  # said "resuming after round 1" from the rows).
  shutil.rmtree(root / "u8" / "checkpoints")
  lines = metrics_path.read_text().splitlines()
  metrics_path.write_text("\n".join(lines[:-1]) + "\n")
  capsys.readouterr()
  assert _sweep(binary, root, flagfiles) == 0
  out = capsys.readouterr().out  # The run's warning is among its round lines.
  assert "u8: no checkpoint to resume from: starting over" in out
  assert "warning: no checkpoint in" in out and "rounds 1-1 are run again" in out
  assert [r[m.ROUND] for r in reporting.read_metrics_csv(str(metrics_path))] == [1, 2]


def test_missing_flagfile_is_one_line(binary, tmp_path, capsys):
  rc = _sweep(binary, tmp_path / "s", [str(tmp_path / "nope.flags")])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "does not exist" in err[0]


def test_grid_expands_to_the_product():
  from fedcompress.harness.sweep import runs_from_grid

  runs = runs_from_grid("aggregate_encoder=uniform,identity;aggregate_bits=2,4")
  assert [r.name for r in runs] == [
      "aggregate_encoder-uniform_aggregate_bits-2", "aggregate_encoder-uniform_aggregate_bits-4",
      "aggregate_encoder-identity_aggregate_bits-2", "aggregate_encoder-identity_aggregate_bits-4"]
  assert runs[1].args == ("--aggregate_encoder=uniform", "--aggregate_bits=4")
  assert runs_from_grid("") == []
  with pytest.raises(ValueError, match="flag=value"):
    runs_from_grid("aggregate_bits")
  # The last value won in every run, named after both.
  with pytest.raises(ValueError, match="grid axis 'aggregate_bits' is given twice"):
    runs_from_grid("aggregate_bits=2;aggregate_bits=4")


def test_grid_values_may_be_chains():
  from fedcompress.harness.sweep import runs_from_grid

  runs = runs_from_grid("aggregate_encoder=randk(fraction=0.1)|eden(bits=1,rounds=1),drive")
  assert [r.args for r in runs] == [
      ("--aggregate_encoder=randk(fraction=0.1)|eden(bits=1,rounds=1)",),
      ("--aggregate_encoder=drive",)]
  # A folder name without parentheses or pipes.
  assert runs[0].name == "aggregate_encoder-randk-fraction=0.1-eden-bits=1-rounds=1"


GRID_COMMON = "--dataset=digits --digits_clients=16 --clients_per_round=2 --rounds=1"


def _grid_sweep(binary, root, grid, common):
  with flagsaver.flagsaver(flagfiles=[], grid=grid, root_output_dir=str(root),
                           baseline=None, common_flags=common):
    return binary.main(["sweep"])


def test_changed_flags_are_refused_not_reused(binary, tmp_path, capsys):
  # Issue 13, item 1: finished runs were skipped on their round count alone, so after
  # --common_flags changed, the summary showed the old runs and the sweep exited 0.
  # One finished run is enough here; that every run is checked before the first starts
  # is the next test's.
  root = tmp_path / "sweep"
  grid = "aggregate_encoder=uniform"
  assert _grid_sweep(binary, root, grid, GRID_COMMON) == 0
  before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
  capsys.readouterr()
  rc = _grid_sweep(binary, root, grid,
                   GRID_COMMON + " --aggregate_bits=2 --client_learning_rate=0.5")
  out, err = capsys.readouterr()
  assert rc == 2, (out, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: sweep run "
                                                 "'aggregate_encoder-uniform'"), lines
  for fragment in ("--client_learning_rate=0.5 (recorded 0.02)",
                   "aggregate_codec uniform(bits=2)>10000 (recorded uniform(bits=8)>10000)",
                   "another --root_output_dir"):
    assert fragment in lines[0], (fragment, lines[0])
  assert out == ""  # Refused before any run started.
  assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before


def test_every_run_is_checked_before_the_first_starts(binary, tmp_path, capsys):
  # Issue 13, item 9: a bad value in a later run was found only after the earlier runs
  # had finished.
  root = tmp_path / "sweep"
  rc = _grid_sweep(binary, root, "client_learning_rate=0.1,inf", GRID_COMMON)
  out, err = capsys.readouterr()
  assert rc == 2, (out, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "sweep run 'client_learning_rate-inf'" in lines[0], lines
  assert "flag --client_learning_rate=inf: must be a finite number > 0" in lines[0]
  assert not root.exists() and out == ""


def test_a_resume_without_its_client_states_is_refused_before_the_first_run(
    binary, tmp_path, capsys):
  # The check ran only when the sweep reached that run: the runs before it ran first,
  # then the sweep stopped (R3, s41).
  import shutil

  root = tmp_path / "sweep"
  ef = " --error_feedback=ef --aggregate_encoder=topk --aggregate_encoder_args=fraction=0.1"
  assert _grid_sweep(binary, root, "seed=1", GRID_COMMON + ef) == 0
  shutil.rmtree(root / "seed-1" / "client_states")
  capsys.readouterr()
  rc = _grid_sweep(binary, root, "seed=0,1", GRID_COMMON.replace("--rounds=1", "--rounds=2")
                   + ef)
  out, err = capsys.readouterr()
  assert rc == 2, (out, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(
      "error: sweep run 'seed-1': cannot resume from round 1: 2 of the 2 clients that took "
      "part by then have no state in "), lines
  assert out == "" and not (root / "seed-0").exists()


def test_grid_values_win_over_common_flags(binary, tmp_path, capsys):
  # absl keeps the last value: both runs ran at 0.02 and were tabled as two.
  root = tmp_path / "sweep"
  assert _grid_sweep(binary, root, "client_learning_rate=0.1,0.5",
                     GRID_COMMON + " --client_learning_rate=0.02") == 0
  capsys.readouterr()
  recorded = [json.loads((root / f"client_learning_rate-{v}" / rundir.CONFIG_FILE).read_text())
              for v in ("0.1", "0.5")]
  assert [r["client_learning_rate"] for r in recorded] == [0.1, 0.5]


def test_a_flag_without_dashes_is_refused(binary, tmp_path, capsys):
  # Not a flag: the default ran, where the binaries refuse it.
  rc = _grid_sweep(binary, tmp_path / "sweep", "client_learning_rate=0.1",
                   GRID_COMMON + " clients_per_round=3")
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1, err
  assert "sweep run 'client_learning_rate-0.1': unexpected arguments: clients_per_round=3" in err[0]
  assert not (tmp_path / "sweep").exists()


def test_unbalanced_quote_in_common_flags(binary, tmp_path, capsys):
  # Issue 13, item 10: the message was only "No closing quotation".
  common = '--dataset=digits --experiment_name="oops'
  rc = _grid_sweep(binary, tmp_path / "sweep", "rounds=1", common)
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1, err
  assert "--common_flags: No closing quotation" in err[0] and common in err[0]
  assert not (tmp_path / "sweep").exists()


def test_seeds_give_statistics_per_configuration(binary, flagfiles, tmp_path, capsys):
  root = tmp_path / "seeds"
  # Four clients of the digits' quarter each: one round leaves chance (0.1) behind, and
  # the seeds differ. At COMMON's two small clients every run ended at 0.1, where a seed
  # table that read seed 0's run for every seed, or did not pair, passed too.
  common = ("--dataset=digits --digits_clients=4 --clients_per_round=4 --rounds=1 "
            "--client_learning_rate=0.05")
  with flagsaver.flagsaver(flagfiles=flagfiles[:2], root_output_dir=str(root), baseline="base",
                           common_flags=common, grid="", seeds=["0", "1"]):
    assert binary.main(["sweep"]) == 0
  out = capsys.readouterr().out
  assert "| configuration | seeds | eval accuracy mean |" in out
  accuracy = {(c, s): reporting.read_metrics_csv(
      str(root / f"{c}_seed{s}" / "metrics.csv"))[-1][m.EVAL_ACCURACY]
              for c in ("base", "u8") for s in (0, 1)}
  for (c, s) in accuracy:
    config = json.loads((root / f"{c}_seed{s}" / "config.json").read_text())
    assert config["seed"] == s
  # Else the checks below cannot tell a paired difference from an unpaired one, or one
  # seed's run read for both.
  assert len(set(accuracy.values())) == 4, accuracy
  with open(root / "summary_seeds.csv", newline="") as f:
    rows = {r["configuration"]: r for r in csv.DictReader(f)}
  assert rows["base"]["accuracy_mean"] and float(rows["base"]["accuracy_mean"]) == (
      pytest.approx((accuracy["base", 0] + accuracy["base", 1]) / 2))
  diffs = [accuracy["u8", s] - accuracy["base", s] for s in (0, 1)]
  assert diffs[0] != diffs[1]  # A nonzero interval: its t factor is seen.
  assert float(rows["u8"]["diff_mean"]) == pytest.approx(sum(diffs) / 2)
  # Two seeds: t_{0.975, 1} = 12.706 times the standard error.
  half = 12.7062 * abs(diffs[0] - diffs[1]) / 2
  assert float(rows["u8"]["diff_ci_high"]) == pytest.approx(sum(diffs) / 2 + half, abs=1e-4)
  assert (root / "frontier.png").exists()
