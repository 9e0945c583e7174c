"""tools/check_install.py still matches the package and the README.

The tool itself installs from PyPI (`make check-install`, minutes); these checks are what
`make test` can afford: the names its smoke test imports exist, so moving a module fails
here rather than only at the next check-install, and the README shows the same install
commands and the same example as the tool runs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pathlib
import re
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def _tool():
  path = REPO_ROOT / "tools" / "check_install.py"
  spec = importlib.util.spec_from_file_location("check_install", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses and the like look their module up.
  try:
    spec.loader.exec_module(module)
  finally:
    sys.modules.pop(spec.name, None)
  return module


def test_smoke_test_imports_names_that_exist():
  imports = [node for node in ast.walk(ast.parse(_tool().SMOKE_TEST))
             if isinstance(node, ast.ImportFrom | ast.Import)]
  assert imports, "the smoke test imports nothing from fedcompress"
  for node in imports:
    if isinstance(node, ast.Import):
      for alias in node.names:
        importlib.import_module(alias.name)
      continue
    module = importlib.import_module(node.module)
    missing = [a.name for a in node.names if not hasattr(module, a.name)]
    assert not missing, (f"tools/check_install.py's SMOKE_TEST imports {missing} from "
                         f"{node.module}, which has no such names")


def test_readme_shows_the_commands_and_the_example_the_tool_runs():
  tool = _tool()
  readme = (REPO_ROOT / "README.md").read_text()
  match = re.search(r"<!-- example: plain-pip -->\s*```python\n(.*?)```", readme, re.S)
  assert match, "README lost its plain-pip example"
  assert match.group(1) == tool.SMOKE_TEST, (
      "README's plain-pip example differs from SMOKE_TEST in tools/check_install.py")
  for cmd in tool.install_commands(["pip"], "requirements.txt", "dist/fedcompress-*.whl"):
    assert "/bin/" + " ".join(cmd) in readme, f"README lost `{' '.join(cmd)}`"


def test_an_interpreter_that_cannot_run_is_one_failed_line(tmp_path, capsys):
  # A wrong --python ended in a FileNotFoundError traceback; a file that is not
  # executable, where `_step` runs it, too.
  tool = _tool()
  assert tool.main(["--python", str(tmp_path / "python3.11"),
                    "--wheel", str(tmp_path / "none.whl")]) == 1
  out = capsys.readouterr().out.strip().splitlines()
  assert len(out) == 1 and out[0].startswith("check-install: FAILED after ")
  assert out[0].endswith(f"--python {tmp_path / 'python3.11'} is not an executable interpreter")
  plain = tmp_path / "plain.txt"
  plain.write_text("")
  try:
    tool._step("venv", [str(plain), "-m", "venv"], tmp_path / "log", timeout=10)
  except tool.CheckFailed as e:
    assert str(e).startswith(f"venv: cannot run {plain}: Permission denied")
  else:
    raise AssertionError("a file that cannot run passed its step")
