"""Building the native kernels: the ELF reading it rests on, the cache, and the fallback
when nothing can be built."""

from __future__ import annotations

import os
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


def test_the_build_is_cached_and_reused(tmp_path, monkeypatch, native_ops):
  del native_ops  # Skips where no compiler is.
  monkeypatch.setenv("FEDCOMPRESS_NATIVE_CACHE", str(tmp_path))
  said = []
  first = build.build(native.worker_binary_path(), log=said.append)
  assert len(said) == 1 and "building" in said[0]
  assert os.path.isfile(first.python) and os.path.isfile(first.worker)
  again = build.build(native.worker_binary_path(), log=said.append)
  assert again == first and len(said) == 1  # Nothing built the second time.
  # No staging directory is left behind.
  assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
      os.path.basename(os.path.dirname(first.python))]


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env},
                        capture_output=True, text=True, timeout=600)


def test_without_a_compiler_the_codecs_use_their_graph_ops(tmp_path):
  done = _python("""
      import numpy as np, tensorflow as tf
      from fedcompress import native
      from fedcompress.codecs.stages import huffman
      assert native.ops() is None and native.worker_preload() is None
      symbols = tf.constant([3, 1, 1, 0, 2, 1])
      stream = huffman.huffman_encode(symbols, 2)
      assert list(huffman.huffman_decode(stream).numpy()) == [3, 1, 1, 0, 2, 1]
      print("reason:", native.unavailable_reason())
  """, {"CXX": "/nonexistent/g++", "FEDCOMPRESS_NATIVE_CACHE": str(tmp_path)})
  assert done.returncode == 0, done.stderr[-2000:]
  assert "reason: no C/C++ compiler: '/nonexistent/g++' is not on PATH" in done.stdout
  # Said once, on stderr, with what it means.
  assert done.stderr.count("fedcompress: native ops unavailable, the codecs use their "
                           "TensorFlow graph ops (same bits, slower)") == 1
  assert not any(tmp_path.iterdir())


def test_fedcompress_native_0_turns_them_off(tmp_path):
  done = _python("""
      from fedcompress import native
      print(native.ops(), native.worker_preload(), native.unavailable_reason())
  """, {"FEDCOMPRESS_NATIVE": "0", "FEDCOMPRESS_NATIVE_CACHE": str(tmp_path)})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["None", "None", "FEDCOMPRESS_NATIVE=0"]
  assert "native ops unavailable" not in done.stderr  # Asked for: nothing to warn about.
