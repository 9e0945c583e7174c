"""`eden` codec: EDEN, 1-4 bits per coordinate after a random rotation.

Vargaftik, Ben Basat, Portnoy, Mendelson, Ben-Itzhak and Mitzenmacher, "EDEN:
Communication-Efficient and Robust Distributed Mean Estimation for Federated
Learning", ICML 2022 (PMLR 162; arXiv:2108.08842).

EDEN generalizes DRIVE to `b` bits. After a random rotation the coordinates of
`y = R x`, normalized to unit variance (`z = y sqrt(d) / ||y||`), are close to
standard normal, so each one is quantized deterministically to the nearest of the
`2**b` Lloyd-Max centroids of N(0, 1) (Max, "Quantizing for Minimum Distortion", IRE
Trans. Inf. Theory, 1960). The receiver gets the centroid indices and one scale
`S = ||x||^2 / <y, Q(z)>` and returns `x_hat = S * R^-1 Q(z)`. As in DRIVE, that
scale makes `<x, x_hat> = ||x||^2` for every rotation and the estimate unbiased for a
uniformly random rotation (the paper's result); with the randomized Hadamard rotation
used here (two rounds by default, as for `drive`) unbiasedness is checked
statistically in tests/codecs/stages/test_eden.py; on a few coordinates it is biased,
as `drive` (see its module): in a chain behind `randk`, keep `fraction * n` well above
32. With `bits=1` the centroids are `+-sqrt(2/pi)` and EDEN is exactly DRIVE.

Rows, seeds and packing are those of `drive` (see fedcompress/codecs/stages/drive.py): one
scale per rotated row of `L = block_size` coordinates, one 32-bit seed per encode (so
clients rotate independently), indices packed 32 bits per int32 word.

Wire cost per tensor of `n` elements: `ceil(P * bits / 32)` int32 words for the `P =
rows * L` indices, `rows` scales of the tensor's dtype, 32 bits of seed. Centroids
are fixed tables known to both sides and cost nothing.

Options:
  bits: 1..4 (the Lloyd-Max table is computed once per value, to 1e-12).
  block_size: rotation block length, a power of two (default 2048), or 0 for the
    whole tensor.
  rounds: `H D` rounds of the rotation, 1..4 (default 2).
  keep: fraction of each rotated row sent (default 1.0: all); below 1 only the first
    `ceil(keep * L)` coordinates of each row are quantized and the rest decode to 0
    (`subsample.py`), which makes rates below one bit per coordinate. The unsent
    coordinates are not made up for: the estimate is then biased, about `keep * x` in
    expectation (measured: 0.500 of `||x||^2` along x at keep 0.5, 0.251 at 0.25), in
    exchange for the lower error `(1 - keep) + keep * D_b` of `||x||^2`, D_b being
    EDEN's own normalized MSE at `bits` (0.5708 at 1 bit: 0.785 at keep 0.5, as
    tests/codecs/stages/test_subsample.py measures). The unbiasedness
    above holds for `keep=1` only.
  shared_rotation: one rotation per round for all clients (default False), as for
    `drive` (see there): 32 bits less per tensor, the inverse rotation once per round
    on the server, correlated errors across clients.
"""

from __future__ import annotations

import collections
import functools
import math
import statistics

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, rotation, subsample
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage

# Two `H D` rounds: one leaves a measurable bias on structured inputs (rotation.py).
DEFAULT_ROUNDS = 2
MAX_BITS = 4


def _check_bits(bits) -> int:
  return _common.check_int("bits", bits, 1, MAX_BITS)


@functools.cache
def gaussian_lloyd_max(bits: int) -> tuple[float, ...]:
  """The `2**bits` MSE-optimal quantization levels of N(0, 1), ascending.

  Lloyd's fixed point: each level is the mean of N(0, 1) between the midpoints to its
  neighbours, `(phi(a) - phi(b)) / (Phi(b) - Phi(a))`, iterated from the quantiles.
  """
  _check_bits(bits)
  count = 2**bits
  normal = statistics.NormalDist()
  levels = np.array([normal.inv_cdf((i + 0.5) / count) for i in range(count)])
  pdf = np.vectorize(normal.pdf)
  cdf = np.vectorize(normal.cdf)
  for _ in range(100_000):
    edges = np.concatenate([[-np.inf], (levels[1:] + levels[:-1]) / 2, [np.inf]])
    mass = cdf(edges[1:]) - cdf(edges[:-1])
    density = pdf(edges)  # pdf(+-inf) == 0.
    new = (density[:-1] - density[1:]) / mass
    if np.max(np.abs(new - levels)) < 1e-12:
      levels = new
      break
    levels = new
  # Exact symmetry, so that quantization keeps every sign.
  levels = (levels - levels[::-1]) / 2
  return tuple(float(v) for v in levels)


