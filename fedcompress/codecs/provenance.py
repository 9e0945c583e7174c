"""What user code a codec is made of, hashed when it is registered.

A run records a codec by its name and options; one registered again under its name with
other code (a notebook cell edited from float16 to float32 and run again) would resume
the run as another codec, its bits doubled from the next round. So `register` stores,
with each codec of the user's, a digest of the code it was registered with
(`Codec.source_digest`), and a run records the digests of the codecs it uses.

The digest is taken at registration, from the code as Python loaded it then: read at
record time, a module edited on disk after its import (and not reloaded) recorded text
that never ran. It covers every callable of the record that is the user's (the builder
or stage class, an option check, a bit formula, ...), the values a function's closure
or a bound method's object holds, a `functools.partial`'s bound arguments, and, for a
class, each class of the user's in its MRO (and the values of one a factory made).
Values count by what they hold: arrays by their bytes, objects of the user's (or of a
class of the user's derived from a library's, such as a Keras layer) by their class's
text and their values or (derived) the text alone, an installed library's objects by
their type, modules by name, dicts and sets in sorted order. A value the code reads
from elsewhere in its module is not covered (`--codec_modules` hashes whole files), nor
is code whose source Python cannot find (exec'd text, `python -c`, a `%%time` cell).
Records made before (the main code's text alone) are compared with
`legacy_source_digest`, so those runs still resume.
"""

from __future__ import annotations

import argparse
import array
import ast
import collections
import decimal
import fractions
import functools
import hashlib
import inspect
import linecache
import os
import sys
import types
from typing import Any

import numpy as np
import tensorflow as tf

# Installed code (the standard library, the environment's packages) and fedcompress's own
# (the run records its commit) are not the user's codecs.
_INSTALLED = tuple(os.path.join(os.path.abspath(p), "") for p in
                   {sys.prefix, sys.base_prefix, sys.exec_prefix})
_NOT_THE_USERS = (*_INSTALLED,
                  os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ""))


def is_users_source(path: str) -> bool:
  """Whether `path` is a source file of the user's: not installed, not fedcompress's own,
  whose versions a run records otherwise (the lock file, the commit)."""
  return path.endswith(".py") and not os.path.abspath(path).startswith(_NOT_THE_USERS)


def source_digest(fields: dict[str, Any]) -> str | None:
  """sha256 (16 hex digits) of the user's code among a codec record's `fields` (name ->
  value; `source` stands for `build` where set), or None if none of it is the user's."""
  main = fields.get("source") or fields.get("build")
  parts = [text] if (text := users_text(main)) is not None else []
  for name, value in fields.items():
    if name in ("source", "build") or value is None:
      continue
    values = value.values() if isinstance(value, dict) else (value,)
    # A partial of fedcompress's own function there is fedcompress's (its entropy coders'
    # raw-bit rules); as the main code it is the user's, whatever it binds.
    texts = [t for v in values if callable(v) and not (
        isinstance(v, functools.partial) and users_text(v.func) is None)
             and (t := users_text(v)) is not None]
    parts += [f"# {name}\n{t}" for t in texts]
  if parts and (settings := fields.get("source_settings")):
    parts.append(f"# registered with {sorted(settings.items())!r}")
  # The scheme first: a digest of this scheme never equals a legacy one of the same code,
  # so a resume compares a record by the scheme that made it (an edited check_options
  # beside an unchanged builder passed as the legacy digest of the builder alone).
  return _digest([_SCHEME, *parts]) if parts else None


_SCHEME = "fedcompress codec digest 2"


def legacy_source_digest(fields: dict[str, Any]) -> str | None:
  """The digest runs recorded before `source_digest` (6ad6c42): the text of the main
  code alone, for a class of the first class of the user's in its MRO, read as
  `source_digest` reads it. A resume compares a record made then with this, so that
  those runs still resume where their codec's code did not change."""
  main = fields.get("source") or fields.get("build")
  if main is None:
    return None
  candidates = inspect.getmro(main) if isinstance(main, type) else (main,)
  try:
    return _digest([next((t for c in candidates if (t := _legacy_own_text(c)) is not None),
                         None)])
  except Exception:  # noqa: BLE001 (the reader then failed too: no run recorded one)
    return None


