"""The notebooks' first code cell: it installs fedcompress with pip only where that can work.

The cell's source is read from the .ipynb (no kernel, no other cell) and executed here
with pip replaced by a recorder. Its contract: the Python version is checked first (a
kernel on another Python than 3.11, such as Colab's 3.12, gets one sentence of advice and
no install); a kernel that already has fedcompress, such as the checkout's environment in
tests/test_notebooks.py, installs nothing; otherwise it installs requirements.txt and
then the package, both with --no-deps, as the README says.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import IPython
import pytest

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["emnist_compression.ipynb", "shakespeare_text_generation.ipynb"]
PY311 = (3, 11, 7, "final", 0)
PY312 = (3, 12, 3, "final", 0)


def _install_cell(name: str = NAMES[0]) -> str:
  cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
  first = next(c for c in cells if c["cell_type"] == "code")
  return "".join(first["source"])


def _functions() -> dict:
  """The cell's imports and function definitions, without running its install logic."""
  tree = ast.parse(_install_cell())
  tree.body = [n for n in tree.body
               if isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef)]
  namespace: dict = {}
  exec(compile(tree, "install-cell", "exec"), namespace)
  return namespace


def test_both_notebooks_share_one_install_cell():
  assert _install_cell(NAMES[0]) == _install_cell(NAMES[1])


def test_python_advice_is_none_on_311_and_one_sentence_elsewhere():
  advice = _functions()["python_advice"]
  assert advice(PY311) is None
  assert advice(sys.version_info) is None  # The suite runs on 3.11.
  for version in (PY312, (3, 10, 12, "final", 0), (3, 13, 0, "final", 0)):
    text = advice(version)
    assert f"Python {version[0]}.{version[1]}," in text and "needs Python 3.11" in text
    assert "local Jupyter" in text and "README" in text
    assert text.endswith(".") and ". " not in text, "one sentence"


def test_kernel_advice_refuses_an_ipython_that_typing_extensions_45_breaks():
  advice = _functions()["kernel_advice"]
  assert advice("8.22.2") is None
  assert advice(IPython.__version__) is None  # The dev group pins ipython<8.23.
  for version in ("8.23.0", "8.30.1", "9.0.2"):
    assert f"IPython {version} " in advice(version)


def test_requirements_for(tmp_path):
  requirements_for = _functions()["requirements_for"]
  assert requirements_for(str(tmp_path), "") == str(tmp_path / "requirements.txt")
  wheel = tmp_path / "dist" / "fedcompress-0.1.0-py3-none-any.whl"
  assert requirements_for(str(wheel), "") == str(tmp_path / "dist" / "requirements.txt")
  url = "https://example.org/releases/v0.1.0/fedcompress-0.1.0-py3-none-any.whl"
  assert requirements_for(url, "") == "https://example.org/releases/v0.1.0/requirements.txt"
  assert requirements_for(url, "/content/req.txt") == "/content/req.txt"
  with pytest.raises(ValueError, match="FEDCOMPRESS_REQUIREMENTS"):
    requirements_for("git+https://example.org/me/fedcompress.git", "")
  # A local path to nothing (a typo) is said to be one, not answered with advice about
  # FEDCOMPRESS_REQUIREMENTS, which pip would then fail on the same path with.
  with pytest.raises(ValueError, match=r"^FEDCOMPRESS_SOURCE '.*/fedcompres' is no checkout "
                                       r"folder or \.whl file$"):
    requirements_for(str(tmp_path / "fedcompres"), "")


@pytest.fixture
def run_cell(monkeypatch, capsys):
  """Runs the whole cell; returns (printed lines, pip commands it would have run)."""
  calls = []

  def record(cmd, *args, **kwargs):
    calls.append(list(cmd))
    return 0

  monkeypatch.setattr(subprocess, "check_call", record)
  monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("unexpected run"))
  monkeypatch.delenv("FEDCOMPRESS_REQUIREMENTS", raising=False)

  def run(*, source: str = "", version=PY311, installed: bool = True,
          ipython: str = "8.22.2"):
    monkeypatch.setenv("FEDCOMPRESS_SOURCE", source)
    monkeypatch.setattr(IPython, "__version__", ipython)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: (
        real_find_spec(name, *a) if installed or name != "fedcompress" else None))
    # Replaced only while the cell runs: nothing else reads it in between.
    monkeypatch.setattr(sys, "version_info", version)
    try:
      exec(compile(_install_cell(), "install-cell", "exec"), {})
    finally:
      monkeypatch.undo()
    return capsys.readouterr().out.splitlines(), calls

  return run


def test_cell_in_the_checkouts_kernel_installs_nothing(run_cell):
  printed, calls = run_cell(source="/somewhere/fedcompress")
  assert calls == []
  assert printed == [f"fedcompress is importable ({importlib.util.find_spec('fedcompress').origin})"
                     ": nothing to install."]


@pytest.mark.parametrize("installed", [False, True], ids=["absent", "importable"])
def test_cell_on_python_312_gives_one_sentence_and_does_not_install(run_cell, installed):
  printed, calls = run_cell(source="/somewhere/fedcompress", version=PY312,
                            installed=installed)
  assert calls == []
  assert printed == [_functions()["python_advice"](PY312)]


