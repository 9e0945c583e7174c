"""Statistics over seeds: mean, std, Student-t interval, paired difference, on known numbers."""

import json
import math
import types

import numpy as np
import pytest

from fedcompress.harness import summary


def test_t_quantiles_match_the_tables():
  # Two-sided 95% critical values of Student's t (any statistics table).
  for df, value in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (30, 2.0423)):
    assert summary.t_quantile(0.975, df) == pytest.approx(value, abs=1e-4)


def test_estimate_by_hand():
  e = summary.estimate([0.90, 0.92, 0.94])
  assert e.n == 3
  assert e.mean == pytest.approx(0.92)
  assert e.std == pytest.approx(0.02)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
  half = 4.302653 * 0.02 / math.sqrt(3)  # = 0.049683
  assert e.ci_low == pytest.approx(0.92 - half, abs=1e-6)
  assert e.ci_high == pytest.approx(0.92 + half, abs=1e-6)
  assert e.half_width == pytest.approx(half, abs=1e-6)
  assert e.excludes_zero is True


def test_single_value_has_no_spread():
  e = summary.estimate([0.5])
  assert (e.n, e.mean, e.std, e.ci_low, e.excludes_zero) == (1, 0.5, None, None, None)
  with pytest.raises(ValueError, match="no values"):
    summary.estimate([])


def test_zero_spread_is_no_evidence():
  # Two seeds whose accuracy moved by the same test image: a zero-width interval.
  e = summary.estimate([0.0028, 0.0028])
  assert (e.std, e.ci_low, e.ci_high) == (0.0, 0.0028, 0.0028)
  assert e.excludes_zero is None
  # Equal differences that float arithmetic leaves unequal in their last bits.
  rounded = summary.estimate([0.83 - 0.81, 0.82 - 0.80, 0.84 - 0.82])
  assert 0 < rounded.std < 1e-15 and rounded.excludes_zero is None
  # As metrics.csv holds them: float32 accuracies out of 360 test images, one more image
  # right on every seed. Their differences spread by ~1.5e-8, which passed for evidence.
  f32 = [float(np.float32(k / 360)) for k in (60, 61, 200, 201, 300, 301)]
  one_image = summary.estimate([f32[1] - f32[0], f32[3] - f32[2], f32[5] - f32[4]])
  assert 0 < one_image.std < 1e-7 and one_image.excludes_zero is None
  assert not one_image.has_spread


ACCURACY = {
    "base": {0: 0.90, 1: 0.91, 2: 0.92},
    # Each seed 0.015-0.02 above the baseline's same seed.
    "better": {0: 0.92, 1: 0.925, 2: 0.94},
    "same": {0: 0.91, 1: 0.90, 2: 0.925},
}


def test_paired_difference_by_hand():
  stats = {s["configuration"]: s for s in summary.seed_statistics(
      ACCURACY, "base", {c: {0: 100, 1: 100, 2: 130} for c in ACCURACY})}
  assert list(stats) == ["base", "better", "same"]
  assert stats["base"]["diff"] is None and stats["base"]["differs"] is None
  assert stats["base"]["uplink_bits"] == 110

  # better - base = 0.02, 0.015, 0.02: mean 0.018333, std 0.0028868.
  diff = stats["better"]["diff"]
  half = 4.302653 * math.sqrt(1 / 120_000) / math.sqrt(3)  # = 0.0071712
  assert diff.mean == pytest.approx(0.055 / 3)
  assert diff.std == pytest.approx(math.sqrt(1 / 120_000))
  assert diff.ci_low == pytest.approx(0.055 / 3 - half, abs=1e-7)
  assert diff.ci_high == pytest.approx(0.055 / 3 + half, abs=1e-7)
  assert stats["better"]["differs"] is True
  # Unpaired, the two intervals overlap: pairing by seed is what resolves the difference.
  assert stats["better"]["accuracy"].ci_low < stats["base"]["accuracy"].ci_high

  # same - base = 0.01, -0.01, 0.005: the interval contains 0.
  assert stats["same"]["diff"].mean == pytest.approx(0.005 / 3)
  assert stats["same"]["differs"] is False


