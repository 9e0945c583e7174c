"""The wheel holds the library and nothing else: no development tools, tests or data."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import zipfile

import pytest

pytestmark = pytest.mark.slow  # Builds the wheel in an isolated environment.

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Modules of the development tools; none may reach the wheel under any name.
TOOL_WORDS = ("chaos", "benchmark", "browser", "codec_table", "compare_codecs",
              "sample_data", "check_install")


def _uv() -> str:
  uv = shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
  if not os.path.exists(uv):
    pytest.skip("uv is not installed (`make venv` installs it into .tools/)")
  return uv


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> list[str]:
  out = tmp_path_factory.mktemp("dist")
  subprocess.run([_uv(), "build", "--wheel", "--out-dir", str(out), str(REPO_ROOT)],
                 check=True, capture_output=True, text=True, timeout=600,
                 env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
  (wheel,) = out.glob("fedcompress-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    return archive.namelist()


def test_wheel_holds_only_the_library(wheel_files):
  modules = [f for f in wheel_files if f.endswith(".py")]
  assert modules and all(f.startswith("fedcompress/") for f in modules), modules
  leaked = [f for f in modules if any(word in f for word in TOOL_WORDS)]
  assert not leaked, leaked
  assert not [f for f in wheel_files if f.startswith(("tools/", "tests/", "experiments/"))]


def test_wheel_has_every_library_module(wheel_files):
  source = sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "fedcompress").rglob("*.py"))
  assert sorted(f for f in wheel_files if f.endswith(".py")) == source


def test_wheel_has_the_native_kernels_sources(wheel_files):
  # fedcompress.native compiles them where the package is installed.
  source = sorted(str(p.relative_to(REPO_ROOT))
                  for p in (REPO_ROOT / "fedcompress" / "native" / "src").iterdir())
  assert source == ["fedcompress/native/src/fc_ops.cc", "fedcompress/native/src/worker_hook.c"]
  assert set(source) <= set(wheel_files)
