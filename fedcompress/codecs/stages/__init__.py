"""Codec techniques as pure tensor_encoding stages, one technique per module.

| technique | module |
|---|---|
| uniform quantization (the TFF tutorial's), faster stochastic rounding | `uniform.py` |
| tensor_encoding's 28-bit packing, faster for 8 bits | `bitpack28.py` |
| randomized Hadamard rotation + uniform quantization | `hadamard.py` |
| Kashin's representation + uniform quantization | `kashin.py` |
| DRIVE: rotation, 1 bit per coordinate + unbiased scale | `drive.py` |
| EDEN: rotation, 1-4 bit Lloyd-Max + unbiased scale | `eden.py` |
| k largest magnitudes, values + int32 indices | `topk.py` |
| k seed-chosen coordinates, values + seed | `randk.py` |
| per-tensor quantile / Lloyd-Max levels + codebook | `nonuniform.py` |
| Huffman coding in place of bit-packing | `entropy.py` (stream format `huffman.py`) |
| bit width chosen each round to meet a bits-per-coordinate budget | `adaptive.py` |
| a fraction of each rotated row (rates below 1 bit, eden's `keep`) | `subsample.py` |
| count sketch: seeded hashes and signs into a table that sums | `countsketch.py` |
| clip and round to integers on a shared scale (secure sums) | `fixedint.py` |

Shared building blocks: `rotation.py` (blockwise randomized Hadamard with a per-encode
seed), `packing.py` (32 bits per int32 word), `bitio.py` (bit fields in graph ops),
`selection.py` (the k largest without a full sort) and `_common.py` (option checks,
widths, seeds; the one stage module the codec core and `federated/fetchsgd.py` use
too).

A technique module defines its stages and, where it is a codec of its own, the four
functions its record in `fedcompress.codecs.builtin` is made of: `check_options(**options)`
(checked options with defaults), `build(**options)` (the Encoder),
`bits_formula(num_elements, *, direction, dtype, **options)` (exact wire bits of one
tensor, the pure-Python reference for the in-graph count) and
`relative_error_bound(num_elements, **options)` (worst-case `||x - x_hat|| / ||x||`).
Modules here import only each other: nothing of the registry, the TFF wiring or the
harness, so a stage can be tested, and reused, on its own. Importing this package
imports none of them.
"""
