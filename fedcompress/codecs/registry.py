"""One record per codec, and the registry of codecs by name.

A `Codec` is everything fedcompress knows about one codec, defined once: how to check
its options (and fill in their defaults), how to build its `tensor_encoding` Encoder,
its exact wire size per tensor, its worst-case relative error, and, for entropy
coders, how to count the raw (bit-packed) size of the streams it sends. The built-in
records are made in `fedcompress.codecs.builtin`, the only module that names the
stages together; `register` adds yours.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import provenance
from fedcompress.codecs.accounting import RawBitsRules
from fedcompress.codecs.stages import _common

Builder = Callable[..., te.core.Encoder]
# (num_elements, *, direction, dtype, **options) -> exact bits of one encoded tensor.
BitsFormula = Callable[..., int]
# (num_elements, **options) -> worst-case ||x - x_hat|| / ||x|| over all inputs, or None.
ErrorBound = Callable[..., float | None]
# (**options) -> the complete checked options (defaults filled in); raises ValueError.
OptionCheck = Callable[..., dict[str, Any]]
# (num_elements, **options) -> elements of the values output a next codec in a chain takes.
OutputSize = Callable[..., int]
# (num_elements, **options) -> how much this codec's decoder can amplify an error in the
# values it decodes, relative to the input's norm (see `Codec.error_gain`).
ErrorGain = Callable[..., float]
# (encoder, **coder_options) -> the encoder with its quantized symbols coded (a chain's
# entropy coder acts on the codec before it instead of after it).
SymbolCoder = Callable[..., te.core.Encoder]
# (**options) -> the largest |integer| one client's encoding holds per coordinate.
SumBound = Callable[..., int]

DIRECTIONS = ("broadcast", "aggregate")
# A codec's name: what `--aggregate_encoder`, options (`name(key=value,...)`) and chains
# (`a|b`) can spell.
NAME = re.compile(r"[^\s()|,=]+")


def _signature_defaults(fn: Callable[..., Any]) -> OptionCheck:
  """An option check that only fills in `fn`'s keyword defaults (for user codecs)."""
  signature = inspect.signature(fn)

  def check(**options) -> dict[str, Any]:
    bound = signature.bind(**options)
    bound.apply_defaults()
    out = dict(bound.arguments)
    for name, parameter in signature.parameters.items():
      if parameter.kind is inspect.Parameter.VAR_KEYWORD:
        out.update(out.pop(name, {}))
      elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
        out.pop(name, None)
    return out

  # `option_names` reads it: an unknown option is then named with the valid ones.
  check.__signature__ = signature
  return check


class NoSymbolsError(ValueError):
  """`Codec.code_symbols` was given an encoder that sends no quantized symbols."""


