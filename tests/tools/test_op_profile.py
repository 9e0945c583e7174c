"""tools.op_profile: one codec part, op by op, in the worker-like session."""

import json
import os
import subprocess
import sys

import pytest

from fedcompress import native
from tools import op_profile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _names(rows):
  return {r["name"] for r in rows}


@pytest.fixture(scope="module")
def drive_encode():
  return op_profile.profile("drive", "encode", shapes=[[64, 64], [300]], threads=0, reps=1,
                            traced=2)


def test_the_ops_are_the_codecs_own(drive_encode):
  # DRIVE's encode flips signs by XOR and rotates by matrix products; its profile must
  # show them, and no random draw of the uniform codec's dither.
  types = _names(drive_encode["by_type"])
  assert "BitwiseXor" in types
  assert types & {"MatMul", "_MklMatMul", "BatchMatMulV2", "_MklBatchMatMulV2"}
  assert drive_encode["cpu_ms"] > 0
  uniform_decode = op_profile.profile("uniform", "decode_before_sum", shapes=[[64, 64]],
                                      threads=0, reps=1, traced=1)
  assert not any("Random" in t for t in _names(uniform_decode["by_type"]))
  # The 8-in-28-bit unpacking: one native kernel where it is built, else shifts.
  unpacking = "FedcompressUnpack8From28" if native.ops() is not None else "RightShift"
  assert unpacking in _names(uniform_decode["by_type"])


def test_totals_are_the_sums_of_the_rows(drive_encode):
  by_type, by_scope = drive_encode["by_type"], drive_encode["by_scope"]
  assert drive_encode["op_runs"] == sum(r["runs"] for r in by_type) == sum(
      r["runs"] for r in by_scope)
  assert drive_encode["op_time_ms"] == pytest.approx(sum(r["ms"] for r in by_type))
  assert sum(r["ms"] for r in by_scope) == pytest.approx(drive_encode["op_time_ms"])
  assert [r["ms"] for r in by_type] == sorted((r["ms"] for r in by_type), reverse=True)


def test_scopes_name_the_tensor_and_the_stage(drive_encode):
  scopes = _names(drive_encode["by_scope"])
  assert any(s.startswith("tensor 0: randomized_hadamard") for s in scopes)
  assert any(s.startswith("tensor 1: randomized_hadamard") for s in scopes)
  name = ("gather_encoder_encode_1/encoder_encode/flatten/flattened_values/uniform_quantization/"
          "quantized_values/huffman_decode/cond/then/_380/while/body/_793/GatherV2")
  assert op_profile.scope_of(name, 3) == (
      "tensor 1: uniform_quantization/quantized_values/huffman_decode")
  assert op_profile.scope_of(name, 9) == (
      "tensor 1: uniform_quantization/quantized_values/huffman_decode/cond/then/while/body")
  assert op_profile.scope_of("gather_encoder_encode/Max", 3) == "tensor 0: (top)"


def test_unknown_part_is_refused():
  with pytest.raises(ValueError, match="part must be one of"):
    op_profile.profile("drive", "decode", shapes=[[8]], reps=1, traced=1)


def _run(*args):
  return subprocess.run([sys.executable, "-m", "tools.op_profile", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_main_on_one_thread_prints_and_writes_json(tmp_path):
  # Fresh processes: the thread pools are sized before TensorFlow creates them.
  out = tmp_path / "profile.json"
  proc = _run("--codec=randk", "--part=decode_before_sum", "--reps=1", "--traced=1",
              "--top=3", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  first = proc.stdout.splitlines()[0]
  assert first.startswith("randk decode_before_sum on 5x5x32x64 and 3136x512, threads=1: CPU ")
  result = json.loads(out.read_text())
  assert result["threads"] == 1 and result["part"] == "decode_before_sum"
  assert result["options"] == {"fraction": 0.01}  # The benchmark's.
  assert result["op_runs"] == sum(r["runs"] for r in result["by_type"])
  # A codec's own options and tensors.
  proc = _run("--codec=eden", "--options=bits=2", "--shapes=64x64,300", "--reps=1",
              "--traced=1", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("eden encode on 64x64 and 300, threads=1: CPU ")
  result = json.loads(out.read_text())
  assert result["options"] == {"bits": 2} and result["shapes"] == [[64, 64], [300]]



@pytest.mark.parametrize("args, message", [
    (["--codec=nope"], "unknown codecs ['nope']"),
    (["--codec=eden", "--options=bits=9"], "--options: bits must be"),
    (["--codec=eden", "--shapes=64xa"], "--shapes must be like"),
    (["--codec=mine_of_a_tool"], "unknown codecs ['mine_of_a_tool']"),
    (["--codec=randk|nope"], "unknown codec 'nope'"),
    (["--codec=mine_of_a_tool", "--codec_modules=/nonexistent/none.py"],
     "--codec_modules: cannot import")])
def test_bad_arguments_are_one_error_line(capsys, args, message):
  # In this process (--threads=0 leaves its thread pools alone): a fresh process per
  # case took ~8 s of CPU to import TensorFlow for one line.
  with pytest.raises(SystemExit) as exit_info:
    op_profile.main([*args, "--threads=0"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and message in err, err


_USER_CODEC = """
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import registry

registry.register_stage("mine_of_a_tool", te.stages.UniformQuantizationEncodingStage)
"""


@pytest.mark.slow
def test_a_codec_of_ones_own_is_profiled_from_its_module(tmp_path):
  # --codec_modules, as the experiment binaries take it: the codec is named, profiled
  # with its own stage's ops, and the JSON records the module and its source's hash.
  module = tmp_path / "codec_of_a_user.py"
  module.write_text(_USER_CODEC)
  out = tmp_path / "profile.json"
  proc = _run("--codec=mine_of_a_tool", f"--codec_modules={module}", "--shapes=64x64",
              "--reps=1", "--traced=1", f"--output={out}")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("mine_of_a_tool encode on 64x64, threads=1: CPU ")
  result = json.loads(out.read_text())
  assert result["codec_modules"] == [str(module)]
  assert len(result["codec_modules_sha256"]) == 1
  assert result["codec_modules_sha256"][0].endswith(
      __import__("hashlib").sha256(_USER_CODEC.encode()).hexdigest())
  assert any("RandomUniform" in t for t in _names(result["by_type"]))  # Its dither.
