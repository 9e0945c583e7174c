"""`--codec_modules`: codecs of the user's own, for the binaries and sweeps.

A codec registers itself when its module runs (`fedcompress.register_stage`,
`fedcompress.register`), and the binaries read only registered names. The flag names
modules to import before the codec flags are checked: a `.py` file (by its path) or a
module importable from `PYTHONPATH`. Each is imported once per process, so a sweep that
builds every run's flags in one process registers its codecs once.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import io
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from fedcompress import codecs
from fedcompress.codecs.provenance import is_users_source
from fedcompress.tasks.errors import file_fingerprint

# The entry (a `.py` file's absolute path, or a module name) that registered each codec
# name in this process: one process holds one codec per name, and a sweep imports every
# run's modules into one.
_REGISTERED_BY: dict[str, str] = {}
# Helper module name -> the file for it in the folder of the `.py` entry that imports it.
_HELPERS: dict[str, str] = {}


def _entry_key(entry: str) -> str:
  return os.path.abspath(entry) if entry.endswith(".py") else entry


def _registered() -> dict[str, Any]:
  return {name: codecs.get_codec(name) for name in codecs.available_codecs()}


def import_codec_modules(entries: Sequence[str]) -> None:
  """Imports each entry (a `.py` path or a module name); one-line ValueError if one fails,
  or if it registers a codec name another entry registered in this process."""
  for entry in entries:
    before = _registered()
    # What it prints on stderr is held until it is known to have imported: a module that
    # parses the command line at import (argparse) printed its usage and "unrecognized
    # arguments" for the binary's own flags, once per flag check that imports it.
    said = io.StringIO()
    try:
      with contextlib.redirect_stderr(said):
        if entry.endswith(".py"):
          _import_file(entry)
        else:
          importlib.import_module(entry)
    except (Exception, SystemExit) as e:  # Its own code may raise anything: one line.
      # SystemExit too (argparse's, sys.exit): it ended the binary as if its own flags
      # were wrong.
      last = said.getvalue().strip().splitlines()[-1:]
      printed = f" (it printed: {last[0]})" if last else ""
      raise ValueError(f"cannot import {entry}: "
                       f"{type(e).__name__}: {e}{printed}") from None
    sys.stderr.write(said.getvalue())
    for name in codecs.replaced_builtin_codecs(_registered()):
      if before.get(name) is not codecs.get_codec(name):
        if name in before:  # The registry as it was (fedcompress's own codec).
          codecs.register(before[name], overwrite=True)
        else:
          codecs.unregister(name)
        raise ValueError(f"{entry} registers a codec of its own as {name!r}, a built-in "
                         "codec's name, which runs record and label as the built-in one: "
                         "give yours another name")
    for name, codec in _registered().items():
      if before.get(name) is codec:
        continue
      # A name registered anew (none before it, or one unregistered since) is this
      # entry's; one replaced was registered by another entry, or by the user.
      previous = _REGISTERED_BY.get(name) if name in before else None
      _REGISTERED_BY[name] = _entry_key(entry)
      if previous is not None and previous != _entry_key(entry):
        # With overwrite=True the last one imported replaced the other for every run of
        # a sweep (a review's v1 and v2 runs both sent v2's float32).
        raise ValueError(f"codec {name!r} is registered by both {previous} and {entry}: "
                         "one process (a sweep's runs) holds one codec per name, so every "
                         "run would use the last one imported; give them different names")


def check_codec_sources(names: Iterable[str], entries: Sequence[str]) -> None:
  """Refuses a codec name that a `--codec_modules` entry the run does not list registered.

  In a sweep's process a run could use a codec another run's module registered: its
  config.json recorded no module, and the run could not be resumed on its own.
  """
  listed = {_entry_key(e) for e in entries}
  for name in names:
    source = _REGISTERED_BY.get(name)
    if source is not None and source not in listed:
      raise ValueError(f"codec {name!r} comes from --codec_modules {source}, which this "
                       "run does not list: add it to the run's --codec_modules, so that "
                       "its config.json records it")


def fingerprints(entries: Sequence[str]) -> list[str]:
  """`<size>:<sha256>` of the entries' source files, sorted, each once: what a run
  records of them.

  The codecs are compared on resume by the names they resolve to, and the modules' own
  files sit outside the repository (the run's `dirty` flag misses them): a module
  edited from float16 to float32 between two segments made one run of two codecs (its
  aggregate bits doubled from round 2), without a word. The files are each entry's own
  and every other source file of the user's it imports, transitively (`_user_files`):
  a package's submodules, a helper module (a review found an edited submodule recorded
  the same), and the `__init__` files of a dotted entry's packages. They are read from
  the import statements, not from what an import added to `sys.modules`, so the record
  does not depend on which entry a process imported first (a sweep imports every run's
  modules in one process); a module loaded by `importlib.import_module(name)` in the
  code is not seen.
  """
  sources, recorded = set(), set()
  for entry in entries:
    if entry.endswith(".py"):
      path, package = os.path.abspath(os.path.expanduser(entry)), ""
    else:
      spec = _find_spec(entry)
      path = spec.origin if spec is not None else None
      package = entry if spec is not None and spec.submodule_search_locations else (
          entry.rpartition(".")[0])
    if path is None:
      recorded.add(f"unreadable:{entry}")
    else:
      # The entry's own file always, installed or not; and the packages above a dotted
      # entry, whose __init__ files run when it is imported.
      sources.add(os.path.abspath(path))
      sources.update(_user_files(path, package))
      parents = entry.split(".")[:-1] if not entry.endswith(".py") else []
      for depth in range(1, len(parents) + 1):
        parent = _find_spec(".".join(parents[:depth]))
        if parent is not None and parent.origin:
          sources.update(_user_files(parent.origin, ".".join(parents[:depth])))
  recorded.update(file_fingerprint(f, whole=True) or f"unreadable:{f}" for f in sources)
  return sorted(recorded)


def _find_spec(name: str):
  try:
    return importlib.util.find_spec(name)
  except (ImportError, ValueError):  # a parent that is not a package, a bad name
    return None


def _user_files(path: str, package: str) -> set[str]:
  """`path` and the user's source files it imports, transitively (not the installed
  ones nor fedcompress's): every `import` and `from ... import` statement, relative ones
  resolved against `package`, whether or not it ran (a superset is harmless)."""
  files, queue = set(), [(os.path.abspath(path), package)]
  while queue:
    current, package = queue.pop()
    if current in files or not is_users_source(current):
      continue
    files.add(current)
    # An unreadable file names none: its fingerprint says so.
    for name in _imported_names(current, package):
      spec = _find_spec(name)
      if spec is not None and spec.origin:
        queue.append((os.path.abspath(spec.origin),
                      name if spec.submodule_search_locations else name.rpartition(".")[0]))
  return files


def _imported_names(path: str, package: str = "") -> list[str]:
  """The modules every `import` and `from ... import` statement of `path` names (none if
  it cannot be read or parsed), relative ones resolved against `package`; `from pkg
  import sub` names `pkg.sub` too, which may be a submodule as well as an attribute."""
  try:
    with open(path, "rb") as f:
      tree = ast.parse(f.read())
  except (OSError, SyntaxError, ValueError):
    return []
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: up `level - 1` packages from this file's.
        parts = package.split(".") if package else []
        parents = parts[:len(parts) - node.level + 1] if node.level - 1 <= len(parts) else []
        base = ".".join(parents + ([node.module] if node.module else []))
      names += [base] + [f"{base}.{alias.name}" for alias in node.names if base]
  return [name for name in names if name]


def _module_name(path: str) -> str:
  # A name of its own per file, kept in sys.modules: a second import is a no-op, where
  # running the file again would register its codecs twice (refused).
  return "fedcompress_codecs_of_" + hashlib.sha256(path.encode()).hexdigest()[:16]


def _import_file(path: str) -> None:
  # `~` here too: the flag's validator imports the modules while absl parses, before
  # the binaries' parse_flags expands the path flags.
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no file {path}")
  name = _module_name(path)
  if name in sys.modules:
    return
  _check_helpers_not_shadowed(path)
  # As `python file.py` does: its folder on the path, so that it imports the helper
  # files beside it (the README's "a helper module"; it failed with ModuleNotFoundError).
  if os.path.dirname(path) not in sys.path:
    sys.path.insert(0, os.path.dirname(path))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise


def _check_helpers_not_shadowed(path: str) -> None:
  """Refuses `path` when a helper module beside it is already imported from elsewhere.

  One process holds one module per name: two versions of a codec in folders v1/ and
  v2/, each with its `helpers.py`, both ran v1's helpers in a sweep (v2's float32
  sent as v1's float16, with v1's helper hash recorded for v2's run). The helpers are
  the modules its own folder holds that it imports, transitively.
  """
  folder = os.path.dirname(path)
  seen, queue, claimed = set(), [path], {}
  while queue:
    current = queue.pop()
    if current in seen:
      continue
    seen.add(current)
    # Unreadable or not Python: the import itself says what is wrong.
    for top in {name.split(".")[0] for name in _imported_names(current)}:
      here = next((f for f in (os.path.join(folder, top + ".py"),
                               os.path.join(folder, top, "__init__.py"))
                   if os.path.isfile(f)), None)
      if here is None:
        continue
      # Claimed by an entry even when not imported yet: one importing it inside its
      # builder would get the other's later.
      loaded = _HELPERS.get(top) or getattr(sys.modules.get(top), "__file__", None)
      if loaded is not None and os.path.abspath(loaded) != here:
        # Another entry's helper, or a module of the standard library or an installed
        # package (a helper named `codecs.py` is the standard library's `codecs`).
        source = ("from another --codec_modules entry" if top in _HELPERS else
                  "installed, or of the standard library")
        raise ValueError(f"{path} imports {top!r} from its folder, but this process "
                         f"already imported another {top!r} ({loaded}, {source}): one "
                         "process holds one module per name, so rename the helper module")
      claimed[top] = here
      if here.endswith(".py") and not here.endswith("__init__.py"):
        queue.append(here)
  _HELPERS.update(claimed)