def _legacy_own_text(code: Any) -> str | None:
  """1a4c582's reader, kept as it was (records made with it must match it; `_own_text`
  has changed since): a notebook class's statement through its first readable method,
  nothing for one with no method (its base class was hashed then)."""
  try:
    if not is_users_source(inspect.getsourcefile(code) or ""):
      return None
    return inspect.getsource(code)
  except (OSError, TypeError):
    pass
  if not isinstance(code, type):
    return None
  for member in vars(code).values():
    member = getattr(member, "fget", member)
    function = getattr(member, "__func__", member)
    if inspect.isfunction(function) and _legacy_own_text(function) is not None:
      return _class_text(code, function.__code__)
  return None


def _digest(parts: list[str | None]) -> str | None:
  parts = [p for p in parts if p is not None]
  return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16] if parts else None


def users_text(code: Any, texts: _Texts | None = None) -> str | None:
  """The text of the user's own code behind `code`, or None (fedcompress's own,
  installed code, or code whose source Python cannot find).

  A class is the text of each class of the user's in its MRO (tensor_encoding's
  `tf_style_encoding_stage`, which the README's example stage uses, wraps the class in a
  subclass of its own, defined in site-packages), and for one made inside a function
  its own values and its methods' closures. A function is its text and the values its
  closure holds; a bound method its object's class and values, as a callable object. A
  `functools.partial` is its function's text (or name, for a function not the user's)
  and its bound arguments.
  """
  texts = texts or _Texts()
  if isinstance(code, functools.partial):
    inner = users_text(code.func, texts) or _qualified_name(code.func)
    return f"{inner}\n# functools.partial{texts.of((code.args, code.keywords))}"
  if isinstance(code, type):
    parts = [t for c in inspect.getmro(code) if (t := _own_text(c)) is not None]
    for c in inspect.getmro(code):
      if parts and "<locals>" in c.__qualname__ and _own_text(c) is not None:
        # Made by a factory (`make_stage(dtype)`): its statement's text does not change
        # with the factory's arguments, its values and methods' closures do.
        parts.append(f"# {c.__qualname__}{texts.of(_class_values(c))}")
    return "\n".join(parts) if parts else None
  if inspect.ismethod(code):  # `Quantizer(bits=8).build`: its object's class and values.
    inner = users_text(code.__func__, texts)
    return None if inner is None else f"{inner}\n# self{texts.of(code.__self__)}"
  if not inspect.isroutine(code):  # A callable object: its class, and its values.
    return texts.of(code) if callable(code) and users_text(type(code)) is not None else None
  code = _unwrapped(code)  # A builder under `functools.lru_cache`: its own code.
  text = _own_text(code)
  cells = getattr(code, "__closure__", None) or ()
  if text is None or not cells:
    return text
  # A value captured from the enclosing function (a builder made by a factory).
  return f"{text}\n# closure{texts.of(tuple(_cell_value(c) for c in cells))}"


def _class_values(cls: type) -> dict[str, Any]:
  """A class's own values, and its own functions' closure values."""
  values = {}
  for name, member in vars(cls).items():
    if name.startswith("__"):
      continue
    function = _function_of(member)
    values[name] = (tuple(_cell_value(c) for c in function.__closure__ or ())
                    if function is not None else member)
  return values


def _cell_value(cell) -> Any:
  try:
    return cell.cell_contents
  except ValueError:  # An empty cell (a name assigned after the function was made).
    return None


