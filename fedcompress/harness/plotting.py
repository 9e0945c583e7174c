"""Comparison figures of finished runs, one labelled line per run.

Four panels: accuracy (eval solid, train dashed) and loss against round, cumulative
bits against round (broadcast solid, aggregate dashed), and eval accuracy against
cumulative total bits, the rate/accuracy frontier. `plot_frontier` draws a sweep over
seeds: one point per configuration with its confidence interval.

Axes read like a paper's: rounds at integer ticks (`round_ticks`), bits at round
binary values such as 512 Mibit, 1 Gibit, 2 Gibit (`bit_ticks`), log axes at labelled
decades, and at 2 and 5 times them when fewer than two powers of ten fall inside the
range (`log_ticks`). The tick choices are pure functions of the data range, tested on
known ranges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

# Figures of their own, not pyplot's: files only, and nothing of the process's matplotlib
# state changes (`matplotlib.use("Agg")` at import stopped a notebook's inline figures
# from showing once it imported this module).
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

from fedcompress import metrics as m
from fedcompress.harness import rundir
from fedcompress.harness.reporting import read_metrics_csv

MAX_TICKS = 7
# Steps that read as round numbers, in units of the axis (rounds, or Kibit/Mibit/...).
_NICE_STEPS = (0.25, 0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500)
_BIT_UNITS = ((2**40, "Tibit"), (2**30, "Gibit"), (2**20, "Mibit"), (2**10, "Kibit"),
              (1, "bit"))


def _step(span: float, max_ticks: int, smallest: float = 0.25) -> float:
  """Smallest nice step (x 1000s beyond 500) giving at most `max_ticks` ticks over span."""
  scale = 1.0
  while True:
    for step in _NICE_STEPS:
      if step * scale >= smallest and span / (step * scale) + 1 <= max_ticks:
        return step * scale
    scale *= 1000


def round_ticks(first: int, last: int, max_ticks: int = MAX_TICKS) -> list[int]:
  """Integer round ticks on [first, last]: multiples of 1, 2, 5, 10, 20, 25, 50, ..."""
  step = int(_step(max(last - first, 0), max_ticks, smallest=1))
  start = -(-first // step) * step
  return list(range(start, last + 1, step)) or [first]


def bit_ticks(low: float, high: float, max_ticks: int = MAX_TICKS
              ) -> tuple[list[float], list[str]]:
  """Ticks and labels of a linear bit axis over [low, high], at round binary values.

  The unit is the largest binary unit of `high` (1.5 Gibit: Gibit), the step a nice
  number of that unit (0.25, 0.5, 1, 2, 5, ...): e.g. 0 to 2.5 Gibit gives
  0, 0.5 Gibit, ..., 2.5 Gibit, never 190.73 Mibit.
  """
  top = max(abs(low), abs(high), 1)
  unit, name = next((u, n) for u, n in _BIT_UNITS if top >= u)
  smallest = 1 if unit == 1 else 0.25
  step = _step((high - low) / unit, max_ticks, smallest=smallest)
  first = math.ceil(low / unit / step - 1e-9)
  last = math.floor(high / unit / step + 1e-9)
  values = [k * step for k in range(first, last + 1)]
  return [v * unit for v in values], [f"{v:g} {name}" if v else "0" for v in values]


def log_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
  """Major ticks and labels of a log axis over [low, high]: the decades 10^k inside it.

  When fewer than two powers of ten lie inside the range, 2 x 10^k and 5 x 10^k are
  labelled too ([2, 150] gets 10 and 100 only; [3, 40] gets 5, 10 and 20),
  and failing that every m x 10^k: any range wider than a factor of 2 gets two labels
  or more (`plot_frontier` pads its range by a quarter decade each side).
  """
  if not 0 < low <= high:
    raise ValueError(f"a log axis needs 0 < low <= high, got {low}, {high}")
  k_low, k_high = math.floor(math.log10(low)), math.ceil(math.log10(high))
  for mantissas in ((1,), (1, 2, 5), tuple(range(1, 10))):
    ticks = [(m, k) for k in range(k_low, k_high + 1) for m in mantissas
             if low <= m * 10.0**k <= high]
    if len(ticks) >= 2:
      break
  labels = [f"$10^{{{k}}}$" if m == 1 else f"${m}\\times10^{{{k}}}$" for m, k in ticks]
  return [m * 10.0**k for m, k in ticks], labels


def _fix(axis, ticks: list[float], labels: list[str]) -> None:
  axis.set_major_locator(FixedLocator(ticks))
  axis.set_major_formatter(FixedFormatter(labels))


def _data_range(ax, which: str) -> tuple[float, float] | None:
  values = []
  for line in ax.get_lines():
    values.extend(line.get_xdata() if which == "x" else line.get_ydata())
  values = [float(v) for v in values]
  return (min(values), max(values)) if values else None


def _round_axis(ax) -> None:
  span = _data_range(ax, "x")
  if span:
    ticks = round_ticks(math.floor(span[0]), math.ceil(span[1]))
    _fix(ax.xaxis, ticks, [str(t) for t in ticks])


def _bit_axis(ax, which: str) -> None:
  span = _data_range(ax, which)
  if span:
    axis = ax.yaxis if which == "y" else ax.xaxis
    _fix(axis, *bit_ticks(min(0.0, span[0]), span[1]))


def _log_bit_axis(ax, low: float, high: float) -> None:
  ax.set_xscale("log")
  # A quarter decade of margin each side, so the end points are not on the frame.
  low, high = low / 10**0.25, high * 10**0.25
  ax.set_xlim(low, high)
  _fix(ax.xaxis, *log_ticks(low, high))
  ax.xaxis.set_minor_formatter(NullFormatter())


def _series(rows, x_key, y_key):
  points = [(r[x_key], r[y_key]) for r in rows if r.get(y_key) is not None]
  return [p[0] for p in points], [p[1] for p in points]


# Runs past matplotlib's ten colours take them again with another marker (on every
# line of theirs): run 10 was drawn as run 0, told apart by the legend alone.
_MARKERS = "osD^v<>ph*"


def _run_style(i: int) -> tuple[str, str]:
  """Run i's colour and marker: the first ten runs are `C0`-`C9` with circles."""
  return f"C{i % 10}", _MARKERS[(i // 10) % len(_MARKERS)]


def _plot(ax, x, y, style: str, **kwargs) -> None:
  """`ax.plot`, with a marker where a line has one point: a one-round run's train
  curves and cumulative bits, drawn as lines alone, did not show at all."""
  if len(x) == 1 and not any(c in style for c in "." + _MARKERS):
    style += "o"
    kwargs.setdefault("markersize", 3)
  ax.plot(x, y, style, **kwargs)


def _save(fig: Figure, output_path: str) -> str:
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  fig.savefig(output_path, dpi=110)  # The canvas for the file's format, Agg for PNG.
  return output_path


DEFAULT_FILE_NAME = "comparison.png"


def output_file(output_path: str) -> str:
  """The file `plot_runs` writes for `output_path`.

  An existing folder, or a path ending in a separator (made if missing), gets
  `comparison.png` inside it, and a name without an extension gets `.png` (matplotlib
  would add it anyway; this way the caller knows the name). `plots/` with no such
  folder was said as `plots/.png` and written as the hidden `plots/.png.png`.

  Raises:
    ValueError: an empty path.
  """
  if not output_path:
    raise ValueError("the output path is empty: name a file (comparison.png) or a folder")
  if os.path.isdir(output_path) or output_path.endswith((os.sep, "/")):
    return os.path.join(output_path, DEFAULT_FILE_NAME)
  stem, extension = os.path.splitext(output_path)
  if extension in ("", "."):  # `fig.` names no format either.
    return (stem if extension else output_path) + ".png"
  return output_path


def default_labels(run_dirs: Sequence[str]) -> list[str]:
  """Each run's folder name, with as many parent folders as tell equal names apart.

  Two sweeps' `baseline` runs are `sweep_a/baseline` and `sweep_b/baseline`, not two
  lines labelled `baseline`.
  """
  parts = [os.path.normpath(os.path.abspath(d)).split(os.sep) for d in run_dirs]
  depth = 1
  while depth < max(len(p) for p in parts) and len(
      {tuple(p[-depth:]) for p in parts}) < len(parts):
    depth += 1
  return ["/".join(p[-depth:]) for p in parts]


def _shown(label: str) -> str:
  """`label` as a legend shows it: matplotlib leaves out of every legend, unsaid, what a
  label starting with `_` names (a run `_baseline` was drawn but in no legend; review
  R5 of s48), so such a label starts with a space."""
  return f" {label}" if str(label).startswith("_") else str(label)


def plot_runs(run_dirs: Sequence[str], output_path: str, labels: Sequence[str] | None = None,
              title: str | None = None) -> str:
  """Writes the four-panel comparison figure of `run_dirs`; returns the file written.

  Args:
    run_dirs: run directories, each with a `metrics.csv`.
    output_path: the image file (its extension picks the format, PNG when it has none),
      or an existing folder to write `comparison.png` into.
    labels: line labels, one per run (default: `default_labels`, the folder names).
    title: figure title.
  """
  if isinstance(run_dirs, str | os.PathLike):
    raise ValueError(f"run_dirs is a list of run directories, got the one path {run_dirs!r}: "
                     "pass [path]")
  if not run_dirs:
    raise ValueError("no runs to plot")
  seen: dict[str, str] = {}
  for run_dir in run_dirs:
    # One run given twice (`a` and `a/`) drew two lines labelled with its full path.
    if (first := seen.get(os.path.realpath(run_dir))) is not None:
      raise ValueError(f"{first} and {run_dir} are one run: give each run once")
    seen[os.path.realpath(run_dir)] = run_dir
  output_path = output_file(output_path)
  labels = [_shown(label) for label in (labels or default_labels(run_dirs))]
  all_rows = [read_metrics_csv(os.path.join(run_dir, rundir.METRICS_FILE))
              for run_dir in run_dirs]
  if empty := [d for d, rows in zip(run_dirs, all_rows, strict=True) if not rows]:
    # A header alone drew empty panels, said as written.
    raise ValueError(f"no finished round to plot in {', '.join(empty)} (metrics.csv has "
                     "no rows yet)")
  fig = Figure(figsize=(13, 9), layout="constrained")
  axes = fig.subplots(2, 2)
  (ax_acc, ax_loss), (ax_bits, ax_frontier) = axes
  for i, (rows, label) in enumerate(zip(all_rows, labels, strict=True)):
    color, marker = _run_style(i)
    plain = "" if i < 10 else marker  # The lines without markers, for the first ten.
    style = {"color": color, "markersize": 3}
    x, y = _series(rows, m.ROUND, m.EVAL_ACCURACY)
    _plot(ax_acc, x, y, "-" + marker, **style, label=f"{label} eval")
    x, y = _series(rows, m.ROUND, m.TRAIN_ACCURACY)
    _plot(ax_acc, x, y, "--" + plain, **style, alpha=0.7, label=f"{label} train")
    x, y = _series(rows, m.ROUND, m.EVAL_LOSS)
    _plot(ax_loss, x, y, "-" + marker, **style, label=f"{label} eval")
    x, y = _series(rows, m.ROUND, m.TRAIN_LOSS)
    _plot(ax_loss, x, y, "--" + plain, **style, alpha=0.7, label=f"{label} train")
    x, y = _series(rows, m.ROUND, m.BROADCAST_CUMULATIVE_BITS)
    _plot(ax_bits, x, y, "-" + plain, **style, label=f"{label} broadcast")
    x, y = _series(rows, m.ROUND, m.AGGREGATE_CUMULATIVE_BITS)
    _plot(ax_bits, x, y, "--" + plain, **style, label=f"{label} aggregate")
    # Beside the raw bits, never instead: what an entropy coder sent (dotted), where
    # it differs (its raw size is its bit-packing's, several times what it sent).
    coded = [(r[m.ROUND], _sent(r, "broadcast") + _sent(r, "aggregate")) for r in rows]
    if any(total != r[m.BROADCAST_CUMULATIVE_BITS] + r[m.AGGREGATE_CUMULATIVE_BITS]
           for (_, total), r in zip(coded, rows, strict=True)):
      _plot(ax_bits, *zip(*coded, strict=True), ":" + plain, **style,
            label=f"{label} both ways, coded")
      coded_frontier = [(_sent(r, "broadcast") + _sent(r, "aggregate"), r[m.EVAL_ACCURACY])
                        for r in rows if r.get(m.EVAL_ACCURACY) is not None]
      if coded_frontier:
        ax_frontier.plot(*zip(*coded_frontier, strict=True), ":" + marker, **style,
                         markerfacecolor="none", label=f"{label}, coded")
    frontier = [(r[m.BROADCAST_CUMULATIVE_BITS] + r[m.AGGREGATE_CUMULATIVE_BITS],
                 r[m.EVAL_ACCURACY]) for r in rows if r.get(m.EVAL_ACCURACY) is not None]
    if frontier:
      ax_frontier.plot(*zip(*frontier, strict=True), "-" + marker, **style, label=label)
  ax_acc.set(title="Accuracy", xlabel="round", ylabel="accuracy")
  ax_loss.set(title="Loss", xlabel="round", ylabel="loss")
  ax_bits.set(title="Cumulative bits (solid: broadcast, dashed: aggregate, dotted: "
              "both ways as coded)", xlabel="round", ylabel="bits")
  ax_frontier.set(title="Eval accuracy vs cumulative total bits (hollow: as coded)",
                  xlabel="bits (both ways)", ylabel="eval accuracy")
  for ax in (ax_acc, ax_loss, ax_bits):
    _round_axis(ax)
  _bit_axis(ax_bits, "y")
  # Codecs differ by factors, so the frontier reads best on a log axis.
  span = _data_range(ax_frontier, "x")
  if span and span[0] > 0:
    _log_bit_axis(ax_frontier, *span)
  for ax in axes.flat:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  return _save(fig, output_path)


_CUMULATIVE = {"broadcast": (m.BROADCAST_CUMULATIVE_BITS, m.BROADCAST_CUMULATIVE_CODED_BITS),
               "aggregate": (m.AGGREGATE_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_CODED_BITS)}


def _sent(row: Mapping[str, Any], direction: str) -> float:
  """A metrics row's cumulative `direction` bits as sent: coded where recorded."""
  raw, coded = _CUMULATIVE[direction]
  return row[raw] if row.get(coded) is None else row[coded]


def plot_frontier(stats: Sequence[Mapping[str, Any]], output_path: str,
                  title: str | None = None) -> str:
  """Final eval accuracy against total uplink bits, one point per configuration.

  Args:
    stats: rows of `summary.seed_statistics` (with `uplink_bits`).
    output_path: the image file (or a folder, as for `plot_runs`).
    title: figure title.

  Error bars are each configuration's confidence interval of the mean accuracy over
  seeds (none for a single seed); the x axis is logarithmic, in bits.
  """
  points = [s for s in stats if s.get("uplink_bits")]
  if not points:
    raise ValueError("no configuration with uplink bits to plot")
  output_path = output_file(output_path)
  fig = Figure(figsize=(7, 5), layout="constrained")
  ax = fig.subplots()
  bits = []
  for i, s in enumerate(points):
    color, marker = _run_style(i)
    acc = s["accuracy"]
    half = acc.half_width
    yerr = None if half is None else [[half], [half]]
    ax.errorbar([s["uplink_bits"]], [acc.mean], yerr=yerr, fmt=marker, color=color,
                capsize=4, label=_shown(f"{s['configuration']} (n={acc.n})"))
    bits.append(s["uplink_bits"])
    coded = s.get("uplink_coded_bits")
    if coded is not None and coded != s["uplink_bits"]:
      # What an entropy coder sent, beside its raw size (an adaptive run drawn at its raw
      # size sat right of a fixed-width one that sent more).
      ax.errorbar([coded], [acc.mean], yerr=yerr, fmt=marker, mfc="none", color=color,
                  capsize=4)
      ax.plot([coded, s["uplink_bits"]], [acc.mean] * 2, ":", color=color)
      bits.append(coded)
  _log_bit_axis(ax, min(bits), max(bits))
  ax.set(xlabel="total uplink bits (all clients, all rounds; hollow: as entropy-coded)",
         ylabel="final eval accuracy (mean, 95% CI)", title=title or "Rate/accuracy frontier")
  ax.grid(alpha=0.3, which="both")
  ax.legend(fontsize=8)
  return _save(fig, output_path)
