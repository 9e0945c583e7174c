"""Compare finished runs: totals, ratios to a baseline, final accuracy.

Reads each run's own `metrics.csv`, so what a summary says is what the run recorded.
With several seeds per configuration, `seed_statistics` gives each configuration's
mean final accuracy with a Student-t confidence interval, and its difference to a
baseline paired by seed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fedcompress import metrics as m
from fedcompress.harness import rundir
from fedcompress.harness.reporting import read_metrics_csv
from fedcompress.units import format_bits


def run_summary(run_dir: str) -> dict[str, Any]:
  """Final round, totals, final eval metrics and wall time of one run directory."""
  rows = read_metrics_csv(os.path.join(run_dir, rundir.METRICS_FILE))
  if not rows:
    raise ValueError(f"{run_dir} has no rounds in metrics.csv")
  evaluated = [r for r in rows if r.get(m.EVAL_ACCURACY) is not None]
  info_path = os.path.join(run_dir, rundir.RUN_INFO_FILE)
  wall_time_s = None
  if os.path.exists(info_path):
    wall_time_s = rundir.read_json(info_path).get("wall_time_s")
  last_eval = evaluated[-1] if evaluated else {}
  return {
      # Which code made the run: reused runs may predate the tool that compares them.
      "sources": run_sources(run_dir),
      "run": os.path.basename(os.path.normpath(run_dir)),
      "rounds": int(rows[-1][m.ROUND]),
      m.EVAL_ACCURACY: last_eval.get(m.EVAL_ACCURACY),
      m.EVAL_LOSS: last_eval.get(m.EVAL_LOSS),
      m.BROADCAST_CUMULATIVE_BITS: int(rows[-1][m.BROADCAST_CUMULATIVE_BITS]),
      m.AGGREGATE_CUMULATIVE_BITS: int(rows[-1][m.AGGREGATE_CUMULATIVE_BITS]),
      "train_time_s": float(sum(r[m.ROUND_TIME_S] for r in rows)),
      "wall_time_s": wall_time_s,
      m.BROADCAST_CUMULATIVE_CODED_BITS: rows[-1].get(m.BROADCAST_CUMULATIVE_CODED_BITS),
      m.AGGREGATE_CUMULATIVE_CODED_BITS: rows[-1].get(m.AGGREGATE_CUMULATIVE_CODED_BITS),
      "mean_round_time_s": float(sum(r[m.ROUND_TIME_S] for r in rows)) / len(rows),
      # Differential privacy spent by the end (None without --dp).
      "privacy_epsilon": rows[-1].get(m.PRIVACY_EPSILON),
  }


def run_sources(run_dir: str) -> list[str]:
  """The commits whose code ran the run's segments, in order, without repeats.

  `<commit>` (12 hex digits), `<commit>+modified` when tracked files differed from it,
  or `unrecorded` for a segment without a record (runs made before 309c068, or away
  from a git checkout). A segment that ran no round (a resume of a finished run, or
  one killed in its first round) made none of the run's rows and is left out, and so is
  one whose rounds a later segment all redid (killed before its first checkpoint, then
  resumed from round 1).
  """
  labels: list[str] = []
  segments = rundir.read_run_info(run_dir)["segments"]
  for i, segment in enumerate(segments):
    # Its rows last until the next segment redoes them (from that one's first round).
    last = min([segment.get("last_round", math.inf)]
               + [s.get("first_round", math.inf) - 1 for s in segments[i + 1:]])
    if last < segment.get("first_round", 0):
      continue
    source = (segment.get("environment") or {}).get("source")
    label = ("unrecorded" if not source else
             source["commit"] + ("+modified" if source.get("dirty") else ""))
    if label not in labels:
      labels.append(label)
  return labels


def format_sources(summaries: Sequence[Mapping[str, Any]], names: bool = True) -> str:
  """'made on 95a401c2c3d4 (a, b) and 8a9ba6a0c1e2 (c)': which code made which runs.

  `names=False` gives counts ('(2 runs)') instead of run names. A run resumed on other
  code is listed under each of its commits.
  """
  groups: dict[str, list[str]] = {}
  for s in summaries:
    for label in s.get("sources") or ["unrecorded"]:
      groups.setdefault(label, []).append(s["run"])
  parts = []
  for label, runs in groups.items():
    what = ", ".join(runs) if names else f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
    code = "code not recorded" if label == "unrecorded" else label
    parts.append(f"{code} ({what})")
  return "made on " + (" and ".join(parts) if len(parts) < 3
                       else ", ".join(parts[:-1]) + " and " + parts[-1])


def format_timing_note(summaries: Sequence[Mapping[str, Any]]) -> str | None:
  """What a table says of runs a sweep skipped as finished whose times were measured
  with other runtime settings than its flags give now (`timed_with`, set by the sweep):
  the title and flags named the new ones beside the old times (review R5 of s48)."""
  other = [f"{s['run']} ({s['timed_with']})" for s in summaries if s.get("timed_with")]
  if not other:
    return None
  return (f"Times of runs finished before, with other runtime settings than these flags "
          f"give: {', '.join(other)}; delete their folders to time them again.")


def compare_runs(run_dirs: Sequence[str], baseline: str | Mapping[str, str] | None = None
                 ) -> list[dict[str, Any]]:
  """`run_summary` of each run plus bit ratios baseline/run (x times fewer bits).

  `baseline` is one run's name (the first run's when None), or a mapping from each run
  to the run it is compared with: with several seeds, a run's bits are compared with
  the baseline's run of the same seed, since a codec's bits can depend on the seed.
  """
  if isinstance(run_dirs, str | os.PathLike):  # 'r' read as r/metrics.csv, one per letter.
    raise ValueError(f"run_dirs is a list of run directories, got the one path {run_dirs!r}: "
                     "pass [path]")
  summaries = [run_summary(d) for d in run_dirs]
  names = [s["run"] for s in summaries]
  if repeated := sorted({n for n in names if names.count(n) > 1}):
    # Tables and baselines name runs by folder: runs/a/original and runs/b/original
    # were two rows of one name, and a baseline of that name the last of them.
    paths = [str(d) for d, n in zip(run_dirs, names, strict=True) if n in repeated]
    raise ValueError(f"runs compared share a folder name ({', '.join(repeated)}: "
                     f"{', '.join(paths)}); the table names runs by folder: compare runs "
                     "of distinct names")
  by_name = {s["run"]: s for s in summaries}
  if isinstance(baseline, str) and baseline not in by_name:
    # The first run stood in, under the baseline's name in the table's header.
    raise ValueError(f"baseline {baseline!r} is none of the runs compared: "
                     f"{', '.join(by_name)}")
  for s in summaries:
    if isinstance(baseline, Mapping):
      if baseline.get(s["run"]) not in by_name:
        raise ValueError(f"run {s['run']!r} has no baseline run among the runs compared "
                         f"(mapped to {baseline.get(s['run'])!r})")
      base = by_name[baseline[s["run"]]]
    else:
      base = by_name.get(baseline, summaries[0])
    for direction in DIRECTIONS:
      raw = f"{direction}/cumulative_bits"
      s[f"{direction}_ratio"] = base[raw] / s[raw] if s[raw] else None
      # What was sent: the entropy-coded size where the run recorded one (an entropy
      # coder's raw size is its bit-packing's, several times what it sent).
      sent = sent_bits(s, direction)
      s[f"{direction}_coded_ratio"] = sent_bits(base, direction) / sent if sent else None
  return summaries


DIRECTIONS = ("broadcast", "aggregate")


def format_savings(run: Mapping[str, Any], base: Mapping[str, Any]) -> str:
  """'c sent 3.47x fewer broadcast bits and 3.47x fewer aggregate bits than o'.

  Two `run_summary`s. Runs of other lengths are compared per round: the ratio of a
  1-round run's total to a 3-round baseline's read as a codec 3x better than it is.
  Bits as sent (`sent_bits`): an entropy-coded run's raw totals said 2.84x where it
  sent 3.03x fewer (review R3 of s48).
  """
  same = run["rounds"] == base["rounds"]
  ratios = []
  for direction in DIRECTIONS:
    sent, baseline = sent_bits(run, direction), sent_bits(base, direction)
    if not same:
      sent, baseline = sent / max(run["rounds"], 1), baseline / max(base["rounds"], 1)
    ratios.append(f"{baseline / sent:.2f}x" if sent else "n/a")
  per = "" if same else (f" per round ({run['rounds']} rounds against "
                         f"{base['rounds']})")
  coded = " (as entropy-coded)" if coded_directions([run, base]) else ""
  return (f"{run['run']} sent {ratios[0]} fewer broadcast bits and {ratios[1]} fewer "
          f"aggregate bits{per}{coded} than {base['run']}")


def sent_bits(summary: Mapping[str, Any], direction: str) -> int:
  """A run's total `direction` bits as sent: coded where recorded, else raw."""
  coded = summary.get(f"{direction}/cumulative_coded_bits")
  return summary[f"{direction}/cumulative_bits"] if coded is None else coded


