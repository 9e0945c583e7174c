"""tools.codec_cost: the three parts of a codec's round, and the ratio they predict."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs.spec import CodecSpec
from tools import codec_cost
from tools.benchmark import BenchmarkConfig


def test_benchmark_tensors_are_the_cnn_variables_over_the_threshold():
  assert codec_cost.benchmark_tensor_shapes() == [[5, 5, 32, 64], [3136, 512]]
  # With no threshold: every trainable variable of the 10-class CNN.
  assert codec_cost.benchmark_tensor_shapes(threshold=0) == [
      [5, 5, 1, 32], [32], [5, 5, 32, 64], [64], [3136, 512], [512], [512, 10], [10]]


@pytest.mark.parametrize("name,options", [
    ("nonuniform", {"bits": 3}), ("topk", {"fraction": 0.1}),
    pytest.param("huffman", {"base": "nonuniform"}, marks=pytest.mark.slow)])  # ~15 s.
def test_the_three_parts_in_turn_give_the_codecs_round_trip(name, options):
  # Encode, decode before sum and decode after sum of one summand, each run from what the
  # previous part gave, are the codec's decode of its encode: the parts are wired as the
  # aggregator runs them.
  shapes = [[40, 30], [7]]
  codec_round = codec_cost.CodecRound(name, options, shapes, seed=3)
  decoded = codec_round.run_all()
  spec = CodecSpec(name, options, threshold=0)
  for x, got in zip(codec_round.values, decoded, strict=True):
    encoder = spec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))
    encoded, _ = encoder.encode(tf.constant(x), encoder.initial_state())
    np.testing.assert_array_equal(got, encoder.decode(encoded).numpy())
  for part in codec_cost.PARTS:  # What the timing repeats runs again.
    codec_round.run_part(part)
  codec_round.close()


def test_the_worker_session_runs_without_grappler():
  config = codec_cost.worker_session_config()
  assert config.graph_options.rewrite_options.disable_meta_optimizer
  assert config.graph_options.optimizer_options.opt_level == tf.compat.v1.OptimizerOptions.L0


def test_predicted_ratio_is_one_plus_the_codec_cost_over_the_round():
  costs = {"encode": 0.010, "decode_before_sum": 0.005, "decode_after_sum": 0.020}
  # (10 + 5 + 20 / 10) ms per client over a round of 1 s for 10 clients.
  assert codec_cost.per_client_s(costs, 10) == pytest.approx(0.017)
  assert codec_cost.predicted_ratio(costs, 1.0, 10) == pytest.approx(1.17)
  benchmark = {"codec_sweep": {"codecs": {
      "x": {"cpu_ratio": {"uplink": 1.2, "both": 1.4}}, "y": {"cpu_ratio": {"both": 1.5}}}}}
  assert codec_cost.measured_ratios(benchmark) == {"x": 1.2}
  assert codec_cost.measured_ratios({"ratios": {}}) == {}


@pytest.mark.slow  # Builds and runs the benchmark's rounds: ~20 s.
def test_the_round_is_timed_with_the_codecs():
  # A real uncompressed round of the benchmark's task, on the local TFF worker, timed
  # in the same interleaved run as a codec's parts. (The local context it installs stays
  # for the tests after this one, as any library call would leave it.)
  run = codec_cost.uncompressed_round(BenchmarkConfig(num_clients=2, examples_per_client=20))
  costs = codec_cost.time_codecs(["topk"], [[200, 60]], 1, round_runner=run)
  assert set(costs) == {"topk", "round"}
  assert costs["round"]["cpu_s"] > 0
  assert set(costs["topk"]) == set(codec_cost.PARTS)


def test_every_part_runs_once_untimed_first_without_the_round_too(monkeypatch):
  # Without the round nothing was warmed up: the first codec's first encode, ~1 s cold
  # against ~7 ms, was the figure --reps=1 printed.
  runs = []

  class Counting:
    def __init__(self, name, *args):
      self.name = name

    def run_part(self, part):
      runs.append((self.name, part))

    def close(self):
      pass

  monkeypatch.setattr(codec_cost, "CodecRound", Counting)
  costs = codec_cost.time_codecs(["topk", "randk"], [[10]], 2)
  assert sorted(set(runs)) == sorted((n, p) for n in ("topk", "randk") for p in
                                     codec_cost.PARTS)
  assert all(runs.count(run) == 3 for run in set(runs))  # 1 untimed + 2 timed.
  assert set(costs) == {"topk", "randk"}


def test_chains_are_named_as_the_library_takes_them():
  # `uniform|huffman` and `randk|eden` were unknown to the tools unless a link had
  # parentheses, though the same text works in Python and in flags.
  from tools.benchmark import codec_options

  for chain in ("uniform|huffman", "randk|eden", "rotation|uniform(word_bits=32)"):
    assert codec_options(chain) == {}
  with pytest.raises(ValueError, match="nope"):
    codec_options("randk|nope")


def test_main_prints_each_codec_and_refuses_unknown_ones(capsys):
  codec_cost.main(["--codecs=randk", "--reps=1", "--no_round"])
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("tensors: 5x5x32x64, 3136x512")
  assert lines[2].split()[0] == "randk" and len(lines[2].split()) == 4
  with pytest.raises(SystemExit) as exit_info:
    codec_cost.main(["--codecs=nope"])
  assert exit_info.value.code == 2
  assert "unknown codecs ['nope']" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:  # It ended in ZeroDivisionError.
    codec_cost.main(["--codecs=", "--no_round"])
  assert exit_info.value.code == 2
  assert "--codecs lists no codec" in capsys.readouterr().err


def test_main_takes_codecs_with_inline_options(capsys):
  codec_cost.main(["--codecs=randk(fraction=0.02),drive(block_size=1024,shared_rotation=true)",
                   "--reps=1", "--no_round"])
  rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:4]]
  assert rows == ["randk(fraction=0.02)", "drive(block_size=1024,shared_rotation=true)"]
  with pytest.raises(SystemExit):
    codec_cost.main(["--codecs=randk(levels=3)"])
  assert "no option 'levels'" in capsys.readouterr().err


def test_a_benchmark_of_other_settings_is_not_set_beside_the_prediction():
  # A 2-client, 1-round bench JSON's topk read 10.37x beside a predicted 1.08x.
  import dataclasses

  here = BenchmarkConfig()
  assert codec_cost._other_settings({"config": dataclasses.asdict(here)}, here) == []
  other = dataclasses.asdict(dataclasses.replace(here, num_clients=2))
  assert codec_cost._other_settings({"config": other}, here) == ["num_clients=2 (here 10)"]
  assert "threshold=None (here 10000)" in codec_cost._other_settings({}, here)


@pytest.mark.slow  # a fresh process
def test_a_codec_of_ones_own_is_timed_from_its_module(tmp_path):
  # In a fresh process, so that its registration stays there.
  module = tmp_path / "codec_of_a_user.py"
  module.write_text("from tensorflow_model_optimization.python.core.internal import "
                    "tensor_encoding as te\nfrom fedcompress.codecs import registry\n"
                    "registry.register_stage('mine_of_a_cost', "
                    "te.stages.UniformQuantizationEncodingStage)\n"
                    # A tensor built on import: loaded before the threads were set, this
                    # ended in "cannot be modified after initialization".
                    "import tensorflow as tf\nSCALE = tf.constant(1.0)\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run([sys.executable, "-m", "tools.codec_cost", "--codecs=mine_of_a_cost",
                         "--reps=1", "--no_round", "--threads=1",
                         f"--codec_modules={module}"], cwd=root,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  row = proc.stdout.splitlines()[2].split()
  assert row[0] == "mine_of_a_cost" and all(float(ms) >= 0 for ms in row[1:4])



def test_a_module_that_cannot_be_imported_is_one_error_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    codec_cost.main(["--codecs=mine_of_a_cost", f"--codec_modules={tmp_path}/none.py"])
  assert exit_info.value.code == 2
  assert "--codec_modules: cannot import" in capsys.readouterr().err


def test_negative_threads_are_refused_before_tensorflow_aborts(capsys):
  with pytest.raises(SystemExit) as exit_info:
    codec_cost.main(["--codecs=randk", "--reps=1", "--no_round", "--threads=-1"])
  assert exit_info.value.code == 2
  assert "--threads must be >= 0, got -1" in capsys.readouterr().err


def test_a_benchmarks_ratio_of_other_codec_options_is_left_out(tmp_path, capsys):
  # A JSON whose uniform ran at 2 bits stood beside the 8-bit prediction, unsaid.
  import dataclasses
  import json

  from tools.benchmark import CODEC_OPTIONS

  codecs = {"uniform": {"options": {"bits": 2}, "cpu_ratio": {"uplink": 1.05}},
            "randk": {"options": CODEC_OPTIONS["randk"], "cpu_ratio": {"uplink": 1.07}}}
  path = tmp_path / "bench.json"
  path.write_text(json.dumps({"config": dataclasses.asdict(BenchmarkConfig()),
                              "codec_sweep": {"codecs": codecs}}))
  codec_cost.main(["--codecs=uniform,randk", "--reps=1", "--no_round",
                   f"--benchmark_json={path}"])
  out = capsys.readouterr().out
  assert (f"warning: {path} timed uniform with other options than these: their ratios are "
          "left out") in out
