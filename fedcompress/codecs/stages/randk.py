"""`randk` codec: k random coordinates, chosen by a seed; indices cost only the seed.

Random-k sparsification with a shared random mask (Konecny, McMahan, Yu, Richtarik,
Suresh and Bacon, "Federated Learning: Strategies for Improving Communication
Efficiency", NIPS 2016 workshop, "random mask": "the sparsity pattern is generated
from a random seed, so only the seed and the non-zero values need to be sent";
Stich, Cordonnier and Jaggi, NeurIPS 2018, for rand-k).

Each encode draws a fresh int32 seed, picks `k = ceil(fraction * n)` distinct
coordinates uniformly at random from it (`random_indices`),
and sends the `k` values and the seed; the receiver regenerates the same coordinates
from the seed. Clients therefore choose independent coordinates.

Scaling (option `unbiased`, default True): each coordinate is kept with probability
`k / n`, so the receiver multiplies the kept values by `n / k` and `E[x_hat] = x`
(variance grows by `n / k - 1` per coordinate). With `unbiased=False` the kept values
are returned as they are: lower error per client, biased towards zero by `k / n`.

Wire cost per tensor: `k` values at the tensor's dtype + 32 bits of seed.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, selection


def _largest_uniforms(seed: tf.Tensor, num_elements: int, k: int) -> tf.Tensor:
  """The positions of the k largest of `num_elements` seeded uniforms (a uniform subset)."""
  keys = tf.random.stateless_uniform([num_elements], _common.stateless_seed(seed))
  return selection.largest_k(keys, k, selection.uniform_threshold(num_elements, k))


# A float32 uniform is m / 2^23 for an integer m < 2^23: `_radix_largest_uniforms`
# finds the k-th largest m from a histogram of its high bits, then of the low bits
# inside the one bin that holds it.
_MANTISSA_BITS = 23
_LOW_BITS = 11


def _radix_largest_uniforms(seed: tf.Tensor, num_elements: int, k: int) -> tf.Tensor:
  """`tf.sort(_largest_uniforms(seed, num_elements, k))` (the same positions), in O(n).

  For k > n / 4 the k largest of the n uniforms were `top_k` over about k candidates,
  a sort of them: 130 ms for the CNN's kernel at 30% (`up_100x`), 250 ms at 50%, twice
  per client (encode, and the server's decode). Here: the k-th largest value `m*` from
  two histograms, then every position above it and, of the positions equal to it
  (ties are common: 1.6M draws on a grid of 2^23), the lowest ones, as `top_k` breaks
  ties.
  """
  keys = tf.random.stateless_uniform([num_elements], _common.stateless_seed(seed))
  m = tf.cast(keys * 2.0**_MANTISSA_BITS, tf.int32)  # Exact: keys are multiples of 2^-23.
  high_bins = 1 << (_MANTISSA_BITS - _LOW_BITS)
  low_bins = 1 << _LOW_BITS

  def kth_bin(counts, needed):
    """The bin holding the needed-th largest, and how many of it are still needed."""
    reach = tf.cumsum(counts, reverse=True)  # Values in this bin or above.
    b = tf.math.count_nonzero(reach >= needed, dtype=tf.int32) - 1
    return b, needed - (reach[b] - counts[b])

  high = tf.bitwise.right_shift(m, _LOW_BITS)
  b, needed = kth_bin(_common.histogram(high, high_bins), k)
  # Low bits of the values in bin b; every other value goes to an extra, unused bin.
  low = tf.where(tf.equal(high, b), tf.bitwise.bitwise_and(m, low_bins - 1), low_bins)
  low_bin, _ = kth_bin(
      _common.histogram(low, low_bins + 1)[:low_bins], needed)
  star = b * low_bins + low_bin
  ties = tf.equal(m, star)
  wanted = k - tf.math.count_nonzero(m > star, dtype=tf.int32)

  def some_ties():
    # Positions above m*, and the lowest `wanted` of those equal to it.
    tied = tf.where(ties)[:, 0]
    cut = tf.cast(tied[wanted - 1], tf.int32)
    keep = tf.logical_or(m > star, tf.logical_and(ties, tf.range(num_elements) <= cut))
    return tf.cast(tf.where(keep)[:, 0], tf.int32)

  chosen = tf.cond(tf.equal(tf.math.count_nonzero(ties, dtype=tf.int32), wanted),
                   lambda: tf.cast(tf.where(m >= star)[:, 0], tf.int32), some_ties)
  return tf.ensure_shape(chosen, [k])


def _draw_count(num_elements: int, k: int) -> int:
  """Draws with replacement that hold k distinct positions but for a 4-sigma shortfall.

  m draws from n positions repeat about m^2 / (2n) of them.
  """
  repeats = k * k / num_elements
  return k + math.ceil(repeats + 4 * math.sqrt(repeats) + 8)


def random_indices(seed: tf.Tensor, num_elements: int, k: int) -> tf.Tensor:
  """`k` distinct positions in [0, num_elements), ascending, a pure function of `seed`.

  A uniformly random k-subset. For `k <= n / 4`: the first k distinct of a few more
  than k positions drawn uniformly with replacement (by symmetry every k-subset is
  as likely), `_draw_count(n, k)` 64-bit draws (so `% n` is unbiased to about n / 2^64)
  instead of `n` uniforms: for the CNN's kernel at 1%, 16,169 draws against 1.6M.
  In the rare case (below 1e-4) that they hold fewer than k distinct, and for larger
  k, the k largest of n seeded uniforms instead, also a uniform subset.
  """
  if 4 * k > num_elements:
    return _radix_largest_uniforms(seed, num_elements, k)
  draws = tf.random.stateless_uniform(
      [_draw_count(num_elements, k)], _common.stateless_seed(seed, 1), minval=0,
      maxval=num_elements, dtype=tf.int64)
  distinct = tf.unique(tf.cast(draws, tf.int32)).y  # In the order of first appearance.
  chosen = tf.cond(tf.size(distinct) >= k, lambda: distinct[:k],
                   lambda: _largest_uniforms(seed, num_elements, k))
  return tf.sort(tf.ensure_shape(chosen, [k]))


@te.core.tf_style_encoding_stage
class RandKEncodingStage(_common.StatelessStage):
  """Keeps `ceil(fraction * n)` seed-chosen elements of any-shaped input.

  Encoded: `{'values': [k] input dtype, 'seed': int32 []}`.
  """

  ENCODED_VALUES_KEY = "values"
  SEED_KEY = "seed"

  def __init__(self, fraction: float = 0.01, unbiased: bool = True):
    self._fraction = _common.check_fraction("fraction", fraction)
    self._unbiased = _common.check_bool("unbiased", unbiased)

  STAGE_NAME = "randk"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
  DECODE_NEEDS_INPUT_SHAPE = True

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    n = _common.static_size(x, "randk")
    seed = _common.draw_seed()
    indices = random_indices(seed, n, _common.kept_count(n, self._fraction))
    return collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, tf.gather(tf.reshape(x, [-1]), indices)),
        (self.SEED_KEY, seed)])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    values = encoded_tensors[self.ENCODED_VALUES_KEY]
    n = _common.static_num_elements(shape)
    if not isinstance(n, int):
      raise ValueError("randk needs a statically known input shape to decode")
    k = values.shape[0]
    indices = random_indices(encoded_tensors[self.SEED_KEY], n, k)
    if self._unbiased:
      # Scaled in float32 (float64 for float64), the product rounded once: n / k in a
      # half-precision dtype was rounded itself (bfloat16 keeps 8 significant bits: 1000 /
      # 30 became 33.25, every decoded value 0.25% short, in every round and client) or
      # overflowed (float16 above 65504: every decoded value inf).
      scaled = tf.cast(values, _common.compute_dtype(values.dtype)) * (n / k)
      values = tf.cast(scaled, values.dtype)
    return tf.reshape(tf.scatter_nd(indices[:, tf.newaxis], values, [n]), shape)


def plain_note(*, direction: str, fraction: float = 0.01, unbiased: bool = True
               ) -> str | None:
  """On the broadcast, what it does to the model: it encodes the weights themselves, and
  every client trained from a model with 99% of them zeroed, unsaid (review R1 of s48)."""
  del unbiased
  if direction != "broadcast":
    return None
  return (f"keeps a {fraction:g} fraction of each tensor's coordinates, chosen at random, "
          "and zeroes the rest: on the broadcast these are the model's weights, not "
          "an update, so every client starts its round from that model (a sparsifier "
          "goes on the uplink)")


def check_options(fraction: float = 0.01, unbiased: bool = True) -> dict:
  """The `randk` codec's options, checked, with their defaults."""
  return {"fraction": _common.check_fraction("fraction", fraction),
          "unbiased": _common.check_bool("unbiased", unbiased)}


def build(fraction: float = 0.01, unbiased: bool = True) -> te.core.Encoder:
  """The `randk` encoder: the stage alone (it flattens by itself)."""
  return te.core.EncoderComposer(RandKEncodingStage(fraction, unbiased)).make()


def bits_formula(num_elements: int, *, fraction: float = 0.01, unbiased: bool = True,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `randk` (either way)."""
  del unbiased, direction
  return _common.kept_count(num_elements, fraction) * _common.dtype_bits(dtype) + \
      _common.SEED_BITS



def output_size(num_elements: int, *, fraction: float = 0.01, unbiased: bool = True) -> int:
  """The `k` values a next codec in a chain encodes (fedcompress.codecs.chain)."""
  del unbiased
  return _common.kept_count(num_elements, fraction)


def error_gain(num_elements: int, *, fraction: float = 0.01, unbiased: bool = True) -> float:
  """Decoding scales the values by `n / k` (unbiased) or 1: an error in them by as much;
  the kept values have at most the input's norm."""
  return num_elements / output_size(num_elements, fraction=fraction) if unbiased else 1.0


def relative_error_bound(num_elements: int, *, fraction: float = 0.01,
                         unbiased: bool = True) -> float:
  """Worst-case `||x - x_hat|| / ||x||`: dropped coordinates err by themselves, kept
  ones by `(n / k - 1)` times themselves when scaled."""
  k = _common.kept_count(num_elements, fraction)
  if k == num_elements:
    return 0.0
  return max(1.0, num_elements / k - 1) if unbiased else 1.0
