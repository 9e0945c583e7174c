"""Shared test fixtures.

Importing fedcompress first quiets TensorFlow and installs the context whose worker
process fedcompress owns, so no test leaves a `worker_binary` behind.
"""

from __future__ import annotations

import os
import pathlib

import pytest

import fedcompress  # noqa: F401  (side effects: quiet logs, owned TFF runtime)

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