def _bucket(z: tf.Tensor, boundaries: tf.Tensor, count: int) -> tf.Tensor:
  """The number of `boundaries` at or below each `z`, as float32: its centroid's index.

  What `tf.searchsorted(..., side="right")` returns (a zero maps to the first positive
  centroid), as one comparison pass per boundary: at most 15 passes, against a binary
  search per element that took 12 of the 21 ms of a 1-bit encode of the CNN's kernel.
  Counted in float32 (exact for these small integers), the type the packing stage
  takes, so no cast pass follows.
  """
  indices = tf.cast(z >= boundaries[0], tf.float32)
  for i in range(1, count):
    indices += tf.cast(z >= boundaries[i], tf.float32)
  return indices


def _centroid_of(indices: tf.Tensor, centroids: tf.Tensor, count: int) -> tf.Tensor:
  """`centroids[indices]` for float32 `indices` in [0, count).

  Exactly the gathered values. Up to 4 centroids by selects (one pass each): a
  `tf.gather` from a small table cost ~5 ns per element on the CNN's kernel (8 ms),
  four times a select pass (`_common.take`, used above 4, costs ~4). `centroids` may
  be a list (of per-row columns).
  """
  if count > 4:
    return _common.take(centroids, tf.cast(indices, tf.int32))
  values = tf.where(indices >= 0.5, centroids[1], centroids[0])
  for i in range(2, count):
    values = tf.where(indices >= i - 0.5, centroids[i], values)
  return values


@te.core.tf_style_encoding_stage
class EdenEncodingStage(_common.StatelessStage):
  """Lloyd-Max indices of unit-variance rows and the unbiased EDEN scale per row.

  Input: a tensor whose last dimension is the row (`[rows, L]` after the rotation).
  Encoded: `{'indices': float32 integers in [0, 2**bits) of the input's shape,
  'scales': [rows] of the input dtype}`; decoded: `scales * centroids[indices]`.
  """

  ENCODED_VALUES_KEY = "indices"
  SCALES_KEY = "scales"

  def __init__(self, bits: int = 2):
    self._bits = _check_bits(bits)

  STAGE_NAME = "eden"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)

  def _centroids(self, dtype):
    return tf.constant(gaussian_lloyd_max(self._bits), dtype)

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    cdtype = _common.compute_dtype(x.dtype)
    length = x.shape[-1]
    rows = tf.reshape(tf.cast(x, cdtype), [-1, length])
    # Everything below works on y / max|y| (as `drive` does) and multiplies by max|y|
    # last: ||y|| itself overflows when a row holds a few values near the dtype's
    # maximum, and ||y|| sqrt(L) already for ||y|| above max / sqrt(L), although the
    # scale S (about ||y|| / sqrt(L)) is representable. On y / max|y| the norm lies in
    # [1, sqrt(L)] and the factor ||y|| sqrt(L) / <z, q> / max|y| in (0, sqrt(L) /
    # c_min], so S overflows only when it is not representable itself.
    peak = _common.largest_magnitude(rows, axis=1, keepdims=True)
    unit = tf.math.divide_no_nan(rows, peak)
    # TensorFlow's EuclideanNorm reduces the squares as Sum reduces a squared tensor,
    # without writing it: the bits of `tf.norm` (the sqrt of the Sum of x * x) in one
    # read (a test compares them; 1.5 -> 1.2 ms for the CNN's kernel, one thread).
    unit_norms = tf.math.reduce_euclidean_norm(unit, axis=1, keepdims=True)
    z = tf.math.divide_no_nan(unit, unit_norms) * math.sqrt(length)
    centroids = self._centroids(cdtype)
    count = 2**self._bits
    indices = _bucket(z, (centroids[1:] + centroids[:-1]) / 2, count - 1)
    if count == 2:
      # z * q is +-c_1 |z| exactly (c_0 = -c_1): the same products, without building q.
      products = tf.abs(z) * centroids[1]
    else:
      products = z * _centroid_of(indices, centroids, count)
    # S = ||y||^2 / <y, q> = ||y|| sqrt(L) / <z, q>; <z, q> > 0 whenever y != 0
    # because the quantizer keeps signs.
    scales = tf.math.divide_no_nan(unit_norms[:, 0] * math.sqrt(length),
                                   tf.reduce_sum(products, axis=1)) * peak[:, 0]
    return collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, tf.reshape(indices, x.shape)),
        (self.SCALES_KEY, tf.cast(scales, x.dtype)),
    ])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands, shape  # Unused.
    indices = encoded_tensors[self.ENCODED_VALUES_KEY]
    scales = encoded_tensors[self.SCALES_KEY]
    count = 2**self._bits
    rows = tf.reshape(tf.cast(indices, tf.float32), [-1, indices.shape[-1]])
    if count <= 4:
      # Each row's scaled centroids selected directly: c_i * S, the same products as
      # scaling the looked-up centroids, in one pass per centroid instead of two.
      scaled = self._centroids(scales.dtype)[tf.newaxis] * scales[:, tf.newaxis]
      rows = _centroid_of(rows, tf.split(scaled, count, axis=1), count)
    else:
      rows = (_common.take(self._centroids(scales.dtype), tf.cast(rows, tf.int32))
              * scales[:, tf.newaxis])
    out_shape = indices.shape if indices.shape.is_fully_defined() else tf.shape(indices)
    return tf.reshape(rows, out_shape)


