"""The library modules of tools/ name the tool to run when run as one.

`python -m tools.benchmark` (the code the README names behind `make bench`) and the
others accepted any flags, did nothing and exited 0.
"""

import subprocess
import sys

import pytest


@pytest.mark.slow  # Each imports TensorFlow in a fresh interpreter.
@pytest.mark.parametrize("module,runner", [
    ("benchmark", "tools.run_benchmark"), ("chaos", "tools.run_chaos"),
    ("answers_table", "tools.answers"), ("codec_table", "tools.compare_codecs"),
    ("symbol_entropy", "tools.answers")])
def test_running_a_library_module_names_its_tool(module, runner):
  result = subprocess.run([sys.executable, "-m", f"tools.{module}", "--rounds=3"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1 and result.stdout == ""
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"tools/{module}.py is ") and "Traceback" not in result.stderr
  assert last.endswith(f": run python -m {runner} (--help for its flags)")