@dataclasses.dataclass(frozen=True)
class Codec:
  """A codec: its option check, Encoder builder, bit formula, error bound, raw-bits rules.

  Attributes:
    name: registry name (what `--aggregate_encoder` and `CodecSpec` take).
    build: `(**checked_options) -> te.core.Encoder`.
    check_options: `(**options) -> dict`, the options checked and completed with their
      defaults; raises ValueError naming a bad option. Default: `build`'s signature.
    bits_formula: exact wire bits of one tensor, `(num_elements, *, direction, dtype,
      **checked_options) -> int`; None where the size depends on the data.
    error_bound: worst-case `||x - x_hat|| / ||x||` over all inputs,
      `(num_elements, **checked_options) -> float | None`; None where none is derived.
    raw_bits_rules: for codecs that send coded streams, the stream's key -> its raw
      (bit-packed) size in-graph (see `fedcompress.codecs.accounting`).
    summary: one line for listings.
    output_size: for codecs whose encoded values are real values another codec may
      take in a chain (`randk`, `topk`, `rotation`, `identity`), their element count,
      `(num_elements, **checked_options) -> int`. With it, the codec's side bits are
      `bits_formula(n) - output_size(n) * width`, which makes a chain's bits exact.
    error_gain: for the same codecs, `g` such that decoding values `y_hat` instead of
      the encoded `y` moves the result by at most `g * e * ||x||` when `||y_hat - y|| <=
      e ||y||`, `(num_elements, **checked_options) -> float` (`n / k` for unbiased
      `randk`, 1 for a rotation); a chain's error bound composes with it.
    code_symbols: for entropy coders, `(encoder, **coder_options) -> encoder` coding the
      symbols `encoder` would bit-pack; in a chain such a codec follows a quantizer
      (`uniform(bits=4)|huffman`) and takes only the options of this function; raises
      `NoSymbolsError` for an encoder with no quantized symbols to code.
    sum_bound: for codecs whose encodings add up (every stage commutes with sum and the
      encoded values are integers with a scale shared by all clients), the largest
      |integer| per coordinate of one client, `(**checked_options) -> int`; secure
      aggregation sizes its field from it and accepts only these codecs. None: the
      codec must be decoded per client.
    sum_decode_exact: for codecs whose encodings are summed before the server decodes
      them, `(**checked_options) -> bool`: whether that decode is linear, so the decoded
      sum is the sum of the clients' decodes (a count sketch's median over rows > 2 is
      not). None: it is (every other codec). Client error feedback needs it: a client's
      residual is its own round trip.
    state_moves: for codecs whose encoder state can change from round to round,
      `(**checked_options) -> bool`: whether it does with these options (`adaptive`'s rate
      offset, learned with its Huffman coder). The server's encode then depends on
      earlier rounds, which a client cannot recompute for error feedback. None: it
      does if its encoder has any state (`moves_state`).
    state_hint: for codecs whose state can move, how to hold it still, said beside a
      refusal of it (error feedback, DP): `adaptive`'s "use coder=fixed".
    plain_note: for codecs whose options mislead where they are sent as they encode
      (outside the secure sum), `(*, direction, **checked_options) -> str | None`, said
      when a run starts: `fixed_int` sends int32 there, so its `bits` set its precision,
      not its size (and on the broadcast its clip clips the model's weights); `topk`,
      `randk` and `countsketch` on the broadcast sparsify the model's weights.
    tensors_note: for codecs that cannot do what their options ask on some tensors,
      `(num_elements, *, direction, **checked_options) -> str | None`, given the sizes
      of the tensors it encodes, said when a run starts: `adaptive`'s budget below what
      width 1 sends on a small tensor.
    revision: 1, raised when the codec's output for the same options changes (a fix
      that changes results). `config.json` records revisions above 1, and a run is
      resumed only on the revision that made it (a run without the record was made on
      revision 1 of every codec), so no run mixes the two and no sweep reuses such a
      run for the other.
  """

  name: str
  build: Builder
  check_options: OptionCheck | None = None
  bits_formula: BitsFormula | None = None
  error_bound: ErrorBound | None = None
  raw_bits_rules: RawBitsRules = dataclasses.field(default_factory=dict)
  summary: str = ""
  output_size: OutputSize | None = None
  error_gain: ErrorGain | None = None
  code_symbols: SymbolCoder | None = None
  sum_bound: SumBound | None = None
  sum_decode_exact: Callable[..., bool] | None = None
  state_moves: Callable[..., bool] | None = None
  state_hint: str = ""
  plain_note: Callable[..., str | None] | None = None
  tensors_note: Callable[..., str | None] | None = None
  revision: int = 1
  # The code a user's codec is made of, for a run's record (`build` where None): the
  # stage class of `register_stage`, whose builder is a closure of fedcompress's.
  source: Callable[..., Any] | None = dataclasses.field(default=None, compare=False)
  # Arguments of the registration that change the codec beside its source
  # (`register_stage`'s `flatten=False`): hashed with it.
  source_settings: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False)
  # Set by `register`: the digest of the user's code in this record, None for
  # fedcompress's own (`provenance.source_digest`; a run records it), and the one runs
  # recorded before it (`provenance.legacy_source_digest`; their resumes compare it).
  source_digest: str | None = dataclasses.field(default=None, compare=False, repr=False)
  legacy_source_digest: str | None = dataclasses.field(default=None, compare=False,
                                                       repr=False)
  # Set by `register`: whether fedcompress's own loader registered it. Any other codec
  # is the user's, also where Python cannot find its source (a REPL, `python -c`),
  # which leaves its digest None.
  builtin: bool = dataclasses.field(default=False, compare=False, repr=False)

  @property
  def sum_compatible(self) -> bool:
    """Whether the clients' encodings add up, so the server can decode only their sum."""
    return self.sum_bound is not None

  def decodes_sums_exactly(self, options: Mapping[str, Any] | None = None) -> bool:
    """Whether the server's decoded sum is the sum of the clients' own decodes."""
    return self.sum_decode_exact is None or self.sum_decode_exact(**self.options(options))

  def moves_state(self, options: Mapping[str, Any] | None = None) -> bool:
    """Whether the codec's encoder state changes from round to round with `options`.

    Without a `state_moves` field (a user's codec, or a chain of codecs that have none)
    an encoder with any state is taken to move it: the built-in codecs without the
    field have none, and a user's adaptive stage would otherwise pass for stateless.
    """
    if self.state_moves is not None:
      return self.state_moves(**self.options(options))
    return bool(tf.nest.flatten(self.encoder(options).initial_state()))

  def options(self, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`options` checked and completed with the codec's defaults.

    Raises:
      ValueError: an unknown option (the message lists the valid ones) or a bad value.
    """
    if options is not None and not isinstance(options, Mapping):
      # 'bits=4' ended in dict()'s "dictionary update sequence element #0 has length 1"
      # here, under bits(), encoder() and relative_error_bound() (review R3 of s48).
      raise ValueError(f"codec {self.name!r}: options must be a mapping such as "
                       f"{{'bits': 4}}, got {options!r} (options as text go to "
                       "make_codec(name, options=...))")
    options = dict(options or {})
    check = self.check_options or _signature_defaults(self.build)
    valid = self.option_names()
    if valid is not None:
      unknown = sorted(set(options) - set(valid))
      if unknown:
        raise ValueError(f"codec {self.name!r} has no option {unknown[0]!r}; its options: "
                         f"{', '.join(valid) or 'none'}")
    try:
      checked = check(**options)
    except TypeError as e:  # A builder signature that binds differently.
      raise ValueError(f"codec {self.name!r}: {e}") from None
    if not isinstance(checked, Mapping):  # A user's check that forgot its `return`.
      raise ValueError(f"codec {self.name!r}: its check_options returned "
                       f"{type(checked).__name__}, not the dict of the checked options")
    return checked

  def option_names(self) -> list[str] | None:
    """The options the codec takes, or None when its check takes any (`**options`)."""
    check = self.check_options or _signature_defaults(self.build)
    parameters = inspect.signature(check).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
      return None
    return [p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL]

  def encoder(self, options: Mapping[str, Any] | None = None) -> te.core.Encoder:
    """The codec's Encoder for `options` (checked here)."""
    checked = self.options(options)
    try:
      encoder = self.build(**checked)
    except TypeError as e:
      # A user codec whose builder takes **options (`register_stage` of a stage class
      # without an __init__) can only refuse an option when it is built.
      raise ValueError(f"codec {self.name!r} cannot be built with options {checked}: "
                       f"{e}") from None
    if not isinstance(encoder, te.core.Encoder):
      # Else tensor_encoding's "The encoder must be an instance of `Encoder`", naming
      # no codec, deep inside the first TFF build.
      raise ValueError(f"codec {self.name!r}: its build returned {type(encoder).__name__}, "
                       f"not a tensor_encoding Encoder{_encoder_hint(encoder)}")
    return encoder

  def bits(self, num_elements: int, options: Mapping[str, Any] | None = None, *,
           direction: str = "aggregate", dtype=tf.float32) -> int:
    """Exact bits of one `num_elements`-element tensor through this codec.

    Raises:
      ValueError: the codec's size depends on the data (no bit formula), a bad option,
        or a direction other than 'broadcast' and 'aggregate'.
    """
    _common.check_choice("direction", direction, DIRECTIONS)
    if not _common.is_integer(num_elements) or num_elements < 0:  # -5 gave 32 bits.
      raise ValueError(f"num_elements must be an integer >= 0, got {num_elements!r}")
    if self.bits_formula is None:
      raise ValueError(f"codec {self.name!r} has no bit formula: its size depends on the "
                       "data, or it was registered without one (Codec(..., bits_formula=...))")
    return self.bits_of_checked(num_elements, self.options(options), direction=direction,
                                dtype=dtype)

  def bits_of_checked(self, num_elements: int, checked: Mapping[str, Any], *,
                      direction: str, dtype=tf.float32) -> int:
    """`bits` for options `options()` returned already, which are not checked again: a
    check may add keys that are no options (a derived `levels` beside `bits`)."""
    dtype = tf.as_dtype(dtype)
    try:
      bits = self.bits_formula(num_elements, direction=direction, dtype=dtype, **checked)
    except ValueError:  # A refusal of the formula's own, which says what it refuses.
      raise
    except Exception as e:  # noqa: BLE001 (a user's formula failing: said in one line)
      try:  # Bound only now: a signature per call costs, and most calls succeed.
        inspect.signature(self.bits_formula).bind(num_elements, direction=direction,
                                                  dtype=dtype, **checked)
      except TypeError as unbound:  # A user's formula of another signature.
        raise ValueError(f"codec {self.name!r}: its bits_formula cannot be called as "
                         "bits_formula(num_elements, *, direction, dtype, **options) with "
                         f"options {checked}: {unbound}") from None
      raise ValueError(f"codec {self.name!r}: its bits_formula failed for {num_elements} "
                       f"elements with options {checked}: {type(e).__name__}: {e}") from e
    # Bits are counted exactly: None (a formula without `return`) or 8064.0 summed into
    # a run's totals as a traceback or as float bit counts.
    if not _common.is_integer(bits) or bits < 0:
      raise ValueError(f"codec {self.name!r}: its bits_formula returned {bits!r} for "
                       f"{num_elements} elements; it must return the exact bits of one "
                       "encoded tensor, a non-negative int")
    return int(bits)

  def relative_error_bound(self, num_elements: int,
                           options: Mapping[str, Any] | None = None) -> float | None:
    """Worst-case `||x - x_hat|| / ||x||` over all inputs (float rounding aside), or None.

    Raises:
      ValueError: `num_elements` is not an integer >= 1 (-5 gave a bound, 0 a
        ZeroDivisionError; review R10 of s48), or a bad option.
    """
    if not _common.is_integer(num_elements) or num_elements < 1:
      raise ValueError(f"num_elements must be an integer >= 1, got {num_elements!r}")
    if self.error_bound is None:
      return None
    return self.error_bound(num_elements, **self.options(options))


def _encoder_hint(built: Any) -> str:
  """How to make an Encoder of what a builder returned instead of one."""
  if isinstance(built, te.core.EncoderComposer):
    return " (an EncoderComposer: return its .make())"
  if isinstance(built, te.core.EncodingStageInterface | te.core.AdaptiveEncodingStageInterface):
    return (" (a stage: return te.core.EncoderComposer(stage).make(), or register the stage "
            "class with register_stage)")
  return ""


_CODECS: dict[str, Codec] = {}
# What registers the built-in codecs, set by `fedcompress.codecs` (this module names no
# codec) and called on the registry's first use. Not at import: importing one stage
# imports that package first, and registering there imported every stage with it (a
# half-edited `eden.py` broke the import of `topk`'s tests).
_builtin_loader: Callable[[], None] | None = None
_loading = False  # The loader registers through `_registered` too.
_BUILTINS: dict[str, Codec] = {}  # The records the loader registered, by name.


def set_builtin_loader(loader: Callable[[], None]) -> None:
  """`loader()` registers the built-in codecs the first time the registry is read."""
  global _builtin_loader
  _builtin_loader = loader


def _registered() -> dict[str, Codec]:
  """The registry, with the built-in codecs in it.

  A load that fails (a stage that does not import) is undone and tried again on the
  next use: kept as done, the registry stayed empty for the process, and a user's codec
  could then take a built-in's name.
  """
  global _builtin_loader, _loading
  if _builtin_loader is not None and not _loading:
    before = set(_CODECS)
    _loading = True
    try:
      _builtin_loader()
      _builtin_loader = None
    except BaseException:
      for name in set(_CODECS) - before:
        del _CODECS[name]
        _BUILTINS.pop(name, None)
      raise
    finally:
      _loading = False
  return _CODECS


# How many times a name was registered or removed: what is cached per codec name (the
# allocator's measured errors) is keyed on it too, so a codec registered again under its
# name (a notebook cell run again, `overwrite=True`) is not taken for the one it replaced.
_change = 0


def registry_change() -> int:
  """A number that differs after every `register` or `unregister` (a cache key)."""
  return _change


def register(codec: Codec, *, overwrite: bool = False) -> Codec:
  """Adds `codec` to the registry under `codec.name` and returns it (as registered: with
  its `source_digest`)."""
  global _change
  if not isinstance(codec.name, str) or not codec.name:
    raise ValueError("codec name must be a non-empty string")
  if not NAME.fullmatch(codec.name):
    # Accepted, it could never be named: every use failed as "not of the form name or
    # name(key=value,...)".
    raise ValueError(f"codec name {codec.name!r} holds a space or one of ( ) | , = which "
                     "the codec flags and chains use to read codecs and their options")
  if codec.name in _registered() and not overwrite:
    raise ValueError(f"codec {codec.name!r} is already registered (pass overwrite=True to "
                     "replace it)")
  # Hashed now, from the code as it was loaded: a module edited on disk afterwards (not
  # reloaded) would otherwise be recorded as code that never ran.
  code = {f.name: getattr(codec, f.name) for f in dataclasses.fields(codec)
          if f.name not in ("name", "summary", "revision", "source_digest",
                            "legacy_source_digest", "builtin")}
  codec = dataclasses.replace(codec, source_digest=provenance.source_digest(code),
                              legacy_source_digest=provenance.legacy_source_digest(code),
                              builtin=_loading)
  _CODECS[codec.name] = codec
  if _loading:
    _BUILTINS[codec.name] = codec
  _change += 1
  return codec


def unregister(name: str) -> None:
  """Removes codec `name` (e.g. one a test or notebook registered); a no-op if absent.

  A built-in codec's name registered over (`overwrite=True`) gets its built-in codec
  back: it was removed, and `uniform`, with every codec built on it, was unknown for the
  rest of the process (review R3 of s48). A built-in codec itself stays.
  """
  global _change
  registered = _registered()
  if name in _BUILTINS:
    registered[name] = _BUILTINS[name]
  else:
    registered.pop(name, None)
  _change += 1


def register_codec(name: str, builder: Builder, *, overwrite: bool = False) -> Codec:
  """Registers `builder(**options) -> te.core.Encoder` under `name`.

  The options are those of `builder`'s signature; for a bit formula, an error bound or
  option checks of your own, register a `Codec` with `register`.
  """
  return register(Codec(name, builder), overwrite=overwrite)


def register_stage(name: str, stage_factory: Callable[..., Any], *, flatten: bool = True,
                   overwrite: bool = False) -> Codec:
  """Registers a single (Adaptive)EncodingStageInterface as a codec.

  Args:
    name: codec name.
    stage_factory: `(**options) -> stage`, typically the stage class itself.
    flatten: reshape the tensor to rank 1 before the stage, as the built-in codecs do.
    overwrite: replace an existing codec of that name.
  """

  def builder(**options) -> te.core.Encoder:
    try:
      stage = stage_factory(**options)
    except ValueError as e:  # The stage's own refusal (float('abc')) named no codec.
      raise ValueError(f"codec {name!r} cannot be built with options {options}: {e}") from None
    composer = te.core.EncoderComposer(stage)
    if flatten:
      composer = composer.add_parent(
          te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)
    return composer.make()

  check = _signature_defaults(_options_source(stage_factory))
  # `flatten` is fedcompress's builder's, not the stage's: a cell changing only it (per-row
  # scales of the unflattened kernel against one scale) resumed a run as the same codec.
  return register(Codec(name, builder, check_options=check, source=stage_factory,
                        source_settings=None if flatten else {"flatten": False}),
                  overwrite=overwrite)


def _options_source(stage_factory: Callable[..., Any]) -> Callable[..., Any]:
  """What takes a stage's options: through tensor_encoding's `tf_style_*` decorators.

  Those wrap the class in one whose constructor is `(*args, **kwargs)`, which would
  take any option (a `bits` given to the codec then dropped, with a warning that it
  takes no width); the user's own `__init__` says which it takes. A stage without one
  keeps the wrapper's: its options are refused when it is built.
  """
  if not (isinstance(stage_factory, type)
          and stage_factory.__init__.__qualname__.startswith("tf_style_")):
    return stage_factory
  own = stage_factory.__bases__[0]
  # tensor_encoding's interfaces are not a stage's own; its concrete stages are
  # (UniformQuantizationEncodingStage's `bits`: skipped with the interfaces, a
  # --aggregate_bits=3 given to it was dropped, with a warning that it took no width).
  interfaces = (object, te.core.EncodingStageInterface, te.core.AdaptiveEncodingStageInterface)
  if any("__init__" in vars(c) for c in own.__mro__ if c not in interfaces):
    return own
  return stage_factory


def available_codecs() -> list[str]:
  """Names of the registered codecs, sorted."""
  return sorted(_registered())


def sum_compatible_codecs() -> list[str]:
  """Names of the registered codecs whose encodings add up (secure aggregation), sorted."""
  return sorted(name for name, codec in _registered().items() if codec.sum_compatible)


def get_codec(name: str) -> Codec:
  """The record of codec `name`; ValueError listing the valid names if there is none."""
  try:
    return _registered()[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"unknown codec {name!r}; valid codecs: {', '.join(available_codecs())}") from None
