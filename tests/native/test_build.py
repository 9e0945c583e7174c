"""Building the native kernels: the ELF reading it rests on, the cache, and the fallback
when nothing can be built."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from fedcompress import native
from fedcompress.native import build, elf


def test_the_worker_binary_has_the_functions_the_kernels_call():
  with elf.ElfFile(native.worker_binary_path()) as binary:
    assert len(binary.build_id()) == 40  # SHA-1, as hex
    found = binary.symbols({"_ZN3tsl8OkStatusEv", "_ZN10tensorflow10DEVICE_CPUE", "no_such"})
  assert found["_ZN3tsl8OkStatusEv"].is_function and found["_ZN3tsl8OkStatusEv"].defined
  assert found["_ZN3tsl8OkStatusEv"].value > 0
  assert not found["_ZN10tensorflow10DEVICE_CPUE"].is_function  # data: no trampoline
  assert "no_such" not in found


def test_a_file_that_is_not_elf_is_refused(tmp_path):
  path = tmp_path / "x.so"
  path.write_bytes(b"#!/bin/sh\n")
  with pytest.raises(elf.ElfError, match="not a little-endian ELF64"):
    elf.ElfFile(str(path))
  (tmp_path / "empty").write_bytes(b"")
  with pytest.raises(elf.ElfError, match="not an ELF file"):
    elf.ElfFile(str(tmp_path / "empty"))


def test_the_build_is_cached_reused_and_rebuilt_when_damaged(tmp_path, monkeypatch,
                                                             native_ops):
  del native_ops  # Skips where no compiler is.
  monkeypatch.setenv("FEDCOMPRESS_NATIVE_CACHE", str(tmp_path))
  said = []
  first = build.build(native.worker_binary_path(), log=said.append)
  assert len(said) == 1 and "building" in said[0]
  assert os.path.isfile(first.python) and os.path.isfile(first.worker)
  again = build.build(native.worker_binary_path(), log=said.append)
  assert again == first and len(said) == 1  # Nothing built the second time.
  # No staging directory is left behind, and other users may read the entry.
  entries = [p for p in tmp_path.iterdir() if p.is_dir()]
  assert [p.name for p in entries] == [os.path.basename(os.path.dirname(first.python))]
  assert entries[0].stat().st_mode & 0o755 == 0o755
  # A worker library the loader refuses (a build killed midway) is built again: the
  # worker would otherwise run without the kernels, every round failing.
  with open(first.worker, "w"):
    pass
  assert build.build(native.worker_binary_path(), log=said.append) == first
  assert len(said) == 2 and os.path.getsize(first.worker) > 0


def test_a_cache_path_ld_preload_cannot_carry_is_refused(tmp_path, monkeypatch):
  monkeypatch.setenv("FEDCOMPRESS_NATIVE_CACHE", str(tmp_path / "my cache"))
  with pytest.raises(build.BuildError, match="space or colon"):
    build.build(native.worker_binary_path())


def test_compilers_may_carry_arguments(monkeypatch):
  monkeypatch.setenv("CXX", "g++ -Wall")
  monkeypatch.setenv("CC", "gcc")
  if shutil.which("g++") is None or shutil.which("gcc") is None:
    pytest.skip("no compiler here")
  assert build._compilers() == (["g++", "-Wall"], ["gcc"])
  monkeypatch.setenv("CC", "/nonexistent/cc -O2")
  with pytest.raises(build.BuildError, match="CC='/nonexistent/cc -O2' is not on PATH"):
    build._compilers()


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env},
                        capture_output=True, text=True, timeout=600)


def test_without_a_compiler_the_codecs_use_their_graph_ops(tmp_path):
  done = _python("""
      import numpy as np, tensorflow as tf
      from fedcompress import native
      from fedcompress.codecs.stages import huffman
      assert not native.use() and native.ops() is None and native.worker_preload() is None
      symbols = tf.constant([3, 1, 1, 0, 2, 1])
      stream = huffman.huffman_encode(symbols, 2)
      assert list(huffman.huffman_decode(stream).numpy()) == [3, 1, 1, 0, 2, 1]
      print("reason:", native.unavailable_reason())
  """, {"CXX": "/nonexistent/g++", "FEDCOMPRESS_NATIVE_CACHE": str(tmp_path)})
  assert done.returncode == 0, done.stderr[-2000:]
  assert "reason: no C/C++ compiler: CXX='/nonexistent/g++' is not on PATH" in done.stdout
  # Said once, on stderr, with what it means.
  assert done.stderr.count("fedcompress: native kernels unavailable, the codecs use their "
                           "TensorFlow graph ops (same bits, slower)") == 1
  assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("value,said", [("0", False), ("off", False), ("disable", True)])
def test_fedcompress_native_turns_them_off(tmp_path, value, said):
  done = _python("""
      from fedcompress import native
      print(native.use(), native.ops(), native.worker_preload())
      print(native.unavailable_reason())
  """, {"FEDCOMPRESS_NATIVE": value, "FEDCOMPRESS_NATIVE_CACHE": str(tmp_path)})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.splitlines()[0].split() == ["False", "None", "None"]
  # Asked for: nothing to warn about. A value not understood is said, and taken as off.
  assert ("native kernels unavailable" in done.stderr) == said
  if said:
    assert "FEDCOMPRESS_NATIVE='disable' is none of 1, true, yes, on, 0, false, no, off" in (
        done.stdout)


def test_only_graphs_traced_after_use_hold_the_kernels(tmp_path):
  # TFF's own context starts workers without them (the codecs worked there before the
  # kernels, and must still): the kernels go into graphs once the runtime says its
  # workers have them.
  done = _python("""
      import tensorflow as tf
      from fedcompress import native
      from fedcompress.codecs.stages import huffman

      def ops_traced():
        graph = tf.Graph()
        with graph.as_default():
          huffman.huffman_encode(tf.range(10) % 3, 2)
        return any(op.type.startswith("Fedcompress") for op in graph.get_operations())

      before = ops_traced()
      assert native.use()
      print(before, ops_traced())
  """, {"FEDCOMPRESS_NATIVE_CACHE": os.environ.get("FEDCOMPRESS_NATIVE_CACHE",
                                                  build.cache_root())})
  if shutil.which("g++") is None:
    pytest.skip("no compiler here")
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["False", "True"]


def test_building_ahead_says_where_or_why_not(tmp_path):
  done = subprocess.run([sys.executable, "-m", "fedcompress.native"], capture_output=True,
                        text=True, timeout=600,
                        env={**os.environ, "CXX": "/nonexistent/g++",
                             "FEDCOMPRESS_NATIVE_CACHE": str(tmp_path)})
  assert done.returncode == 1
  assert done.stderr.strip() == ("error: no C/C++ compiler: CXX='/nonexistent/g++' is not "
                                 "on PATH")


def test_a_runs_record_says_whether_the_kernels_ran(native_ops):
  from fedcompress.harness import rundir

  assert rundir.environment()["native_kernels"] is True  # conftest installed the runtime
  with native.disabled():
    assert rundir.environment()["native_kernels"] is False
