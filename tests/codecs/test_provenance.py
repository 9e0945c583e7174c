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

import numpy as np
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
  # With the scheme's name first; the text alone is what runs recorded before the other
  # fields were hashed, which their resumes compare (legacy_source_digest).
  text = inspect.getsource(_CastStage)
  codec = register_stage(NAME, _CastStage, overwrite=True)
  assert codec.source_digest == hashlib.sha256(
      f"fedcompress codec digest 2\n{text}".encode()).hexdigest()[:16]
  assert codec.legacy_source_digest == hashlib.sha256(text.encode()).hexdigest()[:16]


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


class _Clip(te.stages.IdentityEncodingStage):
  def __init__(self, bounds=None, init=None):
    self.bounds, self.init = bounds, init


class _Scale:
  """A callable object a partial binds (its repr holds its address)."""

  def __init__(self, factor):
    self.factor = factor

  def __call__(self, x):
    return x * self.factor


def test_bound_arrays_and_objects_count_by_their_values():
  # An array's values were hashed as its type alone (an edited bound went unseen), and an
  # object's repr held its address (a new process never matched: no resume).
  small = _digest_of(functools.partial(_Clip, bounds=np.array([-1.0, 1.0])))
  assert _digest_of(functools.partial(_Clip, bounds=np.array([-1.0, 1.0]))) == small
  assert _digest_of(functools.partial(_Clip, bounds=np.array([-1e-4, 1e-4]))) != small
  scaled = _digest_of(functools.partial(_Clip, init=_Scale(2.0)))
  assert _digest_of(functools.partial(_Clip, init=_Scale(2.0))) == scaled
  assert _digest_of(functools.partial(_Clip, init=_Scale(3.0))) != scaled


def _builder_of(bits):
  def build(**options):
    return te.encoders.uniform_quantization(bits)
  return build


def test_a_builders_closure_counts():
  digests = [register(Codec(NAME, _builder_of(bits)), overwrite=True).source_digest
             for bits in (8, 8, 2)]
  assert digests[0] == digests[1] != digests[2]


def _cell_with_methods(body: str, dtype: str, filename: str | None):
  """`class Cast(_CastStage)` with a method, as a cell defines it: its text in linecache
  under `filename` (a plain cell), or nowhere (None: a `%%time` cell, IPython's terminal)."""
  import linecache

  source = f"class Cast(_CastStage):\n  DTYPE = {dtype!r}\n{body}"
  if filename:
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
  namespace = {"__name__": "__main__", "_CastStage": _CastStage, "tf": tf}
  exec(compile(source, filename or "<timed exec>", "exec"), namespace)  # noqa: S102
  return namespace["Cast"]


def test_a_cells_methods_its_text_is_found_by_or_nothing(monkeypatch):
  monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
  method = "  def get_params(self):\n    return {}, {}\n"
  # Its text where Python can read a method's file, through a tf.function too.
  traced = "  @tf.function\n  def double(self, x):\n    return 2 * x\n"
  for number, body in enumerate((method, traced)):
    half, wide = (_digest_of(_cell_with_methods(
        body, dtype, f"/tmp/ipykernel_of_a_user/{number}{dtype}.py"))
                  for dtype in ("float16", "float32"))
    assert None not in (half, wide) and half != wide
  # Where it cannot (a `%%time` cell): nothing of the cell's, not a digest of its
  # attribute names that no edit changes. The base class's text is still recorded.
  for dtype in ("float16", "float32"):
    assert _digest_of(_cell_with_methods(method, dtype, None)) == _digest_of(_CastStage)


