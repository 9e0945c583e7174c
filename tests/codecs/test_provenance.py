"""What a user codec's recorded digest covers (`fedcompress.codecs.provenance`).

Each case was once missed, so an edited codec resumed a run as the same one (review R4
of session 41): a `functools.partial`'s bound dtype (bits doubled from the next round),
a default changed in a `Codec`'s own `check_options`, a notebook subclass that only sets
an attribute (the base class alone was hashed), and a module edited on disk after its
import, whose new text was recorded for code that never ran.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import sys
import types

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs
from fedcompress.codecs import Codec, get_codec, register, register_stage, unregister

NAME = "provenance_of_a_user"


@pytest.fixture(autouse=True)
def _unregister():
  yield
  unregister(NAME)


class _CastStage(te.stages.IdentityEncodingStage):
  """A user's stage with an option a partial can bind."""

  def __init__(self, dtype="float16"):
    self.dtype = dtype


def _digest_of(factory, **kw) -> str | None:
  return register_stage(NAME, factory, overwrite=True, **kw).source_digest


def test_a_plain_users_class_is_its_text_alone():
  # What runs recorded before the other fields were hashed: their records still resume.
  assert _digest_of(_CastStage) == hashlib.sha256(
      inspect.getsource(_CastStage).encode()).hexdigest()[:16]


def test_fedcompress_own_codecs_have_none():
  own = [name for name in codecs.available_codecs() if getattr(
      get_codec(name).source or get_codec(name).build, "__module__", "").startswith(
          ("fedcompress.", "tensorflow_model_optimization."))]
  assert {"identity", "uniform", "uniform_huffman", "adaptive", "eden"} <= set(own)
  assert {name: get_codec(name).source_digest for name in own} == dict.fromkeys(own)


def test_a_partials_bound_arguments_count():
  half = _digest_of(functools.partial(_CastStage, dtype="float16"))
  assert half is not None
  assert _digest_of(functools.partial(_CastStage, dtype="float16")) == half
  assert _digest_of(functools.partial(_CastStage, dtype="float32")) != half
  # Of a class not the user's too: the bound options are the user's code.
  bits = _digest_of(functools.partial(te.stages.UniformQuantizationEncodingStage, bits=8))
  assert bits is not None
  assert _digest_of(functools.partial(te.stages.UniformQuantizationEncodingStage,
                                      bits=2)) != bits


def _check_eight(**options):
  return {"bits": options.get("bits", 8)}


def _check_two(**options):
  return {"bits": options.get("bits", 2)}


def test_every_users_function_of_a_record_counts():
  def build(**options):
    return te.encoders.uniform_quantization(options["bits"])

  digests = [register(Codec(NAME, build, check_options=check), overwrite=True).source_digest
             for check in (_check_eight, _check_eight, _check_two)]
  assert digests[0] == digests[1] != digests[2]
  with_formula = register(Codec(NAME, build, check_options=_check_eight,
                                bits_formula=lambda n, **o: 32 + n * o["bits"]),
                          overwrite=True).source_digest
  assert with_formula not in digests


def _cell_class(dtype: str):
  """`class Wide(_CastStage): DTYPE = ...` as a Jupyter cell defines it: in a module
  without a file, and with no function of its own to find its text by."""
  namespace = {"__name__": "__main__", "_CastStage": _CastStage, "tf": tf}
  exec(f"class Wide(_CastStage):\n  DTYPE = tf.{dtype}\n", namespace)  # noqa: S102
  return namespace["Wide"]


def test_a_cells_subclass_of_attributes_only_counts_its_attributes(monkeypatch):
  monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
  base = _digest_of(_CastStage)
  half = _digest_of(_cell_class("float16"))
  assert half not in (None, base)
  assert _digest_of(_cell_class("float16")) == half
  assert _digest_of(_cell_class("float32")) != half


def test_a_module_edited_after_its_import_keeps_the_digest_of_what_ran(tmp_path,
                                                                       monkeypatch):
  path = tmp_path / "provenance_user_codec.py"
  path.write_text("from tensorflow_model_optimization.python.core.internal import "
                  "tensor_encoding as te\n"
                  "from fedcompress.codecs import register_stage\n\n"
                  "class Cast(te.stages.IdentityEncodingStage):\n  DTYPE = 'float16'\n\n"
                  f"register_stage({NAME!r}, Cast, overwrite=True)\n")

  def load():
    spec = importlib.util.spec_from_file_location("provenance_user_codec", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # As an import does.
    spec.loader.exec_module(module)
    return get_codec(NAME).source_digest

  loaded = load()
  path.write_text(path.read_text().replace("float16", "float32"))
  # Not reloaded: what runs is still float16, and so is its digest.
  assert get_codec(NAME).source_digest == loaded
  assert load() != loaded
