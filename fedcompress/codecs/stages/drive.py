"""`drive` codec: DRIVE, one bit per coordinate plus one scale per rotated block.

Vargaftik, Ben Basat, Portnoy, Mendelson, Ben-Itzhak and Mitzenmacher, "DRIVE:
One-bit Distributed Mean Estimation", NeurIPS 2021 (arXiv:2105.08339).

A client rotates its vector, `y = R x`, and sends `sign(y)` (one bit per coordinate)
and one scale `S`; the receiver returns `x_hat = S * R^-1 sign(y)`. The unbiased
variant, implemented here, uses `S = ||x||_2^2 / ||R x||_1`: then `<x, x_hat> =
||x||^2` for every rotation, and for a uniformly random rotation `E[x_hat] = x`
(the paper's unbiasedness theorem). Like the paper's experiments we use the
randomized Hadamard transform `H D` as the rotation, but two rounds of it by default
(`H D_2 H D_1`): one round is far enough from a uniform rotation that structured
inputs show a bias (measured in fedcompress/codecs/stages/rotation.py: up to 7% at 128
coordinates, 1.5% at 2048, within noise with two rounds). Unbiasedness is checked
statistically in tests/codecs/stages/test_drive.py. On a few coordinates even two rounds
are far from uniform: the mean of 20,000 decodes (`fedcompress.codecs.testing.
mean_of_decodes`) of `[1, -2, 0.5]` repeated to `n` values missed `x` by 15.7% of `||x||`
at `n = 3`, 6.7% at 8, 0.9% at 32 and 0.6% at 128, where the draws' own noise is ~0.5%
(`eden` at 4 bits: 5.6%, 1.2%, 0.09%, 0.07%, noise ~0.07%). Tensors that small are
below any useful `--compression_threshold`, but not the values a link before this one
keeps: after `randk(fraction=0.1)` a 33-element tensor leaves 4, and
`randk(fraction=0.1)|eden(bits=1)` missed it by 41.5% (noise ~6%; review R5). In a
chain, keep `fraction * n` well above 32.

Blocks. `RandomizedHadamardEncodingStage` rotates each row of `L` coordinates on
its own (see fedcompress/codecs/stages/rotation.py), and this stage sends one scale per
row, `S_r = ||y_r||^2 / ||y_r||_1` (`||y_r|| = ||x_r||`, the rotation being
orthogonal), which is exactly DRIVE applied to each row. A single scale for all rows
would not be unbiased: it would over-scale rows of small norm and under-scale large
ones. With `block_size=0` (or a tensor of at most `L` elements) there is one row and
one scale per tensor, as in the paper. At `L = 2048` the scales add 32/2048 = 0.016
bit per coordinate.

Seed. Each encode draws its own rotation seed and sends it as one int32 (32 bits):
clients rotate independently, which is what makes the error of the mean shrink as
1/(number of clients) (DRIVE's distributed mean estimation setting), and the
broadcast and aggregate costs are the same.

Packing. Signs are packed 32 per int32 word (`Bitpack32EncodingStage`), not 28 as
tensor_encoding's bitpacking does, so one sign costs exactly one bit.

Wire cost per tensor of `n` elements: `ceil(P / 32)` int32 words for the `P = rows *
L` signs, `rows` scales of the tensor's dtype, 32 bits of seed.

Options:
  block_size: rotation block length `L`, a power of two (default 2048), or 0 for the
    whole tensor in one block (padded to a power of two).
  rounds: `H D` rounds of the rotation, 1..4 (default 2).
  shared_rotation: one rotation per round for all clients (default False: one per
    client). Its seed comes with the encoder's parameters instead of the payload (32
    bits less per tensor), and the server inverts the rotation once, on the sum,
    instead of once per client (`rotation.SharedRandomizedHadamardEncodingStage`).
    Each client's estimate stays unbiased over the round's rotation, but the clients'
    errors are correlated: for clients with similar updates the mean's error no longer
    shrinks as 1 / (number of clients). The README's "Shared rotations" measures both.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, rotation
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage

# Two `H D` rounds: one leaves a measurable bias on structured inputs (rotation.py).
DEFAULT_ROUNDS = 2


@te.core.tf_style_encoding_stage
class DriveEncodingStage(_common.StatelessStage):
  """Signs and per-row unbiased DRIVE scales of (already rotated) rows.

  Input: a tensor whose last dimension is the row (`[rows, L]` after the rotation; a
  rank-1 input is one row). Encoded: `{'signs': float32 0/1 of the input's shape,
  'scales': [rows] of the input dtype}`; decoded: `scales * (2 * signs - 1)`.
  A zero coordinate counts as positive; an all-zero row has scale 0.
  """

  ENCODED_VALUES_KEY = "signs"
  SCALES_KEY = "scales"

  STAGE_NAME = "drive"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    cdtype = _common.compute_dtype(x.dtype)
    rows = tf.reshape(tf.cast(x, cdtype), [-1, x.shape[-1]])
    # ||y||^2 / ||y||_1 computed on y / max|y| so that neither sum overflows.
    peak = _common.largest_magnitude(rows, axis=1, keepdims=True)
    unit = tf.math.divide_no_nan(rows, peak)
    scales = tf.math.divide_no_nan(tf.reduce_sum(tf.square(unit), axis=1),
                                   tf.reduce_sum(tf.abs(unit), axis=1)) * peak[:, 0]
    signs = tf.cast(x >= 0, tf.float32)
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, signs),
                                    (self.SCALES_KEY, tf.cast(scales, x.dtype))])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands, shape  # Unused.
    signs = encoded_tensors[self.ENCODED_VALUES_KEY]
    scales = encoded_tensors[self.SCALES_KEY]
    rows = tf.reshape(2.0 * tf.cast(signs, scales.dtype) - 1.0, [-1, signs.shape[-1]])
    out_shape = signs.shape if signs.shape.is_fully_defined() else tf.shape(signs)
    return tf.reshape(rows * scales[:, tf.newaxis], out_shape)


def check_options(block_size: int = rotation.DEFAULT_BLOCK_SIZE,
                  rounds: int = DEFAULT_ROUNDS, shared_rotation: bool = False) -> dict:
  """The `drive` codec's options, checked, with their defaults."""
  return {"block_size": rotation.check_block_size(block_size),
          "rounds": rotation.check_rounds(rounds),
          "shared_rotation": _common.check_bool("shared_rotation", shared_rotation)}