def test_pairing_uses_only_shared_seeds_and_refuses_unknown_baseline():
  stats = summary.seed_statistics({"base": {0: 0.5, 1: 0.6}, "x": {1: 0.7, 2: 0.9}}, "base")
  assert stats[1]["diff"].n == 1 and stats[1]["diff"].mean == pytest.approx(0.1)
  assert stats[1]["differs"] is None  # One shared seed: no interval.
  with pytest.raises(ValueError, match="baseline 'nope'"):
    summary.seed_statistics(ACCURACY, "nope")


def test_seed_table_and_csv_rows():
  # better's coder sent 2^29 bits on two seeds and 2^28 on one; same's sent the raw size
  # (no column entry); base recorded no coded size on seed 2 (no mean).
  coded = {"base": {0: 2**29, 1: 2**29, 2: None}, "better": {0: 2**29, 1: 2**29, 2: 2**28},
           "same": {0: 2**30, 1: 2**30, 2: 2**30}}
  stats = summary.seed_statistics(ACCURACY, "base", {c: {0: 2**30, 1: 2**30, 2: 2**30}
                                                     for c in ACCURACY}, coded)
  table = summary.format_seed_markdown(stats, "base").splitlines()
  assert table[0].startswith("| configuration | seeds | eval accuracy mean | std | 95% CI |")
  assert table[0].endswith("| uplink | uplink coded |")
  assert table[2] == ("| base | 3 | 0.9100 | 0.0100 | [0.8852, 0.9348] | n/a | n/a | "
                      "baseline | 1.00Gibit |  |")
  assert table[3] == ("| better | 3 | 0.9283 | 0.0104 | [0.9025, 0.9542] | +0.0183 | "
                      "[+0.0112, +0.0255] | yes | 1.00Gibit | 426.67Mibit |")
  assert table[4].endswith("| 1.00Gibit |  |")
  assert "| same | 3 |" in table[4] and "| no |" in table[4]
  rows = summary.seed_rows_for_csv(stats)
  assert set(rows[0]) == set(summary.SEED_COLUMNS)
  assert rows[1]["seeds"] == "0 1 2" and rows[1]["differs"] is True
  assert rows[1]["diff_mean"] == pytest.approx(0.055 / 3)


def test_run_sources_name_the_code_of_every_segment(tmp_path):
  from fedcompress.harness import rundir

  def segment(source, first=1, last=None):
    return {"first_round": first, **({} if last is None else {"last_round": last}),
            "environment": {"source": source}}

  runs = {"old": [{"first_round": 1}],  # Made before run records named their code.
          "resumed": [segment({"commit": "aaaa11112222", "dirty": False}, 1, 2),
                      segment({"commit": "aaaa11112222", "dirty": False}, 3, 4),
                      segment({"commit": "bbbb33334444", "dirty": True}, 5, 6),
                      # A resume that ran no round (or was killed in its first) made
                      # none of the rows: its code is not the run's.
                      {"first_round": 7, "last_round": 6,
                       "environment": {"source": {"commit": "cccc55556666"}}}],
          # Killed before its first checkpoint, then resumed from round 1 on other
          # code: every row is the second segment's.
          "redone": [segment({"commit": "dddd77778888", "dirty": False}, 1, 5),
                     segment({"commit": "aaaa11112222", "dirty": False}, 1, 10)],
          "new": [segment({"commit": "aaaa11112222", "dirty": False})]}
  for name, segments in runs.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / rundir.RUN_INFO_FILE).write_text(
        json.dumps({"wall_time_s": 1.0, "segments": segments}))
  sources = {n: summary.run_sources(str(tmp_path / n)) for n in runs}
  assert sources == {"old": ["unrecorded"],
                     "resumed": ["aaaa11112222", "bbbb33334444+modified"],
                     "redone": ["aaaa11112222"],
                     "new": ["aaaa11112222"]}
  rows = [{"run": n, "sources": sources[n]} for n in runs if n != "redone"]
  assert summary.format_sources(rows) == (
      "made on code not recorded (old), aaaa11112222 (resumed, new) and "
      "bbbb33334444+modified (resumed)")
  assert summary.format_sources(rows[1:], names=False) == (
      "made on aaaa11112222 (2 runs) and bbbb33334444+modified (1 run)")


