"""Codecs: tensor_encoding encoders by name, the per-tensor policy, and bit accounting."""

from fedcompress.codecs.spec import (  # noqa: F401
  DEFAULT_THRESHOLD,
  CodecSpec,
  accepts_option,
  available_codecs,
  get_builder,
  make_codec,
  parse_options,
  register_codec,
  register_stage,
)
