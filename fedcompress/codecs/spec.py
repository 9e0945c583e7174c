"""`CodecSpec`: a codec, its options, and which tensors of a model it applies to.

`CodecSpec` adds the per-tensor policy of the TFF tutorial to a registered codec (only
tensors with more than `threshold` elements are encoded, the rest go through
`identity`) and wraps the encoder as a `SimpleEncoder` for broadcast or a
`GatherEncoder` for aggregation. `make_codec` builds one from flag-style values.

Register your own stage in a few lines::

    class NegateStage(te.core.EncodingStageInterface): ...

    fedcompress.register_stage("negate", NegateStage)
    spec = fedcompress.CodecSpec("negate")
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.accounting import RawBitsRules
from fedcompress.codecs.registry import Codec, get_codec

DEFAULT_THRESHOLD = 10_000
# Spellings of a boolean option value; anything else is refused rather than guessed
# ("no" or "off" must not silently mean True).
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _parse_value(key: str, text: str) -> Any:
  text = text.strip()
  if text.lower() in ("true", "false"):
    return _BOOLEANS[text.lower()]
  for cast in (int, float):
    try:
      return cast(text)
    except ValueError:
      pass
  if text.lower() in ("yes", "no", "on", "off", "y", "n", "t", "f"):
    raise ValueError(f"codec option {key}={text!r}: write booleans as true/false (or 1/0)")
  return text


def parse_options(text: str | None) -> dict[str, Any]:
  """'fraction=0.01,deterministic=true' -> {'fraction': 0.01, 'deterministic': True}.

  Numbers become int or float, `true`/`false` booleans; a boolean option also takes
  1/0 (the stages' `check_bool`), and yes/no/on/off are refused.
  """
  options: dict[str, Any] = {}
  for item in (text or "").split(","):
    if not item.strip():
      continue
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
      raise ValueError(f"codec option {item!r} is not of the form key=value")
    options[key.strip()] = _parse_value(key.strip(), value)
  return options


def make_codec(name: str, *, bits: int | None = None, options: str | Mapping[str, Any] = "",
               threshold: int = DEFAULT_THRESHOLD) -> CodecSpec:
  """A `CodecSpec` from flag-style values: `bits` applies where the codec takes bits.

  Where the codec takes `bits` and neither `bits` nor the options set it, the codec's
  default width is recorded explicitly, so config.json and run names say which width
  was used.
  """
  opts = parse_options(options) if isinstance(options, str) else dict(options)
  codec = get_codec(name)
  if "bits" not in opts and "bits" in codec.options(opts):
    opts["bits"] = bits if bits is not None else codec.options(opts)["bits"]
  return CodecSpec(name, opts, threshold)


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """A codec name, its options, and which tensors it applies to.

  Attributes:
    name: registry name (see `available_codecs()`).
    options: keyword options for the codec, e.g. `{"bits": 8}`; checked by the codec's
      record when the spec is made.
    threshold: only tensors with more than this many elements are encoded; smaller
      ones, and non-float tensors, go through `identity`.
  """

  name: str = "identity"
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  threshold: int = DEFAULT_THRESHOLD

  def __post_init__(self):
    if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or (
        self.threshold < 0):
      raise ValueError(f"threshold must be a non-negative integer, got {self.threshold!r}")
    # Fails here, listing valid names or options, rather than deep inside a TFF trace;
    # building once also runs the checks of stages registered without a record.
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
  def codec(self) -> Codec:
    return get_codec(self.name)

  @property
  def is_identity(self) -> bool:
    return self.name == "identity"

  @property
  def raw_bits_rules(self) -> RawBitsRules:
    """How to count the raw size of the coded streams this codec sends (see accounting)."""
    return self.codec.raw_bits_rules

  def resolved_options(self) -> dict[str, Any]:
    """The options as the codec uses them: checked, with every default filled in."""
    return self.codec.options(self.options)

  def make_encoder(self) -> te.core.Encoder:
    return self.codec.encoder(self.options)

  def applies_to(self, spec: tf.TensorSpec) -> bool:
    return spec.dtype.is_floating and math.prod(spec.shape.as_list()) > self.threshold

  def _encoder_for(self, spec: tf.TensorSpec) -> te.core.Encoder:
    return self.make_encoder() if self.applies_to(spec) else get_codec("identity").encoder()

  def tensor_bits(self, spec: tf.TensorSpec, direction: str = "aggregate") -> int:
    """Exact bits of one tensor of `spec` under this spec's policy (pure Python)."""
    n = math.prod(spec.shape.as_list())
    if self.applies_to(spec):
      return self.codec.bits(n, self.options, direction=direction, dtype=spec.dtype)
    return get_codec("identity").bits(n, direction=direction, dtype=spec.dtype)

  def simple_encoder(self, spec: tf.TensorSpec) -> te.core.SimpleEncoder:
    return te.encoders.as_simple_encoder(self._encoder_for(spec), spec)

  def gather_encoder(self, spec: tf.TensorSpec) -> te.core.GatherEncoder:
    encoder = self._encoder_for(spec)
    # GatherEncoder records encoded shapes from a trial encode at construction; in a
    # throwaway graph, variable-length (entropy-coded) outputs keep unknown dimensions
    # instead of the trial's concrete ones.
    with tf.Graph().as_default():
      return te.encoders.as_gather_encoder(encoder, spec)

  def describe(self) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
    return f"{self.name}({opts})>{self.threshold}" if opts else f"{self.name}>{self.threshold}"
