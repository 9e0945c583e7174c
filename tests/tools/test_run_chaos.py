"""tools/run_chaos.py and what `run_chaos` records, with a stand-in for the experiment."""

from __future__ import annotations

import sys


def test_reading_tensorboard_files_prints_no_tensorflow_logs(run_unquieted, tmp_path):
  # What run_chaos does after each interruption: its first TensorFlow import.
  result, tf_logs = run_unquieted(
      [sys.executable, "-c", "import tools.run_chaos\nfrom tools import chaos\n"
       f"print(chaos.tensorboard_scalars({str(tmp_path)!r}))"])
  assert (result.returncode, result.stdout) == (0, "{}\n"), result.stderr[-3000:]
  assert tf_logs == []