def test_a_record_of_the_main_code_alone_still_resumes():
  # Before 6ad6c42 a run recorded its codec's main code alone: a Codec with a bit formula
  # of its own, unchanged, was refused as other code.
  from fedcompress.harness import rundir
  from fedcompress.harness.experiment import ExperimentConfig

  def build(**options):
    return te.encoders.uniform_quantization(options.get("bits", 8))

  codec = register(Codec(NAME, build, check_options=_check_eight), overwrite=True)
  old_digest = hashlib.sha256(inspect.getsource(build).encode()).hexdigest()[:16]
  assert codec.source_digest != old_digest == codec.legacy_source_digest
  # A record of today's scheme is compared by it: a check edited beside an unchanged
  # builder is another codec (it passed as the builder's legacy digest, R9 of s41).
  from fedcompress.codecs import CodecSpec

  config = ExperimentConfig(root_output_dir="/unused", experiment_name="r",
                            aggregate_codec=CodecSpec(NAME))
  register(Codec(NAME, build), overwrite=True)
  alone = {k: rundir.jsonable(v) for k, v in config.record().items()}
  register(Codec(NAME, build, check_options=_check_two), overwrite=True)
  assert [d.split(" ")[0] for d in rundir.differences(
      alone, config.record_compared_with(alone))] == [rundir.CODEC_SOURCES_DIGEST]
  register(Codec(NAME, build, check_options=_check_eight), overwrite=True)
  old = {**config.record(), rundir.CODEC_SOURCES_DIGEST: f"{NAME}={old_digest}"}
  assert rundir.differences(old, config.record_compared_with(old)) == []
  edited = {**old, rundir.CODEC_SOURCES_DIGEST: f"{NAME}=0123456789abcdef"}
  assert [d.split(" ")[0] for d in rundir.differences(
      edited, config.record_compared_with(edited))] == [rundir.CODEC_SOURCES_DIGEST]


def _quantizer(bits):
  def quantize(**options):
    return te.encoders.uniform_quantization(bits)
  return quantize


def _builder_around(inner):
  def build(**options):
    return inner(**options)
  return build


class _QuantCodec:
  def __init__(self, bits):
    self.bits = bits

  def build(self, **options):
    return te.encoders.uniform_quantization(self.bits)

  def __call__(self, **options):
    return self.build(**options)


def test_nested_closures_bound_methods_and_callable_objects_count_their_values():
  # Review R8 (s41): each gave one digest for 8 and 2 bits (a callable object none), so
  # a run at 8 bits resumed at 2.
  for make in (lambda bits: _builder_around(_quantizer(bits)),
               lambda bits: _QuantCodec(bits).build, _QuantCodec):
    digests = [register(Codec(NAME, make(bits)), overwrite=True).source_digest
               for bits in (8, 8, 2)]
    assert None not in digests and digests[0] == digests[1] != digests[2]


def test_what_the_process_did_before_does_not_change_a_digest():
  # Keras numbers its layers' names as they are made, and a module's attributes grow
  # with the process's imports: both made unchanged code another codec on resume. A
  # tf.Variable ended registration in a TensorFlow traceback.
  import json as a_module

  for value in (tf.keras.layers.Dense(3), a_module, tf.Variable([1.0, 2.0])):
    first = _digest_of(functools.partial(_Clip, init=value))
    tf.keras.layers.Dense(3)  # The next Dense is named dense_<n+1>.
    assert _digest_of(functools.partial(_Clip, init=value)) == first


def test_the_legacy_digest_is_what_runs_recorded_before(monkeypatch):
  # A cell's subclass with no method recorded its base class's text then (the bug the
  # new digest fixes); its legacy digest must be that, or the run would be refused.
  monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
  cell = _cell_class("float32")
  base = hashlib.sha256(inspect.getsource(_CastStage).encode()).hexdigest()[:16]
  codec = register_stage(NAME, cell, overwrite=True)
  assert codec.legacy_source_digest == base != codec.source_digest


class _ScaleLayer(tf.keras.layers.Layer):
  def __init__(self, s):
    super().__init__()
    self.s = s

  def call(self, x):
    return x * self.s


class _ScaleLayerEdited(tf.keras.layers.Layer):
  def __init__(self, s):
    super().__init__()
    self.s = s

  def call(self, x):
    return x * self.s * 2


class _Helped:
  def __init__(self, bits):
    self.bits = bits

  def helper(self, x):
    return x + 1

  def build(self, **options):
    return te.encoders.uniform_quantization(self.helper(self.bits))


