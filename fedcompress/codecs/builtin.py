"""The built-in codecs: one record each, the only module that names the stages together.

The registry imports this module on its first use, which registers every record below.
Each record takes its option check, builder, bit formula and error bound from its
technique module (`fedcompress.codecs.stages`); entropy-coded variants are composed
here from a base codec and the Huffman stage.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import registry
from fedcompress.codecs.registry import Codec, NoSymbolsError, get_codec
from fedcompress.codecs.stages import (
  _common,
  adaptive,
  countsketch,
  drive,
  eden,
  entropy,
  fixedint,
  hadamard,
  huffman,
  kashin,
  nonuniform,
  randk,
  rotation,
  topk,
  uniform,
)

# The count sketch's linear map itself, for aggregators that keep memory in sketch space
# (`fedcompress.federated.fetchsgd`): only this module may import the stages (but for
# the shared helpers in `stages/_common.py`).
CountSketch = countsketch.CountSketch
count_sketch_columns = countsketch.column_count
check_count_sketch_table = countsketch.check_table
COUNT_SKETCH_DEFAULT_FRACTION = countsketch.DEFAULT_FRACTION


def _identity_bits(num_elements: int, *, direction: str = "aggregate",
                   dtype=tf.float32) -> int:
  del direction
  return num_elements * _common.dtype_bits(dtype)


def _technique(name: str, module, summary: str) -> Codec:
  """The record of a codec whose technique module has all four functions (and, if its
  values can be encoded further in a chain, `output_size` and `error_gain`; if its
  summed encodings decode non-linearly, `sum_decode_exact`)."""
  return Codec(name, build=module.build, check_options=module.check_options,
               bits_formula=module.bits_formula, error_bound=module.relative_error_bound,
               summary=summary, output_size=getattr(module, "output_size", None),
               error_gain=getattr(module, "error_gain", None),
               sum_decode_exact=getattr(module, "sum_decode_exact", None),
               plain_note=getattr(module, "plain_note", None))


# Entropy coding after a base codec: the base codec's options plus the coder's.
# Codecs that already code their symbols (their records count coded streams,
# `raw_bits_rules`: huffman, uniform_huffman, adaptive) cannot be a base.


def _check_entropy_options(base: str = "uniform", coder: str | None = None,
                           max_code_length: int | None = None,
                           block_size: int | None = None, **base_options) -> dict:
  base_codec = get_codec(base)
  if base_codec.raw_bits_rules:
    # adaptive was let through, refused with advice to write a chain that is refused
    # too, or (without coder=) only when its encoder was built.
    raise ValueError(f"base codec {base!r} is already entropy coded")
  # Checked here: the base's own message would name only the base and its options.
  valid = base_codec.option_names()
  # A coder's option the base also has (eden's, drive's, hadamard's block_size;
  # adaptive's coder) reached neither: the base's value won below, and the run was
  # recorded with the one given (`huffman(base=eden,block_size=256)` ran 2048).
  shared = [k for k, v in (("coder", coder), ("block_size", block_size))
            if v is not None and k in (valid or ())]
  if shared:
    raise ValueError(f"{shared[0]} is an option of both the coder and its base {base}: "
                     f"write the chain {base}({shared[0]}=...)|huffman({shared[0]}=...) "
                     "to set either")
  coder = "huffman" if coder is None else coder
  block_size = huffman.DEFAULT_BLOCK_SIZE if block_size is None else block_size
  _common.check_choice("coder", coder, tuple(sorted(entropy.ENTROPY_CODERS)))
  unknown = sorted(set(base_options) - set(valid)) if valid is not None else []
  if unknown:
    raise ValueError(f"no option {unknown[0]!r}: an entropy-coded codec takes base, coder, "
                     f"max_code_length, block_size and its base {base}'s options "
                     f"({', '.join(valid) or 'none'})")
  checked = base_codec.options(base_options)
  if max_code_length is not None:
    huffman.check_max_code_length(max_code_length, checked.get("bits", 1))
  return {"base": base, "coder": coder, "max_code_length": max_code_length,
          "block_size": huffman.check_block_size(block_size), **checked}


def _build_entropy_coded(base: str, coder: str, max_code_length: int | None,
                         block_size: int, **base_options) -> te.core.Encoder:
  return entropy.entropy_coded(get_codec(base).build(**base_options), coder,
                               max_code_length=max_code_length, block_size=block_size)


def _code_symbols(encoder: te.core.Encoder, coder: str = "huffman",
                  max_code_length: int | None = None,
                  block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> te.core.Encoder:
  # `huffman` in a chain (`uniform(bits=8)|huffman`): the coder's options only.
  if max_code_length is not None:
    huffman.check_max_code_length(max_code_length, 1)
  try:
    return entropy.entropy_coded(encoder, coder, max_code_length=max_code_length,
                                 block_size=huffman.check_block_size(block_size))
  except entropy.NoSymbolsError as e:  # The record's error: the codec core knows no stage.
    raise NoSymbolsError(str(e)) from None


def _check_uniform_huffman(**options) -> dict:
  if "base" in options:
    raise ValueError("uniform_huffman takes no base option: it is huffman with "
                     "base=uniform")
  return _check_entropy_options(base="uniform", **options)


# Each built-in record as registered. A codec of the user's registered over one of these
# names (`overwrite=True`) would run under the name that config.json, the HParams and the
# tables give the built-in one: a run of 8-bit `uniform` resumed as an int32 codec of
# the user's called `uniform` (its bits tripled from the next round), without a word.
_REGISTERED: dict[str, Codec] = {}


def replaced_builtin_codecs(names) -> list[str]:
  """Those of `names` that are built-in codecs' names registered now to other codecs."""
  registered = registry.available_codecs()  # Registers the built-ins if nothing did yet.
  return [name for name in names if name in _REGISTERED
          and name in registered and get_codec(name) != _REGISTERED[name]]