def test_compare_runs_refuses_an_unknown_baseline_and_a_single_path(tmp_path):
  # An unknown baseline name silently fell back to the first run, whose ratios the table
  # then headed with the name asked for; one path was read letter by letter.
  from fedcompress import metrics as m
  from fedcompress.harness import plotting, reporting

  for name in ("a", "b"):
    csv = reporting.CsvReporter(str(tmp_path / name / "metrics.csv"))
    (tmp_path / name).mkdir()
    csv.start(1, 1)
    csv.write({m.ROUND: 1, m.TRAIN_LOSS: 2.0, m.TRAIN_ACCURACY: 0.1, m.EVAL_LOSS: 2.0,
               m.EVAL_ACCURACY: 0.1, m.BROADCAST_BITS: 10, m.AGGREGATE_BITS: 10,
               m.BROADCAST_CUMULATIVE_BITS: 10, m.AGGREGATE_CUMULATIVE_BITS: 10,
               m.ROUND_TIME_S: 1.0})
    csv.close()
  runs = [str(tmp_path / "a"), str(tmp_path / "b")]
  assert [s["run"] for s in summary.compare_runs(runs, baseline="b")] == ["a", "b"]
  with pytest.raises(ValueError, match=r"baseline 'original' is none of the runs compared: "
                     r"a, b"):
    summary.compare_runs(runs, baseline="original")
  for call in (lambda: summary.compare_runs(runs[0]),
               lambda: plotting.plot_runs(runs[0], str(tmp_path / "x.png"))):
    with pytest.raises(ValueError, match="got the one path"):
      call()


def _write_run(root, name, rounds, aggregate, aggregate_coded=None):
  from fedcompress import metrics as m
  from fedcompress.harness import reporting

  (root / name).mkdir(parents=True)
  csv = reporting.CsvReporter(str(root / name / "metrics.csv"))
  csv.start(1, rounds)
  for r in range(1, rounds + 1):
    row = {m.ROUND: r, m.TRAIN_LOSS: 2.0, m.TRAIN_ACCURACY: 0.1, m.EVAL_LOSS: 2.0,
           m.EVAL_ACCURACY: 0.1, m.BROADCAST_BITS: 100, m.AGGREGATE_BITS: aggregate,
           m.BROADCAST_CUMULATIVE_BITS: 100 * r, m.AGGREGATE_CUMULATIVE_BITS: aggregate * r,
           m.ROUND_TIME_S: 1.0}
    if aggregate_coded is not None:
      row.update({m.BROADCAST_CODED_BITS: 100, m.AGGREGATE_CODED_BITS: aggregate_coded,
                  m.BROADCAST_CUMULATIVE_CODED_BITS: 100 * r,
                  m.AGGREGATE_CUMULATIVE_CODED_BITS: aggregate_coded * r})
    csv.write(row)
  csv.close()
  return str(root / name)


