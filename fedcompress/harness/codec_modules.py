"""`--codec_modules`: codecs of the user's own, for the binaries and sweeps.

A codec registers itself when its module runs (`fedcompress.register_stage`,
`fedcompress.register`), and the binaries read only registered names. The flag names
modules to import before the codec flags are checked: a `.py` file (by its path) or a
module importable from `PYTHONPATH`. Each is imported once per process, so a sweep that
builds every run's flags in one process registers its codecs once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

from fedcompress.tasks.errors import file_fingerprint

# The user's source files each entry's import brought in besides its own (a package's
# submodules, a helper it imports), by entry: recorded at the first import in the process.
_BROUGHT_IN: dict[str, list[str]] = {}
# Installed code (the standard library, the environment's packages) and fedcompress's own
# (the run records its source) are not the user's codecs.
_NOT_THE_USERS = tuple(os.path.join(os.path.abspath(p), "") for p in
                       {sys.prefix, sys.base_prefix, sys.exec_prefix,
                        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})


def import_codec_modules(entries: Sequence[str]) -> None:
  """Imports each entry (a `.py` path or a module name); one-line ValueError if one fails."""
  for entry in entries:
    before = set(sys.modules)
    try:
      if entry.endswith(".py"):
        _import_file(entry)
      else:
        importlib.import_module(entry)
    except Exception as e:  # Its own code may raise anything: said in one line.
      raise ValueError(f"cannot import {entry}: "
                       f"{type(e).__name__}: {e}") from None
    if entry not in _BROUGHT_IN:
      files = (getattr(sys.modules[name], "__file__", None)
               for name in set(sys.modules) - before)
      _BROUGHT_IN[entry] = sorted({os.path.abspath(f) for f in files
                                   if f and f.endswith(".py")
                                   and not os.path.abspath(f).startswith(_NOT_THE_USERS)})


def fingerprints(entries: Sequence[str]) -> list[str]:
  """`<size>:<sha256>` of each entry's source files, sorted: what a run records of them.

  The codecs are compared on resume by the names they resolve to, and the modules' own
  files sit outside the repository (the run's `dirty` flag misses them): a module
  edited from float16 to float32 between two segments made one run of two codecs (its
  aggregate bits doubled from round 2), without a word. The files are the entry's own
  and, once it is imported, every other source file of the user's its import brought
  in: a package's submodules, a helper module (a review found an edited submodule
  recorded the same).
  """
  out = []
  for entry in entries:
    if entry.endswith(".py"):
      path = os.path.abspath(entry)
    else:
      spec = importlib.util.find_spec(entry)
      path = spec.origin if spec is not None else None
    for source in dict.fromkeys([path, *_BROUGHT_IN.get(entry, [])]):
      out.append((file_fingerprint(source, whole=True) if source else None)
                 or f"unreadable:{source or entry}")
  return sorted(out)


def _import_file(path: str) -> None:
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no file {path}")
  # A name of its own per file, kept in sys.modules: a second import is a no-op, where
  # running the file again would register its codecs twice (refused).
  name = "fedcompress_codecs_of_" + hashlib.sha256(path.encode()).hexdigest()[:16]
  if name in sys.modules:
    return
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except BaseException:
    del sys.modules[name]
    raise
