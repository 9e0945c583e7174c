"""The codec table is computed from the runs' own files (checked on hand-made runs)."""

import json

import pytest

from fedcompress import metrics as m
from fedcompress.harness import reporting, summary
from tools import codec_table


def _run(root, name, agg_per_round, accuracy, codec="identity>100", coded=None,
         epsilon=None, error_feedback="none", broadcast_coded=None, **config):
  run = root / name
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"broadcast_codec": "identity>100",
                                               "aggregate_codec": codec,
                                               "error_feedback": error_feedback, **config}))
  csv = reporting.CsvReporter(str(run / "metrics.csv"))
  csv.start(1, 2)
  for r in (1, 2):
    row = {m.ROUND: r, m.BROADCAST_BITS: 3200, m.AGGREGATE_BITS: agg_per_round,
           m.BROADCAST_CUMULATIVE_BITS: 3200 * r, m.AGGREGATE_CUMULATIVE_BITS: agg_per_round * r,
           m.ROUND_TIME_S: 0.5 * r, m.EVAL_ACCURACY: accuracy if r == 2 else None}
    if coded is not None:
      row.update({m.AGGREGATE_CODED_BITS: coded, m.AGGREGATE_CUMULATIVE_CODED_BITS: coded * r})
    if broadcast_coded is not None:
      row.update({m.BROADCAST_CODED_BITS: broadcast_coded,
                  m.BROADCAST_CUMULATIVE_CODED_BITS: broadcast_coded * r})
    if epsilon is not None:
      row[m.PRIVACY_EPSILON] = epsilon * r
    csv.write(row)
  csv.close()


def test_table_from_runs(tmp_path):
  _run(tmp_path, "baseline", 3200, 0.90)
  _run(tmp_path, "up_u8", 800, 0.895, codec="uniform(bits=8)>100", coded=400)
  summaries = summary.compare_runs([str(tmp_path / "baseline"), str(tmp_path / "up_u8")],
                                   baseline="baseline")
  rows = codec_table.table_rows(summaries, str(tmp_path), "baseline")
  up = rows[1]
  assert up["aggregate_ratio"] == 4.0 and up["aggregate_bits_per_coord"] == 8.0
  assert up["accuracy_delta_pp"] == pytest.approx(-0.5)
  assert up["aggregate_coded_ratio"] == 8.0
  assert up["codec"] == "aggr: uniform(bits=8)>100"
  assert up["mean_round_time_s"] == pytest.approx(0.75)
  table = codec_table.format_table(rows, "t")
  assert "| up_u8 | aggr: uniform(bits=8)>100 | 0.8950 | -0.50 pp |" in table
  assert "| 4.0x | 8.00 | 8.0x |" in table
  assert "coded downlink ratio" not in table  # No run coded its broadcast.
  assert "epsilon" not in table  # No run spent privacy.
  # Hand-made runs have no run_info.json: the table says so instead of naming a commit.
  assert table.endswith("\n\nRuns made on code not recorded (baseline, up_u8).")

  readme = tmp_path / "README.md"
  readme.write_text("a\n<!-- codec-table:emnist -->\nold\n<!-- end codec-table -->\nb\n")
  codec_table.update_readme(str(readme), "emnist", table)
  text = readme.read_text()
  assert "old" not in text and "| up_u8 |" in text and text.endswith("b\n")
  with pytest.raises(ValueError, match="no <!-- codec-table:other -->"):
    codec_table.update_readme(str(readme), "other", table)


def test_error_feedback_is_named_beside_its_codec(tmp_path):
  # Same codec and bits with and without error feedback: the rows must tell them apart.
  _run(tmp_path, "baseline", 3200, 0.90)
  _run(tmp_path, "topk", 100, 0.6, codec="topk(fraction=0.01)>100")
  _run(tmp_path, "topk_ef", 100, 0.85, codec="topk(fraction=0.01)>100", error_feedback="ef")
  summaries = summary.compare_runs([str(tmp_path / n) for n in ("baseline", "topk", "topk_ef")],
                                   baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: topk(fraction=0.01)>100",
                    "aggr: topk(fraction=0.01)>100; error feedback: ef"]