def build(block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = DEFAULT_ROUNDS,
          shared_rotation: bool = False) -> te.core.Encoder:
  """Returns the `drive` encoder (see the module docstring)."""
  rotate = rotation.rotation_stage(block_size, rounds, shared_rotation)
  return (te.core.EncoderComposer(Bitpack32EncodingStage(1, in_range=True))
          .add_parent(DriveEncodingStage(), DriveEncodingStage.ENCODED_VALUES_KEY)
          .add_parent(rotate, rotate.ENCODED_VALUES_KEY)
          .make())


def bits_formula(num_elements: int, *, block_size: int = rotation.DEFAULT_BLOCK_SIZE,
                 rounds: int = DEFAULT_ROUNDS, shared_rotation: bool = False,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `drive`.

  The seed travels in the payload, both ways; with `shared_rotation` only in the
  broadcast's (whose decoders need it), while in aggregation the clients get it with
  the encoder's parameters (not counted; see the README's "What counts as a bit").
  """
  del rounds
  rows, length = rotation.block_layout(num_elements, block_size)
  return (_common.packed_words(rows * length, 1) * 32 + rows * _common.dtype_bits(dtype)
          + rotation.seed_bits(shared_rotation, direction))



def relative_error_bound(num_elements: int, *, block_size: int = rotation.DEFAULT_BLOCK_SIZE,
                         rounds: int = DEFAULT_ROUNDS, shared_rotation: bool = False) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  `<x_r, x_hat_r> = ||x_r||^2` row by row, so `||x - x_hat||^2 = ||x_hat||^2 -
  ||x||^2`, and `||x_hat_r|| = sqrt(L) ||y||^2 / ||y||_1 <= sqrt(L) ||x_r||`.
  """
  del rounds, shared_rotation  # The rotation is orthogonal, whichever it is.
  _, length = rotation.block_layout(num_elements, block_size)
  return math.sqrt(length - 1)
