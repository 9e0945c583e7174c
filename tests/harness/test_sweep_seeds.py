"""run_sweep(seeds=...): one run per configuration and seed, and the seed statistics.

The experiment is a stand-in (no TFF) whose final accuracy is a known function of its
flags and seed, so the summary's numbers can be checked by hand; the end-to-end run of
the binary with real runs is in tests/experiments/test_sweep.py.
"""

import csv
import math
import os

import pytest
from absl import flags

from fedcompress import metrics as m
from fedcompress.harness import reporting, sweep
from fedcompress.harness.experiment import ExperimentConfig

# Accuracy of seed s: 0.80 + 0.01 s for the baseline; `--gain` is added on top, plus a
# seed-dependent wobble for the "noisy" configuration. Uplink bits are `--bits` times
# (1 + s), as a codec's can depend on the seed; `--coded` records entropy-coded bits at
# half the raw size.
_WOBBLE = {0: 0.01, 1: -0.01, 2: 0.0}


def _define(fv):
  flags.DEFINE_string("root_output_dir", None, "", flag_values=fv)
  flags.DEFINE_string("experiment_name", None, "", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "", flag_values=fv)
  flags.DEFINE_float("gain", 0.0, "", flag_values=fv)
  flags.DEFINE_boolean("wobble", False, "", flag_values=fv)
  flags.DEFINE_integer("bits", 100, "", flag_values=fv)
  flags.DEFINE_boolean("coded", False, "", flag_values=fv)
  flags.DEFINE_boolean("resume", False, "", flag_values=fv)
  flags.DEFINE_integer("rounds", 1, "", flag_values=fv)  # Recorded; a run writes one.


def _config(fv):
  return ExperimentConfig(root_output_dir=fv.root_output_dir,
                          experiment_name=fv.experiment_name, rounds=fv.rounds, seed=fv.seed,
                          resume=fv.resume, recorded={"gain": fv.gain, "wobble": fv.wobble,
                                                      "bits": fv.bits,
                                                      "coded": fv.coded})


