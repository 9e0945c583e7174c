"""tools/build_time.py: the codecs it is given, checked first; each build a child."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from absl.testing import flagsaver


def test_an_unknown_codec_is_one_error_line_before_any_build(load_binary, tmp_path, capsys):
  # The tool's main, as absl runs it, in this process (a fresh one took ~8 s of CPU to
  # import TensorFlow for this line).
  with load_binary("tools/build_time.py") as module, flagsaver.flagsaver():
    module.FLAGS["codecs"].parse("none,nosuch")
    module.FLAGS.output = str(tmp_path / "out" / "build_time.json")
    assert module.main(["build_time"]) == 2
  out, err = capsys.readouterr()
  assert out == ""
  assert err.startswith("error: --codecs: unknown codecs ['nosuch']; valid: ")
  assert err.count("\n") == 1
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("codecs, message", [
    # Both built, the JSON keeping the second's figures only.
    ("none,none", "error: --codecs lists none more than once"),
    ("", "error: --codecs lists no codec")])
def test_a_codec_twice_or_none_is_refused(load_binary, tmp_path, capsys, codecs, message):
  with load_binary("tools/build_time.py") as module, flagsaver.flagsaver():
    module.FLAGS["codecs"].parse(codecs)
    module.FLAGS.output = str(tmp_path / "build_time.json")
    assert module.main(["build_time"]) == 2
  assert capsys.readouterr().err == message + "\n"


# Stands in for a child (`--probe <codec>`): the figures of a build, or a failure for drive.
_FAKE_BUILD = """
import json, sys
codec = sys.argv[-1]
if codec == "drive":
  sys.exit("RuntimeError: the drive build failed")
print(json.dumps({"first_wall_s": 2.0, "first_cpu_s": 2.0, "second_wall_s": 1.0,
                  "second_cpu_s": 1.0, "options": {}, "task": {"dataset": "digits"}}))
"""


@pytest.fixture
def builds(load_binary, monkeypatch):
  """Runs the tool's main() on `--codecs=<text>` with each child `_FAKE_BUILD`; returns
  main's exit code, the codecs the children were given and the JSON written (or None)."""
  real_run = subprocess.run
  children = []

  def run(cmd, **kwargs):
    if cmd[1:4] != ["-m", "tools.build_time", "--probe"]:  # git, for the commit.
      return real_run(cmd, **kwargs)
    children.append(cmd[4:])
    return real_run([sys.executable, "-c", _FAKE_BUILD, *cmd[4:]], **kwargs)

  monkeypatch.setattr(subprocess, "run", run)

  def build(text, output):
    with load_binary("tools/build_time.py") as module, flagsaver.flagsaver():
      module.FLAGS["codecs"].parse(text)  # As the command line does.
      module.FLAGS.output = str(output)
      code = module.main(["build_time"])
    return code, children, json.loads(output.read_text()) if output.exists() else None

  return build


def test_a_codec_with_options_goes_whole_to_its_child(builds, tmp_path):
  code, children, written = builds("none,uniform(bits=2,word_bits=32)", tmp_path / "b.json")
  assert code == 0
  assert children == [["none"], ["uniform(bits=2,word_bits=32)"]]
  assert list(written["codecs"]) == ["none", "uniform(bits=2,word_bits=32)"]


def test_a_failed_build_is_named_and_the_others_are_kept(builds, tmp_path, capsys):
  code, children, written = builds("none,drive,uniform", tmp_path / "b.json")
  assert code == 1
  assert children == [["none"], ["drive"], ["uniform"]]  # Went on after drive.
  assert sorted(written["codecs"]) == ["none", "uniform"]
  assert written["failed"]["drive"]["exit"] == 1
  out, err = capsys.readouterr()
  assert "RuntimeError: the drive build failed" in err
  assert err.splitlines()[-1] == (f"error: building with drive failed (see above); the "
                                  f"figures of the others are in {tmp_path / 'b.json'}")


def test_the_json_records_the_commit_threshold_and_task(builds, tmp_path):
  from fedcompress.harness import rundir

  code, _, written = builds("none", tmp_path / "b.json")
  assert code == 0
  assert written["source"] == rundir.source() and written["source"]["commit"]
  assert written["threshold"] == 10_000
  assert written["task"] == {"dataset": "digits"}  # What the child reported.


@pytest.mark.slow
def test_a_codec_of_ones_own_is_built_from_its_module(repo_root, tmp_path):
  # The child process imports the --codec_modules entries too; they were refused as
  # unknown codecs before.
  module = tmp_path / "codec_of_a_user.py"
  module.write_text("from tensorflow_model_optimization.python.core.internal import "
                    "tensor_encoding as te\nfrom fedcompress.codecs import registry\n"
                    "registry.register_stage('mine_of_a_build', "
                    "te.stages.UniformQuantizationEncodingStage)\n")
  output = tmp_path / "build_time.json"
  result = subprocess.run(
      [sys.executable, "-m", "tools.build_time", "--codecs=mine_of_a_build",
       f"--codec_modules={module}", f"--output={output}"],
      capture_output=True, text=True, cwd=repo_root, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  recorded = json.loads(output.read_text())
  assert recorded["codec_modules"] == [str(module)] and not recorded["failed"]
  assert recorded["codecs"]["mine_of_a_build"]["first_cpu_s"] > 0