def register_builtin_codecs() -> None:
  """Registers every built-in codec (called once, on the registry's first use)."""

  def register(codec: Codec) -> None:
    _REGISTERED[codec.name] = registry.register(codec)

  register(Codec("identity", build=te.encoders.identity, bits_formula=_identity_bits,
                 error_bound=lambda num_elements: 0.0,
                 summary="no compression: every tensor at its dtype's width",
                 output_size=lambda num_elements: num_elements,
                 error_gain=lambda num_elements: 1.0))
  register(_technique("uniform", uniform,
                      "min/max uniform quantization to `bits`, 28 bits per int32 (TFF "
                      "tutorial)"))
  register(_technique("hadamard", hadamard,
                      "randomized Hadamard rotation + uniform quantization"))
  register(_technique("rotation", rotation,
                      "blockwise randomized Hadamard rotation alone (a link of chains)"))
  register(_technique("kashin", kashin, "Kashin's representation + uniform quantization"))
  register(_technique("drive", drive, "DRIVE: rotation, 1 bit per coordinate + unbiased scale"))
  register(_technique("eden", eden, "EDEN: rotation, 1-4 bit Lloyd-Max + unbiased scale"))
  register(_technique("topk", topk, "k largest magnitudes, values + int32 indices"))
  register(_technique("randk", randk, "k seed-chosen coordinates, values + seed"))
  register(_technique("countsketch", countsketch,
                      "count sketch (rows x columns table), linear: summed before decoding"))
  register(_technique("nonuniform", nonuniform,
                      "per-tensor quantile / Lloyd-Max levels + codebook"))
  register(Codec("huffman", build=_build_entropy_coded, check_options=_check_entropy_options,
                 raw_bits_rules=entropy.RAW_BITS_RULES, code_symbols=_code_symbols,
                 summary="a base codec (option `base`) with its bit-packing Huffman coded"))
  register(Codec("uniform_huffman", build=_build_entropy_coded,
                 check_options=_check_uniform_huffman, raw_bits_rules=entropy.RAW_BITS_RULES,
                 summary="uniform quantization, then Huffman coding"))
  register(Codec("fixed_int", build=fixedint.build, check_options=fixedint.check_options,
                 bits_formula=fixedint.bits_formula,
                 error_bound=fixedint.relative_error_bound, sum_bound=fixedint.sum_bound,
                 plain_note=fixedint.plain_note,
                 summary="[rotation +] clip, shared scale, stochastic rounding to integers: "
                 "sums exactly (secure aggregation)"))
  register(Codec("adaptive", build=adaptive.build, check_options=adaptive.check_options,
                 raw_bits_rules=adaptive.RAW_BITS_RULES, state_moves=adaptive.state_moves,
                 state_hint="adaptive's rate offset: use coder=fixed",
                 tensors_note=adaptive.budget_note,
                 # 2: width 2 when it fits, coded, instead of width 1 for good (05152f2).
                 # 3: a constant tensor's saving is not learned (a rejected client's).
                 revision=3,
                 summary="uniform width chosen each round to meet a bits-per-coordinate "
                 "budget"))


