"""How the sweep orders a run's flags, checked on its plan (no run starts).

The sweep binary end to end is in tests/experiments/test_sweep.py; the seeds in
tests/harness/test_sweep_seeds.py.
"""

import os

from fedcompress.harness import sweep


def test_common_flags_win_over_a_runs_flagfile_and_grid_values_over_both(tmp_path):
  # The README's sweep: the tutorial flagfiles say 10 rounds at 0.02, --common_flags 20
  # rounds at 0.1, and every run must train 20 at 0.1. Parsed the other way round, the
  # flagfile silently won and the sweep ran the tutorial's settings.
  flagfile = tmp_path / "tutorial.flags"
  flagfile.write_text("--rounds=10\n--client_learning_rate=0.02\n"
                      "--aggregate_encoder=uniform\n--clients_per_round=5\n")
  common = ["--dataset=digits", "--rounds=20", "--client_learning_rate=0.1",
            "--clients_per_round=3"]
  kind = sweep.get_experiment("emnist")
  (run,) = sweep.runs_from_flagfiles([str(flagfile)])
  plan = sweep._plan(kind, run, str(tmp_path / "out"), common)  # noqa: SLF001
  assert plan.action == "start" and not (tmp_path / "out").exists()
  assert (plan.config.rounds, plan.config.client_learning_rate) == (20, 0.1)
  assert plan.config.clients_per_round == 3
  # What only the flagfile sets still applies.
  assert plan.config.aggregate_codec.name == "uniform"
  # A grid value (a run's own non-flagfile argument) wins over both.
  gridded = sweep.SweepRun(run.name, (*run.args, "--clients_per_round=4"))
  plan = sweep._plan(kind, gridded, str(tmp_path / "out"), common)  # noqa: SLF001
  assert (plan.config.rounds, plan.config.clients_per_round) == (20, 4)


def test_flagfiles_and_a_grid_run_the_grid_over_each_flagfile(tmp_path):
  import pytest

  # Both gave the flagfiles' runs and the grid's beside them: the grid's ran without the
  # flagfile's codec (uncompressed), compared with it as if the axis were all that
  # differed (R5 of s48).
  flagfiles = []
  for name, bits in (("u8", 8), ("u4", 4)):
    path = tmp_path / f"{name}.flags"
    path.write_text(f"--aggregate_encoder=uniform\n--aggregate_bits={bits}\n")
    flagfiles.append(str(path))
  runs = sweep.runs_from(flagfiles, "client_learning_rate=0.05,0.1")
  assert [r.name for r in runs] == [
      "u8_client_learning_rate-0.05", "u8_client_learning_rate-0.1",
      "u4_client_learning_rate-0.05", "u4_client_learning_rate-0.1"]
  kind = sweep.get_experiment("emnist")
  plans = [sweep._plan(kind, run, str(tmp_path / "out"), ["--dataset=digits"])  # noqa: SLF001
           for run in runs]
  assert [(p.config.aggregate_codec.describe_resolved(threshold=False),
           p.config.client_learning_rate) for p in plans] == [
      ("uniform(bits=8,deterministic=False,word_bits=28)", 0.05),
      ("uniform(bits=8,deterministic=False,word_bits=28)", 0.1),
      ("uniform(bits=4,deterministic=False,word_bits=28)", 0.05),
      ("uniform(bits=4,deterministic=False,word_bits=28)", 0.1)]
  # A grid axis that overrides what the flagfiles differ in makes them one run: the
  # refusal says the grid comes after each file (R8 of s48).
  with pytest.raises(ValueError, match=r"would run the same settings .*as a --grid axis "
                     r"over --flagfiles is after each file"):
    sweep.run_sweep(sweep.runs_from(flagfiles, "aggregate_bits=2"), str(tmp_path / "o2"),
                    common_flags="--dataset=digits --rounds=1")
  # Either alone is as before.
  assert [r.name for r in sweep.runs_from(flagfiles, "")] == ["u8", "u4"]
  assert len(sweep.runs_from([], "client_learning_rate=0.05,0.1")) == 2