def _run(fv, config):
  accuracy = 0.80 + 0.01 * fv.seed + fv.gain + (_WOBBLE[fv.seed] if fv.wobble else 0.0)
  bits = fv.bits * (1 + fv.seed)
  os.makedirs(config.run_dir)
  writer = reporting.CsvReporter(f"{config.run_dir}/metrics.csv")
  writer.start(1, 1)
  coded = {m.AGGREGATE_CODED_BITS: bits // 2,
           m.AGGREGATE_CUMULATIVE_CODED_BITS: bits // 2} if fv.coded else {}
  writer.write({m.ROUND: 1, m.EVAL_ACCURACY: accuracy, m.EVAL_LOSS: 1.0,
                m.BROADCAST_CUMULATIVE_BITS: 10, m.AGGREGATE_CUMULATIVE_BITS: bits,
                m.BROADCAST_BITS: 10, m.AGGREGATE_BITS: bits, m.ROUND_TIME_S: 1.0, **coded})
  writer.close()


@pytest.fixture
def fake_experiment(monkeypatch):
  seen = []

  def run(fv, config):
    seen.append((config.experiment_name, fv.seed))
    _run(fv, config)

  monkeypatch.setitem(sweep.EXPERIMENTS, "fake",
                      lambda: sweep.ExperimentKind(_define, _config, run))
  return seen


RUNS = [sweep.SweepRun("base", ()), sweep.SweepRun("better", ("--gain=0.02", "--bits=10")),
        sweep.SweepRun("noisy", ("--gain=0.0", "--wobble", "--bits=1000", "--coded"))]


def test_a_common_flagfile_cannot_override_the_seeds(tmp_path, fake_experiment):
  # configs/codecs/up_100x.flags and others set --seed=0; given in --common_flags (parsed
  # after each run's flags) it made every "seed" run with seed 0.
  flagfile = tmp_path / "seeded.flags"
  flagfile.write_text("--seed=0\n--bits=7\n")
  sweep.run_sweep(RUNS[:1], str(tmp_path / "out"), experiment="fake", seeds=[1, 2],
                  common_flags=f"--flagfile={flagfile}", log=lambda _: None)
  assert fake_experiment == [("base_seed1", 1), ("base_seed2", 2)]


def test_a_seed_axis_in_the_grid_is_refused_with_seeds(tmp_path, fake_experiment):
  # 'seed=1,2' with --seeds=0,1 planned four runs of which two pairs were the same run.
  with pytest.raises(ValueError, match="drop the seed axis from --grid"):
    sweep.run_sweep(sweep.runs_from_grid("seed=1,2"), str(tmp_path), experiment="fake",
                    seeds=[0, 1], log=lambda _: None)
  assert fake_experiment == []


def test_configurations_of_other_lengths_are_refused_with_seeds(tmp_path, fake_experiment):
  # Their final accuracies and total bits were paired as if the codec made the difference.
  runs = [sweep.SweepRun("base", ("--rounds=8",)), sweep.SweepRun("short", ("--rounds=1",)),
          sweep.SweepRun("also", ("--rounds=8", "--bits=10"))]
  with pytest.raises(ValueError, match=r"same number of rounds \(8 rounds: base, also; "
                                       r"1 rounds: short\)"):
    sweep.run_sweep(runs, str(tmp_path), experiment="fake", seeds=[0, 1], log=lambda _: None)
  assert fake_experiment == []  # Before any run.
  # Flagfiles of other lengths with one --rounds for all (common flags come after a
  # run's flagfile, as configs/ sets --rounds) are a sweep.
  for name, rounds, bits in (("base", 8, 100), ("short", 1, 10)):
    (tmp_path / f"{name}.flags").write_text(f"--rounds={rounds}\n--bits={bits}\n")
  runs = [sweep.SweepRun(n, (f"--flagfile={tmp_path / n}.flags",)) for n in ("base", "short")]
  sweep.run_sweep(runs, str(tmp_path / "out"), experiment="fake", seeds=[0],
                  common_flags="--rounds=1", log=lambda _: None)
  assert [name for name, _ in fake_experiment] == ["base_seed0", "short_seed0"]


def test_every_configuration_runs_once_per_seed(tmp_path, fake_experiment):
  sweep.run_sweep(RUNS, str(tmp_path), experiment="fake", seeds=[0, 1, 2], log=lambda _: None)
  assert fake_experiment == [(f"{name}_seed{s}", s) for name in ("base", "better", "noisy")
                             for s in (0, 1, 2)]
  with open(tmp_path / "summary_seeds.csv", newline="") as f:
    rows = {r["configuration"]: r for r in csv.DictReader(f)}
  assert list(rows) == ["base", "better", "noisy"]
  # base: 0.80, 0.81, 0.82.
  half = 4.302653 * 0.01 / math.sqrt(3)
  assert float(rows["base"]["accuracy_mean"]) == pytest.approx(0.81)
  assert float(rows["base"]["accuracy_std"]) == pytest.approx(0.01)
  assert float(rows["base"]["accuracy_ci_low"]) == pytest.approx(0.81 - half, abs=1e-6)
  assert rows["base"]["diff_mean"] == "" and rows["base"]["differs"] == ""
  # better: exactly 0.02 above base on every seed, so the paired interval is [0.02,
  # 0.02]: zero width, no spread to judge a difference by (Estimate.excludes_zero).
  assert float(rows["better"]["diff_mean"]) == pytest.approx(0.02)
  assert float(rows["better"]["diff_ci_low"]) == pytest.approx(0.02)
  assert rows["better"]["differs"] == ""
  # Mean of 10, 20 and 30 bits; no coded size recorded.
  assert float(rows["better"]["uplink_bits"]) == 20
  assert rows["better"]["uplink_coded_bits"] == ""
  assert float(rows["noisy"]["uplink_coded_bits"]) == 1000
  # noisy: differences 0.01, -0.01, 0: mean 0, interval +-4.30 * 0.01 / sqrt(3).
  assert float(rows["noisy"]["diff_mean"]) == pytest.approx(0.0, abs=1e-12)
  assert float(rows["noisy"]["diff_ci_high"]) == pytest.approx(half, abs=1e-6)
  assert rows["noisy"]["differs"] == "False"
  markdown = (tmp_path / "summary.md").read_text()
  assert "| better | 3 | 0.8300 | 0.0100 |" in markdown
  assert "| +0.0200 | [+0.0200, +0.0200] | n/a | 20bit |  |" in markdown
  assert "| no | 1.95Kibit | 1000bit |" in markdown
  assert "the bits of base's run of the same seed" in markdown
  assert (tmp_path / "frontier.png").stat().st_size > 10_000
  # The per-run table still lists every run, each compared with the baseline's run of
  # its own seed: 300 / 30 bits at seed 2, not seed 0's 100 / 30.
  with open(tmp_path / "summary.csv", newline="") as f:
    per_run = {r["run"]: r for r in csv.DictReader(f)}
  assert len(per_run) == 9
  assert {float(per_run[f"better_seed{s}"]["aggregate_ratio"]) for s in (0, 1, 2)} == {10}
  assert float(per_run["noisy_seed2"]["aggregate_ratio"]) == 0.1


def test_a_later_sweep_without_seeds_leaves_no_seed_table_behind(tmp_path, fake_experiment):
  # The seed table and frontier of the first sweep stayed beside the second's summary.
  sweep.run_sweep(RUNS[:2], str(tmp_path), experiment="fake", seeds=[0, 1],
                  log=lambda _: None)
  assert (tmp_path / "summary_seeds.csv").exists() and (tmp_path / "frontier.png").exists()
  sweep.run_sweep(RUNS[:2], str(tmp_path), experiment="fake", log=lambda _: None)
  assert not (tmp_path / "summary_seeds.csv").exists()
  assert not (tmp_path / "frontier.png").exists()
  assert "| better |" in (tmp_path / "summary.md").read_text()


def test_seed_flag_conflicts_are_refused(tmp_path, fake_experiment):
  with pytest.raises(ValueError, match="remove --seed from --common_flags"):
    sweep.run_sweep(RUNS, str(tmp_path), experiment="fake", seeds=[0, 1],
                    common_flags="--seed=3")
  with pytest.raises(ValueError, match="distinct"):
    sweep.run_sweep(RUNS, str(tmp_path), experiment="fake", seeds=[1, 1])
  assert fake_experiment == []


def test_parse_seeds():
  assert sweep.parse_seeds(["0", "1", "2"]) == [0, 1, 2]
  with pytest.raises(ValueError, match="integers, got 'x'"):
    sweep.parse_seeds(["0", "x"])


def test_a_runs_failure_is_one_line_and_a_bug_is_not_hidden(capsys):
  # compare_codecs and answers caught only ValueError: an unreadable dataset (not a
  # ValueError) ended them in a traceback, where the sweep binary printed one line.
  from fedcompress.federated import runtime
  from fedcompress.harness.loop import NonFiniteModelError
  from fedcompress.tasks.errors import DatasetUnavailableError

  missing = DatasetUnavailableError("emnist", "/nowhere", "emnist_all.sqlite",
                                    OSError("no network"))
  cases = [(missing, "emnist", 2, "Or run offline with --dataset=digits."),
           (missing, "shakespeare", 2, "point --cache_dir at a folder that has it."),
           (ValueError("bad\nsetting"), "emnist", 2, "bad setting"),
           (flags.IllegalFlagValueError("--rounds=x"), "emnist", 2, "--rounds=x"),
           (runtime.WorkerUnavailableError("worker gone"), "emnist", 1,
            "worker gone Finished runs are kept; rerunning the same command resumes the others."),
           (NonFiniteModelError("loss is nan"), "emnist", 1, "loss is nan")]
  for error, experiment, code, end in cases:
    assert sweep.sweep_failure(error, experiment=experiment) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert err.rstrip().endswith(end), err
  assert sweep.sweep_failure(KeyError("a bug"), experiment="emnist") is None
  assert capsys.readouterr().err == ""


def test_a_single_runs_failure_says_what_is_kept(capsys):
  # The experiment binaries and the demo share the sweeps' classification; what they keep
  # after a lost worker is the run's checkpoints (or, for the demo, nothing).
  from fedcompress.federated import runtime
  from fedcompress.harness import experiment

  assert experiment.run_failure(runtime.WorkerUnavailableError("worker gone.")) == 1
  assert capsys.readouterr().err == (
      "error: worker gone. Checkpoints written so far are kept (--resume continues).\n")
  assert experiment.run_failure(runtime.WorkerUnavailableError("gone."), kept="Rerun the demo") == 1
  assert capsys.readouterr().err == "error: gone. Rerun the demo.\n"
  assert experiment.run_failure(RuntimeError("a bug")) is None
  assert capsys.readouterr().err == ""


def test_the_summary_says_what_flags_each_configuration_was_given(tmp_path, fake_experiment):
  # summary.md named runs by folder only: read later, it did not tell what they ran with.
  sweep.run_sweep(RUNS[:2], str(tmp_path), experiment="fake", seeds=[0],
                  common_flags="--bits=7 --gain='0.01'", log=lambda _: None)
  markdown = (tmp_path / "summary.md").read_text()
  assert ("- --common_flags: `--bits=7 --gain=0.01`\n- base: none\n"
          "- better: `--gain=0.02 --bits=10`\n") in markdown
