"""Every third-party package the project's code imports is one pyproject.toml declares.

A package that only arrives through another one's requirements (numpy, scipy, dm-tree
through TFF's pin) installs today and goes away the day that package stops requiring it.
The imports are read from the source of the library, the binaries and the tools (the
tests' own are dev dependencies), function-level ones included.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import pathlib
import re
import sys
import tomllib

from packaging.requirements import Requirement

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
OWN = {"fedcompress", "experiments", "tools"}


def _canonical(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(roots) -> dict[str, set[str]]:
  """Imported module names outside the standard library and the project, with their files."""
  found: dict[str, set[str]] = {}
  for root in roots:
    for path in sorted(root.rglob("*.py")):
      for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
          names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          names = [node.module]
        else:
          continue
        for name in names:
          top = name.split(".")[0]
          if top not in sys.stdlib_module_names and top not in OWN:
            found.setdefault(name, set()).add(str(path.relative_to(root.parent)))
  return found


@functools.cache
def _distributions_by_top_module() -> dict[str, list[str]]:
  return importlib.metadata.packages_distributions()


def distribution_of(module: str) -> str:
  """The installed distribution that provides `module` (the file it is loaded from)."""
  top = module.split(".")[0]
  candidates = _distributions_by_top_module().get(top, [])
  if len(set(candidates)) == 1:
    return candidates[0]
  # A namespace shared by several distributions (google.protobuf, google.auth):
  # the one whose files hold the package of the first two name parts.
  spec = importlib.util.find_spec(".".join(module.split(".")[:2]))
  assert spec is not None, f"cannot locate {module}"
  # A module's file, or a namespace package's folder (google._upb): a file at or under it.
  where = [pathlib.Path(p).resolve() for p in
           ([spec.origin] if spec.origin else spec.submodule_search_locations)]
  for name in candidates:
    files = [f.locate().resolve() for f in importlib.metadata.distribution(name).files or []]
    if any(f == w or w in f.parents for f in files for w in where):
      return name
  raise AssertionError(f"no installed distribution holds {module} ({where})")


def declared() -> set[str]:
  project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
  return {_canonical(Requirement(r).name) for r in project["dependencies"]}


def test_every_imported_package_is_declared():
  imports = third_party_imports(REPO_ROOT / d for d in sorted(OWN))
  missing = {}
  for module, files in imports.items():
    dist = _canonical(distribution_of(module))
    if dist not in declared():
      missing.setdefault(dist, set()).update(files)
  assert not missing, ("imported but not in pyproject.toml's dependencies: " + "; ".join(
      f"{d} (by {', '.join(sorted(f)[:3])})" for d, f in sorted(missing.items())))


def test_the_check_sees_an_undeclared_import(tmp_path):
  # The finder and the mapping the test above relies on, on a package no one declares.
  (tmp_path / "tools").mkdir()
  (tmp_path / "tools" / "x.py").write_text(
      "def f():\n  import pytest\n  from google.protobuf import message\n  import json\n")
  imports = third_party_imports([tmp_path / "tools"])
  assert set(imports) == {"pytest", "google.protobuf"}
  assert _canonical(distribution_of("pytest")) == "pytest" not in declared()
  assert _canonical(distribution_of("google.protobuf")) == "protobuf"
