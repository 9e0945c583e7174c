"""requirements.txt is uv.lock's runtime closure, so plain pip installs what uv installs.

pip installs requirements.txt with --no-deps (see the file's header: TFF 0.87.0 still
declares jaxlib==0.4.14), so nothing but this test catches a file that misses a
dependency or pins another version than the lock. It reads uv.lock with tomllib and
needs no uv: CI may not have it on PATH. The lock is walked from the project's own
dependencies, dev groups skipped; the pins must be exactly the packages reached, at the
lock's versions and with the lock's hashes. A package reached only through edges with
an environment marker (colorama, Windows only) must keep a marker in the file, and only
those. The lock itself must still match pyproject.toml, or the export would be stale too.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import tomllib

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = "run `make requirements` (after `uv lock` if pyproject.toml changed) and commit"


def _canonical(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


@dataclasses.dataclass(frozen=True)
class Pin:
  version: str
  conditional: bool  # Has an environment marker.
  hashes: frozenset[str]


def lock_runtime_closure(lock: dict, project: str) -> dict[str, Pin]:
  """The packages the project needs at run time, by name, as uv.lock has them.

  `conditional` is True when every path from the project passes an edge with a marker.
  """
  by_name: dict[str, list[dict]] = {}
  for package in lock["package"]:
    by_name.setdefault(package["name"], []).append(package)

  def target(dep: dict) -> dict:
    candidates = [p for p in by_name[dep["name"]]
                  if "version" not in dep or p["version"] == dep["version"]]
    # A lock forked by markers holds one name at several versions; the edge then names one.
    assert len(candidates) == 1, f"uv.lock: cannot tell which {dep['name']} is meant"
    return candidates[0]

  def edges(package: dict, extras: tuple[str, ...]) -> list[dict]:
    deps = list(package.get("dependencies", []))
    for extra in extras:
      deps += package.get("optional-dependencies", {}).get(extra, [])
    return deps

  def walk(follow_marked: bool) -> dict[str, dict]:
    (root,) = by_name[project]
    reached: dict[str, dict] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(root, ())]  # The project's dependencies only: no dev groups.
    while todo:
      package, extras = todo.pop()
      for dep in edges(package, extras):
        if "marker" in dep and not follow_marked:
          continue
        node = target(dep)
        key = (node["name"], tuple(sorted(dep.get("extra", []))))
        if key not in seen:
          seen.add(key)
          reached[node["name"]] = node
          todo.append((node, key[1]))
    return reached

  everything, unconditional = walk(follow_marked=True), walk(follow_marked=False)
  pins = {}
  for name, package in everything.items():
    artifacts = [package["sdist"]] if "sdist" in package else []
    artifacts += package.get("wheels", [])
    pins[name] = Pin(package["version"], name not in unconditional,
                     frozenset(a["hash"] for a in artifacts))
  return pins


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)\s*(?:;\s*(.*?))?\s*((?:--hash=\S+\s*)*)$")


def parse_requirements(text: str) -> tuple[dict[str, Pin], list[str]]:
  """The `name==version [; marker] --hash=...` pins of a requirements file, and the
  logical lines that are anything else (an editable line, an index option, a range)."""
  pins, other = {}, []
  joined = re.sub(r"\\\n", " ", text)
  for line in joined.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    match = _PIN.match(line)
    if not match:
      other.append(line)
      continue
    name, version, marker, hashes = match.groups()
    pins[_canonical(name)] = Pin(version, marker is not None,
                                 frozenset(h[len("--hash="):] for h in hashes.split()))
  return pins, other


def _requirements_set(requirements: list) -> set[tuple]:
  """Requirements (strings or uv.lock tables) as comparable tuples."""
  result = set()
  for r in requirements:
    if isinstance(r, str):
      parsed = Requirement(r)
      name, spec, marker = parsed.name, parsed.specifier, parsed.marker
      extras = parsed.extras
    else:
      name, spec = r["name"], SpecifierSet(r.get("specifier", ""))
      marker = Marker(r["marker"]) if "marker" in r else None
      extras = r.get("extras", [])
    result.add((_canonical(name), str(SpecifierSet(str(spec))), str(marker or ""),
                tuple(sorted(extras))))
  return result


def lock_matches_pyproject(lock: dict, pyproject: dict) -> list[str]:
  """Differences between pyproject.toml's runtime requirements and what the lock solved."""
  project = pyproject["project"]["name"]
  (root,) = [p for p in lock["package"] if p["name"] == _canonical(project)]
  problems = []
  wanted = _requirements_set(pyproject["project"].get("dependencies", []))
  locked = _requirements_set(root.get("metadata", {}).get("requires-dist", []))
  if wanted != locked:
    problems.append(f"uv.lock was solved for other dependencies than pyproject.toml's: "
                    f"only in pyproject {sorted(wanted - locked)}, only in uv.lock "
                    f"{sorted(locked - wanted)}")
  wanted = _requirements_set(pyproject.get("tool", {}).get("uv", {})
                             .get("override-dependencies", []))
  locked = _requirements_set(lock.get("manifest", {}).get("overrides", []))
  if wanted != locked:
    problems.append(f"uv.lock has other overrides than pyproject.toml: {sorted(locked)} "
                    f"vs {sorted(wanted)}")
  return problems


