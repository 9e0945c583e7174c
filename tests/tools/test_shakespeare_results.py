"""tools/shakespeare_results.py: the README's block, from runs' summaries (no TensorFlow)."""

import json

import pytest

GIBIT = 2**30
PRETRAINED = {"pretrained_eval": {"accuracy": 0.4096, "num_batches": 60},
              "sanity": {"client_accuracy": 0.3989, "random_accuracy": 0.0108,
                         "expected_random_accuracy": 0.0116},
              "sanity_client": "THE_TRAGEDY_OF_KING_LEAR_KING"}


def _run(name: str, codec: str, bits: float, accuracy: float) -> dict:
  """A run as `read_run` returns it (what `format_block` reads of it)."""
  return {"run": name, "codec": codec, "rounds": 50, "pretrained": PRETRAINED,
          "settings": {"rounds": 50}, "sources": ["463361abffba"], "wall_time_s": 360.0,
          "eval/accuracy": accuracy, "broadcast/cumulative_bits": int(bits * GIBIT),
          "aggregate/cumulative_bits": int(bits * GIBIT)}


PLAIN = _run("sampled", "none", 15.52, 0.4911)
U8 = _run("sampled_u8", "broa: uniform(bits=8)>10000; aggr: uniform(bits=8)>10000", 4.47,
          0.4913)


@pytest.fixture(scope="module")
def shakespeare_results(load_binary):
  # Its absl flags (--readme) would clash with other tools' binaries loaded in this process.
  with load_binary("tools/shakespeare_results.py") as module:
    yield module


def test_the_others_are_compared_with_the_uncompressed_run(shakespeare_results):
  block = shakespeare_results.format_block([PLAIN, U8])
  assert ("sampled_u8 sent 3.47x fewer broadcast bits and 3.47x fewer aggregate bits than "
          "sampled (11.05Gibit and 11.05Gibit saved).") in block


def test_a_compressed_first_run_is_refused(shakespeare_results):
  # The ratios would read '0.29x fewer' and the savings be negative.
  with pytest.raises(ValueError, match=r"sampled_u8 is not uncompressed \(broa: uniform"
                     r".*--runs takes the uncompressed run first"):
    shakespeare_results.format_block([U8, PLAIN])


def _run_dir(root, name, first_rounds, finished, aggregate_coded=None):
  """A finished run's folder: config.json from its first start, metrics.csv of `finished`."""
  from fedcompress import metrics as m
  from fedcompress.harness import reporting

  run = root / name
  run.mkdir()
  (run / "config.json").write_text(json.dumps({
      "rounds": first_rounds, "clients_per_round": 2, "broadcast_codec": "identity>10000",
      "aggregate_codec": "identity>10000" if aggregate_coded is None
      else "uniform_huffman>10000"}))
  (run / "pretrained_eval.json").write_text(json.dumps(PRETRAINED))
  csv = reporting.CsvReporter(str(run / "metrics.csv"))
  csv.start(1, finished)
  for r in range(1, finished + 1):
    row = {m.ROUND: r, m.BROADCAST_BITS: 3200, m.AGGREGATE_BITS: 3200,
           m.BROADCAST_CUMULATIVE_BITS: 3200 * r, m.AGGREGATE_CUMULATIVE_BITS: 3200 * r,
           m.ROUND_TIME_S: 1.0, m.EVAL_ACCURACY: 0.5}
    if aggregate_coded is not None:
      row.update({m.AGGREGATE_CODED_BITS: aggregate_coded,
                  m.AGGREGATE_CUMULATIVE_CODED_BITS: aggregate_coded * r})
    csv.write(row)
  csv.close()
  return str(run)


def test_a_run_extended_by_resume_is_compared_by_the_rounds_it_finished(
    shakespeare_results, tmp_path):
  # config.json keeps the first start's --rounds (1); `--resume --rounds=2` finished 2,
  # as the other run did. A run of 1 round is still refused beside them, and one that
  # stopped before the rounds it was asked for is refused alone.
  plain = _run_dir(tmp_path, "plain", 2, 2)
  extended = _run_dir(tmp_path, "extended", 1, 2, aggregate_coded=800)
  runs = [shakespeare_results.read_run(r) for r in (plain, extended)]
  block = shakespeare_results.format_block(runs)
  assert "| extended, 2 rounds |" in block
  short = shakespeare_results.read_run(_run_dir(tmp_path, "short", 1, 1))
  with pytest.raises(ValueError, match="short finished 1 rounds and plain 2"):
    shakespeare_results.format_block([runs[0], short])
  with pytest.raises(ValueError, match="stopped stopped at round 1 of 2: finish it"):
    shakespeare_results.read_run(_run_dir(tmp_path, "stopped", 2, 1))
  # Extended once more (--resume --rounds=3, run_info.json's segment) and stopped at
  # round 2: unfinished, its last evaluation may be from an earlier round.
  (tmp_path / "extended" / "run_info.json").write_text(json.dumps(
      {"segments": [{"rounds": 1}, {"rounds": 2}, {"rounds": 3}]}))
  with pytest.raises(ValueError, match="extended stopped at round 2 of 3: finish it"):
    shakespeare_results.read_run(extended)
  other = _run_dir(tmp_path, "other", 2, 2)
  config = tmp_path / "other" / "config.json"
  config.write_text(config.read_text().replace('"clients_per_round": 2', '"clients_per_round": 3'))
  with pytest.raises(ValueError, match="other settings than plain, not only other codecs: "
                     "clients_per_round"):
    shakespeare_results.format_block([runs[0], shakespeare_results.read_run(other)])


def test_entropy_coded_totals_and_savings_are_what_was_sent(shakespeare_results):
  # uniform_huffman's raw size is its bit-packing's: 4.47 Gibit raw, 1.5 Gibit coded.
  coded = {**U8, "aggregate/cumulative_coded_bits": int(1.5 * GIBIT)}
  block = shakespeare_results.format_block([PLAIN, coded])
  assert "| 4.47Gibit | 1.50Gibit coded (4.47Gibit raw) |" in block
  assert ("sampled_u8 sent 3.47x fewer broadcast bits and 10.35x fewer aggregate bits than "
          "sampled (11.05Gibit and 14.02Gibit saved, as entropy-coded).") in block
