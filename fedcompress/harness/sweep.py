"""Run a list of configurations one after another and compare them.

A sweep is a list of named runs, each a list of flags for one experiment binary's
flag set (from flagfiles, or the product of a grid over flag values). Before the first
run starts, every run's flags are parsed and checked, and every run directory that
already exists is compared with the run's settings: a run made with other settings
(another learning rate, other codec bits, ...) is neither reused nor overwritten, the
sweep refuses to start. Runs already finished with the same settings are skipped,
unfinished ones resumed; `summary.csv` and `summary.md` compare them all with a named
baseline, from each run's own `metrics.csv`.

With `seeds`, every configuration runs once per seed (run `<name>_seed<s>`, with
`--seed=<s>`), and the summary adds, per configuration, the mean final accuracy with
its standard deviation and 95% Student-t interval, and the difference to the baseline
paired by seed (`summary.seed_statistics`): `summary_seeds.csv`, a second table in
`summary.md`, and `frontier.png` (accuracy against uplink bits with error bars).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import flags

from fedcompress import metrics as m
from fedcompress.harness import cli, rundir, summary
from fedcompress.harness.reporting import read_metrics_csv


@dataclasses.dataclass(frozen=True)
class SweepRun:
  name: str
  args: tuple[str, ...]
  # Set by `with_seeds`: parsed after the common flags (as grid values are), so that a
  # flagfile among them that sets --seed (several in configs/ do) cannot override it.
  seed: int | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentKind:
  """How to define one binary's flags on a `FlagValues`, check them and run them.

  `config(fv)` is the run's `ExperimentConfig` (raising ValueError on bad values) and
  `run(fv, config)` runs it.
  """

  define_flags: Callable[[flags.FlagValues], None]
  config: Callable[[flags.FlagValues], Any]
  run: Callable[[flags.FlagValues, Any], Any]
  # The run's model_fn, for the checks on its tensors before any run starts; None
  # where building it needs the run's own files (Shakespeare's pretrained model).
  model_fn: Callable[[flags.FlagValues], Callable[[], Any]] | None = None
  # The run's client ids, for the check of a resume's client states before any run
  # starts (None: the run's own start checks them).
  client_ids: Callable[[flags.FlagValues], Sequence[str]] | None = None


def _image_kind() -> ExperimentKind:
  from fedcompress.harness import flags as fc_flags
  from fedcompress.harness.experiment import run_experiment

  def run(fv, config):
    return run_experiment(fc_flags.image_task_from_flags(fv), config)

  return ExperimentKind(fc_flags.define_image_experiment_flags,
                        fc_flags.image_config_from_flags, run,
                        model_fn=lambda fv: fc_flags.image_task_from_flags(fv).model_fn,
                        client_ids=lambda fv: fc_flags.image_task_from_flags(fv).client_ids)


def _shakespeare_kind() -> ExperimentKind:
  from fedcompress.harness import flags as fc_flags

  return ExperimentKind(fc_flags.define_shakespeare_experiment_flags,
                        fc_flags.shakespeare_config_from_flags,
                        lambda fv, config: fc_flags.run_shakespeare_from_flags(
                            fv, config=config),
                        model_fn=fc_flags.shakespeare_model_fn)


EXPERIMENTS: dict[str, Callable[[], ExperimentKind]] = {"emnist": _image_kind,
                                                         "shakespeare": _shakespeare_kind}


def get_experiment(name: str) -> ExperimentKind:
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(sorted(EXPERIMENTS))}")
  return EXPERIMENTS[name]()


def runs_from_flagfiles(paths: Sequence[str]) -> list[SweepRun]:
  """One run per flagfile, named after the file (e.g. compressed_u8.flags -> compressed_u8)."""
  runs = []
  for path in paths:
    if not os.path.isfile(path):
      raise ValueError(f"flagfile {path} does not exist")
    runs.append(SweepRun(os.path.splitext(os.path.basename(path))[0], (f"--flagfile={path}",)))
  return runs


def _folder_part(value: str) -> str:
  # Codec chains ('randk(fraction=0.1)|eden(bits=1)') hold characters a run folder's
  # name should not; equal names after this are refused by `run_sweep`.
  return re.sub(r"[^\w.=+-]+", "-", value).strip("-")


def runs_from_grid(grid: str) -> list[SweepRun]:
  """'aggregate_encoder=uniform,hadamard;aggregate_bits=2,4' -> the 4 combinations.

  Commas inside parentheses belong to a value (a codec's options, `eden(bits=1,rounds=1)`).
  """
  axes = []
  for part in grid.split(";"):
    if not part.strip():
      continue
    name, sep, values = part.partition("=")
    if not sep or not values.strip():
      raise ValueError(f"grid axis {part!r} is not of the form flag=value,value")
    if name.strip() in (axis for axis, _ in axes):
      # The last value would win in every run, named after both (aggregate_bits-2_...-4).
      raise ValueError(f"grid axis {name.strip()!r} is given twice: list its values in one "
                       f"axis ({name.strip()}=a,b)")
    axes.append((name.strip(), [v.strip() for v in re.split(r",(?![^()]*\))", values)
                                if v.strip()]))
  if not axes:  # itertools.product() of nothing is one empty run, not none.
    return []
  runs = []
  for combo in itertools.product(*(values for _, values in axes)):
    pairs = list(zip((name for name, _ in axes), combo, strict=True))
    runs.append(SweepRun("_".join(f"{n}-{_folder_part(v)}" for n, v in pairs),
                         tuple(f"--{n}={v}" for n, v in pairs)))
  return runs


def runs_from(flagfiles: Sequence[str], grid: str) -> list[SweepRun]:
  """The runs of `experiments/sweep.py`: one per flagfile, one per grid point, or, given
  both, each grid point over each flagfile (`compressed_u8_client_learning_rate-0.05`).

  Both gave the flagfiles' runs and the grid's beside them: the grid's ran the binary's
  defaults with the axis (uncompressed FedAvg), compared with the flagfile's as if the
  axis were all that differed (review R5 of s48).
  """
  files, points = runs_from_flagfiles(flagfiles), runs_from_grid(grid)
  if not (files and points):
    return files + points
  # A grid value comes after its flagfile's, so that the axis is what varies.
  return [SweepRun(f"{f.name}_{g.name}", f.args + g.args) for f in files for g in points]


def with_seeds(runs: Sequence[SweepRun], seeds: Sequence[int]) -> list[SweepRun]:
  """Each run once per seed, named `<name>_seed<s>`, with `--seed=<s>` last of its flags."""
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds must be distinct, got {list(seeds)}")
  return [SweepRun(f"{run.name}_seed{seed}", (*run.args, f"--seed={seed}"), seed)
          for run in runs for seed in seeds]


# How to give every configuration the same rounds; the sweep's --grid may also hold them.
_SAME_ROUNDS = "give one --rounds in --common_flags (a flagfile's gives way to it)"
_SAME_ROUNDS_IN_A_GRID = f"{_SAME_ROUNDS}, and no rounds axis in --grid (it comes after them)"


def _check_same_rounds(configurations: Sequence[str], rounds: Sequence[int],
                       compared_by: str = "--seeds", fix: str = _SAME_ROUNDS_IN_A_GRID
                       ) -> None:
  """The seed table (and the codec table) pair final accuracies and total bits: at other
  rounds, what the rounds did would read as the codec's doing (a 1-round 8-bit run
  against an 8-round baseline showed 27.7x fewer bits, 3.47x of them the codec's)."""
  by_rounds: dict[int, list[str]] = {}
  for name, r in zip(configurations, rounds, strict=True):
    by_rounds.setdefault(r, []).append(name)
  if len(by_rounds) > 1:
    said = "; ".join(f"{r} rounds: {', '.join(names)}" for r, names in by_rounds.items())
    raise ValueError(f"{compared_by} compares the configurations' final accuracy and total "
                     f"bits, so they must run the same number of rounds ({said}): {fix}")


# Of how a run runs, what a timing grid varies (--max_concurrent_clients, --workers) tells
# runs apart; the rest (where it logs, checkpoints, reads its data from) does not.
_NOT_COMPARED = rundir.HOW_NOT_WHAT - {"workers", "max_concurrent_clients"}


def _check_distinct(plans: Sequence[_Plan]) -> None:
  """Refuses two runs that would run the same settings under other names: a sweep ran
  `up_drive` uncompressed beside the baseline, its table saying 1.00x, when a
  --flagfile in --common_flags (read after each run's own) overrode the run's codec."""
  from fedcompress.harness.experiment import resolved_settings

  seen: dict[str, str] = {}
  for plan in plans:
    record = {k: rundir.jsonable(v) for k, v in plan.config.record().items()}
    record.update(resolved_settings(plan.config))  # One text however a codec is spelt.
    skip = (_NOT_COMPARED | rundir.SPELLINGS | rundir.OPTIMIZER_SPELLINGS
            | rundir.unused_flags(record))
    key = json.dumps({k: v for k, v in record.items() if k not in skip}, sort_keys=True,
                     default=str)
    if (other := seen.setdefault(key, plan.run.name)) != plan.run.name:
      raise ValueError(
          f"sweep runs {other!r} and {plan.run.name!r} would run the same settings (a "
          "--flagfile in --common_flags is read after each run's own and overrides what it "
          "sets, as a --grid axis over --flagfiles is after each file; grid values may "
          "spell one setting, 0.1 and 0.10, set a flag that does nothing in these runs, or "
          "only change where a run logs, checkpoints or reads its data): give the base "
          "flagfile in each run's flags, vary in the grid what the flagfiles do not set, "
          "or make the runs differ")


def _finished_rounds(run_dir: str) -> int:
  """Rounds both reported and checkpointed: a run killed after writing its last row but
  before its last checkpoint is resumed (the round is redone), not taken as finished."""
  path = os.path.join(run_dir, rundir.METRICS_FILE)
  if not os.path.exists(path):
    return 0
  rows = read_metrics_csv(path)
  done = int(rows[-1]["round"]) if rows else 0
  checkpointed = rundir.checkpoint_rounds(run_dir)
  if checkpointed is not None:  # Runs of the binaries always have the folder.
    done = min(done, max(checkpointed, default=0))
  return done


@dataclasses.dataclass
class _Plan:
  run: SweepRun
  fv: flags.FlagValues
  config: Any
  action: str  # "start", "resume" or "skip"
  done: int = 0


def _check_on_model(kind: ExperimentKind, fv: flags.FlagValues, config: Any,
                    name: str) -> None:
  """What a run's start refuses on its model's tensors (error feedback that compounds,
  a bit budget its plan cannot meet), checked before any run: a sweep refused them after
  the runs before it had run. Only for runs to start or resume: the model of an EMNIST
  run comes with its task, which reads (or downloads) the dataset, and a finished run is
  skipped without it (review R9 of s48)."""
  if kind.model_fn is None:
    return
  from fedcompress.harness.experiment import (
    check_allocation_on_model,
    check_error_feedback_on_model,
  )
  try:
    check_error_feedback_on_model(lambda: kind.model_fn(fv), config)
    check_allocation_on_model(lambda: kind.model_fn(fv), config)
  except ValueError as e:
    raise ValueError(f"sweep run {name!r}: {e}") from None


def _plan(kind: ExperimentKind, run: SweepRun, root_output_dir: str,
          common: Sequence[str]) -> _Plan:
  """Parses and checks one run's flags and decides what to do with its directory."""
  fv = flags.FlagValues()
  kind.define_flags(fv)
  try:
    seed = [] if run.seed is None else [f"--seed={run.seed}"]
    # absl keeps the last value. A run's flagfile comes before --common_flags, which set
    # what every run shares (fewer rounds, another learning rate); its grid values come
    # after, or a common flag would silently make runs of other names the same run.
    flagfiles = [a for a in run.args if a.startswith("--flagfile")]
    values = [a for a in run.args if not a.startswith("--flagfile")]
    left = fv(["sweep", *flagfiles, *common, *values, *seed,
               f"--root_output_dir={root_output_dir}", f"--experiment_name={run.name}"])
    cli.check_no_byte_order_mark(left[1:])
    cli.expand_home(fv)  # As the binaries' parser does.
    if left[1:]:  # The binaries refuse these too: a flag without its dashes does nothing.
      raise ValueError(f"unexpected arguments: {' '.join(left[1:])}")
    config = kind.config(fv)
    config.validate()
    # As for the checks on the model (`_check_on_model`): fixed_int under example
    # weights, or a codec secure aggregation or DP cannot take, was refused after the
    # runs before it had run. Without the data (a finished run is skipped without it):
    # the population is checked when a run starts.
    from fedcompress.harness.experiment import check_aggregation
    check_aggregation(config)
  except (flags.Error, ValueError) as e:
    raise ValueError(f"sweep run {run.name!r}: {e}") from None
  run_dir = config.run_dir
  if not rundir.has_run(run_dir):
    _check_on_model(kind, fv, config, run.name)
    return _Plan(run, fv, config, "start")
  try:
    mismatch = rundir.record_mismatch(
        run_dir, config.record_compared_with(rundir.read_config(run_dir)), config.rounds)
    done = _finished_rounds(run_dir)
  except ValueError as e:
    raise ValueError(f"sweep run {run.name!r}: {e}") from None
  if mismatch:
    raise ValueError(
        f"sweep run {run.name!r} exists in {run_dir} with other settings: {mismatch}. The "
        "sweep neither reuses nor overwrites it: pass another --root_output_dir, or delete "
        f"{run_dir} to run it again")
  if done >= config.rounds:
    return _Plan(run, fv, config, "skip", done)
  _check_on_model(kind, fv, config, run.name)
  fv.resume = True
  # The rounds a resume keeps are those checkpointed: none if `checkpoints/` is gone
  # (a finished run without it is skipped above, from its rows).
  kept = min(done, max(rundir.checkpoint_rounds(run_dir) or [], default=0))
  if config.error_feedback != "none" and kind.client_ids is not None:
    # Up front, as the rest: a sweep whose second run had lost its client states ran
    # the first before it stopped on the second.
    from fedcompress.harness.experiment import CLIENT_STATE_DIR
    from fedcompress.harness.loop import check_states_on_disk

    try:
      check_states_on_disk(os.path.join(run_dir, CLIENT_STATE_DIR), kept,
                           kind.client_ids(fv), config)
    except ValueError as e:
      raise ValueError(f"sweep run {run.name!r}: {e}") from None
  return _Plan(run, fv, kind.config(fv), "resume", kept)


def sweep_failure(error: Exception, *, experiment: str = "emnist",
                  hint: str = "rerunning the same command resumes the others") -> int | None:
  """`cli.run_failure` for a binary running sweeps (`experiments/sweep.py`,
  `tools/compare_codecs.py`, `tools/answers.py`).

  Args:
    error: what the sweep raised.
    experiment: the sweep's experiment (EMNIST's has embedded data to fall back on).
    hint: what happens to the runs not finished, said after a lost worker or failed round.
  """
  from fedcompress.harness.experiment import run_failure

  return run_failure(error, kept=f"Finished runs are kept; {hint}",
                     offline=experiment == "emnist")


# `_runtime_settings` of a run with none of the runtime flags: the local worker, one
# client per core (what `runtime.install` puts in place).
_LOCAL_DEFAULT = ((), None, None)
# Longest folder name, in bytes, of the file systems a run folder lives on (NAME_MAX).
MAX_NAME_BYTES = 255


def _timed_otherwise(plan: _Plan) -> str | None:
  """`max_concurrent_clients=None (one per core), ...` where the finished run `plan`
  skips was timed, in some segment that ran rounds, with other runtime settings than its
  flags give now: config.json's first start, or what a resume changed (a segment's
  `changed`; review R10 of s48). Compared as given: an explicit value equal to the
  default is named too."""
  record = rundir.read_config(plan.config.run_dir) or {}
  workers, concurrent, _ = _runtime_settings(plan.fv)
  now = {"workers": workers, "max_concurrent_clients": concurrent}
  segments = [s for s in rundir.read_run_info(plan.config.run_dir)["segments"]
              if isinstance(s, dict) and s.get("last_round", 0) >= s.get("first_round", 1)]

  def shown(key: str, value: Any) -> str:
    if key == "workers":
      return ",".join(value) or "none"
    return "None (one per core)" if value is None else str(value)

  other = []
  for key in now:
    if key not in record:
      continue
    values = [record[key]] if not segments else [
        (s.get("changed") or {}).get(key, record[key]) for s in segments]
    used = dict.fromkeys(tuple(v or ()) if key == "workers" else v for v in values)
    other += [f"{key}={shown(key, v)}" for v in used if v != now[key]]
  return ", ".join(other) or None


def _runtime_settings(fv: flags.FlagValues) -> tuple:
  """`runtime.configure`'s arguments for a run's --workers, --max_concurrent_clients and
  --worker_timeout_s (the timeout only with workers; none of them for a kind without)."""
  def value(name: str) -> Any:
    return fv[name].value if name in fv else None

  workers = tuple(value("workers") or ())
  return workers, value("max_concurrent_clients"), value("worker_timeout_s") if workers else None


def run_sweep(runs: Sequence[SweepRun], root_output_dir: str, *, experiment: str = "emnist",
              common_flags: str = "", baseline: str | None = None,
              seeds: Sequence[int] | None = None, same_rounds_for: str | None = None,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  """Checks every run, then runs, skips or resumes each; writes and returns the comparison.

  `seeds` runs every configuration once per seed (see the module docstring); the
  returned rows are then per run and seed, the seed table is in the files written.

  `same_rounds_for` names what compares the runs' totals (the codec table): their
  rounds must then be equal, checked before any run, as with `seeds`.

  A run's --workers, --max_concurrent_clients and --worker_timeout_s, where given, set
  where it runs (`runtime.configure`, as its binary); runs that give none run on the
  context in place. A sweep that configured one leaves the process on a local worker.

  Raises:
    ValueError: a run's flags or values are bad, or its directory holds a run made with
      other settings; raised before any run starts.
  """
  if not runs:
    raise ValueError("the sweep has no runs")
  # The runs' own flags are expanded as the binaries' parser does; the summary's reads
  # of their files, in a folder named '~/...', were not, and failed after every run.
  root_output_dir = os.path.expanduser(root_output_dir)
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise ValueError(f"run names must be unique: {names}")
  baseline = baseline or names[0]
  if baseline not in names:
    raise ValueError(f"baseline {baseline!r} is not one of the runs: {', '.join(names)}")
  kind = get_experiment(experiment)
  try:
    common = shlex.split(common_flags)
  except ValueError as e:
    raise ValueError(f"--common_flags: {e} in {common_flags!r}") from None
  configurations = names
  given = {r.name: r.args for r in runs}  # Each configuration's own flags, for the summary.
  if seeds:
    if any(a.startswith("--seed=") or a == "--seed" for a in common):
      raise ValueError("--seeds sets each run's --seed: remove --seed from --common_flags")
    if any(a.startswith("--seed=") for run in runs for a in run.args):
      raise ValueError("--seeds sets each run's --seed: drop the seed axis from --grid")
    runs = with_seeds(runs, seeds)
    names = [r.name for r in runs]
  if long := [n for n in names if len(n.encode()) > MAX_NAME_BYTES]:
    # Found only when the sweep reached it, after the runs before it had run.
    raise ValueError(f"run name {long[0]!r} is {len(long[0].encode())} bytes, more than a "
                     f"folder name can hold ({MAX_NAME_BYTES}): name the run (a flagfile's "
                     "name) or make the grid smaller")
  plans = [_plan(kind, run, root_output_dir, common) for run in runs]
  _check_distinct(plans)
  if seeds:
    _check_same_rounds(configurations, [plan.config.rounds for plan in plans[::len(seeds)]])
  elif same_rounds_for:
    # Its callers (compare_codecs) take flagfiles, no --grid.
    _check_same_rounds(configurations, [plan.config.rounds for plan in plans], same_rounds_for,
                       _SAME_ROUNDS)
  # A run that gives --workers or --max_concurrent_clients runs as its binary would run
  # it: the sweep had run every run on the process's context, its config.json naming
  # the workers. Runs that give neither run on the context in place (the caller's).
  from fedcompress.federated import runtime

  configured = None  # What the sweep put in place; None: the caller's context, untouched.
  timed_with = {}  # Skipped runs whose times were measured with other runtime settings.
  try:
    for plan in plans:
      name = plan.run.name
      if plan.action == "skip":
        if otherwise := _timed_otherwise(plan):
          timed_with[name] = otherwise
        log(f"== {name}: finished ({plan.done} rounds), skipped"
            + (f"; its times were measured with {otherwise}" if otherwise else ""))
        continue
      if plan.action == "resume":
        log(f"== {name}: " + (f"resuming after round {plan.done}" if plan.done
                              else "no checkpoint to resume from: starting over"))
      else:
        log(f"== {name}: {' '.join(plan.run.args)}")
      wanted = _runtime_settings(plan.fv)
      if wanted != (_LOCAL_DEFAULT if configured is None else configured):
        configured = ()  # Until it is in place: a failed connection is no context to keep.
        runtime.configure(*wanted)
        configured = wanted
      kind.run(plan.fv, plan.config)
  finally:
    if configured not in (None, _LOCAL_DEFAULT):  # Then on one local worker per core.
      runtime.configure()
  # With seeds, each run's bits are compared with the baseline's run of its own seed.
  ratio_baseline = ({f"{c}_seed{seed}": f"{baseline}_seed{seed}"
                     for c in configurations for seed in seeds} if seeds else baseline)
  summaries = summary.compare_runs([os.path.join(root_output_dir, n) for n in names],
                                   ratio_baseline)
  for s in summaries:
    if s["run"] in timed_with:
      s["timed_with"] = timed_with[s["run"]]
  # A seed table and plot of an earlier sweep into this folder would sit beside the new
  # summary as if they were of these runs; they are written anew below, or not at all.
  for stale in SEED_FILES:
    with contextlib.suppress(FileNotFoundError):
      os.remove(os.path.join(root_output_dir, stale))
  write_summary(summaries, root_output_dir, baseline, same_seed=bool(seeds),
                flags_given={"--common_flags": common, **given})
  if seeds:
    by_name = {s["run"]: s for s in summaries}
    accuracy = {c: {seed: by_name[f"{c}_seed{seed}"][m.EVAL_ACCURACY] for seed in seeds}
                for c in configurations}
    missing = [f"{c}_seed{seed}" for c, values in accuracy.items()
               for seed, v in values.items() if v is None]
    if missing:
      raise ValueError(f"runs without an evaluation: {', '.join(missing)}")
    uplink, coded = ({c: {seed: by_name[f"{c}_seed{seed}"][key] for seed in seeds}
                      for c in configurations}
                     for key in (m.AGGREGATE_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_CODED_BITS))
    write_seed_summary(summary.seed_statistics(accuracy, baseline, uplink, coded),
                       root_output_dir, baseline)
  return summaries


SEED_FILES = ("summary_seeds.csv", "frontier.png")  # What write_seed_summary adds.
# The final eval metrics and the totals under their canonical names: `aggregate_bits`
# was the run's total beside metrics.csv's per-round `aggregate/bits` and the codec's
# --aggregate_bits width.
SUMMARY_COLUMNS = ("run", "rounds", m.EVAL_ACCURACY, m.EVAL_LOSS, m.BROADCAST_CUMULATIVE_BITS,
                   m.AGGREGATE_CUMULATIVE_BITS, "broadcast_ratio", "aggregate_ratio",
                   "train_time_s", "wall_time_s", m.BROADCAST_CUMULATIVE_CODED_BITS,
                   m.AGGREGATE_CUMULATIVE_CODED_BITS, "broadcast_coded_ratio",
                   "aggregate_coded_ratio")


def write_summary(summaries: Sequence[dict[str, Any]], root: str, baseline: str,
                  same_seed: bool = False,
                  flags_given: Mapping[str, Sequence[str]] | None = None) -> None:
  """`summary.csv` and `summary.md`; `same_seed`: ratios are to the baseline's run of
  each run's own seed; `flags_given`: the flags each configuration was given (and
  `--common_flags`), listed in `summary.md`: a summary read later told a run's name
  but not the settings it ran with."""
  with open(os.path.join(root, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(summaries)
  whose = f"the bits of {baseline}'s run of the same seed" if same_seed else f"{baseline}'s bits"
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(f"Ratios are {whose} divided by the run's (x times fewer bits). Runs "
            f"{summary.format_sources(summaries)}.\n\n")
    if flags_given:
      f.write("Flags given (each run's `config.json` holds every setting it resolved to):\n\n"
              + "".join(f"- {name}: `{shlex.join(args)}`\n" if args else f"- {name}: none\n"
                        for name, args in flags_given.items()) + "\n")
    f.write(summary.format_markdown(summaries, baseline) + "\n")
    if note := summary.format_timing_note(summaries):
      f.write(f"\n{note}\n")


def write_seed_summary(stats: Sequence[dict[str, Any]], root: str, baseline: str) -> None:
  """`summary_seeds.csv`, the seed table appended to `summary.md`, and `frontier.png`."""
  from fedcompress.harness import plotting

  with open(os.path.join(root, "summary_seeds.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=summary.SEED_COLUMNS)
    writer.writeheader()
    writer.writerows(summary.seed_rows_for_csv(stats))
  with open(os.path.join(root, "summary.md"), "a") as f:
    f.write(f"\nFinal eval accuracy over seeds; the difference to {baseline} is paired by "
            "seed, and a configuration differs when that interval excludes 0.\n\n")
    f.write(summary.format_seed_markdown(stats, baseline) + "\n")
  plotting.plot_frontier(stats, os.path.join(root, "frontier.png"))


def parse_seeds(values: Sequence[str]) -> list[int]:
  """['0', '1', '2'] (a `--seeds` list) -> [0, 1, 2]; ValueError naming a bad entry."""
  seeds = []
  for value in values:
    try:
      seeds.append(int(value))
    except ValueError:
      raise ValueError(f"--seeds must be integers, got {value!r}") from None
    if seeds[-1] < 0:
      raise ValueError(f"--seeds must be >= 0, got {value!r}")
  return seeds
