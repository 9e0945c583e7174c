"""`hadamard` codec: randomized Hadamard rotation, then uniform quantization.

The rotation spreads a tensor's energy evenly over its coordinates, so the range
that uniform quantization must cover shrinks from ~max|x| to ~||x|| sqrt(2 ln d / d)
and the quantization error drops with it (Suresh, Yu, Kumar and McMahan,
"Distributed Mean Estimation with Limited Communication", ICML 2017; Konecny et al.,
"Federated Learning: Strategies for Improving Communication Efficiency", 2016).

Pipeline: `RandomizedHadamardEncodingStage(block_size)` ->
`uniform.UniformQuantizationStage(bits, stochastic=not deterministic)` (tensor_encoding's
min/max quantization of the rotated tensor, its stochastic rounding drawn by
`_common.dither16` so seed scopes fix it) -> `Bitpack32EncodingStage(bits)`.

Wire cost of a tensor of `n` elements (same in both directions): `P = rows * L`
padded coordinates (see `rotation.block_layout`), `ceil(P * bits / 32)` int32 words,
the rotated min and max (2 values of the tensor's dtype), the rotation seed (32 bits),
and for non-float32 tensors one dtype marker element.

Options:
  bits: 1..16 bits per rotated coordinate.
  deterministic: round to the nearest level (biased, half the worst-case error) instead of
    stochastic rounding (unbiased, tensor_encoding's default).
  block_size: rotation block length, a power of two, or 0 for the whole tensor.
  rounds: `H D` rounds of the rotation, 1..4 (1: the range reduction is what matters
    here; unbiasedness comes from stochastic rounding, not from the rotation).
"""

from __future__ import annotations

import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, rotation
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage
from fedcompress.codecs.stages.uniform import UniformQuantizationStage


def check_options(bits: int = 8, deterministic: bool = False,
                  block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = 1) -> dict:
  """The `hadamard` codec's options, checked, with their defaults."""
  return {"bits": _common.check_int("bits", bits, 1, 16),
          "deterministic": _common.check_bool("deterministic", deterministic),
          "block_size": rotation.check_block_size(block_size),
          "rounds": rotation.check_rounds(rounds)}


def build(bits: int = 8, deterministic: bool = False,
          block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = 1) -> te.core.Encoder:
  """Returns the `hadamard` encoder (see the module docstring)."""
  uniform = UniformQuantizationStage
  return (te.core.EncoderComposer(Bitpack32EncodingStage(bits))
          .add_parent(uniform(bits, stochastic=not deterministic), uniform.ENCODED_VALUES_KEY)
          .add_parent(rotation.RandomizedHadamardEncodingStage(block_size, rounds),
                      rotation.RandomizedHadamardEncodingStage.ENCODED_VALUES_KEY)
          .make())


def bits_formula(num_elements: int, *, bits: int = 8, deterministic: bool = False,
                 block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = 1,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `hadamard`.

  The same both ways (`direction` is unused): the seed travels in the payload.
  """
  del deterministic, rounds, direction
  width = _common.dtype_bits(dtype)
  padded = rotation.rotated_size(num_elements, block_size)
  marker = width if tf.as_dtype(dtype) != tf.float32 else 0
  return (_common.packed_words(padded, bits) * 32 + 2 * width + _common.SEED_BITS
          + marker)



def relative_error_bound(num_elements: int, *, bits: int = 8, deterministic: bool = False,
                         block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = 1) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  Every rotated coordinate is at most its row's norm, so the quantized range is at
  most `2 ||x||`; a coordinate moves by at most half a step (deterministic) or a step
  (stochastic), and the inverse rotation does not grow the `P`-coordinate error.
  """
  del rounds  # The rotation is orthogonal whatever the number of rounds.
  padded = rotation.rotated_size(num_elements, block_size)
  steps = 1 if deterministic else 2
  return steps * math.sqrt(padded) / (2**bits - 1)
