"""The benchmark library on tiny sizes: keys, ratios, generated data, memory probe.

No timing assertions: timing on a shared machine is not a test. What is checked is that
the harness times what it says, the ratios come from the reported times, and the
memory probe runs the same round on the shared clients of every population.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import statistics
import subprocess
import sys

import numpy as np
import pytest

from tools import benchmark

pytestmark = pytest.mark.slow  # times real rounds, writes sqlite files

_TINY = benchmark.BenchmarkConfig(
    num_clients=2, examples_per_client=4, batch_size=2, rounds=1, warmup_rounds=0,
    memory_populations=(2, 3), memory_examples_per_client=3)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
  output = tmp_path_factory.mktemp("bench") / "benchmark.json"
  result = benchmark.run_benchmark(_TINY, output, log=None)
  return result, json.loads(output.read_text())


def test_json_has_times_and_ratios_from_them(smoke):
  result, written = smoke
  assert written == json.loads(json.dumps(result))  # What is returned is what is written.
  times = written["times_s"]
  assert set(times) == {"a", "b", "c", "d", "e"}
  assert all(t > 0 for t in times.values())
  samples = written["samples"]

  def paired(x, y, key):
    return float(np.median([a / b for a, b in zip(samples[x][key], samples[y][key],
                                                   strict=True)]))

  assert written["ratios"] == pytest.approx({
      f"{x}/{y}": paired(x, y, "wall_s") for x, y in ("ba", "cb", "cd", "be")})
  assert written["cpu_ratios"]["c/d"] == pytest.approx(paired("c", "d", "cpu_s"))
  for name, samples in written["samples"].items():
    assert len(samples["wall_s"]) == len(samples["cpu_s"]) == _TINY.rounds, name
    assert times[name] == pytest.approx(float(np.median(samples["wall_s"])))
  assert written["targets"] == {"b/a": 1.0, "c/b": 1.05, "c/d": 1.3}
  assert written["config"]["num_clients"] == 2
  # Tied to the code that measured (the README's figures name it).
  from fedcompress.harness import rundir

  assert written["source"] == rundir.source() and written["source"]["commit"]
  assert len(written["date"]) == 10


def test_memory_probe_runs_the_same_round(smoke):
  memory = smoke[1]["memory"]
  ids = memory["sampled_clients"]
  assert len(ids) == 2 and set(ids) <= {"f0000", "f0001"}
  pops = memory["populations"]
  assert set(pops) == {"2", "3"}
  for population, probe in pops.items():
    assert probe["population"] == int(population)
    # Two sampled clients of 3 examples each, one epoch: the same work in both.
    assert probe["examples_in_round"] == 2 * 3
    assert probe["peak_rss_bytes"] > 0 and probe["tracemalloc_peak_bytes"] > 0
  assert memory["peak_rss_ratio"] == pytest.approx(
      pops["3"]["peak_rss_bytes"] / pops["2"]["peak_rss_bytes"])


def test_interleaving_rotates_and_skips_warmup():
  calls = []
  runners = {name: (lambda rep, name=name: calls.append((name, rep))) for name in "xyz"}
  samples = benchmark.time_interleaved(runners, rounds=2, warmup_rounds=1)
  assert calls == [("x", 0), ("y", 0), ("z", 0),
                   ("y", 1), ("z", 1), ("x", 1),
                   ("z", 2), ("x", 2), ("y", 2)]
  assert {n: len(s["wall_s"]) for n, s in samples.items()} == {"x": 2, "y": 2, "z": 2}


def test_generated_populations_share_their_first_clients(tmp_path):
  small, large = tmp_path / "small.sqlite", tmp_path / "large.sqlite"
  benchmark.write_population_sqlite(str(small), 2, 3, seed=5)
  benchmark.write_population_sqlite(str(large), 4, 3, seed=5)
  with sqlite3.connect(large) as connection:
    indexes = {row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    counts = dict(connection.execute(
        "SELECT split_name, COUNT(DISTINCT client_id) FROM client_metadata GROUP BY 1"))
  assert "idx_examples_client_id_split" in indexes
  assert counts == {"digits_only_train": 4, "digits_only_test": 1}

  def rows(path, client_id):
    with sqlite3.connect(path) as connection:
      return [r[0] for r in connection.execute(
          "SELECT serialized_example_proto FROM examples WHERE client_id = ? ORDER BY rowid",
          (client_id,))]

  assert len(rows(small, "f0001")) == 3
  assert rows(small, "f0001") == rows(large, "f0001")
  assert rows(large, "f0002") != rows(large, "f0001")


def test_a_partial_file_left_by_a_killed_write_is_replaced(tmp_path):
  path = tmp_path / "emnist_all.sqlite"
  (tmp_path / "emnist_all.sqlite.partial").write_bytes(b"cut short")
  benchmark.write_population_sqlite(str(path), 2, 3, seed=5)
  assert sorted(os.listdir(tmp_path)) == ["emnist_all.sqlite"]
  with sqlite3.connect(path) as connection:
    assert connection.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 9


def test_sampled_clients_come_from_the_smallest_population():
  config = benchmark.BenchmarkConfig(num_clients=10, memory_populations=(100, 3400))
  indices = benchmark.sampled_clients(config)
  assert len(set(indices)) == 10 and all(0 <= i < 100 for i in indices)
  assert indices == benchmark.sampled_clients(config)


def test_each_population_names_the_sampled_clients_its_own_way(tmp_path):
  # A population over 10,000 clients has 5-digit ids: the 4-digit ids of the largest
  # population's width were not clients of the 100-client file (the probe failed).
  assert benchmark.population_client_id(52, 100) == "f0052"
  assert benchmark.population_client_id(52, 10_001) == "f00052"
  path = tmp_path / "emnist_all.sqlite"
  benchmark.write_population_sqlite(str(path), 12, 1, seed=5)
  with sqlite3.connect(path) as connection:
    ids = {r[0] for r in connection.execute("SELECT client_id FROM client_metadata")}
  assert ids == {benchmark.population_client_id(i, 12) for i in range(12)} | {"test_0"}


def test_memory_ratios_are_largest_population_over_smallest_in_any_order():
  # --memory_populations=3400,100 divided by the later-listed, smaller population: a
  # driver that grew 30% read 0.77.
  small = {"peak_rss_bytes": 1000, "tracemalloc_peak_bytes": 10}
  large = {"peak_rss_bytes": 1300, "tracemalloc_peak_bytes": 12}
  for results in ({"100": small, "3400": large}, {"3400": large, "100": small}):
    assert benchmark.memory_ratios(results) == {"peak_rss_ratio": 1.3,
                                                "tracemalloc_peak_ratio": 1.2}
  assert benchmark.memory_ratios({"100": small}) == {}


def test_a_probe_reports_its_own_peak_memory_not_its_parents(tmp_path):
  # ru_maxrss of a process started with fork and exec starts at its parent's peak: every
  # memory probe reported the benchmark's 1.37 GB, and the ratio read 1.000.
  held = bytearray(400 * 2**20)
  held[::4096] = b"\1" * len(held[::4096])  # Touched: resident, not just reserved.
  child = subprocess.run(
      [sys.executable, "-c", "from tools.benchmark import peak_rss_bytes; "
       "print(peak_rss_bytes())"], capture_output=True, text=True, check=True,
      cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  assert benchmark.peak_rss_bytes() > 400 * 2**20
  assert int(child.stdout.strip()) < 200 * 2**20, child.stdout
  del held


def test_config_validation():
  with pytest.raises(ValueError, match="rounds"):
    benchmark.BenchmarkConfig(rounds=0)
  with pytest.raises(ValueError, match="memory_populations"):
    benchmark.BenchmarkConfig(num_clients=10, memory_populations=(5, 100))
  with pytest.raises(ValueError, match="unknown codecs"):
    benchmark.BenchmarkConfig(codecs=("nope",))
  with pytest.raises(ValueError, match="codec_directions"):
    benchmark.BenchmarkConfig(codecs=("drive",), codec_directions=("down",))
  # A codec with inline options runs with them alone; bad ones fail before any round.
  config = benchmark.BenchmarkConfig(codecs=("drive(shared_rotation=true)",))
  assert benchmark.codec_options(config.codecs[0]) == {}
  assert benchmark.codec_options("eden") == benchmark.CODEC_OPTIONS["eden"]
  with pytest.raises(ValueError, match="no option 'levels'"):
    benchmark.BenchmarkConfig(codecs=("drive(levels=3)",))


def test_codec_lists_split_between_codecs_only():
  assert benchmark.split_codecs("a, b(x=1,y=2),c(z=3) ,") == ["a", "b(x=1,y=2)", "c(z=3)"]
  assert benchmark.split_codecs("") == []


_DRIVE_SWEEP = dataclasses.replace(_TINY, codecs=("drive",), codec_directions=("uplink",),
                                   memory_populations=())


@pytest.fixture(scope="module")
def drive_sweep():
  return benchmark.run_codec_sweep(_DRIVE_SWEEP, log=None)


def test_codec_sweep_times_each_codec_against_uncompressed(drive_sweep):
  config, sweep = _DRIVE_SWEEP, drive_sweep
  drive = sweep["codecs"]["drive"]
  assert set(drive["wall_s"]) == {"none", "uplink"}
  # The median of the round pairs' ratios (round i of each, run back to back).
  assert drive["cpu_ratio"]["uplink"] == statistics.median(
      c / u for c, u in zip(drive["samples"]["uplink"]["cpu_s"],
                            drive["samples"]["none"]["cpu_s"], strict=True))
  assert sweep["peak_rss_bytes"] > 0
  table = benchmark.format_codec_table({
      "config": dataclasses.asdict(config), "codec_sweep": sweep,
      "environment": {"loadavg_before": (1.0, 1.0, 1.0), "cpu_count": 2}})
  assert f"| drive |  | {drive['wall_s']['none']:.3f} | " in table
  assert "cores at the start." in table  # No source recorded: nothing claimed.
  stamped = benchmark.format_codec_table({
      "config": dataclasses.asdict(config), "codec_sweep": sweep,
      "environment": {"loadavg_before": (1.0, 1.0, 1.0), "cpu_count": 2},
      "source": {"commit": "abc123", "dirty": True}, "date": "2026-12-05"})
  assert ("cores at the start; measured on abc123 with uncommitted changes, 2026-12-05."
          in stamped)
  assert table.count("\n| drive") == 1
  met = "met" if drive["cpu_ratio"]["uplink"] <= 1.25 else "not met"
  assert table.splitlines()[-1].endswith(f"| <= 1.25x: {met} |")
  # The middle half of the per-round ratios, from the same samples.
  pairs = sorted(c / u for c, u in zip(drive["samples"]["uplink"]["cpu_s"],
                                       drive["samples"]["none"]["cpu_s"], strict=True))
  q1, q3 = drive["cpu_ratio_quartiles"]["uplink"]
  assert pairs[0] <= q1 <= q3 <= pairs[-1]
  assert f"| {q1:.2f}-{q3:.2f}x |" in table
  assert drive["uplink_cpu_target"] == 1.25


def test_codec_sweep_rounds_send_what_the_codec_encodes(drive_sweep):
  # Times alone cannot tell a codec round from an uncompressed one. DRIVE sends about
  # 1 bit per coordinate of the large tensors, uncompressed 32: far fewer bits uplink,
  # and the same broadcast (uncompressed both, in the `uplink` direction).
  bits = drive_sweep["codecs"]["drive"]["round_bits"]
  assert bits["uplink"]["aggregate"] < bits["none"]["aggregate"] / 8
  assert bits["uplink"]["broadcast"] == bits["none"]["broadcast"] > 0


def test_every_registered_codec_is_swept_and_issue_15s_have_their_targets():
  from fedcompress.codecs import registry

  # identity is the uncompressed round each codec is timed against.
  assert set(benchmark.CODEC_OPTIONS) == set(registry.available_codecs()) - {"identity"}
  assert set(benchmark.UPLINK_CPU_TARGETS) == {
      "uniform", "topk", "randk", "hadamard", "drive", "eden", "nonuniform", "kashin",
      "uniform_huffman", "adaptive"}
  assert benchmark.target_verdict("eden", {"uplink": 1.25}) == "<= 1.25x: met (1.250)"
  assert benchmark.target_verdict("eden", {"uplink": 1.26}) == "<= 1.25x: not met"
  assert benchmark.target_verdict("eden", {"uplink": 1.2}) == "<= 1.25x: met"
  # Both show as 1.25x in the table: the verdict says which side of the line each is.
  assert benchmark.target_verdict("drive", {"uplink": 1.2494}) == "<= 1.25x: met (1.249)"
  assert (benchmark.target_verdict("eden", {"uplink": 1.2541})
          == "<= 1.25x: not met (1.254)")
  assert benchmark.target_verdict("eden", {"both": 1.0}) == ""


def test_a_codec_without_an_issue_15_target_says_so_in_the_table():
  run = {"options": {"rows": 5}, "wall_s": {"none": 0.5, "uplink": 1.0},
         "cpu_s": {"none": 1.0, "uplink": 3.0}, "wall_ratio": {"uplink": 2.0},
         "cpu_ratio": {"uplink": 3.0},
         "samples": {"none": {"cpu_s": [1.0, 1.0]}, "uplink": {"cpu_s": [2.0, 4.0]}}}
  config = dataclasses.asdict(dataclasses.replace(_TINY, codec_directions=("uplink",)))
  table = benchmark.format_codec_table({
      "config": config, "codec_sweep": {"codecs": {"countsketch": run}},
      "environment": {"loadavg_before": (1.0, 1.0, 1.0), "cpu_count": 2}})
  # Pair ratios 2 and 4: inclusive quartiles 2.5 and 3.5, within the pairs.
  assert table.splitlines()[-1] == (
      "| countsketch | rows=5 | 0.500 | 2.00x | 3.00x | 2.50-3.50x | none set |")


def test_pair_ratio_quartiles_by_hand():
  samples = {"none": {"cpu_s": [1.0, 1.0, 2.0, 2.0, 1.0]},
             "uplink": {"cpu_s": [1.1, 1.2, 2.6, 2.8, 1.5]}}
  # Ratios 1.1, 1.2, 1.3, 1.4, 1.5: inclusive quartiles are the 2nd and 4th.
  q1, q3 = benchmark.pair_ratio_quartiles(samples, "uplink")
  assert q1 == pytest.approx(1.2) and q3 == pytest.approx(1.4)
  # Three pairs: not their min and max (the exclusive method's 1.0 and 3.0).
  three = {"none": {"cpu_s": [1.0, 1.0, 1.0]}, "uplink": {"cpu_s": [1.0, 2.0, 3.0]}}
  assert benchmark.pair_ratio_quartiles(three, "uplink") == pytest.approx((1.5, 2.5))


def test_ratios_pair_the_rounds():
  # Medians of the contenders would give 1 / 10; every round pair is 1x.
  samples = {"b": {"cpu_s": [1.0, 1.0, 10.0]}, "a": {"cpu_s": [1.0, 10.0, 10.0]}}
  assert benchmark.ratios(samples, "cpu_s") == {"b/a": 1.0}
  codec = {"none": {"cpu_s": [1.0, 10.0, 10.0]}, "uplink": {"cpu_s": [1.0, 10.0, 10.0]}}
  assert benchmark.paired_ratio(codec, "uplink", "none") == 1.0
  skewed = {"none": {"cpu_s": [1.0, 10.0, 10.0]}, "uplink": {"cpu_s": [1.0, 1.0, 10.0]}}
  assert benchmark.paired_ratio(skewed, "uplink", "none") == 1.0


@pytest.mark.parametrize("flags, message", [
    # Its folder is made if it can be: here a file stands in the way.
    (["--output=README_ok.md/benchmark.json"], "--output: cannot make "),
    (["--codecs=drive", "--readme=README_missing.md"], "--readme: "),
    # Its begin marker was all that was checked: the missing end failed in update_readme,
    # a traceback after the timing.
    (["--codecs=drive", "--readme=README_unended.md"], "--readme: README_unended.md has no "
     "<!-- codec-table:benchmark --> ... <!-- end codec-table --> block"),
    # A partial sweep replaced the README's whole table with its own rows; a folder as
    # --output failed with a traceback after the timing; --readme alone was ignored.
    (["--codecs=drive", "--readme=README_ok.md"], "--readme: the README's table holds "
     "every codec, and this sweep times 1 of"),
    (["--output=."], "--output: . is a directory"),
    (["--codecs=all", "--codec_directions=uplink", "--readme=README_ok.md"],
     "--readme: the README's table has uplink and both-ways columns"),
    (["--readme=README_ok.md"], "--readme writes the codec sweep's table: pass --codecs=all"),
])
def test_bad_destinations_are_refused_before_timing(load_binary, tmp_path, monkeypatch, capsys,
                                                   flags, message):
  # A README without the block, or none at all: refused before ~20 minutes of timing.
  # In this process (its main, as absl runs it): a fresh one per case took ~8 s of CPU
  # to import TensorFlow for a one-line refusal.
  from absl import flags as absl_flags
  from absl.testing import flagsaver

  (tmp_path / "README_missing.md").write_text("no block here\n")
  (tmp_path / "README_unended.md").write_text("<!-- codec-table:benchmark -->\nno end\n")
  (tmp_path / "README_ok.md").write_text("<!-- codec-table:benchmark -->\n"
                                         "<!-- end codec-table -->\n")
  monkeypatch.chdir(tmp_path)
  with load_binary("tools/run_benchmark.py") as module, flagsaver.flagsaver():
    absl_flags.FLAGS(["run_benchmark", *flags, "--memory_populations="])
    assert module.main(["run_benchmark"]) == 2
  assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {message}")
  assert not (tmp_path / "benchmark.json").exists()


def test_a_codec_of_ones_own_is_swept_from_its_module(load_binary, tmp_path, capsys):
  # --codec_modules as the binaries take it, in a fresh process (its registration stays
  # there): the codec is timed against uncompressed, and the JSON records the module
  # and its source's hash.
  module = tmp_path / "codec_of_a_user.py"
  module.write_text("from tensorflow_model_optimization.python.core.internal import "
                    "tensor_encoding as te\nfrom fedcompress.codecs import registry\n"
                    "registry.register_stage('mine_of_a_bench', "
                    "te.stages.UniformQuantizationEncodingStage)\n")
  output = tmp_path / "bench.json"
  common = [sys.executable, "-m", "tools.run_benchmark", "--num_clients=2",
            "--examples_per_client=4", "--batch_size=2", "--rounds=1", "--warmup_rounds=0",
            "--memory_populations=", "--codecs=mine_of_a_bench", "--codec_directions=uplink",
            f"--output={output}"]
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  # Refused without the module (in this process: a fresh one only imported TensorFlow).
  from absl import flags as absl_flags
  from absl.testing import flagsaver

  with load_binary("tools/run_benchmark.py") as binary, flagsaver.flagsaver():
    absl_flags.FLAGS(["run_benchmark", *common[3:]])
    assert binary.main(["run_benchmark"]) == 2
  assert "unknown codecs ['mine_of_a_bench']" in capsys.readouterr().err
  assert not output.exists()
  proc = subprocess.run([*common, f"--codec_modules={module}"], cwd=root,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr
  result = json.loads(output.read_text())
  assert result["config"]["codec_modules"] == [str(module)]
  assert result["codec_modules"] == [str(module)]
  [recorded] = result["codec_modules_sha256"]
  assert recorded.endswith(__import__("hashlib").sha256(module.read_bytes()).hexdigest())
  bits = result["codec_sweep"]["codecs"]["mine_of_a_bench"]["round_bits"]
  # te's uniform stage at its default 8 bits, unpacked (no bit-packing stage): float32
  # values and each tensor's min and max, so more bits than uncompressed: the codec ran
  # (a round built uncompressed instead sent exactly the uncompressed bits).
  assert bits["uplink"]["aggregate"] > bits["none"]["aggregate"]
  assert bits["uplink"]["broadcast"] == bits["none"]["broadcast"]


def test_settings_that_measure_nothing_or_crash_later_are_refused():
  # Each was accepted: a memory step of empty rounds reported a ratio; a seed of -1 was a
  # NumPy traceback after TensorFlow loaded; a population given twice started two
  # probes and waited on one; no directions timed uncompressed alone into a broken table.
  for kwargs, said in [
      (dict(memory_examples_per_client=0), "memory_examples_per_client must be >= 1, got 0"),
      (dict(seed=-1), "seed must be in 0..4294967295, got -1"),
      (dict(seed=2**32), "seed must be in 0..4294967295, got 4294967296"),
      (dict(memory_populations=(100, 100)), r"memory_populations repeats a size: \(100, 100\)"),
      (dict(codecs=("drive",), codec_directions=()), "codec_directions must be uplink and/or "
                                                      r"both, got \(\)")]:
    with pytest.raises(ValueError, match=said):
      benchmark.BenchmarkConfig(**kwargs)
  # Without a memory step its examples do not matter.
  benchmark.BenchmarkConfig(memory_populations=(), memory_examples_per_client=0)


def test_a_failing_memory_probe_keeps_the_timing(tmp_path, monkeypatch):
  # After ~15 minutes of timing and codec sweep, a probe that failed (a bad sqlite in
  # --memory_cache_dir) ended in two tracebacks and wrote no JSON.
  def fail(config):
    raise RuntimeError("memory probe for 3 clients failed (exit 1); its stderr is above")

  monkeypatch.setattr(benchmark, "measure_driver_memory", fail)
  output = tmp_path / "benchmark.json"
  with pytest.raises(benchmark.MemoryProbeError, match=r"^memory probe for 3 clients failed "
                     rf"\(exit 1\); its stderr is above; the timing is kept in {output}$"):
    benchmark.run_benchmark(_TINY, str(output), log=None)
  written = json.loads(output.read_text())
  assert set(written["times_s"]) == set(benchmark.LABELS)
  assert written["memory"] == {"error": "memory probe for 3 clients failed (exit 1); its "
                                        "stderr is above"}