def test_a_budget_the_plan_refuses_is_refused_before_any_run(tmp_path):
  # It was refused when its run started, after the runs before it had trained (R6 of
  # s48): widths=16 at 2 bits a coordinate cannot cover the narrowest width.
  import pytest

  common = ["--dataset=digits", "--rounds=1", "--aggregate_encoder=uniform",
            "--aggregate_bits_per_coordinate=2"]
  kind = sweep.get_experiment("emnist")
  ok, refused = sweep.runs_from_grid("aggregate_widths=1,16")
  assert sweep._plan(kind, ok, str(tmp_path / "out"), common).action == "start"  # noqa: SLF001
  with pytest.raises(ValueError, match=r"^sweep run 'aggregate_widths-16': a budget of 2 bits "
                     r"per coordinate \(3326740 bits\) does not cover"):
    sweep._plan(kind, refused, str(tmp_path / "out"), common)  # noqa: SLF001
  down = ["--dataset=digits", "--rounds=1", "--broadcast_encoder=uniform",
          "--broadcast_bits_per_coordinate=2", "--broadcast_widths=16"]
  with pytest.raises(ValueError, match=r"^sweep run 'd': a budget of 2 bits per coordinate"):
    sweep._plan(kind, sweep.SweepRun("d", ()), str(tmp_path / "out"), down)  # noqa: SLF001
  assert not (tmp_path / "out").exists()


def test_an_error_feedback_codec_that_compounds_is_refused_before_any_run(tmp_path):
  # The check runs on the model's tensors: it was made when each run started, so a sweep
  # ran the runs before such a codec to the end, then stopped.
  import pytest

  common = ["--dataset=digits", "--digits_clients=4", "--clients_per_round=2", "--rounds=1",
            "--error_feedback=ef"]
  runs = sweep.runs_from_grid("aggregate_encoder=identity,kashin(bits=2)")
  with pytest.raises(ValueError, match=r"sweep run .*kashin.*: --error_feedback needs an "
                     r"uplink codec whose residual stays bounded; with kashin on the 3136x512"):
    sweep.run_sweep(runs, str(tmp_path / "out"), common_flags=" ".join(common))
  assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_flagfile_with_a_byte_order_mark_is_said_as_such(tmp_path):
  # The binaries said it; a sweep parses each run's flags itself and said "unexpected
  # arguments: --dataset=digits", the mark invisible.
  import pytest

  marked = tmp_path / "windows.flags"
  marked.write_text("--dataset=digits\n--rounds=1\n", encoding="utf-8-sig")
  (run,) = sweep.runs_from_flagfiles([str(marked)])
  with pytest.raises(ValueError, match=r"sweep run 'windows': '--dataset=digits' starts with "
                     r"an invisible byte-order mark \(U\+FEFF\)"):
    sweep._plan(sweep.get_experiment("emnist"), run, str(tmp_path / "out"), [])  # noqa: SLF001


def test_refusals_that_need_no_run_come_before_any_run(tmp_path):
  # Each was refused when its own run started, after the runs before it had run (a
  # review): fixed_int under example weights, a codec secure aggregation cannot take,
  # more digits clients than digits, and Shakespeare's uniform weights without padding.
  import pytest

  common = "--dataset=digits --digits_clients=4 --clients_per_round=2 --rounds=1"
  cases = [
      ("aggregate_encoder=identity,fixed_int", common, "emnist",
       "sweep run 'aggregate_encoder-fixed_int': fixed_int clips and scales absolute values"),
      ("aggregate_encoder=fixed_int,drive",
       common + " --secure_aggregation --client_weighting=uniform", "emnist",
       "sweep run 'aggregate_encoder-drive': --secure_aggregation needs a codec that sends"),
      ("digits_clients=4,1500", common, "emnist",
       "sweep run 'digits_clients-1500': --digits_clients=1500, but the digits have only"),
      ("client_weighting=num_examples,uniform", "--model=fedopt_lstm --rounds=1",
       "shakespeare", "sweep run 'client_weighting-uniform': --client_weighting=uniform "
       "counts every sampled client once"),
      ("aggregate_encoder=identity,fixed_int", "--model=fedopt_lstm --rounds=1",
       "shakespeare", "sweep run 'aggregate_encoder-fixed_int': fixed_int clips and scales"),
  ]
  for grid, flags, experiment, message in cases:
    out = tmp_path / experiment / grid.replace(",", "_")
    with pytest.raises(ValueError, match=message):
      sweep.run_sweep(sweep.runs_from_grid(grid), str(out), experiment=experiment,
                      common_flags=flags)
    assert not out.exists() or not any(out.iterdir()), grid


def test_planning_needs_no_data(tmp_path, monkeypatch):
  # A finished EMNIST sweep reran without its dataset (skipping every run) until a
  # check built each run's task; the population is checked when a run starts.
  image = sweep.get_experiment("emnist")

  def no_data(fv):
    raise AssertionError("a run's data was read while planning")

  monkeypatch.setitem(sweep.EXPERIMENTS, "emnist", lambda: sweep.ExperimentKind(
      image.define_flags, image.config, image.run, model_fn=no_data, client_ids=no_data))
  plan = sweep._plan(sweep.get_experiment("emnist"), sweep.SweepRun("a", ()),  # noqa: SLF001
                     str(tmp_path), ["--dataset=digits", "--secure_aggregation",
                                     "--client_weighting=uniform",
                                     "--aggregate_encoder=fixed_int"])
  assert plan.action == "start"