def test_secure_aggregation_and_dp_are_named(tmp_path):
  # Under secure aggregation every tensor is encoded: the threshold must not show; DP
  # runs with the identity codec still change bits (distributed) and accuracy.
  _run(tmp_path, "baseline", 3200, 0.90)
  _run(tmp_path, "sec", 800, 0.9, codec="fixed_int(bits=4,clip=0.01)>10000",
       secure_aggregation=True)
  _run(tmp_path, "ddp", 2000, 0.9, secure_aggregation=True, dp="distributed")
  _run(tmp_path, "cdp", 3200, 0.9, secure_aggregation=False, dp="central")
  names = ("baseline", "sec", "ddp", "cdp")
  summaries = summary.compare_runs([str(tmp_path / n) for n in names], baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: fixed_int(bits=4,clip=0.01) on every tensor; secure sum",
                    "secure sum; dp: distributed", "dp: central"]


def test_other_settings_than_the_baselines_are_named(tmp_path):
  # configs/secure/*.flags set --client_weighting=uniform, which changes the mean and
  # the bits; the row put it all down to the codec. How a run ran, and a codec's
  # spelling (its resolved name is shown), are not settings of the result.
  _run(tmp_path, "baseline", 3200, 0.90, client_weighting="num_examples", seed=0,
       workers=[], aggregate_encoder="identity")
  _run(tmp_path, "sec", 800, 0.9, codec="fixed_int(bits=4,clip=0.01)>10000",
       secure_aggregation=True, client_weighting="uniform", seed=0, workers=["h:1"],
       aggregate_encoder="fixed_int")
  _run(tmp_path, "u8", 800, 0.9, codec="uniform(bits=8)>100", client_weighting="num_examples",
       seed=3, workers=[], aggregate_encoder="uniform")
  names = ("baseline", "sec", "u8")
  summaries = summary.compare_runs([str(tmp_path / n) for n in names], baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: fixed_int(bits=4,clip=0.01) on every tensor; secure sum; "
                    "client_weighting=uniform (baseline: num_examples)",
                    "aggr: uniform(bits=8)>100; seed=3 (baseline: 0)"]


def test_settings_a_run_does_not_use_or_one_record_lacks_are_not_named(tmp_path):
  # The baseline's DP flags, which did nothing without --dp, were cited as if they ran;
  # a key a baseline recorded by older code lacks was cited as 'None'.
  _run(tmp_path, "baseline", 3200, 0.90, dp="none", dp_clip=0.1, dp_noise_multiplier=1.0)
  _run(tmp_path, "u8", 800, 0.9, codec="uniform(bits=8)>100", dp="none", dp_clip=0.5,
       dp_noise_multiplier=0.5, client_sampling="sorted ids")
  _run(tmp_path, "cdp", 3200, 0.9, dp="central", dp_clip=0.5, dp_noise_multiplier=1.0)
  names = ("baseline", "u8", "cdp")
  summaries = summary.compare_runs([str(tmp_path / n) for n in names], baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: uniform(bits=8)>100",
                    "dp: central; dp_clip=0.5; dp_noise_multiplier=1.0"]


def test_a_runs_dp_settings_are_named_beside_a_baseline_without_them(tmp_path):
  # A config built in Python without --dp records no dp_* keys: two DP runs of clips
  # 0.05 and 0.5 both read 'dp: central' (R12, s46).
  _run(tmp_path, "baseline", 3200, 0.90)  # Recorded without `dp` (code before DP).
  for name, clip in (("c05", 0.05), ("c5", 0.5)):
    _run(tmp_path, name, 3200, 0.9, dp="central", dp_clip=clip)
  names = ("baseline", "c05", "c5")
  summaries = summary.compare_runs([str(tmp_path / n) for n in names], baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "dp: central; dp_clip=0.05", "dp: central; dp_clip=0.5"]


