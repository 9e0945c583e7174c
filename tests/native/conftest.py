"""The native kernels are built once per machine (fedcompress.native.build); without a
C/C++ compiler the codecs use their graph ops, and the tests that compare the two skip."""

from __future__ import annotations

import os
import shutil

import pytest

from fedcompress import native


@pytest.fixture(scope="session")
def native_ops():
  if shutil.which(os.environ.get("CXX", "g++")) is None:
    pytest.skip("no C++ compiler here: the native kernels cannot be built")
  ops = native.ops()
  if ops is None:  # A compiler, and yet no kernels: that is a failure.
    pytest.fail(f"the native ops did not build: {native.unavailable_reason()}")
  return ops
