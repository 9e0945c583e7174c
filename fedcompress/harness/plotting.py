"""Comparison figures of finished runs, one labelled line per run.

Four panels: accuracy (eval solid, train dashed) and loss against round, cumulative
bits against round (broadcast solid, aggregate dashed), and eval accuracy against
cumulative total bits, the rate/accuracy frontier.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # Files only: no display on servers and in CI.
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from fedcompress import metrics as m  # noqa: E402
from fedcompress.harness.reporting import read_metrics_csv  # noqa: E402
from fedcompress.units import format_bits  # noqa: E402


def _series(rows, x_key, y_key):
  points = [(r[x_key], r[y_key]) for r in rows if r.get(y_key) is not None]
  return [p[0] for p in points], [p[1] for p in points]


DEFAULT_FILE_NAME = "comparison.png"


def output_file(output_path: str) -> str:
  """The file `plot_runs` writes for `output_path`.

  An existing folder gets `comparison.png` inside it, and a name without an extension
  gets `.png` (matplotlib would add it anyway; this way the caller knows the name).
  """
  if os.path.isdir(output_path):
    return os.path.join(output_path, DEFAULT_FILE_NAME)
  if not os.path.splitext(output_path)[1]:
    return output_path + ".png"
  return output_path


def plot_runs(run_dirs: Sequence[str], output_path: str, labels: Sequence[str] | None = None,
              title: str | None = None) -> str:
  """Writes the four-panel comparison figure of `run_dirs`; returns the file written.

  Args:
    run_dirs: run directories, each with a `metrics.csv`.
    output_path: the image file (its extension picks the format, PNG when it has none),
      or an existing folder to write `comparison.png` into.
    labels: line labels, one per run (default: the folder names).
    title: figure title.
  """
  if not run_dirs:
    raise ValueError("no runs to plot")
  output_path = output_file(output_path)
  labels = list(labels or [os.path.basename(os.path.normpath(d)) for d in run_dirs])
  fig, axes = plt.subplots(2, 2, figsize=(13, 9), constrained_layout=True)
  (ax_acc, ax_loss), (ax_bits, ax_frontier) = axes
  bits_axis = FuncFormatter(lambda v, _: format_bits(v) if v > 0 else "0")
  for i, (run_dir, label) in enumerate(zip(run_dirs, labels, strict=True)):
    rows = read_metrics_csv(os.path.join(run_dir, "metrics.csv"))
    color = f"C{i % 10}"
    x, y = _series(rows, m.ROUND, m.EVAL_ACCURACY)
    ax_acc.plot(x, y, "-o", color=color, markersize=3, label=f"{label} eval")
    x, y = _series(rows, m.ROUND, m.TRAIN_ACCURACY)
    ax_acc.plot(x, y, "--", color=color, alpha=0.7, label=f"{label} train")
    x, y = _series(rows, m.ROUND, m.EVAL_LOSS)
    ax_loss.plot(x, y, "-o", color=color, markersize=3, label=f"{label} eval")
    x, y = _series(rows, m.ROUND, m.TRAIN_LOSS)
    ax_loss.plot(x, y, "--", color=color, alpha=0.7, label=f"{label} train")
    x, y = _series(rows, m.ROUND, m.BROADCAST_CUMULATIVE_BITS)
    ax_bits.plot(x, y, "-", color=color, label=f"{label} broadcast")
    x, y = _series(rows, m.ROUND, m.AGGREGATE_CUMULATIVE_BITS)
    ax_bits.plot(x, y, "--", color=color, label=f"{label} aggregate")
    frontier = [(r[m.BROADCAST_CUMULATIVE_BITS] + r[m.AGGREGATE_CUMULATIVE_BITS],
                 r[m.EVAL_ACCURACY]) for r in rows if r.get(m.EVAL_ACCURACY) is not None]
    if frontier:
      ax_frontier.plot(*zip(*frontier, strict=True), "-o", color=color, markersize=3,
                       label=label)
  ax_acc.set(title="Accuracy", xlabel="round", ylabel="accuracy")
  ax_loss.set(title="Loss", xlabel="round", ylabel="loss")
  ax_bits.set(title="Cumulative bits (solid: broadcast, dashed: aggregate)", xlabel="round",
              ylabel="bits")
  ax_frontier.set(title="Eval accuracy vs cumulative total bits", xlabel="bits (both ways)",
                  ylabel="eval accuracy")
  ax_bits.yaxis.set_major_formatter(bits_axis)
  # Codecs differ by factors, so the frontier reads best on a log axis.
  ax_frontier.set_xscale("log")
  ax_frontier.xaxis.set_major_formatter(bits_axis)
  ax_frontier.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
  for ax in axes.flat:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  fig.savefig(output_path, dpi=110)
  plt.close(fig)
  return output_path
