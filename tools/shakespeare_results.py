"""The README's Shakespeare results: pretrained model, then each fine-tuning run.

  python -m tools.shakespeare_results --runs=runs/sampled,runs/sampled_u8 --readme=README.md

Built from the runs' own files, never typed by hand: `pretrained_eval.json` (the
pretrained model's accuracy on the held-out batches and the tutorial's sanity check,
measured before the first round; `experiments/shakespeare_finetune.py` writes the file
when the run finishes),
`metrics.csv` (final eval accuracy, total bits each way), `run_info.json` (wall time,
and the commit that ran each segment) and `config.json` (the codecs). The first run is
the uncompressed one the others' bit ratios are taken against. Runs fine-tuned from
different pretrained models (their pretrained accuracies differ) are refused: the
table's first row would hold for only some of them. So are runs that differ in
anything but their codecs (clients, epochs, ...; what `--resume` may change without
changing results aside) or in the rounds they finished (`config.json` keeps the first
start's `--rounds`; a run extended with `--resume --rounds=N` is compared by the rounds
it finished; one stopped before the rounds it was last asked for is refused too): the
bit ratios would count those differences as the codecs' savings.
Entropy-coded runs' totals and savings are what they sent (their coded bits), beside
their raw size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, flags

from fedcompress.harness import rundir, summary
from fedcompress.harness.cli import fail, parse_flags
from fedcompress.units import format_bits
from tools import codec_table

BLOCK = "shakespeare-results"
# Recorded settings the table's runs may differ in: the codecs it compares, and what
# never changes a run's results (output folders, checkpointing, workers, ...).
_MAY_DIFFER = rundir.MAY_DIFFER_ON_RESUME | {"broadcast_codec", "aggregate_codec"}
FLAGS = flags.FLAGS
flags.DEFINE_list("runs", None, "Run directories, the uncompressed run first.")
flags.DEFINE_string("readme", None, f"Write the table into this README's {BLOCK} block.")


def read_run(run_dir: str) -> dict[str, Any]:
  """`summary.run_summary` of a fine-tuning run, with its codecs and pretrained figures."""
  path = os.path.join(run_dir, "pretrained_eval.json")
  if not os.path.exists(path):
    raise ValueError(f"{run_dir} has no pretrained_eval.json: not a finished run of "
                     "experiments/shakespeare_finetune.py from a pretrained model (finish it "
                     "with --resume)")
  with open(path) as f:
    pretrained = json.load(f)
  settings = {k: v for k, v in rundir.read_config(run_dir).items() if k not in _MAY_DIFFER}
  run = summary.run_summary(run_dir)
  # pretrained_eval.json is written when a run first finishes: one extended by
  # `--resume --rounds=N` and stopped before N has it, and its last evaluation may be
  # from rounds before its last one.
  asked = rundir.recorded_rounds(run_dir)
  if asked is not None and run["rounds"] < asked:
    raise ValueError(f"{run_dir} stopped at round {run['rounds']} of {asked}: finish it "
                     "(--resume) before comparing it")
  return {**run, "pretrained": pretrained,
          "codec": codec_table.codec_of(run_dir), "settings": settings}


def _duration(seconds: float | None) -> str:
  if seconds is None:
    return "n/a"
  minutes, rest = divmod(round(seconds), 60)
  return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _total(run: Mapping[str, Any], direction: str) -> str:
  """A run's total bits one way: what it sent, and its raw size beside a coded one."""
  raw = format_bits(run[f"{direction}/cumulative_bits"])
  if direction not in summary.coded_directions([run]):
    return raw
  return f"{format_bits(summary.sent_bits(run, direction))} coded ({raw} raw)"


