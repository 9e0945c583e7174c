"""Tool inputs that ended in a traceback or in figures of nothing (R7 of s48)."""

import json
import os

import pytest
from absl.testing import flagsaver

from tools import ab_functions, codec_cost, mean_error

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _refusal(capsys, call) -> str:
  with pytest.raises(SystemExit) as exit_info:
    call()
  assert exit_info.value.code == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  return line


@pytest.mark.parametrize("content", ["[]", '{"config": 3}', '{"config": {}}'])
def test_codec_cost_refuses_a_json_that_is_no_benchmark(tmp_path, capsys, content):
  # A list or a non-object config was an AttributeError traceback; a benchmark without
  # a codec sweep left its column out, unsaid.
  path = tmp_path / "b.json"
  path.write_text(content)
  line = _refusal(capsys, lambda: codec_cost.main(
      ["--codecs=randk", "--reps=1", "--no_round", f"--benchmark_json={path}"]))
  assert line == (f"error: cannot read --benchmark_json {path}: not a `make bench` JSON "
                  "with a codec sweep (`config` and `codec_sweep` objects) (--help lists the "
                  "options)")


@pytest.mark.parametrize("codecs,said", [("", "--codecs lists no codec"),
                                         ("drive,drive", "--codecs lists drive more than once")])
def test_ab_functions_refuses_an_empty_or_repeating_codec_list(capsys, codecs, said):
  # It measured nothing and exited 0, or measured drive once.
  line = _refusal(capsys, lambda: ab_functions.main(
      [f"--base={_REPO}", "--module=fedcompress.codecs.stages.rotation",
       "--names=fast_walsh_hadamard", f"--codecs={codecs}", "--reps=1"]))
  assert line == f"error: {said} (--help lists the options)"


def test_mean_error_refuses_one_coordinate(tmp_path, capsys):
  # It rotates exactly: the ratio divided by an error of 0, after the figures printed.
  line = _refusal(capsys, lambda: mean_error.main(
      ["--size=1", "--clients=2", "--seeds=1", f"--output={tmp_path / 'm.json'}"]))
  assert line == ("error: --clients and --seeds must be at least 1, and --size at least 2 "
                  "(--help lists the options)")
  assert not (tmp_path / "m.json").exists()


def test_shakespeare_results_refuses_one_run_twice(load_binary, tmp_path, capsys):
  run = tmp_path / "r0"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({}))
  with load_binary("tools/shakespeare_results.py") as module:
    with flagsaver.flagsaver(runs=[str(run), f"{run}/"], readme=None):
      assert module.main(["shakespeare_results"]) == 2
  assert capsys.readouterr().err.strip() == (
      f"error: {run} and {run}/ are one run: give each run once")


@pytest.mark.parametrize("codecs", [
    "[]", '{"uniform": 3}', '{"uniform": {"cpu_ratio": []}}',
    # A string or null ratio failed at the table, after the timing (R10 of s48).
    '{"uniform": {"cpu_ratio": {"uplink": "fast"}}}',
    '{"uniform": {"cpu_ratio": {"uplink": null}}}'])
def test_codec_cost_refuses_a_sweep_whose_codecs_are_not_objects(tmp_path, capsys, codecs):
  # An AttributeError traceback (R8 of s48).
  path = tmp_path / "b.json"
  path.write_text(f'{{"config": {{}}, "codec_sweep": {{"codecs": {codecs}}}}}')
  line = _refusal(capsys, lambda: codec_cost.main(
      ["--codecs=randk", "--reps=1", "--no_round", f"--benchmark_json={path}"]))
  assert line == (f"error: cannot read --benchmark_json {path}: its codec_sweep.codecs is "
                  "not an object of codecs and their ratios (--help lists the options)")
