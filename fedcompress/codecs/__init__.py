"""Codecs: one record per codec, the per-tensor policy, and exact bit accounting.

No TFF here, only TensorFlow and tensor_encoding. `registry.py` holds the `Codec`
record and the registry; `builtin.py` the built-in records (the only module that
imports the stages in `stages/`); `spec.py` the `CodecSpec` that applies a codec to the
tensors of a model; `chain.py` composed codecs (`randk(fraction=0.1)|eden(bits=1)`);
`accounting.py` the bit counts. Importing this package registers the built-in codecs.
"""

from fedcompress.codecs import builtin as _builtin
from fedcompress.codecs.registry import (
  Codec,
  available_codecs,
  get_codec,
  register,
  register_codec,
  register_stage,
  sum_compatible_codecs,
  unregister,
)
from fedcompress.codecs.spec import (
  DEFAULT_THRESHOLD,
  CodecSpec,
  make_codec,
  parse_chain,
  parse_options,
  takes_bits,
)

_builtin.register_builtin_codecs()
replaced_builtin_codecs = _builtin.replaced_builtin_codecs

__all__ = ["DEFAULT_THRESHOLD", "Codec", "CodecSpec", "available_codecs", "get_codec",
           "make_codec", "parse_chain", "parse_options", "register", "register_codec",
           "register_stage", "replaced_builtin_codecs", "sum_compatible_codecs", "takes_bits",
           "unregister"]