def coded_directions(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
  """The directions in which some run sent other than its raw bits (an entropy coder)."""
  return [d for d in DIRECTIONS
          if any(sent_bits(s, d) != s[f"{d}/cumulative_bits"] for s in summaries)]


def _seconds(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.0f}s"


def format_markdown(summaries: Sequence[dict[str, Any]], baseline: str) -> str:
  """The comparison table; beside the raw bits, the entropy-coded bits sent and their
  ratios in a direction where a run coded them, and a note if the runs' lengths differ."""
  coded = coded_directions(summaries)
  extra = "".join(f" {d} sent (coded) | {baseline}/run {d} sent |" for d in coded)
  lines = [f"| run | rounds | eval accuracy | broadcast | aggregate | {baseline}/run broadcast "
           f"| {baseline}/run aggregate |{extra} time in rounds | wall time |",
           "|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(coded) + "---:|---:|"]
  for s in summaries:
    accuracy = "n/a" if s[m.EVAL_ACCURACY] is None else f"{s[m.EVAL_ACCURACY]:.4f}"
    sent = "".join(f" {format_bits(sent_bits(s, d))} | {s[f'{d}_coded_ratio']:.2f}x |"
                   for d in coded)
    lines.append(f"| {s['run']} | {s['rounds']} | {accuracy} | "
                 f"{format_bits(s[m.BROADCAST_CUMULATIVE_BITS])} | "
                 f"{format_bits(s[m.AGGREGATE_CUMULATIVE_BITS])} | "
                 f"{s['broadcast_ratio']:.2f}x | {s['aggregate_ratio']:.2f}x |{sent} "
                 f"{s['train_time_s']:.0f}s | {_seconds(s.get('wall_time_s'))} |")
  if len(rounds := sorted({s["rounds"] for s in summaries})) > 1:
    # A 2-round run read as "0.50x" against a 1-round baseline, as if its codec cost that.
    lines += ["", f"The runs differ in length ({', '.join(map(str, rounds))} rounds): the "
              "ratios compare their totals, not their bits per round."]
  return "\n".join(lines)


# --- Several seeds per configuration -----------------------------------------------

CONFIDENCE = 0.95


def t_quantile(p: float, df: int) -> float:
  """The `p` quantile of Student's t with `df` degrees of freedom (scipy's, exact)."""
  # scipy comes with scikit-learn, a dependency; imported here so that importing the
  # harness does not load it.
  from scipy import stats

  return float(stats.t.ppf(p, df))


@dataclasses.dataclass(frozen=True)
class Estimate:
  """Mean of `n` numbers with sample std and a Student-t confidence interval.

  `std`, `ci_low` and `ci_high` are None for a single number (no spread to estimate).
  """

  n: int
  mean: float
  std: float | None
  ci_low: float | None
  ci_high: float | None

  @property
  def half_width(self) -> float | None:
    return None if self.ci_high is None else self.ci_high - self.mean

  @property
  def has_spread(self) -> bool:
    """Whether the values differ by more than float32 rounding (so an interval means
    something).

    An interval of zero width (every number the same, as when every seed's accuracy
    moves by the same test image) is no evidence: the t statistic is 0/0, and the
    spread of the next seed is unknown. Nor is a spread of rounding alone: metrics.csv
    holds float32 accuracies (60/360 is 0.1666666716337204), so one more image right on
    every seed differed by ~1.5e-8 from seed to seed, and passed a 1e-12 test as
    significant. float32 keeps 6e-8 of a value; 1e-6 is well above that, and well below
    the 1e-5 of one example in 100,000.
    """
    return self.std is not None and self.std > 1e-6 * max(1.0, abs(self.mean))

  @property
  def excludes_zero(self) -> bool | None:
    """Whether the interval lies wholly on one side of 0; None without a usable interval
    (one value, or no spread: `has_spread`)."""
    if self.ci_low is None or not self.has_spread:
      return None
    return self.ci_low > 0 or self.ci_high < 0


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
  """Mean, sample standard deviation (n - 1) and `mean +- t_{(1+c)/2, n-1} std / sqrt(n)`."""
  values = [float(v) for v in values]
  if not values:
    raise ValueError("no values to estimate from")
  n = len(values)
  mean = math.fsum(values) / n
  if n == 1:
    return Estimate(1, mean, None, None, None)
  std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
  half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
  return Estimate(n, mean, std, mean - half, mean + half)


def seed_statistics(accuracy: Mapping[str, Mapping[int, float]], baseline: str,
                    uplink_bits: Mapping[str, Mapping[int, float]] | None = None,
                    uplink_coded_bits: Mapping[str, Mapping[int, float | None]] | None = None
                    ) -> list[dict[str, Any]]:
  """Per configuration: final accuracy over seeds, and its paired difference to `baseline`.

  Args:
    accuracy: configuration -> {seed: final eval accuracy}.
    baseline: the configuration the others are compared with.
    uplink_bits: configuration -> {seed: total uplink bits}, averaged into the row.
    uplink_coded_bits: configuration -> {seed: total entropy-coded uplink bits, or None
      for a run that did not record them}, averaged beside `uplink_bits`.

  Returns:
    One dict per configuration, in `accuracy`'s order: `configuration`, `seeds`,
    `accuracy` (an `Estimate`), `diff` (the `Estimate` of accuracy minus the
    baseline's, over the seeds both have: a paired comparison, so the variation
    between seeds common to both cancels; None for the baseline), `differs` (the
    diff's interval excludes 0; None when it cannot say), `uplink_bits` (mean) and
    `uplink_coded_bits` (mean; None unless every seed's run recorded them).
  """
  if baseline not in accuracy:
    raise ValueError(f"baseline {baseline!r} is not one of the configurations: "
                     f"{', '.join(accuracy)}")
  base = accuracy[baseline]
  rows = []
  for name, by_seed in accuracy.items():
    seeds = sorted(by_seed)
    diff = None
    if name != baseline:
      shared = [s for s in seeds if s in base]
      if shared:
        diff = estimate([by_seed[s] - base[s] for s in shared])
    bits = (uplink_bits or {}).get(name)
    coded = list(((uplink_coded_bits or {}).get(name) or {}).values())
    rows.append({
        "configuration": name, "seeds": seeds,
        "accuracy": estimate([by_seed[s] for s in seeds]),
        "diff": diff, "differs": None if diff is None else diff.excludes_zero,
        "uplink_bits": None if not bits else math.fsum(bits.values()) / len(bits),
        "uplink_coded_bits": (None if not coded or None in coded
                              else math.fsum(coded) / len(coded)),
    })
  return rows


def _fmt(value: float | None, digits: int = 4, sign: bool = False) -> str:
  if value is None:
    return "n/a"
  return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _interval(e: Estimate | None, sign: bool = False) -> str:
  if e is None or e.ci_low is None:
    return "n/a"
  return f"[{_fmt(e.ci_low, sign=sign)}, {_fmt(e.ci_high, sign=sign)}]"


SEED_COLUMNS = ("configuration", "seeds", "accuracy_mean", "accuracy_std", "accuracy_ci_low",
                "accuracy_ci_high", "diff_mean", "diff_ci_low", "diff_ci_high", "differs",
                "uplink_bits", "uplink_coded_bits")


def seed_rows_for_csv(stats: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """`seed_statistics` flattened to the `SEED_COLUMNS` of a CSV file."""
  out = []
  for s in stats:
    acc, diff = s["accuracy"], s["diff"]
    out.append({
        "configuration": s["configuration"], "seeds": " ".join(map(str, s["seeds"])),
        "accuracy_mean": acc.mean, "accuracy_std": acc.std, "accuracy_ci_low": acc.ci_low,
        "accuracy_ci_high": acc.ci_high, "diff_mean": diff and diff.mean,
        "diff_ci_low": diff and diff.ci_low, "diff_ci_high": diff and diff.ci_high,
        "differs": s["differs"], "uplink_bits": s["uplink_bits"],
        "uplink_coded_bits": s.get("uplink_coded_bits")})
  return out


def format_seed_markdown(stats: Sequence[Mapping[str, Any]], baseline: str) -> str:
  """The per-configuration table: accuracy over seeds and the paired difference.

  The uplink is the raw (bit-packed) size; an entropy coder's size is its own column,
  filled where it differs from the raw size.
  """
  pct = f"{CONFIDENCE:.0%}"
  lines = [f"| configuration | seeds | eval accuracy mean | std | {pct} CI | "
           f"minus {baseline} (paired) | {pct} CI of the difference | differs | uplink "
           "| uplink coded |",
           "|---|---:|---:|---:|---|---:|---|---|---:|---:|"]
  for s in stats:
    acc, diff = s["accuracy"], s["diff"]
    differs = {True: "yes", False: "no", None: "n/a"}[s["differs"]]
    if s["configuration"] == baseline:
      differs = "baseline"
    bits = "n/a" if s["uplink_bits"] is None else format_bits(s["uplink_bits"])
    coded = s.get("uplink_coded_bits")
    coded = "" if coded is None or coded == s["uplink_bits"] else format_bits(coded)
    lines.append(f"| {s['configuration']} | {len(s['seeds'])} | {_fmt(acc.mean)} | "
                 f"{_fmt(acc.std)} | {_interval(acc)} | "
                 f"{_fmt(diff and diff.mean, sign=True)} | {_interval(diff, sign=True)} | "
                 f"{differs} | {bits} | {coded} |")
  return "\n".join(lines)
