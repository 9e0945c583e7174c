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
import sys

import pytest
from absl import flags

from fedcompress.federated import quiet

quiet.quiet_tensorflow()

from fedcompress.federated import runtime  # noqa: E402

runtime.install()

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = pathlib.Path(os.environ.get("FEDCOMPRESS_SHARED_DATA",
                                          REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


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