def _own_text(code: Any) -> str | None:
  """`code`'s source if it is the user's; for a class without a file, its statement's."""
  try:
    if not is_users_source(inspect.getsourcefile(code) or ""):
      return None
    return inspect.getsource(code)
  except (OSError, TypeError):  # Built in, or defined where Python keeps no file.
    pass
  if not isinstance(code, type) or not _defined_without_a_file(code):
    return None
  # A class of a notebook cell: its module (__main__) has no file, so Python finds no
  # source for the class (OSError, which ended the README's example in Jupyter before
  # round 1), but its methods keep the cell's file, which Python can read: the class's
  # whole text is found there (its methods alone missed an edited class attribute, the
  # README's float16 -> float32).
  methods = [_function_of(member) for member in vars(code).values()]
  methods = [f for f in methods if f is not None]
  for function in methods:
    if (_own_text(function) is not None
        and (text := _class_text(code, function.__code__)) is not None):
      return text
  if not methods:
    # A cell's class with no method of its own (`class F32(CastStage): DTYPE =
    # tf.float32`): nothing to find its text by, so its own values stand for it (the
    # base class alone was hashed, and the edit went unseen).
    own = {k: v for k, v in vars(code).items() if not k.startswith("__")}
    return f"class {code.__qualname__}: {_Texts().of(own)}"
  # Methods whose text Python cannot read (a `%%time` cell, the IPython terminal): the
  # class's own values alone would miss an edited method, so nothing is recorded, as
  # for code of no file.
  return None


def _function_of(member: Any) -> Any:
  """The Python function a class member runs (through a property, a static or class
  method, `functools.wraps` decorators and `tf.function`), or None."""
  if isinstance(member, property):
    member = member.fget
  if isinstance(member, (staticmethod, classmethod)):
    member = member.__func__
  if type(member).__name__ == "Function" and hasattr(type(member), "python_function"):
    member = member.python_function  # A tf.function's.
  return _unwrapped(member) if inspect.isfunction(_unwrapped(member)) else None


def _unwrapped(code: Any) -> Any:
  """`code` under its `functools.wraps` decorators (an `lru_cache`'s), if it has any."""
  try:
    return inspect.unwrap(code) if callable(code) else code
  except ValueError:  # A wrapper loop (a proxy object answers every attribute).
    return code


def _defined_without_a_file(cls: type) -> bool:
  module = sys.modules.get(cls.__module__)
  return module is not None and getattr(module, "__file__", None) is None and (
      cls.__module__ not in sys.builtin_module_names)


def _class_text(cls: type, method_code: Any) -> str | None:
  """The text of the class statement named `cls.__name__` around `method_code` in its
  file (linecache holds a notebook cell's), decorators included."""
  lines = linecache.getlines(method_code.co_filename)
  try:
    tree = ast.parse("".join(lines))
  except (SyntaxError, ValueError):
    return None
  for node in ast.walk(tree):
    if (isinstance(node, ast.ClassDef) and node.name == cls.__name__
        and node.lineno <= method_code.co_firstlineno <= node.end_lineno):
      first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
      return "".join(lines[first - 1:node.end_lineno])
  return None


def _qualified_name(code: Any) -> str:
  """A function's or class's module and name; an object's as `_Texts` writes it (never
  its `repr`, which may hold its address)."""
  if hasattr(code, "__qualname__"):
    return f"{getattr(code, '__module__', '')}.{code.__qualname__}"
  return _Texts().of(code)