def test_a_runs_workers_are_used_not_only_recorded(tmp_path):
  # The sweep ran every run on the local worker, its config.json naming --workers; the
  # binary with the same flags connects to them. No worker listens on port 1: the run
  # must fail connecting, and the process be left on its local worker.
  import pytest

  from fedcompress.federated import runtime

  common = ("--dataset=digits --digits_clients=4 --clients_per_round=2 --rounds=1 "
            "--workers=127.0.0.1:1 --worker_timeout_s=2")
  with pytest.raises(Exception, match="127.0.0.1:1 not ready after 2"):
    sweep.run_sweep(sweep.runs_from_grid("aggregate_encoder=identity"), str(tmp_path),
                    common_flags=common)
  assert not runtime.is_remote()


def test_runs_of_other_names_with_the_same_settings_are_refused(tmp_path):
  # A base flagfile in --common_flags, read after each run's own, ran `up_drive`
  # uncompressed beside the baseline (1.00x in the table); a grid value spelt twice ran
  # one setting as three runs.
  import pytest

  drive = tmp_path / "up_drive.flags"
  drive.write_text("--aggregate_encoder=drive\n")
  base = tmp_path / "base.flags"
  base.write_text("--aggregate_encoder=identity\n--dataset=digits\n--rounds=1\n")
  baseline = tmp_path / "baseline.flags"
  baseline.write_text("--rounds=1\n")
  runs = sweep.runs_from_flagfiles([str(baseline), str(drive)])
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=r"^sweep runs 'baseline' and 'up_drive' would run the "
                     r"same settings \(a --flagfile in --common_flags is read after"):
    sweep.run_sweep(runs, str(out), common_flags=f"--flagfile={base}")
  with pytest.raises(ValueError, match=r"^sweep runs 'client_learning_rate-0.1' and "
                     r"'client_learning_rate-0.10' would run the same settings"):
    sweep.run_sweep(sweep.runs_from_grid("client_learning_rate=0.1,0.10"), str(out),
                    common_flags="--dataset=digits --rounds=1")
  # One codec spelt two ways, and a flag that does nothing without --dp (R10, s46).
  for grid in ("aggregate_encoder=uniform(bits=8),uniform(bits=8,deterministic=false)",
               "dp_clip=0.1,0.5", "rounds_per_checkpoint=1,2", "tf_logs=false,true"):
    with pytest.raises(ValueError, match=r"would run the same settings"):
      sweep.run_sweep(sweep.runs_from_grid(grid), str(out),
                      common_flags="--dataset=digits --rounds=1")
  # Shakespeare from scratch: --sanity_client checks a pretrained model, which it has not.
  with pytest.raises(ValueError, match=r"would run the same settings"):
    sweep.run_sweep(sweep.runs_from_grid("sanity_client=HAMLET,KING"), str(out),
                    experiment="shakespeare", common_flags="--model=fedopt_lstm --rounds=1")
  assert not out.exists()
  # Runs that differ go on: the test below runs 0.1 and 0.2; and a timing grid, whose
  # runs differ in how they run, is planned (it was refused as the same settings).
  plans = [sweep._plan(sweep.get_experiment("emnist"), run, str(out),  # noqa: SLF001
                       ["--dataset=digits", "--rounds=1"])
           for run in sweep.runs_from_grid("max_concurrent_clients=1,2")]
  sweep._check_distinct(plans)  # noqa: SLF001


def test_a_root_folder_under_home_is_expanded_for_the_summary_too(tmp_path, monkeypatch):
  # The runs' flags were expanded, the summary's reads of their files were not: every
  # run ran, then the summary failed on '~/sw/baseline/metrics.csv'.
  import dataclasses

  monkeypatch.setenv("HOME", str(tmp_path))
  ran = []
  kind = dataclasses.replace(sweep.get_experiment("emnist"),
                             run=lambda fv, config: ran.append(config.run_dir))
  monkeypatch.setattr(sweep, "get_experiment", lambda name: kind)
  monkeypatch.setattr(sweep.summary, "compare_runs",
                      lambda dirs, baseline: [{"run": os.path.basename(d), "dir": d}
                                              for d in dirs])
  written = []
  monkeypatch.setattr(sweep, "write_summary",
                      lambda summaries, root, *a, **k: written.append(root))
  sweep.run_sweep(sweep.runs_from_grid("client_learning_rate=0.1,0.2"), "~/sw",
                  common_flags="--dataset=digits --rounds=1")
  assert ran == [str(tmp_path / "sw" / n) for n in ("client_learning_rate-0.1",
                                                     "client_learning_rate-0.2")]
  assert written == [str(tmp_path / "sw")]