def requirements_mismatch(lock_path: pathlib.Path, requirements_path: pathlib.Path,
                          pyproject_path: pathlib.Path) -> list[str]:
  """Why `requirements_path` is not the export of `lock_path`; empty when it is."""
  lock = tomllib.loads(lock_path.read_text())
  pyproject = tomllib.loads(pyproject_path.read_text())
  problems = lock_matches_pyproject(lock, pyproject)
  expected = lock_runtime_closure(lock, _canonical(pyproject["project"]["name"]))
  pinned, other = parse_requirements(requirements_path.read_text())
  problems += [f"not a pin from the lock: {line!r}" for line in other]
  for name in sorted(expected.keys() - pinned.keys()):
    problems.append(f"missing: {name}=={expected[name].version}")
  for name in sorted(pinned.keys() - expected.keys()):
    problems.append(f"not in the lock's runtime closure: {name}=={pinned[name].version}")
  for name in sorted(expected.keys() & pinned.keys()):
    want, have = expected[name], pinned[name]
    if want.version != have.version:
      problems.append(f"{name}: uv.lock has {want.version}, requirements.txt {have.version}")
    elif want.hashes != have.hashes:
      problems.append(f"{name}=={want.version}: hashes differ from uv.lock's")
    if want.conditional != have.conditional:
      problems.append(f"{name}: the lock reaches it {'only' if want.conditional else 'also'} "
                      f"through marked edges, but requirements.txt pins it "
                      f"{'with' if have.conditional else 'without'} a marker")
  return problems


def _files(root: pathlib.Path = REPO_ROOT) -> tuple[pathlib.Path, ...]:
  return root / "uv.lock", root / "requirements.txt", root / "pyproject.toml"


def test_requirements_txt_is_the_locks_runtime_closure():
  problems = requirements_mismatch(*_files())
  assert not problems, ("requirements.txt is stale relative to uv.lock/pyproject.toml; "
                        f"{FIX}:\n  " + "\n  ".join(problems))


def test_closure_skips_the_dev_group_and_marks_platform_only_packages():
  lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
  closure = lock_runtime_closure(lock, "fedcompress")
  # What the override gives, not TFF's unsatisfiable 0.4.14.
  assert closure["jax"].version == closure["jaxlib"].version == "0.4.13"
  assert {"pytest", "ipykernel", "nbclient", "ruff"}.isdisjoint(closure)
  assert "wrapt" in closure  # Transitive: tensorflow -> wrapt.
  assert closure["colorama"].conditional  # tqdm needs it on Windows only.
  assert not closure["tensorflow"].conditional
  assert "fedcompress" not in closure


def _copy_with(tmp_path: pathlib.Path, name: str, edit) -> tuple[pathlib.Path, ...]:
  """Copies of the three files into `tmp_path`, the one called `name` passed through `edit`."""
  for path in _files():
    text = path.read_text()
    (tmp_path / path.name).write_text(edit(text) if path.name == name else text)
  return _files(tmp_path)


@pytest.mark.parametrize("package", ["jaxlib", "wrapt", "colorama"])
def test_a_version_bumped_in_the_lock_is_caught(tmp_path, package):
  def bump(text: str) -> str:
    old = re.search(rf'\nname = "{package}"\nversion = "([^"]+)"', text).group(0)
    return text.replace(old, old[:-1] + '.post1"')

  problems = requirements_mismatch(*_copy_with(tmp_path, "uv.lock", bump))
  assert len(problems) == 1, problems
  assert re.fullmatch(rf"{package}: uv.lock has (\S+)\.post1, requirements.txt \1",
                      problems[0]), problems


@pytest.mark.parametrize("edit, expected", [
    (lambda t: re.sub(r"\nscipy==.*?(?=\n\S)", "", t, flags=re.S), "missing: scipy=="),
    (lambda t: t + "pytest==8.0.0\n", "not in the lock's runtime closure: pytest==8.0.0"),
    (lambda t: t + "-e .\n", "not a pin from the lock: '-e .'"),
    (lambda t: t.replace("colorama==0.4.6 ; sys_platform == 'win32'", "colorama==0.4.6"),
     "colorama: the lock reaches it only through marked edges"),
], ids=["dropped", "dev-added", "editable", "marker-lost"])
def test_an_edited_requirements_file_is_caught(tmp_path, edit, expected):
  problems = requirements_mismatch(*_copy_with(tmp_path, "requirements.txt", edit))
  assert [p for p in problems if p.startswith(expected)], problems


def test_a_dependency_added_to_pyproject_without_relocking_is_caught(tmp_path):
  def add(text: str) -> str:
    return text.replace('  "tqdm",\n', '  "tqdm",\n  "pandas",\n', 1)

  problems = requirements_mismatch(*_copy_with(tmp_path, "pyproject.toml", add))
  assert len(problems) == 1 and "only in pyproject [('pandas'" in problems[0], problems
