"""The package's shape: imports run one way, and importing it changes nothing.

The import graph is read from the source (every `import` statement, function-level ones
included), so a cycle or an upward import fails here even when it happens to work at
run time because of import order.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fedcompress"

# Layers, lowest first; a module may import its own layer and the ones below it.
# `federated` (TFF wiring) and `tasks` (data and models) are independent of each other.
LAYERS = {
    "fedcompress.units": 0,
    "fedcompress.metrics": 0,
    "fedcompress.native": 0,  # C++ kernels and their build; imports nothing of the rest.
    "fedcompress.codecs.stages": 1,
    "fedcompress.codecs": 2,
    "fedcompress.federated": 3,
    "fedcompress.tasks": 3,
    "fedcompress.harness": 4,
    "fedcompress": 5,  # The package's lazy __init__.
}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
  return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _absolute(node: ast.ImportFrom, path: pathlib.Path) -> str:
  """The module a `from` import names, relative imports resolved against `path`'s package."""
  if node.level == 0:
    return node.module
  package = _module_name(path).split(".")
  if path.name != "__init__.py":
    package = package[:-1]  # A module's package is its parent; a package's, itself.
  base = package[:len(package) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def _imports(path: pathlib.Path, modules: set[str]) -> set[str]:
  """fedcompress modules `path` imports (a submodule where one is named, else the package)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      module = _absolute(node, path)
      names = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules
               else module for alias in node.names]
    else:
      continue
    found.update(n for n in names if n.split(".")[0] == "fedcompress")
  return found


def import_graph() -> dict[str, set[str]]:
  modules = _modules()
  return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as a list of modules (first == last), or None."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  path: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return path[path.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def _layer(module: str) -> tuple[str, int]:
  prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
  return prefix, LAYERS[prefix]


def test_no_import_cycle():
  assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_cycles():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_run_down_the_layers():
  upward = []
  for module, imported in import_graph().items():
    source, rank = _layer(module)
    for target in imported:
      target_layer, target_rank = _layer(target)
      sideways = rank == target_rank and source != target_layer
      if target_rank > rank or sideways:
        upward.append(f"{module} -> {target}")
  assert not upward, upward


def test_stages_import_only_stages():
  for module, imported in import_graph().items():
    if module.startswith("fedcompress.codecs.stages"):
      outside = [m for m in imported
                 if not m.startswith(("fedcompress.codecs.stages", "fedcompress.native"))]
      assert not outside, (module, outside)


def test_only_builtin_imports_the_stages_among_the_codec_core():
  importers = {m for m, imported in import_graph().items()
               if not m.startswith("fedcompress.codecs.stages")
               and any(i.startswith("fedcompress.codecs.stages.")
                       and not i.endswith("._common") for i in imported)}
  # testing.py wraps stages for tests of custom stages; accounting, allocation, chain,
  # registry, seeding and spec use only the shared helpers in _common.
  assert importers <= {"fedcompress.codecs.builtin", "fedcompress.codecs.testing"}, importers


def _python(code: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=300, check=False)


def test_import_changes_nothing_in_the_process():
  result = _python(
      "import logging, os, sys, warnings\n"
      "filters = list(warnings.filters)\n"
      "env = dict(os.environ)\n"
      "import fedcompress\n"
      "assert warnings.filters == filters, 'warning filters changed'\n"
      "assert dict(os.environ) == env, 'environment changed'\n"
      "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
      "print('ok')\n")
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.slow  # Imports TensorFlow and TFF in a fresh interpreter.
def test_importing_the_library_leaves_tff_its_own_context():
  result = _python(
      "import logging, warnings\n"
      "import tensorflow_federated as tff\n"
      "from tensorflow_federated.python.core.impl.context_stack import context_stack_impl\n"
      "from absl import logging as absl_logging\n"
      "context = context_stack_impl.context_stack.current\n"
      "filters = list(warnings.filters)\n"
      "levels = (logging.getLogger('tensorflow').level, absl_logging.get_verbosity())\n"
      "import fedcompress.codecs, fedcompress.federated.fedavg, fedcompress.harness.experiment\n"
      "import fedcompress.federated.runtime as runtime\n"
      "assert context_stack_impl.context_stack.current is context, 'TFF context replaced'\n"
      "assert warnings.filters == filters, 'warning filters changed'\n"
      "assert (logging.getLogger('tensorflow').level,"
      " absl_logging.get_verbosity()) == levels, 'log levels changed'\n"
      "runtime.install()\n"
      "assert context_stack_impl.context_stack.current is not context\n"
      "installed = context_stack_impl.context_stack.current\n"
      "runtime.install()\n"
      "assert context_stack_impl.context_stack.current is installed, 'not idempotent'\n"
      "print('ok')\n")
  assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


def test_import_under_deprecation_errors():
  # `python -W error::DeprecationWarning -c "import fedcompress"`: the package imports
  # nothing at import, so no dependency's deprecation can surface either.
  result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                           "import fedcompress; print(sorted(fedcompress.__all__)[0])"],
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0 and result.stdout.strip() == "Codec", result.stderr


@pytest.mark.parametrize("source, expected", [
    ("from ...harness import loop", {"fedcompress.harness.loop"}),
    ("from .. import codecs", {"fedcompress.codecs"}),
    ("from . import _common", {"fedcompress.codecs.stages._common"}),
])
def test_relative_imports_are_resolved(tmp_path, monkeypatch, source, expected):
  # A relative import in codecs/stages/uniform.py would otherwise escape the layer check.
  copy = tmp_path / "fedcompress"
  (copy / "codecs" / "stages").mkdir(parents=True)
  module = copy / "codecs" / "stages" / "uniform.py"
  module.write_text(source + "\n")
  monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
  assert _imports(module, set(_modules()) | {
      "fedcompress.harness.loop", "fedcompress.codecs.stages._common"}) == expected



def test_a_stage_imports_without_the_other_stages_or_the_registry_filled():
  # fedcompress.codecs registered the built-ins at import, which imported every stage:
  # a half-edited eden.py broke the import of topk and of its tests.
  result = _python(
      "import json, sys\n"
      "import fedcompress.codecs.stages.topk\n"
      "from fedcompress.codecs import registry\n"
      "loaded = sorted(m for m in sys.modules if m.startswith('fedcompress.codecs.stages.'))\n"
      "print(json.dumps([loaded, 'fedcompress.codecs.builtin' in sys.modules,"
      " len(registry._CODECS)]))\n"
      "import fedcompress.codecs as codecs\n"
      "try:\n"
      "  codecs.register_codec('uniform', lambda: None)\n"
      "except ValueError as e:\n"
      "  print(e)\n"
      "print('topk' in codecs.available_codecs(), codecs.get_codec('eden').name)\n")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  stages, builtin_imported, registered = json.loads(lines[0])
  assert "fedcompress.codecs.stages.topk" in stages
  assert "fedcompress.codecs.stages.eden" not in stages, stages
  assert (builtin_imported, registered) == (False, 0)
  # On first use the built-ins are there, and their names are taken.
  assert lines[1] == ("codec 'uniform' is already registered (pass overwrite=True to "
                      "replace it)")
  assert lines[2] == "True eden"


def test_a_task_module_imports_without_the_other_tasks():
  # fedcompress.tasks imported image.py and shakespeare.py at import: the text reader,
  # which needs only the standard library, took TFF and every task and model (~4 s).
  result = _python(
      "import sys\n"
      "import fedcompress.tasks.datasets.text\n"
      "print('tensorflow' in sys.modules, 'fedcompress.tasks.image' in sys.modules)\n"
      "from fedcompress.tasks import IMAGE_TASKS, FederatedTask\n"
      "print(sorted(IMAGE_TASKS), FederatedTask.__name__)\n")
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == ["False False", "['digits', 'emnist'] FederatedTask"]


def test_a_failed_load_of_the_built_ins_is_tried_again():
  # The first use cleared the loader before it ran: a stage that failed to import left
  # the registry empty for the process, and a user's codec could take 'uniform'.
  result = _python(
      "import sys\n"
      "import fedcompress.codecs as codecs\n"
      "sys.modules['fedcompress.codecs.stages.eden'] = None  # An import that fails.\n"
      "try:\n"
      "  codecs.get_codec('uniform')\n"
      "except ImportError:\n"
      "  print('failed')\n"
      "del sys.modules['fedcompress.codecs.stages.eden']  # Fixed.\n"
      "print(codecs.get_codec('uniform').name, len(codecs.available_codecs()))\n"
      "try:\n"
      "  codecs.register_codec('uniform', lambda: None)\n"
      "except ValueError as e:\n"
      "  print(e)\n")
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == [
      "failed", "uniform 15",
      "codec 'uniform' is already registered (pass overwrite=True to replace it)"]