def test_coded_bits_are_compared_beside_the_raw_bits(tmp_path):
  # An entropy-coded run was compared at its raw (bit-packed) size only: uniform 8 bits
  # and the same with Huffman both read 3.50x, though the coded one sent 9.97x fewer.
  runs = [_write_run(tmp_path, "base", 1, 1000), _write_run(tmp_path, "fixed", 1, 250),
          _write_run(tmp_path, "coded", 1, 250, aggregate_coded=100)]
  rows = {s["run"]: s for s in summary.compare_runs(runs, baseline="base")}
  assert rows["coded"]["aggregate_ratio"] == rows["fixed"]["aggregate_ratio"] == 4.0
  assert rows["coded"]["aggregate_coded_ratio"] == 10.0
  assert rows["fixed"]["aggregate_coded_ratio"] == 4.0  # No coder: its raw bits were sent.
  table = summary.format_markdown(list(rows.values()), "base")
  assert "| aggregate sent (coded) | base/run aggregate sent |" in table
  assert "broadcast sent" not in table  # Not coded in that direction.
  assert table.splitlines()[-1].startswith("| coded | 1 | 0.1000 | 100bit | 250bit | 1.00x | "
                                           "4.00x | 100bit | 10.00x | ")
  # Without any coder, the table is as before.
  plain = summary.format_markdown(summary.compare_runs(runs[:2], baseline="base"), "base")
  assert plain.splitlines()[:2] == [
      "| run | rounds | eval accuracy | broadcast | aggregate | base/run broadcast | base/run "
      "aggregate | time in rounds | wall time |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]


def test_runs_of_one_folder_name_are_refused_and_lengths_that_differ_are_said(tmp_path):
  # runs/a/original and runs/b/original: two rows of one name, and the baseline the last.
  first = _write_run(tmp_path / "a", "original", 1, 1000)
  second = _write_run(tmp_path / "b", "original", 2, 1000)
  with pytest.raises(ValueError, match=r"runs compared share a folder name \(original: "
                     r".*a/original, .*b/original\)"):
    summary.compare_runs([first, second], baseline="original")
  # A 2-round run against a 1-round one read as 0.50x, as if its codec cost that.
  longer = _write_run(tmp_path / "b", "longer", 2, 1000)
  table = summary.format_markdown(summary.compare_runs([first, longer]), "original")
  assert table.splitlines()[-1] == ("The runs differ in length (1, 2 rounds): the ratios "
                                    "compare their totals, not their bits per round.")


def test_savings_are_compared_per_round_when_the_lengths_differ(tmp_path):
  # The notebook's sentence compared a 1-round run's total with a 3-round baseline's:
  # "2.28x fewer" for a codec sending 6.84x fewer per round.
  base = _write_run(tmp_path, "original", 1, 1000)
  same = _write_run(tmp_path, "u8", 1, 250)
  longer = _write_run(tmp_path, "u4", 3, 125)
  empty = _write_run(tmp_path, "none", 1, 0)
  rows = {s["run"]: s for s in summary.compare_runs([base, same, longer, empty])}
  assert summary.format_savings(rows["u8"], rows["original"]) == (
      "u8 sent 1.00x fewer broadcast bits and 4.00x fewer aggregate bits than original")
  assert summary.format_savings(rows["u4"], rows["original"]) == (
      "u4 sent 1.00x fewer broadcast bits and 8.00x fewer aggregate bits per round "
      "(3 rounds against 1) than original")
  assert summary.format_savings(rows["none"], rows["original"]).endswith(
      "n/a fewer aggregate bits than original")


def test_savings_of_an_entropy_coded_run_are_what_it_sent(tmp_path):
  # It said the raw totals' ratio, 2.84x where a Huffman run sent 3.03x fewer, unlike
  # the table beside it (R3 of s48).
  base = _write_run(tmp_path, "original", 2, 1000)
  coded = _write_run(tmp_path, "coded", 2, 250, aggregate_coded=100)
  rows = {s["run"]: s for s in summary.compare_runs([base, coded])}
  assert summary.format_savings(rows["coded"], rows["original"]) == (
      "coded sent 1.00x fewer broadcast bits and 10.00x fewer aggregate bits (as "
      "entropy-coded) than original")


def test_the_closing_line_names_the_coded_totals(tmp_path):
  # `done:` said the raw totals only: 152.46 Mibit up, where 97.45 were sent (R1 of s48).
  from fedcompress import metrics as m
  from fedcompress.harness import experiment

  def result(totals):
    loop = types.SimpleNamespace(rows=[{m.ROUND: 4}], start_round=1)
    return experiment.ExperimentResult(run_dir="r", loop=loop, wall_time_s=3.0,
                                       final_eval=None, totals=totals)

  raw = {m.BROADCAST_CUMULATIVE_BITS: 2**20, m.AGGREGATE_CUMULATIVE_BITS: 2**21}
  assert experiment.describe_result(result(raw)) == (
      "done: 4 rounds, eval accuracy n/a, broadcast 1.00Mibit, aggregate 2.00Mibit in 3s; "
      "logs: r")
  coded = {**raw, m.BROADCAST_CUMULATIVE_CODED_BITS: 2**20,
           m.AGGREGATE_CUMULATIVE_CODED_BITS: 2**19}
  assert experiment.describe_result(result(coded)) == (
      "done: 4 rounds, eval accuracy n/a, broadcast 1.00Mibit, aggregate 2.00Mibit "
      "(512.00Kibit as entropy-coded) in 3s; logs: r")
