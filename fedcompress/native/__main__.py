"""`python -m fedcompress.native`: builds the kernels now (as a first run would) and
prints where, or in one line why not."""

from __future__ import annotations

import os
import sys


def main() -> int:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up lines.
  from fedcompress.native import build

  try:
    libraries = build.build(build.worker_binary_path(),
                            log=lambda line: print(line, file=sys.stderr, flush=True))
  except (build.BuildError, RuntimeError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"python: {libraries.python}\nworker: {libraries.worker}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
