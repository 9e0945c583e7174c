"""Named codec registry: a name -> a `tensor_encoding` Encoder builder.

A codec turns one tensor into an encoded structure and back. The registry holds
builders `(**options) -> te.core.Encoder`; `CodecSpec` adds the per-tensor policy of
the TFF tutorial (only tensors with more than `threshold` elements are encoded, the
rest go through `identity`) and wraps the encoder as a `SimpleEncoder` for broadcast or
a `GatherEncoder` for aggregation.

Register your own stage in a few lines::

    class NegateStage(te.core.EncodingStageInterface): ...

    fedcompress.register_stage("negate", NegateStage)
    spec = fedcompress.CodecSpec("negate")
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

EncoderBuilder = Callable[..., te.core.Encoder]

DEFAULT_THRESHOLD = 10_000
_REGISTRY: dict[str, EncoderBuilder] = {}


def register_codec(name: str, builder: EncoderBuilder, *, overwrite: bool = False) -> None:
  """Registers `builder(**options) -> te.core.Encoder` under `name`."""
  if not name or not isinstance(name, str):
    raise ValueError("codec name must be a non-empty string")
  if name in _REGISTRY and not overwrite:
    raise ValueError(f"codec {name!r} is already registered (pass overwrite=True to replace)")
  _REGISTRY[name] = builder


def register_stage(name: str, stage_factory: Callable[..., Any], *, flatten: bool = True,
                   overwrite: bool = False) -> None:
  """Registers a single (Adaptive)EncodingStageInterface as a codec.

  Args:
    name: codec name.
    stage_factory: `(**options) -> stage`, typically the stage class itself.
    flatten: reshape the tensor to rank 1 before the stage, as the built-in codecs do.
    overwrite: replace an existing codec of that name.
  """

  def builder(**options) -> te.core.Encoder:
    composer = te.core.EncoderComposer(stage_factory(**options))
    if flatten:
      composer = composer.add_parent(
          te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY)
    return composer.make()

  register_codec(name, builder, overwrite=overwrite)


def available_codecs() -> list[str]:
  return sorted(_REGISTRY)


def get_builder(name: str) -> EncoderBuilder:
  try:
    return _REGISTRY[name]
  except KeyError:
    raise ValueError(
        f"unknown codec {name!r}; valid codecs: {', '.join(available_codecs())}") from None


def _check_bits(bits: int) -> int:
  if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
    raise ValueError(f"bits must be an integer in 1..16, got {bits!r}")
  return bits


def _identity() -> te.core.Encoder:
  return te.encoders.identity()


def _uniform(bits: int = 8, deterministic: bool = False) -> te.core.Encoder:
  # Stochastic rounding (tensor_encoding's default) is unbiased; deterministic
  # rounding halves the worst-case error and makes results exactly reproducible.
  # tensor_encoding's `uniform_quantization` encoder, stage for stage, with two stages
  # swapped for faster equivalents: stochastic rounding in fewer passes (same
  # distribution) and bit-packing that writes the same words (8 bits).
  from fedcompress.codecs.stages.bitpack28 import Bitpacking28EncodingStage  # (stages import us)
  from fedcompress.codecs.stages.uniform import UniformQuantizationStage

  bits = _check_bits(bits)
  quantize = UniformQuantizationStage
  return te.core.EncoderComposer(Bitpacking28EncodingStage(bits)).add_parent(
      quantize(bits, stochastic=not deterministic), quantize.ENCODED_VALUES_KEY).add_parent(
          te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY
      ).make()


register_codec("identity", _identity)
register_codec("uniform", _uniform)


def _parse_value(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  return text.strip()


def parse_options(text: str | None) -> dict[str, Any]:
  """'fraction=0.01,deterministic=true' -> {'fraction': 0.01, 'deterministic': True}."""
  options: dict[str, Any] = {}
  for item in (text or "").split(","):
    if not item.strip():
      continue
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"codec option {item!r} is not of the form key=value")
    options[key.strip()] = _parse_value(value)
  return options


def _parameter(name: str, option: str) -> inspect.Parameter | None:
  try:
    return inspect.signature(get_builder(name)).parameters.get(option)
  except (TypeError, ValueError):
    return None


def accepts_option(name: str, option: str) -> bool:
  """Whether codec `name`'s builder takes keyword `option` (e.g. 'bits')."""
  return _parameter(name, option) is not None


def make_codec(name: str, *, bits: int | None = None, options: str | Mapping[str, Any] = "",
               threshold: int = DEFAULT_THRESHOLD) -> CodecSpec:
  """A `CodecSpec` from flag-style values: `bits` applies where the codec takes bits."""
  opts = parse_options(options) if isinstance(options, str) else dict(options)
  parameter = _parameter(name, "bits")
  if parameter is not None and "bits" not in opts:
    if bits is not None:
      opts["bits"] = bits
    elif parameter.default is not inspect.Parameter.empty:
      # Recorded explicitly, so config.json and run names say which width was used.
      opts["bits"] = parameter.default
  try:
    return CodecSpec(name, opts, threshold)
  except TypeError as e:  # An option the builder does not take.
    raise ValueError(f"codec {name!r}: {e}") from None


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """A codec name, its options, and which tensors it applies to.

  Attributes:
    name: registry name (see `available_codecs()`).
    options: keyword options for the codec builder, e.g. `{"bits": 8}`.
    threshold: only tensors with more than this many elements are encoded; smaller
      ones, and non-float tensors, go through `identity`.
  """

  name: str = "identity"
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  threshold: int = DEFAULT_THRESHOLD

  def __post_init__(self):
    get_builder(self.name)  # Fails early, listing valid names.
    if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or (
        self.threshold < 0):
      raise ValueError(f"threshold must be a non-negative integer, got {self.threshold!r}")
    # Build once so bad options fail here rather than deep inside a TFF trace.
    self.make_encoder()

  @classmethod
  def parse(cls, spec: CodecSpec | str | None, **defaults) -> CodecSpec:
    """Accepts a `CodecSpec`, a bare name, or None (= identity)."""
    if spec is None:
      return cls("identity", **defaults)
    if isinstance(spec, CodecSpec):
      return spec
    return cls(spec, **defaults)

  @property
  def is_identity(self) -> bool:
    return self.name == "identity"

  def make_encoder(self) -> te.core.Encoder:
    return get_builder(self.name)(**dict(self.options))

  def applies_to(self, spec: tf.TensorSpec) -> bool:
    return spec.dtype.is_floating and math.prod(spec.shape.as_list()) > self.threshold

  def simple_encoder(self, spec: tf.TensorSpec) -> te.core.SimpleEncoder:
    encoder = self.make_encoder() if self.applies_to(spec) else _identity()
    return te.encoders.as_simple_encoder(encoder, spec)

  def gather_encoder(self, spec: tf.TensorSpec) -> te.core.GatherEncoder:
    encoder = self.make_encoder() if self.applies_to(spec) else _identity()
    # GatherEncoder records encoded shapes from a trial encode at construction; in a
    # throwaway graph, variable-length (entropy-coded) outputs keep unknown dimensions
    # instead of the trial's concrete ones.
    with tf.Graph().as_default():
      return te.encoders.as_gather_encoder(encoder, spec)

  def describe(self) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
    return f"{self.name}({opts})>{self.threshold}" if opts else f"{self.name}>{self.threshold}"


# Registers the research codecs; last, because fedcompress.stages imports this module.
from fedcompress.codecs import stages as _research_stages  # noqa: E402,F401