def test_epsilon_column_holds_the_last_rounds_epsilon(tmp_path):
  _run(tmp_path, "baseline", 3200, 0.90)
  _run(tmp_path, "dp", 3200, 0.5, epsilon=1.25)
  summaries = summary.compare_runs([str(tmp_path / "baseline"), str(tmp_path / "dp")],
                                   baseline="baseline")
  table = codec_table.format_table(codec_table.table_rows(summaries, str(tmp_path), "baseline"),
                                   "t")
  lines = table.splitlines()[:-2]  # Without the sentence naming the runs' code.
  assert lines[2].endswith("| round time | epsilon |")
  assert lines[-2].endswith("s |  |") and lines[-1].endswith("s | 2.5 |")  # Round 2: 2 x 1.25.


def test_bits_per_coordinate_needs_an_uncompressed_baseline(tmp_path):
  # Against an 8-bit baseline the ratio 2 means 4 bits per coordinate, not 16.
  _run(tmp_path, "u8", 800, 0.90, codec="uniform(bits=8)>100")
  _run(tmp_path, "u4", 400, 0.89, codec="uniform(bits=4)>100")
  summaries = summary.compare_runs([str(tmp_path / "u8"), str(tmp_path / "u4")], baseline="u8")
  rows = codec_table.table_rows(summaries, str(tmp_path), "u8")
  assert rows[1]["aggregate_ratio"] == 2.0
  assert [r["aggregate_bits_per_coord"] for r in rows] == [None, None]
  assert "| 2.0x | n/a |" in codec_table.format_table(rows, "t")


def test_a_coded_broadcast_has_its_ratio_beside_the_uplinks(tmp_path):
  # An entropy-coded broadcast sent 800 bits a round of its raw 3,200 (the baseline's):
  # its coded ratio is 4.0x, in a column of its own, as summary.md shows it.
  _run(tmp_path, "baseline", 3200, 0.90)
  _run(tmp_path, "down_huff", 3200, 0.90, broadcast_coded=800)
  _run(tmp_path, "up_huff", 800, 0.90, coded=400)
  summaries = summary.compare_runs([str(tmp_path / n) for n in ("baseline", "down_huff",
                                                                "up_huff")], baseline="baseline")
  rows = codec_table.table_rows(summaries, str(tmp_path), "baseline")
  assert [r["broadcast_coded_ratio"] for r in rows] == [None, 4.0, None]
  assert [r["aggregate_coded_ratio"] for r in rows] == [None, None, 8.0]
  lines = codec_table.format_table(rows, "t").splitlines()
  assert "| coded downlink ratio | coded uplink ratio | round time |" in lines[2]
  assert lines[3].count("|") == lines[2].count("|")
  assert "| 1.0x | 32.00 | 4.0x |  | 0.75s |" in lines[5]
  assert "| 4.0x | 8.00 |  | 8.0x | 0.75s |" in lines[6]


def test_coded_ratios_are_taken_against_what_the_baseline_sent(tmp_path):
  # A baseline that entropy-coded its uplink too (1,600 of 3,200 raw bits a round): a
  # run sending 400 coded bits sent 4x fewer than it, not the 8x of its raw size.
  _run(tmp_path, "coded_base", 3200, 0.90, coded=1600)
  _run(tmp_path, "up_huff", 800, 0.90, coded=400)
  summaries = summary.compare_runs([str(tmp_path / "coded_base"), str(tmp_path / "up_huff")],
                                   baseline="coded_base")
  rows = codec_table.table_rows(summaries, str(tmp_path), "coded_base")
  assert [r["aggregate_coded_ratio"] for r in rows] == [1.0, 4.0]


