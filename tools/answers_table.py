"""The README's answers to the tutorial's three questions, computed from seeded runs.

The TFF compression tutorial left three questions open: does non-uniform quantization
beat uniform, what does lossless (Huffman) coding save, and does compression that adapts
from earlier rounds beat a fixed rate. `tools/answers.py` runs the configurations of
`configurations()` once per seed; this module turns the runs' summaries
(`fedcompress.harness.summary.run_summary` rows, named `<configuration>_seed<s>`) into
one table per question and closes each with a sentence built from the same numbers:
a difference is called significant only when its paired 95% Student-t interval
excludes 0 (`summary.estimate`), and the sentence says so, or says that it is not.
Nothing here runs TFF; the tests check it on known numbers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fedcompress.harness import summary
from fedcompress.harness.summary import Estimate

# Uplink codecs only (the downlink stays float32), so every difference is the uplink's.
# `uniform` packs 32 bits per word here, so that it sends exactly `bits` per coordinate
# like `nonuniform` (tensor_encoding's default packs 28, 14% more at 2 bits).
QUANTIZER_BITS = (2, 3, 4)
BUDGET_BITS = 2


def uniform_codec(bits: int) -> str:
  return f"uniform(bits={bits},word_bits=32)"


def huffman_codec(bits: int) -> str:
  """`uniform_codec(bits)` with its symbols Huffman coded instead of bit-packed."""
  return f"{uniform_codec(bits)}|huffman"


def configurations(bits: Sequence[int] = QUANTIZER_BITS) -> dict[str, str]:
  """Configuration name -> its `--aggregate_encoder` codec text, at quantizer `bits`."""
  if BUDGET_BITS not in bits:
    raise ValueError(f"the quantizer bits must include {BUDGET_BITS}, the adaptive "
                     f"codec's budget: its fixed-rate comparisons; got {list(bits)}")
  configs = {f"uniform{b}": uniform_codec(b) for b in bits}
  configs.update({f"nonuniform{b}": f"nonuniform(bits={b})" for b in bits})
  configs[f"adaptive{BUDGET_BITS}"] = (
      f"adaptive(budget_bits_per_coordinate={float(BUDGET_BITS)})")
  return configs


# The fixed-rate codecs the adaptive one is compared with: each sends exactly the
# adaptive codec's budget per coordinate.
FIXED_RATE = (f"uniform{BUDGET_BITS}", f"nonuniform{BUDGET_BITS}")


def by_seed(summaries: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[int, float]]:
  """{configuration: {seed: summary[key]}} from runs named `<configuration>_seed<s>`."""
  out: dict[str, dict[int, float]] = {}
  for s in summaries:
    match = re.fullmatch(r"(.+)_seed(\d+)", s["run"])
    if match is None:
      raise ValueError(f"run {s['run']!r} is not named <configuration>_seed<s>")
    if s.get(key) is None:
      raise ValueError(f"run {s['run']!r} has no {key}")
    out.setdefault(match.group(1), {})[int(match.group(2))] = float(s[key])
  return out


def paired_diff(a: Mapping[int, float], b: Mapping[int, float]) -> Estimate:
  """Estimate of a - b over the seeds both have (the seed's shared luck cancels)."""
  seeds = sorted(set(a) & set(b))
  if not seeds:
    raise ValueError("no seed in common to pair")
  return summary.estimate([a[s] - b[s] for s in seeds])


def ratio_estimate(a: Mapping[int, float], b: Mapping[int, float]) -> Estimate:
  """Estimate of a / b per seed."""
  seeds = sorted(set(a) & set(b))
  return summary.estimate([a[s] / b[s] for s in seeds])


UNDETERMINED = "undetermined"
# The sentences' words for it: no interval to read a difference from.
_UNDETERMINED_CLAUSE = "undetermined (one seed, or the same difference on every seed)"


def verdict(diff: Estimate) -> str:
  """'higher', 'lower', 'no significant difference' (95% interval against 0), or
  'undetermined' without a usable interval (one seed, or no spread between seeds)."""
  if diff.excludes_zero is None:
    return UNDETERMINED
  if not diff.excludes_zero:
    return "no significant difference"
  return "higher" if diff.mean > 0 else "lower"


def _interval(e: Estimate, spec: str, scale: float = 1.0, unit: str = "") -> str:
  """`e`'s mean and, when there is one, its interval: '+1.20 pp [+0.40, +2.00]'."""
  text = f"{scale * e.mean:{spec}}{unit}"
  if e.ci_low is None:
    return text
  return f"{text} [{scale * e.ci_low:{spec}}, {scale * e.ci_high:{spec}}]"


def _pp(e: Estimate) -> str:
  """A difference of accuracies in points with its interval: '+1.20 pp [+0.40, +2.00]'."""
  return _interval(e, "+.2f", 100, " pp")


def _acc(e: Estimate) -> str:
  if e.ci_low is None:
    return f"{e.mean:.4f}"
  return f"{e.mean:.4f} ± {e.half_width:.4f}"


def _listing(items: Sequence[str]) -> str:
  items = list(items)
  return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _bits_per_coord(bits: Mapping[int, float], coordinates: float) -> float:
  """Mean over seeds of uplink bits per coordinate sent, side information included.

  `coordinates` is what a run's clients sent in all: rounds x clients per round x
  model parameters.
  """
  return summary.estimate([b / coordinates for b in bits.values()]).mean


@dataclasses.dataclass
class Answer:
  """One question's table rows (for JSON), its Markdown table and its sentence."""

  rows: list[dict[str, Any]]
  table: str
  sentence: str


def _estimate_dict(e: Estimate | None) -> dict[str, Any] | None:
  return None if e is None else dataclasses.asdict(e)


# --- (a) non-uniform against uniform at equal bits -------------------------------

def _widths(configs: Mapping[str, Any]) -> list[int]:
  """The quantizer widths b with both `uniform<b>` and `nonuniform<b>` present."""
  return sorted(b for b in range(1, 17)
                if f"uniform{b}" in configs and f"nonuniform{b}" in configs)


def nonuniform_answer(acc: Mapping[str, Mapping[int, float]],
                      bits: Mapping[str, Mapping[int, float]], coordinates: float) -> Answer:
  """`nonuniform<b>` against `uniform<b>` (both exactly b bits per coordinate), for
  every width b that `acc` has both of."""
  rows, lines = [], [
      "| bits | uniform acc (mean ± 95% CI) | nonuniform acc | nonuniform − uniform "
      "(paired, 95% CI) | verdict | uplink bits/coord (u / nu) |",
      "|---:|---:|---:|---:|---|---:|"]
  for b in _widths(acc):
    u, nu = acc[f"uniform{b}"], acc[f"nonuniform{b}"]
    diff = paired_diff(nu, u)
    row = {"bits": b, "uniform": summary.estimate(list(u.values())),
           "nonuniform": summary.estimate(list(nu.values())), "diff": diff,
           "verdict": verdict(diff),
           "uniform_bits_per_coord": _bits_per_coord(bits[f"uniform{b}"], coordinates),
           "nonuniform_bits_per_coord": _bits_per_coord(bits[f"nonuniform{b}"],
                                                        coordinates)}
    rows.append(row)
    lines.append(f"| {b} | {_acc(row['uniform'])} | {_acc(row['nonuniform'])} | {_pp(diff)} "
                 f"| {row['verdict']} | {row['uniform_bits_per_coord']:.2f} / "
                 f"{row['nonuniform_bits_per_coord']:.2f} |")
  return Answer(_jsonable(rows), "\n".join(lines), nonuniform_sentence(rows))


def nonuniform_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
  """'At equal bits per coordinate, non-uniform quantization is more accurate than ...'."""
  clauses = []
  for word, label in (("higher", "more accurate than uniform"), ("lower", "less accurate"),
                      ("no significant difference", "not significantly different"),
                      (UNDETERMINED, _UNDETERMINED_CLAUSE)):
    hits = [r for r in rows if r["verdict"] == word]
    if hits:
      clauses.append(f"{label} at {_listing([str(r['bits']) for r in hits])} bits ("
                     + "; ".join(_pp(r["diff"]) for r in hits) + ")")
  if not clauses[0].startswith("more"):
    clauses[0] = clauses[0].replace("less accurate", "less accurate than uniform", 1).replace(
        "not significantly different", "not significantly different from uniform", 1)
  return ("At equal bits per coordinate, non-uniform quantization is "
          + _listing(clauses) + ", by the paired 95% intervals of the accuracy difference.")


# --- (b) what Huffman coding saves on real updates --------------------------------

def huffman_answer(probe: Mapping[int, Mapping[int, Mapping[str, float]]],
                   adaptive_raw: Mapping[int, float], adaptive_sent: Mapping[int, float]
                   ) -> Answer:
  """Huffman-coded size against bit-packing and against the symbols' entropy.

  Args:
    probe: seed -> quantizer bits -> {'entropy', 'huffman', 'packed'} bits per symbol,
      measured on clients' updates with `huffman_codec(bits)` (`tools.symbol_entropy`).
    adaptive_raw, adaptive_sent: seed -> total uplink bits of the adaptive runs,
      bit-packed and Huffman coded (every client and round, counted in-graph).
  """
  seeds = sorted(probe)
  widths = sorted(set.intersection(*(set(probe[s]) for s in seeds)))
  rows, lines = [], [
      "| quantizer bits | entropy H (bits/symbol) | Huffman | bit-packed "
      "| saving (packed / Huffman, 95% CI) | Huffman − H (95% CI) |",
      "|---|---:|---:|---:|---:|---:|"]
  for b in widths:
    sizes = [probe[s][b] for s in seeds]
    row = {"bits": b, **{k: summary.estimate([z[k] for z in sizes])
                         for k in ("entropy", "huffman", "packed")},
           "saving": summary.estimate([z["packed"] / z["huffman"] for z in sizes]),
           "gap": summary.estimate([z["huffman"] - z["entropy"] for z in sizes])}
    rows.append(row)
    lines.append(f"| {b} | {row['entropy'].mean:.3f} | {row['huffman'].mean:.3f} | "
                 f"{row['packed'].mean:.3f} | {_times(row['saving'])} | "
                 f"{_plain(row['gap'])} |")
  in_runs = ratio_estimate(adaptive_raw, adaptive_sent)
  rows.append({"bits": "adaptive runs", "saving": in_runs})
  lines.append(f"| adaptive{BUDGET_BITS} runs (widths it chose, against `uniform`'s 28-bit "
               "words; every client and round) "
               f"| | | | {_times(in_runs)} | |")
  return Answer(_jsonable(rows), "\n".join(lines), huffman_sentence(rows))


def _times(e: Estimate) -> str:
  return _interval(e, ".2f", unit="x")


def _plain(e: Estimate) -> str:
  return _interval(e, ".3f")


def huffman_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
  """How much Huffman coding saves, whether the seeds establish it, its gap to entropy."""
  widths, in_runs = rows[:-1], rows[-1]["saving"]

  def saves(e: Estimate) -> bool:
    # A zero-width interval (every seed's ratio the same) is no evidence, as in
    # `Estimate.excludes_zero`: the stuck adaptive codec's 1.13x [1.13, 1.13] passed.
    return e.ci_low is not None and e.has_spread and e.ci_low > 1

  parts = []
  sure = [r for r in widths if saves(r["saving"])]
  unsure = [r for r in widths if not saves(r["saving"])]
  if sure:
    parts.append("Huffman coding of uniformly quantized client updates sends "
                 + _listing([f"{r['saving'].mean:.2f}x" for r in sure])
                 + " fewer bits than bit-packing at "
                 + _listing([str(r["bits"]) for r in sure]) + " bits (95% CI above 1x)")
  if unsure:
    parts.append(("" if sure else "Huffman coding of uniformly quantized client updates "
                  "shows ") + "no saving the seeds establish at "
                 + _listing([str(r["bits"]) for r in unsure]) + " bits")
  parts.append("its stream is "
               + _listing([f"{r['gap'].mean:.2f}" for r in widths])
               + " bits per symbol above the symbols' empirical entropy ("
               + _listing([f"{r['entropy'].mean:.2f}" for r in widths]) + " bits)")
  parts.append(f"in the adaptive runs coding saved {_times(in_runs)} against the uniform "
               "codec's packing (28 bits a word) at the widths the codec chose"
               + ("" if saves(in_runs) else ", which the seeds do not establish"))
  return "; ".join(parts) + "."


# --- (c) adaptive against fixed-rate codecs at the same budget -------------------

def adaptive_answer(acc: Mapping[str, Mapping[int, float]],
                    packed_bits: Mapping[str, Mapping[int, float]],
                    sent_bits: Mapping[str, Mapping[int, float]],
                    coordinates: float) -> Answer:
  """`adaptive<B>` (a budget of B coded bits per coordinate) against `FIXED_RATE`.

  Args:
    acc: configuration -> {seed: final eval accuracy}.
    packed_bits: configuration -> {seed: total uplink bits, bit-packed}.
    sent_bits: configuration -> {seed: total uplink bits sent (coded where coded)}.
    coordinates: rounds x clients per round x model parameters of every run.
  """
  name = f"adaptive{BUDGET_BITS}"
  rows, lines = [], [
      f"| codec | acc (mean ± 95% CI) | {name} − codec (paired, 95% CI) | verdict "
      "| uplink bits/coord bit-packed | sent |",
      "|---|---:|---:|---|---:|---:|"]
  for config in (name, *FIXED_RATE):
    diff = None if config == name else paired_diff(acc[name], acc[config])
    row = {"configuration": config, "accuracy": summary.estimate(list(acc[config].values())),
           "adaptive_minus": diff, "verdict": None if diff is None else verdict(diff),
           "packed_bits_per_coord": _bits_per_coord(packed_bits[config], coordinates),
           "bits_per_coord": _bits_per_coord(sent_bits[config], coordinates)}
    rows.append(row)
    lines.append(f"| {config} | {_acc(row['accuracy'])} | "
                 f"{'' if diff is None else _pp(diff)} | {row['verdict'] or ''} | "
                 f"{row['packed_bits_per_coord']:.3f} | {row['bits_per_coord']:.3f} |")
  return Answer(_jsonable(rows), "\n".join(lines), adaptive_sentence(rows))


def adaptive_sentence(rows: Sequence[Mapping[str, Any]]) -> str:
  """Where the adaptive codec lands in bits, and its accuracy against each fixed rate."""
  adaptive, fixed = rows[0], rows[1:]
  rates = []
  for r in fixed:
    rate = f"{r['configuration']} {r['packed_bits_per_coord']:.2f}"
    if abs(r["bits_per_coord"] - r["packed_bits_per_coord"]) > 5e-3:
      rate += f" bit-packed or {r['bits_per_coord']:.2f} Huffman coded"
    rates.append(rate)
  groups: dict[str, list] = {}
  for r in fixed:
    groups.setdefault(r["verdict"], []).append(r)
  clauses = []
  for word, label in (("higher", "was more accurate than"), ("lower", "was less accurate than"),
                      ("no significant difference",
                       "showed no significant accuracy difference from"),
                      (UNDETERMINED, "is " + _UNDETERMINED_CLAUSE + " against")):
    if word in groups:
      clauses.append(f"{label} " + _listing(
          [f"{r['configuration']} ({_pp(r['adaptive_minus'])})" for r in groups[word]]))
  return (f"Within a budget of {BUDGET_BITS} bits per coordinate the adaptive codec sent "
          f"{adaptive['bits_per_coord']:.2f} bits per coordinate (fixed rates: "
          f"{'; '.join(rates)}) and {_listing(clauses)}, by the paired 95% intervals.")


QUESTIONS = (
    ("nonuniform", "(a) Non-uniform against uniform quantization at equal bits per "
                   "coordinate (final eval accuracy)"),
    ("huffman", "(b) Huffman coding against plain bit-packing and the empirical entropy, on "
                "real client updates"),
    ("adaptive", "(c) The adaptive codec against fixed-rate codecs within the same budget"),
)


def format_section(results: Mapping[str, Mapping[str, Any]], settings: Mapping[str, Any]
                   ) -> str:
  """The README block: settings, then per dataset the three tables and answers.

  Args:
    results: dataset -> {'title', 'common_flags', 'experiment', 'probe' ({'clients',
      'from'}), 'answers': {question key: Answer}}.
    settings: 'command', 'commit', 'date', 'seeds', 'output', 'configurations'.
  """
  seeds = ",".join(map(str, settings["seeds"]))
  lines = [f"Generated by `make answers` (`{settings['command']}`) "
           f"on {settings['commit']}, {settings['date']}; {len(settings['seeds'])} seeds "
           f"({seeds}) per configuration, uplink codecs only; intervals are 95% Student t "
           f"over seeds, differences paired by seed. Raw numbers: `{settings['output']}`. "
           "Configurations (`--aggregate_encoder`): "
           + ", ".join(f"{k} `{v}`" for k, v in settings["configurations"].items()) + "."]
  for name, result in results.items():
    lines += ["", f"**{result['title']}.** Each run: `{result['common_flags']}` "
              f"(`--experiment={result['experiment']}` in the sweep). (b) re-encodes, "
              f"per seed, the first-round updates of {result['probe']['clients']} "
              f"client(s) from {result['probe']['from']} with `{huffman_codec(2)}` (and "
              + ", ".join(str(b) for b in result["probe"].get("widths", QUANTIZER_BITS)
                          if b != 2)
              + " bits) and decodes the stream back to its symbols "
              "(`tools/symbol_entropy.py`). Runs "
              f"{summary.format_sources(result['runs'], names=False)}."]
    for key, heading in QUESTIONS:
      answer = result["answers"][key]
      lines += ["", f"*{heading}, {name}*", "", answer.table, "",
                f"**Answer ({name}).** {answer.sentence}"]
  return "\n".join(lines)


def _jsonable(value: Any) -> Any:
  """Estimates to dicts, recursively, for the JSON file."""
  if isinstance(value, Estimate):
    return _estimate_dict(value)
  if isinstance(value, Mapping):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_jsonable(v) for v in value]
  return value

if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/answers_table.py is the tables of `make answers`: run "
                   "python -m tools.answers (--help for its flags)")