class _Texts:
  """Texts of values, the same in every process (no memory addresses, no set or dict
  order the process chose) and changing with their contents, for one digest.

  An object's text is the same wherever it comes (made once, then reused; a long one
  by its sha256), so neither the order a set or dict is walked in nor an object held
  twice changes the whole; an object met again inside itself is `<cycle>`. Past
  `_MAX_DEPTH` levels (closures of closures included) a value is its type.
  """

  _MAX_DEPTH = 12

  def __init__(self):
    self._made: dict[int, str] = {}
    self._open: set[int] = set()
    self._held: list[Any] = []  # Alive until the digest is made: ids are not reused.
    self._depth = 0

  def of(self, value: Any) -> str:
    if isinstance(value, (bool, int, float, complex, str, bytes, type(None), tf.DType,
                          decimal.Decimal, fractions.Fraction, range)):
      return repr(value)
    if isinstance(value, (np.ndarray, np.generic)):
      array = np.asarray(value)
      data = (array.tobytes() if array.dtype != object
              else self.of(array.tolist()).encode())
      return f"array({array.dtype}, {array.shape}, {hashlib.sha256(data).hexdigest()})"
    if isinstance(value, types.ModuleType):
      return f"module {value.__name__}"  # Its attributes grow as the process imports.
    key = id(value)
    if key in self._made:
      return self._made[key]
    if key in self._open:
      return "<cycle>"
    if self._depth >= self._MAX_DEPTH:
      return type(value).__qualname__
    self._open.add(key)
    self._held.append(value)
    self._depth += 1
    try:
      text = self._new(value)
    except Exception:  # noqa: BLE001 (a value's own code failed: its type stands for it)
      text = f"{type(value).__module__}.{type(value).__qualname__}"
    finally:
      self._depth -= 1
      self._open.discard(key)
    if len(text) > 256:
      text = f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"
    self._made[key] = text
    return text

  def _new(self, value: Any) -> str:
    kind = type(value)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(value, (tuple, list, collections.deque, array.array)):
      return f"{name}({', '.join(self.of(v) for v in value)})"
    if isinstance(value, (set, frozenset)):
      return f"{name}({', '.join(sorted(self.of(v) for v in value))})"
    if isinstance(value, (dict, types.MappingProxyType, collections.ChainMap)):
      # Sorted: a dict built from a set has the process's hash order.
      items = sorted(f"{self.of(k)}: {self.of(v)}" for k, v in value.items())
      return f"{name}{{{', '.join(items)}}}"
    if isinstance(value, functools.partial):
      return (f"partial({self.of(value.func)}, "
              f"{self.of((value.args, value.keywords))})")
    if isinstance(value, type) or inspect.isroutine(value):
      return users_text(value, self) or _qualified_name(value)
    if isinstance(value, np.random.Generator):
      return f"{name}{self.of(value.bit_generator.state)}"
    if isinstance(value, (tf.Tensor, tf.Variable)):
      try:  # An eager value; a graph tensor or a resource handle has none.
        return f"{name}{self.of(value.numpy())}"
      except (AttributeError, TypeError, ValueError, NotImplementedError, tf.errors.OpError):
        return name
    own = _own_values(value)
    if any(_installed(c) for c in kind.__mro__ if c is not object) and not isinstance(
        value, (types.SimpleNamespace, argparse.Namespace)):
      # An installed library's object (a Keras layer), or one of a class of the user's
      # derived from it: its attributes hold what the process did before (Keras numbers
      # its layers' names as they are made: a cell run twice was another codec). Its
      # class's text stands for it.
      return f"{name}{users_text(kind) or ''}"
    return f"{name}{users_text(kind) or ''}{self.of(own)}"


def _own_values(value: Any) -> dict[str, Any]:
  """An object's attributes: its `__dict__`'s and its `__slots__`' (a slotted dataclass),
  read without running its `__getattr__`."""
  try:  # The instance's own dict, as `object` finds it (not a `__getattr__`'s answer).
    attributes = object.__getattribute__(value, "__dict__")
  except AttributeError:
    attributes = {}
  own = {k: v for k, v in attributes.items() if not k.startswith("__")} if isinstance(
      attributes, dict) else {}
  for cls in type(value).__mro__:
    slots = cls.__dict__.get("__slots__", ())
    for slot in (slots,) if isinstance(slots, str) else tuple(slots):  # A dict's keys too.
      if isinstance(slot, str) and not slot.startswith("__") and slot not in own:
        try:
          own[slot] = inspect.getattr_static(value, slot).__get__(value, type(value))
        except Exception:  # noqa: BLE001 (an unset slot, or a descriptor that fails)
          continue
  return own


def _installed(kind: type) -> bool:
  """Whether `kind` is defined by the standard library or an installed package (not the
  user's code, not fedcompress's)."""
  try:
    path = inspect.getsourcefile(kind) or ""
  except (OSError, TypeError):  # Built in, or of no file (a notebook's).
    return kind.__module__ in sys.builtin_module_names or kind.__module__ == "builtins"
  return os.path.abspath(path).startswith(_INSTALLED)
