"""What every binary does the same way at its edges (no TensorFlow import)."""

import sys


def fail(message: str, code: int = 2) -> int:
  """Prints one `error: ...` line on stderr and returns the exit code for main()."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  return code
