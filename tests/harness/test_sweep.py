"""How the sweep orders a run's flags, checked on its plan (no run starts).

The sweep binary end to end is in tests/experiments/test_sweep.py; the seeds in
tests/harness/test_sweep_seeds.py.
"""

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
