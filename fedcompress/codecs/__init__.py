"""Codecs: one record per codec, the per-tensor policy, and exact bit accounting.

No TFF here, only TensorFlow and tensor_encoding. `registry.py` holds the `Codec`
record and the registry; `builtin.py` the built-in records (the only module that
imports the stages in `stages/`, but for their shared helpers in `stages/_common.py`);
`spec.py` the `CodecSpec` that applies a codec to the tensors of a model; `chain.py`
composed codecs (`randk(fraction=0.1)|eden(bits=1)`);
`accounting.py` the bit counts. The built-in codecs are registered on the registry's
first use, not at import: importing a stage imports this package first, and would
import every stage with it.
"""

from fedcompress.codecs import registry as _registry
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


def _register_builtin_codecs() -> None:
  from fedcompress.codecs import builtin

  builtin.register_builtin_codecs()


_registry.set_builtin_loader(_register_builtin_codecs)


def replaced_builtin_codecs(names) -> list[str]:
  """Those of `names` that are built-in codecs' names registered now to other codecs."""
  from fedcompress.codecs import builtin

  return builtin.replaced_builtin_codecs(names)


__all__ = ["DEFAULT_THRESHOLD", "Codec", "CodecSpec", "available_codecs", "get_codec",
           "make_codec", "parse_chain", "parse_options", "register", "register_codec",
           "register_stage", "replaced_builtin_codecs", "sum_compatible_codecs", "takes_bits",
           "unregister"]
