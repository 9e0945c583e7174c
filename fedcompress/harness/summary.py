"""Compare finished runs: totals, ratios to a baseline, final accuracy.

Reads each run's own `metrics.csv`, so what a summary says is what the run recorded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from fedcompress import metrics as m
from fedcompress.harness.reporting import read_metrics_csv
from fedcompress.units import format_bits


def run_summary(run_dir: str) -> dict[str, Any]:
  """Final round, totals, final eval metrics and wall time of one run directory."""
  rows = read_metrics_csv(os.path.join(run_dir, "metrics.csv"))
  if not rows:
    raise ValueError(f"{run_dir} has no rounds in metrics.csv")
  evaluated = [r for r in rows if r.get(m.EVAL_ACCURACY) is not None]
  info_path = os.path.join(run_dir, "run_info.json")
  wall_time_s = None
  if os.path.exists(info_path):
    with open(info_path) as f:
      wall_time_s = json.load(f).get("wall_time_s")
  last_eval = evaluated[-1] if evaluated else {}
  return {
      "run": os.path.basename(os.path.normpath(run_dir)),
      "rounds": int(rows[-1][m.ROUND]),
      "eval_accuracy": last_eval.get(m.EVAL_ACCURACY),
      "eval_loss": last_eval.get(m.EVAL_LOSS),
      "broadcast_bits": int(rows[-1][m.BROADCAST_CUMULATIVE_BITS]),
      "aggregate_bits": int(rows[-1][m.AGGREGATE_CUMULATIVE_BITS]),
      "train_time_s": float(sum(r[m.ROUND_TIME_S] for r in rows)),
      "wall_time_s": wall_time_s,
      "broadcast_coded_bits": rows[-1].get(m.BROADCAST_CUMULATIVE_CODED_BITS),
      "aggregate_coded_bits": rows[-1].get(m.AGGREGATE_CUMULATIVE_CODED_BITS),
      "mean_round_time_s": float(sum(r[m.ROUND_TIME_S] for r in rows)) / len(rows),
  }


def compare_runs(run_dirs: Sequence[str], baseline: str | None = None) -> list[dict[str, Any]]:
  """`run_summary` of each run plus bit ratios baseline/run (x times fewer bits)."""
  summaries = [run_summary(d) for d in run_dirs]
  base = next((s for s in summaries if s["run"] == baseline), summaries[0] if summaries else None)
  for s in summaries:
    for key in ("broadcast_bits", "aggregate_bits"):
      s[key.replace("_bits", "_ratio")] = base[key] / s[key] if s[key] else None
  return summaries


def _seconds(value: float | None) -> str:
  return "n/a" if value is None else f"{value:.0f}s"


def format_markdown(summaries: Sequence[dict[str, Any]], baseline: str) -> str:
  lines = [f"| run | rounds | eval accuracy | broadcast | aggregate | {baseline}/run broadcast "
           f"| {baseline}/run aggregate | round time | wall time |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for s in summaries:
    accuracy = "n/a" if s["eval_accuracy"] is None else f"{s['eval_accuracy']:.4f}"
    lines.append(f"| {s['run']} | {s['rounds']} | {accuracy} | "
                 f"{format_bits(s['broadcast_bits'])} | {format_bits(s['aggregate_bits'])} | "
                 f"{s['broadcast_ratio']:.2f}x | {s['aggregate_ratio']:.2f}x | "
                 f"{s['train_time_s']:.0f}s | {_seconds(s.get('wall_time_s'))} |")
  return "\n".join(lines)