def test_rounds_a_resume_raised_are_not_named_as_a_setting(tmp_path):
  # config.json keeps the first start's --rounds: a baseline extended from 2 to 3 rounds
  # by compare_codecs was said to differ from a 3-round run in "rounds=3 (baseline: 2)"
  # (R7, s47). The table's rounds column, from metrics.csv, says the lengths.
  _run(tmp_path, "baseline", 3200, 0.90, rounds=2, rounds_per_eval=1)
  _run(tmp_path, "u8", 800, 0.9, codec="uniform(bits=8)>100", rounds=3, rounds_per_eval=2)
  summaries = summary.compare_runs([str(tmp_path / n) for n in ("baseline", "u8")],
                                   baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: uniform(bits=8)>100"]


def test_one_optimizer_spelt_two_ways_is_no_other_setting(tmp_path):
  # sgdm against sgd with --server_momentum=0.9: one optimizer, said to differ in
  # "server_momentum=0.9 (baseline: None)" (R7, s47); another momentum still differs.
  common = dict(server_learning_rate=1.0, client_optimizer="sgd", client_learning_rate=0.1)
  _run(tmp_path, "baseline", 3200, 0.90, server_optimizer="sgdm", server_momentum=None,
       **common)
  _run(tmp_path, "u8", 800, 0.9, codec="uniform(bits=8)>100", server_optimizer="sgd",
       server_momentum=0.9, **common)
  _run(tmp_path, "u8m", 800, 0.9, codec="uniform(bits=8)>100", server_optimizer="sgd",
       server_momentum=0.5, **common)
  names = ("baseline", "u8", "u8m")
  summaries = summary.compare_runs([str(tmp_path / n) for n in names], baseline="baseline")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "baseline")]
  assert codecs == ["none", "aggr: uniform(bits=8)>100",
                    "aggr: uniform(bits=8)>100; server_optimizer=sgd(momentum=0.5) "
                    "(baseline: sgd(momentum=0.9))"]


def test_what_only_the_baseline_has_is_named(tmp_path):
  # Top-k against a top-k + error feedback baseline read as the same setting, and a run
  # without the baseline's secure sum, DP or compressed broadcast too (R5 of s48).
  _run(tmp_path, "topk_ef", 100, 0.85, codec="topk(fraction=0.01)>100", error_feedback="ef",
       broadcast_codec="uniform(bits=8)>100", secure_aggregation=True, dp="central")
  _run(tmp_path, "topk", 100, 0.6, codec="topk(fraction=0.01)>100", secure_aggregation=False,
       dp="none")
  summaries = summary.compare_runs([str(tmp_path / n) for n in ("topk_ef", "topk")],
                                   baseline="topk_ef")
  codecs = [r["codec"] for r in codec_table.table_rows(summaries, str(tmp_path), "topk_ef")]
  assert codecs[1] == (
      "aggr: topk(fraction=0.01)>100; broadcast_codec=identity (baseline: "
      "uniform(bits=8)>100); secure_aggregation=False (baseline: True); dp=none (baseline: "
      "central); error_feedback=none (baseline: ef)")


def test_a_baseline_started_from_given_weights_is_named(tmp_path):
  # A run from the initializer against a baseline from given weights read as the same
  # setting; the other way round it was named (R10 of s48).
  _run(tmp_path, "given", 3200, 0.9, initial_weights_sha256="8:abc")
  _run(tmp_path, "init", 3200, 0.9, initial_weights_sha256=None)
  for baseline, other, said in (
      ("given", "init", "initial_weights_sha256=None (baseline: 8:abc)"),
      ("init", "given", "initial_weights_sha256=8:abc")):
    summaries = summary.compare_runs([str(tmp_path / n) for n in (baseline, other)],
                                     baseline=baseline)
    rows = codec_table.table_rows(summaries, str(tmp_path), baseline)
    assert rows[1]["codec"] == said