def check_options(bits: int = 2, block_size: int = rotation.DEFAULT_BLOCK_SIZE,
                  rounds: int = DEFAULT_ROUNDS, keep: float = 1.0,
                  shared_rotation: bool = False) -> dict:
  """The `eden` codec's options, checked, with their defaults."""
  return {"bits": _check_bits(bits), "block_size": rotation.check_block_size(block_size),
          "rounds": rotation.check_rounds(rounds), "keep": subsample.check_keep(keep),
          "shared_rotation": _common.check_bool("shared_rotation", shared_rotation)}


def build(bits: int = 2, block_size: int = rotation.DEFAULT_BLOCK_SIZE,
          rounds: int = DEFAULT_ROUNDS, keep: float = 1.0,
          shared_rotation: bool = False) -> te.core.Encoder:
  """Returns the `eden` encoder (see the module docstring)."""
  composer = (te.core.EncoderComposer(Bitpack32EncodingStage(_check_bits(bits), in_range=True))
              .add_parent(EdenEncodingStage(bits), EdenEncodingStage.ENCODED_VALUES_KEY))
  if subsample.check_keep(keep) < 1.0:
    composer = composer.add_parent(subsample.RowPrefixEncodingStage(keep),
                                   subsample.RowPrefixEncodingStage.ENCODED_VALUES_KEY)
  rotate = rotation.rotation_stage(block_size, rounds, shared_rotation)
  return composer.add_parent(rotate, rotate.ENCODED_VALUES_KEY).make()


def bits_formula(num_elements: int, *, bits: int = 2,
                 block_size: int = rotation.DEFAULT_BLOCK_SIZE, rounds: int = DEFAULT_ROUNDS,
                 keep: float = 1.0, shared_rotation: bool = False,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `eden`.

  The seed travels in the payload, both ways; with `shared_rotation` only in the
  broadcast's (see `drive.bits_formula`).
  """
  del rounds
  rows, length = rotation.block_layout(num_elements, block_size)
  sent = subsample.kept_length(length, keep) if keep < 1.0 else length
  return (_common.packed_words(rows * sent, bits) * 32
          + rows * _common.dtype_bits(dtype) + rotation.seed_bits(shared_rotation, direction))



def relative_error_bound(num_elements: int, *, bits: int = 2,
                         block_size: int = rotation.DEFAULT_BLOCK_SIZE,
                         rounds: int = DEFAULT_ROUNDS, keep: float = 1.0,
                         shared_rotation: bool = False) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  As for DRIVE, `||x - x_hat||^2 = ||x_hat||^2 - ||x||^2`; with centroids between
  `c_min` and `c_max` in magnitude and signs kept, `<z, q> >= c_min ||z||_1 >= c_min
  sqrt(L)` and `||q|| <= c_max sqrt(L)`, so `||x_hat_r|| <= sqrt(L) (c_max / c_min)
  ||x_r||`.
  """
  del rounds, shared_rotation  # The rotation is orthogonal, whichever it is.
  _, length = rotation.block_layout(num_elements, block_size)
  magnitudes = [abs(c) for c in gaussian_lloyd_max(bits)]
  ratio = max(magnitudes) / min(magnitudes)
  if keep < 1.0:
    # The kept part decodes within the bound of its own length; the triangle
    # inequality adds the input: ||x - x_hat|| <= ||x|| + ||x_hat||.
    return 1.0 + math.sqrt(subsample.kept_length(length, keep)) * ratio
  return math.sqrt(length * ratio**2 - 1)
