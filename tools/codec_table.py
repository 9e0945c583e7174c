"""The codec comparison table: every codec run against an uncompressed baseline.

Built from the runs' own metrics.csv and config.json (never typed by hand) and written
as Markdown, optionally into the README between `<!-- codec-table:NAME -->` markers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from fedcompress import metrics as m
from fedcompress.harness import rundir, summary
from fedcompress.units import format_bits

# Settings `codec_of` names by themselves, and records of how a run ran or of a codec's
# spelling, which change neither its bits nor its accuracy.
_SAID = frozenset({"broadcast_codec", "aggregate_codec", "aggregator", "secure_aggregation",
                   "dp", "error_feedback", rundir.CODEC_REVISIONS})


# The values of `_SAID`'s settings that `codec_of` leaves unsaid.
_SAID_DEFAULTS = {"broadcast_codec": "identity", "aggregate_codec": "identity",
                  "aggregator": "mean", "secure_aggregation": False, "dp": "none",
                  "error_feedback": "none",
                  # The model's initializer: left out as an unused flag where it is None.
                  rundir.INITIAL_WEIGHTS_DIGEST: None}


def _config(run_dir: str) -> dict[str, Any]:
  with open(os.path.join(run_dir, "config.json")) as f:
    return json.load(f)


def codec_of(run_dir: str, baseline_dir: str | None = None) -> str:
  """What a run compressed, from its config.json: 'aggr: uniform(bits=8)>10000', 'none'.

  Also what changes its bits or accuracy beside the codecs: a server-side aggregator,
  secure aggregation, differential privacy, error feedback, and, given the baseline's
  run, every other setting in which the two differ (`configs/secure/*.flags` set
  --client_weighting=uniform, whose mean and bits the table put down to the codec).
  """
  config = _config(run_dir)
  secure = bool(config.get("secure_aggregation"))
  parts = []
  for direction in ("broadcast", "aggregate"):
    codec = config.get(f"{direction}_codec", "identity")
    if secure and direction == "aggregate":
      # The secure sum encodes every float tensor, whatever the threshold says.
      codec = codec.rpartition(">")[0] + " on every tensor"
    if not codec.startswith("identity"):
      # A chain's `|` would end the Markdown cell.
      parts.append(f"{direction[:4]}: {codec}".replace("|", "\\|"))
  aggregator = config.get("aggregator", "mean")  # A server-side aggregator (FetchSGD).
  if aggregator != "mean":
    parts.append(f"aggr: {aggregator}")
  if secure:
    parts.append("secure sum")
  dp = config.get("dp", "none")  # Noise and clipping change accuracy and, distributed, bits.
  if dp != "none":
    parts.append(f"dp: {dp}")
  feedback = config.get("error_feedback", "none")  # Same codec, same bits: say so.
  if feedback != "none":
    parts.append(f"error feedback: {feedback}")
  if baseline_dir is not None:
    parts += _other_settings(config, _config(baseline_dir))
  return "; ".join(parts) or "none"


def _other_settings(config: dict[str, Any], base: dict[str, Any]) -> list[str]:
  """Settings of `config` that differ from the baseline's `base`, with the baseline's
  value where it ran with one. A setting the run uses and the baseline does not (DP's
  flags, when only the run has --dp) is named whatever the baseline recorded, or whether
  it recorded it at all. Left out: what the run does not use, and what a baseline that
  uses it lacks (recorded by older code, which the sweep does not compare either)."""
  config, base = _optimizers_resolved(config), _optimizers_resolved(base)
  # What a resume raised is config.json's as first started: a baseline extended from 2
  # to 3 rounds was said to differ from a 3-round run in "rounds=3 (baseline: 2)" (review
  # R7 of s47). The table's own rounds column, from metrics.csv, says the lengths.
  skip = (_SAID | rundir.HOW_NOT_WHAT | rundir.BESIDE_THE_ROUNDS | rundir.SPELLINGS
          | rundir.OPTIMIZER_SPELLINGS | rundir.unused_flags(config)
          | rundir.EXTENDED_ON_RESUME)
  # Which of the run's keys the baseline's dataset and DP leave unused, recorded or not
  # (a record without `dp`, of code before DP, ran without it).
  unused_by_base = rundir.unused_flags({**dict.fromkeys(config), "dp": "none", **base})
  named = []
  for k in sorted(set(config) - skip):
    if k in unused_by_base:
      named.append(f"{k}={config[k]}")
    elif k in base and config[k] != base[k]:
      named.append(f"{k}={config[k]} (baseline: {base[k]})")
  # What `codec_of` says only where the run has it: a run without what the baseline has
  # (top-k against a top-k + error feedback baseline) read as the same setting (review
  # R5 of s48).
  def unsaid(k: str, value: Any) -> bool:  # A codec is recorded with its threshold.
    default = _SAID_DEFAULTS[k]
    if k.endswith("_codec"):
      return str(value).startswith(default)
    return value == default

  for k, default in _SAID_DEFAULTS.items():
    theirs = base.get(k, default)
    if unsaid(k, config.get(k, default)) and not unsaid(k, theirs):
      named.append(f"{k}={default} (baseline: {theirs})".replace("|", "\\|"))
  return named


def _optimizers_resolved(record: dict[str, Any]) -> dict[str, Any]:
  """`record` with each optimizer as TFF runs it (`experiment.resolved_optimizer`): `sgd`
  with `--server_momentum=0.9` was said to differ from `sgdm` in `server_momentum=0.9
  (baseline: None)` (review R7 of s47). A record it cannot read stays as it is."""
  from fedcompress.harness.experiment import OPTIMIZER_OPTIONS, resolved_optimizer

  out = dict(record)
  for side in ("client", "server"):
    name, rate = record.get(f"{side}_optimizer"), record.get(f"{side}_learning_rate")
    if name is None or rate is None:
      continue
    try:
      out[f"{side}_optimizer"] = resolved_optimizer(
          name, rate, {o: record.get(f"{side}_{o}") for o in OPTIMIZER_OPTIONS})
    except ValueError:  # Code that had other optimizers: compared as recorded.
      pass
  return out


def table_rows(summaries: Sequence[dict[str, Any]], root: str, baseline: str
               ) -> list[dict[str, Any]]:
  base = next(s for s in summaries if s["run"] == baseline)
  # An uncompressed baseline sends 32 bits per coordinate (plus a 32-bit weight per
  # client, under 0.01% of the CNN's bits): its ratio to a run gives the run's
  # bits/coord. A compressed baseline gives no such figure.
  uncompressed = codec_of(os.path.join(root, baseline)) == "none"
  rows = []
  for s in summaries:
    row = dict(s)
    row["codec"] = codec_of(os.path.join(root, s["run"]), os.path.join(root, baseline))
    row["accuracy_delta_pp"] = (None if s[m.EVAL_ACCURACY] is None else
                                100 * (s[m.EVAL_ACCURACY] - base[m.EVAL_ACCURACY]))
    for direction in ("aggregate", "broadcast"):
      row[f"{direction}_bits_per_coord"] = (32 / s[f"{direction}_ratio"] if uncompressed
                                            else None)
    for direction in summary.DIRECTIONS:
      # Bits as sent (an entropy coder's coded size) against the baseline's as sent, as
      # in `summary.compare_runs`; None where this run sent its raw bits.
      coded = s.get(f"{direction}/cumulative_coded_bits")
      row[f"{direction}_coded_ratio"] = (
          summary.sent_bits(base, direction) / coded
          if coded and coded != s[f"{direction}/cumulative_bits"] else None)
    rows.append(row)
  return rows


def _epsilon(row: dict[str, Any]) -> str:
  epsilon = row.get("privacy_epsilon")
  return "" if epsilon is None else f"{epsilon:.3g}"


def format_table(rows: Sequence[dict[str, Any]], title: str) -> str:
  """Markdown table of `table_rows`; an epsilon column when a run spent privacy (--dp),
  and a coded downlink ratio when a run entropy-coded its broadcast."""
  private = any(r.get("privacy_epsilon") is not None for r in rows)
  coded_down = any(r["broadcast_coded_ratio"] is not None for r in rows)
  directions = ("broadcast", "aggregate") if coded_down else ("aggregate",)
  lines = [f"**{title}**", "",
           "| run | codec | eval acc | vs baseline | broadcast | ratio | aggregate | ratio "
           "| uplink bits/coord |" + (" coded downlink ratio |" if coded_down else "")
           + " coded uplink ratio | round time |" + (" epsilon |" if private else ""),
           "|---|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if coded_down else "")
           + "---:|---:|" + ("---:|" if private else "")]
  for r in rows:
    acc = "n/a" if r[m.EVAL_ACCURACY] is None else f"{r[m.EVAL_ACCURACY]:.4f}"
    delta = "" if r["accuracy_delta_pp"] is None else f"{r['accuracy_delta_pp']:+.2f} pp"
    coded = " | ".join("" if r[f"{d}_coded_ratio"] is None else f"{r[f'{d}_coded_ratio']:.1f}x"
                       for d in directions)
    per_coord = ("n/a" if r["aggregate_bits_per_coord"] is None
                 else f"{r['aggregate_bits_per_coord']:.2f}")
    lines.append(
        f"| {r['run']} | {r['codec']} | {acc} | {delta} "
        f"| {format_bits(r[m.BROADCAST_CUMULATIVE_BITS])} "
        f"| {r['broadcast_ratio']:.1f}x | {format_bits(r[m.AGGREGATE_CUMULATIVE_BITS])} "
        f"| {r['aggregate_ratio']:.1f}x | {per_coord} | {coded} "
        f"| {r['mean_round_time_s']:.2f}s |" + (f" {_epsilon(r)} |" if private else ""))
  # Which code made the figures, from the runs' own records (run_info.json).
  lines += ["", f"Runs {summary.format_sources(rows)}."]
  if note := summary.format_timing_note(rows):
    lines += ["", note]
  return "\n".join(lines)


def _markers(name: str) -> tuple[str, str, re.Pattern[str]]:
  begin, end = f"<!-- codec-table:{name} -->", "<!-- end codec-table -->"
  return begin, end, re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)


def read_readme(readme_path: str, name: str) -> str:
  """The README's text, if it has the NAME block and can be written back.

  Tools that write the block after their runs call this before them too: a wrong README
  or block name is then said before the runs, not in a traceback after them.

  Raises:
    ValueError: the file cannot be read or written, or has no NAME block.
  """
  try:
    with open(readme_path) as f:
      readme = f.read()
  except OSError as e:
    raise ValueError(f"cannot read {readme_path}: {e.strerror or e}") from None
  begin, end, pattern = _markers(name)
  if not pattern.search(readme):
    raise ValueError(f"{readme_path} has no {begin} ... {end} block")
  if not os.access(readme_path, os.W_OK):
    raise ValueError(f"{readme_path} is not writable")
  return readme


def update_readme(readme_path: str, name: str, text: str) -> None:
  """Replaces the block between `<!-- codec-table:NAME -->` and `<!-- end codec-table -->`."""
  readme = read_readme(readme_path, name)
  begin, end, pattern = _markers(name)
  readme = pattern.sub(lambda _: f"{begin}\n{text}\n{end}", readme)
  with open(readme_path, "w") as f:
    f.write(readme)

if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/codec_table.py is the codec tables' library: run "
                   "python -m tools.compare_codecs (--help for its flags)")
