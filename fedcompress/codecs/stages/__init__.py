"""Research codecs as tensor_encoding stages, registered in `fedcompress.codecs`.

Importing this package registers, by name, one codec per module:

| name | technique | module |
|---|---|---|
| `hadamard` | randomized Hadamard rotation + uniform quantization | `hadamard.py` |
| `kashin` | Kashin's representation + uniform quantization | `kashin.py` |
| `drive` | DRIVE: rotation, 1 bit per coordinate + unbiased scale | `drive.py` |
| `eden` | EDEN: rotation, 1-4 bit Lloyd-Max + unbiased scale | `eden.py` |
| `topk` | k largest magnitudes, values + int32 indices | `topk.py` |
| `randk` | k seed-chosen coordinates, values + seed | `randk.py` |
| `nonuniform` | per-tensor quantile / Lloyd-Max levels + codebook | `nonuniform.py` |
| `uniform_huffman`, `huffman` | quantization, then in-graph Huffman coding | `entropy.py` |
| `adaptive` | bit width chosen each round to meet a bits-per-coordinate budget | `adaptive.py` |

Shared building blocks: `rotation.py` (blockwise randomized Hadamard with a per-encode
seed) and `packing.py` (32 bits per int32 word). The registry's `uniform` (the TFF
tutorial's codec) is tensor_encoding's encoder with two stages swapped for faster
equivalents: `uniform.py` (stochastic rounding in fewer passes, same distribution) and
`bitpack28.py` (tensor_encoding's 28-bit words, written faster for 8 bits).

Every codec module also has `bits_formula(num_elements, *, direction, dtype,
**options)`, the exact wire size of one tensor as a pure-Python reference for the
in-graph count (`fedcompress.bits.structure_bits_tf`), and
`relative_error_bound(num_elements, **options)`, a worst-case bound on
`||x - x_hat|| / ||x||` over all inputs (None where none is derived); the functions of
the same names here dispatch on the codec name.
"""

from __future__ import annotations

from collections.abc import Callable

# Entropy coding and the adaptive-rate codec (uniform_huffman, huffman, adaptive):
# lossless or rate-controlled wrappers, registered here too but with no bit formula of
# their own (their size depends on the data).
from fedcompress.codecs.stages import (  # noqa: E402,F401  (after the codecs above)
  adaptive,
  drive,
  eden,
  entropy,
  hadamard,
  kashin,
  nonuniform,
  randk,
  topk,
)

_MODULES = (hadamard, kashin, drive, eden, topk, randk, nonuniform)

BITS_FORMULAS: dict[str, Callable[..., int]] = {m.NAME: m.bits_formula for m in _MODULES}
ERROR_BOUNDS: dict[str, Callable[..., float | None]] = {
    m.NAME: m.relative_error_bound for m in _MODULES}


def research_codecs() -> list[str]:
  """Names of the codecs this package registers."""
  return sorted(BITS_FORMULAS)


def _lookup(table: dict, name: str):
  try:
    return table[name]
  except KeyError:
    raise ValueError(f"unknown research codec {name!r}; valid: "
                     f"{', '.join(research_codecs())}") from None


def bits_formula(name: str, num_elements: int, **options) -> int:
  """Exact bits of one `num_elements`-element tensor through codec `name`.

  Args:
    name: one of `research_codecs()`.
    num_elements: elements of the (encoded) tensor.
    **options: the codec's options, plus `direction` ("broadcast" or "aggregate",
      which only `kashin` depends on) and `dtype` (default float32).

  Returns:
    The number of bits, side information included.
  """
  return _lookup(BITS_FORMULAS, name)(num_elements, **options)


def relative_error_bound(name: str, num_elements: int, **options) -> float | None:
  """Worst-case `||x - x_hat|| / ||x||` of codec `name` (float rounding aside).

  Args:
    name: one of `research_codecs()`.
    num_elements: elements of the tensor.
    **options: the codec's options (`direction` and `dtype` are accepted and ignored).

  Returns:
    The bound, or None where the codec has none (`kashin` with `last_iter_clip`).
  """
  return _lookup(ERROR_BOUNDS, name)(num_elements, **options)


__all__ = ["BITS_FORMULAS", "ERROR_BOUNDS", "bits_formula", "relative_error_bound",
           "research_codecs"]