class _HelpedEdited(_Helped):
  def helper(self, x):
    return x + 2


def _make_stage(dtype):
  class Cast(_CastStage):
    DTYPE = dtype
  return Cast


def test_values_count_by_what_they_hold_and_the_class_code_they_run():
  # Review R9 (s41): each of these gave one digest for two settings, or two for one.
  import argparse
  import dataclasses as dc

  @dc.dataclass(slots=True)
  class Config:
    bits: int

  def bound(value):
    return _digest_of(functools.partial(_Clip, init=value))

  # A user's Keras layer: by its class's code, not Keras's numbered names.
  assert bound(_ScaleLayer(0.5)) == bound(_ScaleLayer(0.5)) != bound(_ScaleLayerEdited(0.5))
  for one, other in [(Config(8), Config(16)),
                     (np.random.default_rng(0), np.random.default_rng(1)),
                     (tf.Variable(0.5), tf.Variable(0.25)),
                     (argparse.Namespace(bits=8), argparse.Namespace(bits=4)),
                     ({"a": {"b": {"c": [[8]]}}}, {"a": {"b": {"c": [[4]]}}})]:
    assert bound(one) == bound(one) != bound(other), one
  # A dict in another insertion order (one built from a set) is the same dict.
  assert bound(dict.fromkeys(["kernel", "bias"], 1)) == bound(dict.fromkeys(["bias", "kernel"], 1))
  # A bound method: its object's class's other methods count too.
  digests = [register(Codec(NAME, kind(8).build), overwrite=True).source_digest
             for kind in (_Helped, _Helped, _HelpedEdited)]
  assert digests[0] == digests[1] != digests[2]
  # A class a factory makes: its values (the statement's text does not change).
  assert _digest_of(_make_stage("float16")) == _digest_of(_make_stage("float16")) != (
      _digest_of(_make_stage("float32")))
  # One that holds itself is finite.
  loop = []
  loop.append(loop)
  assert bound(loop) is not None


class _DocSlots:
  __slots__ = {"bits": "the width"}

  def __init__(self, bits):
    self.bits = bits


class _Lazy:
  """Answers every attribute from a dict, KeyError for the rest."""

  __slots__ = ("table",)

  def __init__(self, **table):
    self.table = table

  def __getattr__(self, name):
    return self.table[name]


def _make_holder(config):
  class Holder:  # A factory's class holding a config object among its values.
    CONFIG = config

    def __init__(self, **options):
      self.options = options
  return Holder


def test_what_registration_met_in_review_r10_is_hashed_not_a_traceback():
  # Review R10 (s41): each of these ended register() in a traceback, or gave a digest
  # that depended on the process's hash order.
  shared = (8, 4)

  def bound(value):
    return _digest_of(functools.partial(_Clip, init=value))

  # One value held twice: the same text whatever order the dict was built in.
  assert bound({"kernel": shared, "bias": shared}) == bound({"bias": shared, "kernel": shared})
  assert bound(_DocSlots(8)) != bound(_DocSlots(4))
  assert bound(_Lazy(bits=8)) != bound(_Lazy(bits=4))
  assert _digest_of(_make_holder(_Lazy(bits=8))) != _digest_of(_make_holder(_Lazy(bits=4)))
  chain = abs
  for _ in range(300):  # Closures of closures, deeper than Python's recursion allows.
    chain = (lambda f: lambda x: f(x))(chain)
  assert bound(chain) is not None


@functools.lru_cache
def _cached_eight(**options):
  return te.encoders.uniform_quantization(8)


@functools.lru_cache
def _cached_two(**options):
  return te.encoders.uniform_quantization(2)


def test_a_builder_under_lru_cache_is_its_own_code():
  # Its digest was None: an edited builder resumed as the same codec.
  digests = [register(Codec(NAME, build), overwrite=True).source_digest
             for build in (_cached_eight, _cached_two)]
  assert None not in digests and digests[0] != digests[1]
