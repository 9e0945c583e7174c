"""The library modules of tools/ name the tool to run when run as one.

`python -m tools.benchmark` (the code the README names behind `make bench`) and the
others accepted any flags, did nothing and exited 0.
"""

import subprocess
import sys

import pytest


@pytest.mark.slow  # Each imports TensorFlow in a fresh interpreter.
@pytest.mark.parametrize("module,ending", [
    ("benchmark", ": run python -m tools.run_benchmark (--help for its flags)"),
    ("chaos", ": run python -m tools.run_chaos (--help for its flags)"),
    ("answers_table", ": run python -m tools.answers (--help for its flags)"),
    ("codec_table", ": run python -m tools.compare_codecs (--help for its flags)"),
    ("symbol_entropy", ": run python -m tools.answers (--help for its flags)"),
    ("sample_data", ": import it; it has no command line"),
    ("browser_check", ": import it; it has no command line")])
def test_running_a_library_module_names_its_tool(module, ending):
  result = subprocess.run([sys.executable, "-m", f"tools.{module}", "--rounds=3"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 1 and result.stdout == ""
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"tools/{module}.py is ") and "Traceback" not in result.stderr
  assert last.endswith(ending)
