"""tools/client_state_memory.py: a quiet probe, and what main() shows and records."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

# What `quiet_tensorflow()` sets; the suite's own call put them into this process's
# environment, and a child that inherited them would be quiet whatever it did itself.
_QUIET_ENVIRONMENT = ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "GRPC_VERBOSITY",
                      "FEDCOMPRESS_TF_LOGS")
# A TensorFlow C++ log line: `2026-12-05 08:51:14.995335: I tensorflow/core/...`.
_TF_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+: [IWEF] ", re.MULTILINE)


def _unquieted_environment() -> dict[str, str]:
  return {k: v for k, v in os.environ.items() if k not in _QUIET_ENVIRONMENT}


def test_a_probe_is_quiet_from_its_first_import(repo_root, tmp_path):
  from tools.benchmark import write_population_sqlite

  data = tmp_path / "data"
  data.mkdir()
  write_population_sqlite(str(data / "emnist_all.sqlite"), 4, 20)
  args = json.dumps([str(data), str(tmp_path / "runs"), "none", 1, 2])
  result = subprocess.run([sys.executable, "-m", "tools.client_state_memory", "--probe", args],
                          capture_output=True, text=True, cwd=repo_root,
                          env=_unquieted_environment(), timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not _TF_LOG_LINE.findall(result.stderr), result.stderr[:3000]
  assert json.loads(result.stdout.splitlines()[-1])["mode"] == "none"