def test_cell_with_a_new_ipython_advises_a_kernel_of_its_own(run_cell):
  printed, calls = run_cell(source="/somewhere/fedcompress", installed=False,
                            ipython="8.30.0")
  assert calls == []
  assert printed == [_functions()["kernel_advice"]("8.30.0")]


def test_cell_without_a_source_says_to_set_it(run_cell):
  printed, calls = run_cell(installed=False)
  assert calls == []
  assert len(printed) == 1 and "set FEDCOMPRESS_SOURCE" in printed[0]


def test_cell_installs_requirements_then_the_package_without_resolving(run_cell, tmp_path):
  wheel = str(tmp_path / "fedcompress-0.1.0-py3-none-any.whl")
  printed, calls = run_cell(source=wheel, installed=False)
  pip = [sys.executable, "-m", "pip", "install", "--no-deps"]
  assert calls == [pip + ["-r", str(tmp_path / "requirements.txt")], pip + [wheel]]
  assert "Restart the kernel" in printed[-1]


def test_cell_expands_a_home_folder_written_with_a_tilde(run_cell, tmp_path, monkeypatch):
  # The shell expands `~` in FEDCOMPRESS_SOURCE=~/x only at a word's start; written in
  # the cell, or as --flag=~/x style, it reached pip and isdir() as is.
  (tmp_path / "fedcompress").mkdir()
  monkeypatch.setenv("HOME", str(tmp_path))
  printed, calls = run_cell(source="~/fedcompress", installed=False)
  pip = [sys.executable, "-m", "pip", "install", "--no-deps"]
  checkout = str(tmp_path / "fedcompress")
  assert calls == [pip + ["-r", os.path.join(checkout, "requirements.txt")], pip + [checkout]]
  assert "Restart the kernel" in printed[-1]


def _older_pythons() -> dict[int, str]:
  """Interpreters of Python 3.6-3.10 found on PATH or under pyenv, by minor version."""
  found = {}
  for minor in range(6, 11):
    candidates = [shutil.which(f"python3.{minor}")] + sorted(glob.glob(os.path.expanduser(
        f"~/.pyenv/versions/3.{minor}.*/bin/python3.{minor}")))
    for path in filter(None, candidates):
      # pyenv's shims exist on PATH even for versions they will not run.
      if subprocess.run([path, "-c", "pass"], capture_output=True).returncode == 0:
        found[minor] = path
        break
  return found


def test_cell_on_an_older_python_gives_its_advice_instead_of_failing(tmp_path):
  # A kernel on 3.9 failed where `python_advice` was defined (`str | None` is evaluated
  # there and is a TypeError before 3.10), before the version check could say anything.
  # Run by a real older interpreter: the annotations of 3.11 cannot show this.
  pythons = _older_pythons()
  if not pythons:
    pytest.skip("no Python 3.6-3.10 interpreter on PATH or under ~/.pyenv")
  (tmp_path / "IPython").mkdir()
  (tmp_path / "IPython" / "__init__.py").write_text('__version__ = "7.34.0"\n')
  env = {**os.environ, "PYTHONPATH": str(tmp_path), "FEDCOMPRESS_SOURCE": "/somewhere"}
  for minor, python in pythons.items():
    result = subprocess.run([python, "-c", _install_cell()], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, (python, result.stderr)
    version = (3, minor, 0, "final", 0)
    assert result.stdout.splitlines() == [_functions()["python_advice"](version)], python


def _fake_distribution(site: pathlib.Path, name: str, *requires: str) -> None:
  info = site / f"{name}-1.0.dist-info"
  info.mkdir(parents=True)
  (info / "METADATA").write_text(
      f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
      + "".join(f"Requires-Dist: {r}\n" for r in requires))


def test_packages_needing_a_newer_typing_extensions_are_found(tmp_path, monkeypatch):
  # ipykernel 7.4's jupyter-client 8.10 needs typing-extensions>=4.13: the cell's
  # install of TFF's 4.5.0 left a kernel that could not start (review R5 of s47).
  needs = _functions()["typing_extensions_needs"]
  assert needs() == []  # The checkout's kernel runs on 4.5.0.
  _fake_distribution(tmp_path, "newer_client", "typing-extensions>=4.13.0")
  _fake_distribution(tmp_path, "only_in_tests", 'typing_extensions>=4.13; extra == "test"')
  _fake_distribution(tmp_path, "older_is_fine", "typing-extensions>=4.0")
  monkeypatch.syspath_prepend(str(tmp_path))
  assert needs() == ["newer_client 1.0 (typing-extensions>=4.13.0)"]


def test_kernel_advice_names_what_needs_a_newer_typing_extensions():
  advice = _functions()["kernel_advice"]
  text = advice("8.22.2", ["jupyter-client 8.10.0 (typing-extensions>=4.13.0)"])
  assert text.startswith("This kernel's jupyter-client 8.10.0 (typing-extensions>=4.13.0) "
                         "needs a newer typing-extensions than the 4.5")
  assert "venv kernel of its own" in text


def test_cell_in_a_kernel_needing_a_newer_typing_extensions_does_not_install(
    run_cell, tmp_path, monkeypatch):
  _fake_distribution(tmp_path, "newer_client", "typing-extensions>=4.13.0")
  monkeypatch.syspath_prepend(str(tmp_path))
  printed, calls = run_cell(source="/somewhere/fedcompress", installed=False)
  assert calls == []
  assert len(printed) == 1 and printed[0].startswith("This kernel's newer_client 1.0 ")
