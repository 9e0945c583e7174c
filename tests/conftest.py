"""Shared test fixtures.

Before any test module loads TensorFlow, the suite quiets it and installs the TFF
context whose worker process fedcompress owns, so no test leaves a `worker_binary`
behind (importing fedcompress itself does neither).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags

from fedcompress.federated import quiet

# numpy's OpenBLAS picks its kernels from the CPU's family and model numbers, and on a VM
# that reports a generic model ("Intel(R) Xeon(R) Processor", as on our 2-core machines)
# it falls back to `Prescott`, its SSE3 kernels: a 4096x4096 float64 product took 7.7 s
# there against 1.3 s with the AVX-512 ones. `tests/codecs/stages/test_kashin.py` does two
# per case (~100 s of the suite). The kernels are chosen from the instruction sets the CPU
# says it has, before anything loads numpy; an OPENBLAS_CORETYPE already set is kept.
_OPENBLAS_KERNELS = (  # (instruction sets required, OpenBLAS core type), best first
    ({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}, "SkylakeX"),
    ({"avx2", "fma"}, "Haswell"),
)


def _openblas_kernels_for_this_cpu() -> str | None:
  try:
    cpu_flags = set(re.search(r"^flags\s*:(.*)$", pathlib.Path("/proc/cpuinfo").read_text(),
                              re.MULTILINE).group(1).split())
  except (OSError, AttributeError):  # not Linux, or no flags line: OpenBLAS decides
    return None
  return next((core for needed, core in _OPENBLAS_KERNELS if needed <= cpu_flags), None)


# Set by whoever started the suite (some machines' environments pin one): kept, and then
# what numpy must run.
_OPENBLAS_KERNELS_GIVEN = os.environ.get("OPENBLAS_CORETYPE")
if _OPENBLAS_KERNELS_GIVEN is None and (_core := _openblas_kernels_for_this_cpu()):
  os.environ["OPENBLAS_CORETYPE"] = _core

quiet.quiet_tensorflow()

from fedcompress.federated import runtime  # noqa: E402

runtime.install()

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("FEDCOMPRESS_SHARED_DATA",
                                          REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _warn_once_per_test():
  """`cli.warn_once` says a message once per process; a test is its own process here."""
  from fedcompress.harness import cli

  cli._warned.clear()  # noqa: SLF001 (the dedup set is the function's own state)
  yield


@pytest.fixture(scope="session")
def openblas_kernels_wanted() -> str | None:
  """The OpenBLAS core type the suite asked numpy for (None: OpenBLAS's own choice): the
  environment's, where it gave one, else the best this CPU's instruction sets allow."""
  return _OPENBLAS_KERNELS_GIVEN or _openblas_kernels_for_this_cpu()


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


# What `quiet_tensorflow()` puts into the environment, which the suite's own call (above)
# put into this process's: a child that inherited it would be quiet whatever it did.
_QUIET_ENVIRONMENT = ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "GRPC_VERBOSITY",
                      "FEDCOMPRESS_TF_LOGS")
# A TensorFlow C++ log line: `2026-12-05 08:51:14.995335: I tensorflow/core/...`.
_TF_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: [IWEF] .*$", re.MULTILINE)


@pytest.fixture(scope="session")
def run_unquieted():
  """`run_unquieted(cmd)`: runs `cmd` from the repository root, quiet only if it quiets
  itself; returns the finished process and the TensorFlow C++ log lines on its stderr."""
  environment = {k: v for k, v in os.environ.items() if k not in _QUIET_ENVIRONMENT}

  def run(cmd: list[str], timeout: float = 300) -> tuple[subprocess.CompletedProcess, list[str]]:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT,
                            env=environment, timeout=timeout, check=False)
    return result, _TF_LOG_LINE.findall(result.stderr)

  return run


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """../shared/data (development data); tests needing it skip when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"development data not found at {SHARED_DATA} (set FEDCOMPRESS_SHARED_DATA)")
  return SHARED_DATA


@contextlib.contextmanager
def binary_module(relative_path: str):
  """Imports an experiments/ binary and removes the absl flags it defined afterwards.

  absl's FLAGS is process-global and two binaries define flags of the same name
  (`--seed`, `--rounds`); loading one binary at a time keeps their tests in one process.
  """
  path = REPO_ROOT / relative_path
  before = set(flags.FLAGS)
  name = "binary_" + path.stem
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    yield module
  finally:
    sys.modules.pop(name, None)
    for flag_name in set(flags.FLAGS) - before:
      delattr(flags.FLAGS, flag_name)


@pytest.fixture(scope="session")
def load_binary():
  """`with load_binary("experiments/x.py") as module:` (see `binary_module`)."""
  return binary_module


# Slow tests in files the codec acceptance keeps untouched (issue 15), marked here: the
# kashin frame products of 3000 and 3136 values, 4096x4096 float64, 7-27 s each.
_SLOW_HERE = ("tests/codecs/stages/test_kashin.py::test_frame_projection_is_f_f_transpose[1-3136]",
              "tests/codecs/stages/test_kashin.py::test_frame_projection_is_f_f_transpose[3-3136]",
              "tests/codecs/stages/test_kashin.py::test_frame_projection_is_f_f_transpose[1-3000]",
              "tests/codecs/stages/test_kashin.py::test_frame_projection_is_f_f_transpose[3-3000]")


@pytest.hookimpl(tryfirst=True)  # Before `-m` deselects by the marks.
def pytest_collection_modifyitems(config, items):  # noqa: ARG001
  """Marks `_SLOW_HERE` slow, then runs the modules with notebook or slow tests first,
  each module kept together.

  Under pytest-xdist's work stealing the run ends when the last test does; a minute-long
  test collected late (the chaos run, a notebook) can leave the other worker idle for its
  whole length. Long tests first means the run ends on short ones. A module moves as a
  whole so that its module-scoped fixtures (built TFF processes) are built once.
  """
  for item in items:
    if item.nodeid in _SLOW_HERE:
      item.add_marker(pytest.mark.slow)

  def rank(item) -> int:
    if item.get_closest_marker("notebook"):
      return 0
    return 1 if item.get_closest_marker("slow") else 2

  module_rank: dict[str, int] = {}
  for item in items:
    module = item.nodeid.split("::")[0]
    module_rank[module] = min(module_rank.get(module, 2), rank(item))
  items.sort(key=lambda item: module_rank[item.nodeid.split("::")[0]])  # Stable.