def format_block(runs: Sequence[Mapping[str, Any]]) -> str:
  """The Markdown block: the table, the bit savings, the sanity check, the code."""
  if not runs:
    raise ValueError("no runs")
  # The bit ratios and savings are taken against the first run: a compressed one there
  # turns them into '0.29x fewer' and negative savings.
  if runs[0]["codec"] != "none":
    raise ValueError(f"{runs[0]['run']} is not uncompressed ({runs[0]['codec']}): --runs takes "
                     "the uncompressed run first, the one the others' bits are compared with")
  first = runs[0]["pretrained"]
  for run in runs[1:]:
    if run["pretrained"]["pretrained_eval"] != first["pretrained_eval"]:
      raise ValueError(f"{run['run']} started from another pretrained model than "
                       f"{runs[0]['run']} (pretrained eval {run['pretrained']['pretrained_eval']} "
                       f"against {first['pretrained_eval']})")
  for run in runs[1:]:
    settings, base_settings = run["settings"], runs[0]["settings"]
    differ = sorted(k for k in settings.keys() | base_settings.keys()
                    if settings.get(k) != base_settings.get(k))
    if differ:
      raise ValueError(f"{run['run']} was run with other settings than {runs[0]['run']}, not "
                       f"only other codecs: {', '.join(differ)}")
    if run["rounds"] != runs[0]["rounds"]:
      raise ValueError(f"{run['run']} finished {run['rounds']} rounds and {runs[0]['run']} "
                       f"{runs[0]['rounds']}: finish both (--resume) before comparing bits")
  evaluation = first["pretrained_eval"]
  batches = evaluation["num_batches"]
  base = runs[0]
  lines = [f"| run | codec | eval accuracy ({batches} held-out test batches) | total broadcast "
           "| total aggregate | wall time |",
           "|---|---|---:|---:|---:|---:|",
           f"| pretrained model, before any round | | {evaluation['accuracy']:.4f} | | | |"]
  for run in runs:
    accuracy = "n/a" if run["eval/accuracy"] is None else f"{run['eval/accuracy']:.4f}"
    rounds = f"{run['rounds']} round{'' if run['rounds'] == 1 else 's'}"
    lines.append(f"| {run['run']}, {rounds} | {run['codec']} | {accuracy} "
                 f"| {_total(run, 'broadcast')} | {_total(run, 'aggregate')} "
                 f"| {_duration(run['wall_time_s'])} |")
  lines.append("")
  for run in runs[1:]:
    sent = {d: (summary.sent_bits(base, d), summary.sent_bits(run, d))
            for d in summary.DIRECTIONS}
    lines.append(
        f"{run['run']} sent {sent['broadcast'][0] / sent['broadcast'][1]:.2f}x fewer "
        f"broadcast bits and {sent['aggregate'][0] / sent['aggregate'][1]:.2f}x fewer "
        f"aggregate bits than {base['run']} "
        f"({format_bits(sent['broadcast'][0] - sent['broadcast'][1])} and "
        f"{format_bits(sent['aggregate'][0] - sent['aggregate'][1])} saved"
        + (", as entropy-coded" if summary.coded_directions([base, run]) else "") + ").")
  sanity = first["sanity"]
  lines.append(
      f"Sanity check before training: {sanity['client_accuracy']:.4f} character accuracy "
      f"on {first['sanity_client']} against {sanity['random_accuracy']:.4f} on random text "
      f"(chance {sanity['expected_random_accuracy']:.4f}). Runs "
      f"{summary.format_sources(runs)}.")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.runs:
    return fail("--runs is empty: give the run directories, the uncompressed run first")
  seen = {}
  for run_dir in FLAGS.runs:
    # One run twice was a row twice and "r0 sent 1.00x fewer ... than r0" (R7 of s48).
    if (first := seen.get(os.path.realpath(run_dir))) is not None:
      return fail(f"{first} and {run_dir} are one run: give each run once")
    seen[os.path.realpath(run_dir)] = run_dir
  try:
    block = format_block([read_run(r) for r in FLAGS.runs])
    print(block)
    if FLAGS.readme:
      codec_table.update_readme(FLAGS.readme, BLOCK, block)
      print(f"{FLAGS.readme} updated")
  except (OSError, ValueError) as e:
    return fail(str(e))
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
