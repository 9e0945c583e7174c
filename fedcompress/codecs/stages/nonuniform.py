"""`nonuniform` codec: quantization levels placed by the data, codebook sent along.

Uniform levels waste resolution on the tails of bell-shaped model updates. Here the
`2**bits` levels are fitted to each tensor at every encode:

* `method="quantile"`: the levels are the tensor's own `(i + 1/2) / 2**bits`
  quantiles, `i = 0 .. 2**bits - 1`: each level stands for the same number of values
  (equal-mass cells).
* `method="lloyd"`: Lloyd-Max iterations from those quantiles: assign every value to
  its nearest level, move each level to the mean of its values (Lloyd, "Least Squares
  Quantization in PCM", IEEE Trans. Inf. Theory 28(2), 1982; Max, IRE Trans. Inf.
  Theory, 1960), accelerated by momentum (see `_lloyd`), until the levels stop moving.

Every value is then sent as the index of its nearest level (deterministic, hence
biased), packed 32 bits per int32 word, and the codebook as `2**bits` values of the
tensor's dtype: side information, counted. The codec's one stage
(`PackedNonUniformEncodingStage`) quantizes and packs, so that decoding maps each packed
byte to its levels in one lookup (1, 2, 4 and 8 bits): 7.2 -> 2.1 ms for the CNN's two
encoded tensors, one thread (`python -m tools.op_profile --codec=nonuniform
--part=decode_before_sum`).

Wire cost per tensor of `n` elements: `ceil(n * bits / 32) * 32 + 2**bits * width`.
A tensor with at most `2**bits` distinct values is sent exactly, by either method (its
levels are then the values themselves), at any size (see below), with two exceptions of
float arithmetic: two values one float apart (the boundary between their levels, their
midpoint, is not representable and rounds onto one of them) and, in float32, a nonzero
value below ~10^-45 of the largest, which the scaling by a power of two flushes to 0.

Large tensors. Up to `SORTED_MAX_ELEMENTS` (2^16) elements the levels are fitted on
the sorted values, exactly as described. Sorting 1.6M float32 values costs ~400 ms of
CPU in TensorFlow, most of an encode, so above that the levels are fitted on a
histogram instead: one pass puts every value in one of `HISTOGRAM_BINS` (2^16) equal
bins over `[min x, max x]`; the quantiles are then those of the bins (to a bin) and
Lloyd runs on the density that is uniform within each bin (`_fit_histogram`), O(2**bits)
per step. So the levels are fitted to the binned values, to a resolution of
`(max x - min x) / 2^16`: measured on 2^18 values, the normalized MSE is within 0.03%
of the sorted fit's at 2 and 4 bits (N(0, 1), Student-t with 2 and 3 degrees of
freedom) and within a few percent either way at 8 (where Lloyd's fixed points
themselves differ); a few outliers stretching the range over ~10^4 times the bulk's
spread leave the bulk only a few bins (Cauchy: +40% at 4 bits, +75% at 2). A tensor
whose values occupy at most `2**bits` bins (so any with at most `2**bits` distinct
values) is fitted on its sorted values. The assignment stays exactly nearest-level:
two table lookups per value by its bin (`_nearest_by_bins`), or, when some bin holds
two boundaries, the binary search. The levels stay sorted and inside `[min x, max x]`.
Measured (`tools/codec_speed.py`, 3136 x 512 float32, 4 bits, lloyd, loaded 2-core
machine, one `x * 1.0001` pass ~4-10 ms): encode ~540-600 -> ~75 ms (binning ~10,
~100 Lloyd steps ~15, assignment ~30, packing ~12); decode unchanged at ~35-40 ms
(unpacking ~17, the codebook lookup ~17). At 8 bits Lloyd takes ~400-1000 steps on
the histogram, ~200 ms.

Options:
  bits: 1..8 (the codebook grows as 2**bits).
  method: "quantile" or "lloyd".
  iters: at most this many Lloyd iterations (ignored by "quantile"), 1..1000 (default
    1000); they stop earlier once no level moves by more than 1e-5 of the levels'
    span, which on normal-like data takes tens (4 bits) to a few hundred (8 bits).
    Each costs O(2**bits log n) on the sorted values, O(2**bits) on the histogram.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import native
from fedcompress.codecs.stages import _common, packing
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage

MAX_BITS = 8
METHODS = ("quantile", "lloyd")
# A generous cap: Lloyd stops by itself once the levels settle (`_lloyd`).
MAX_ITERS = 1000
DEFAULT_ITERS = MAX_ITERS
# Lloyd stops once no level moves by more than this fraction of the levels' span.
TOLERANCE = 1e-5
# Tensors of more elements fit their levels on a histogram of this many bins
# (`_fit_histogram`) instead of on their sorted values. Up to 2^16 elements the sort
# costs no more than the histogram; 2^16 bins cost hardly more than 2^14 on the CNN's
# 1.6M-value kernel, for 4x the resolution.
SORTED_MAX_ELEMENTS = 2**16
HISTOGRAM_BINS = 2**16


# Up to this many levels the native search counts the levels below each value.
_NATIVE_MAX_LEVELS = 32


def check_options(bits: int = 4, method: str = "lloyd", iters: int = DEFAULT_ITERS) -> dict:
  """The `nonuniform` codec's options, checked, with their defaults."""
  return {"bits": _common.check_int("bits", bits, 1, MAX_BITS),
          "method": _common.check_choice("method", method, METHODS),
          "iters": _common.check_int("iters", iters, 1, MAX_ITERS)}


def quantile_positions(num_elements: int, levels: int) -> np.ndarray:
  """Sorted-order positions of the `(i + 1/2) / levels` quantiles (nearest rank)."""
  i = np.arange(levels)
  positions = np.floor((i + 0.5) * num_elements / levels).astype(np.int64)
  return np.clip(positions, 0, num_elements - 1)


def _nearest(values: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
  """Index of the nearest of the ascending `levels` for each of the rank-1 `values`."""
  return tf.searchsorted(_boundaries(levels)[tf.newaxis], values[tf.newaxis], side="left")[0]


def _nearest_float(values: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
  """float32 `_nearest(values, levels)`: the codec's indices."""
  native_ops = native.ops()
  if native_ops is not None:
    # One kernel for the search and the cast: the CNN's 1.6M-value kernel, one thread,
    # 8.3 ms by `_nearest_by_bins`' tables -> 3.8 (docs/speed_history.md).
    return native_ops.fedcompress_search_sorted_left(_boundaries(levels), values)
  return tf.cast(_nearest(values, levels), tf.float32)


def _boundaries(levels: tf.Tensor) -> tf.Tensor:
  """Midpoints of consecutive ascending levels: value v is nearest to level #{b < v}."""
  # Halves first: (a + b) / 2 overflows for magnitudes near the dtype's maximum.
  return levels[:-1] / 2 + levels[1:] / 2


def _sorted_cells(ordered: tf.Tensor):
  """Cell sizes and sums on sorted values: `cells(boundaries) -> (sizes, sums)`.

  Cells of sorted values are contiguous ranges, so a cell needs only its end (a binary
  search) and prefix sums, not a pass over the data. The prefix sums are in float64
  because differences of float32 sums of ~10^6 values lose ~0.1 absolute.
  """
  n = ordered.shape[0]
  prefix = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(tf.cast(ordered, tf.float64))], 0)

  def cells(boundaries):
    # Value v belongs to cell #{boundaries < v} (as in `_nearest`), so cell i ends
    # after the values <= boundary i.
    ends = tf.searchsorted(ordered[tf.newaxis], boundaries[tf.newaxis], side="right")[0]
    ends = tf.concat([tf.cast(ends, tf.int64), [n]], 0)
    starts = tf.concat([[0], ends[:-1]], 0)
    return (tf.cast(ends - starts, tf.float64),
            tf.gather(prefix, ends) - tf.gather(prefix, starts))

  return cells


def _fit_sorted(unit: tf.Tensor, count: int, method: str, iters: int) -> tf.Tensor:
  """Levels fitted on the sorted values: exact quantiles, exact Lloyd steps.

  With at most `count` distinct values the levels are those values (padded with the
  largest), so the tensor is sent exactly: quantiles of skewed counts repeat a common
  value and leave a rare one without a level, and Lloyd from them need not recover it
  (`[0] * 50 + [1] * 3 + [5] * 2 + [7]` at 2 bits lost 1.33).
  """
  ordered = tf.sort(unit)

  def fitted():
    levels = tf.gather(ordered, quantile_positions(unit.shape[0], count))
    if method == "lloyd":
      levels = _lloyd(_sorted_cells(ordered), levels, ordered[0], ordered[-1], iters)
    return levels

  new = tf.not_equal(ordered[1:], ordered[:-1])  # Where a new distinct value starts.

  def padded():
    distinct = tf.boolean_mask(ordered, tf.concat([[True], new], 0))
    pad = tf.fill([count - tf.size(distinct)], ordered[-1])
    return tf.reshape(tf.concat([distinct, pad], 0), [count])

  # The count alone decides; the values are gathered only when they are the levels.
  return tf.cond(tf.math.count_nonzero(new) < count, padded, fitted)


class _Histogram:
  """`HISTOGRAM_BINS` equal bins over `[low, high]` of the rank-1 `values`: one pass.

  The bins are ordered like the values. Each bin stands for its values by its center
  (`centers`): within half a bin width, `(high - low) / HISTOGRAM_BINS / 2`, of each.
  """

  def __init__(self, values: tf.Tensor, low: tf.Tensor, high: tf.Tensor):
    bins = HISTOGRAM_BINS
    span = high - low
    # Slightly under bins / span, so that the top value's position stays below `bins`
    # despite rounding (truncation then never needs a clip).
    self.per_unit = tf.where(span > 0, bins / tf.where(span > 0, span, 1) * (1 - 2**-20),
                             tf.zeros_like(span))
    self.low, self.high = low, high
    # NaN and infinities (which the extremes propagate) have no bin: such values are
    # all put in bin 0, which leaves one bin occupied, so that the levels are fitted on
    # the sorted values and the indices found by search (`_nearest_by_bins`), as for a
    # tensor of at most 2**bits distinct values.
    self.finite = tf.math.is_finite(low) & tf.math.is_finite(high)
    # Truncation is the floor here: the positions are >= 0.
    self.index = tf.cond(self.finite,
                         lambda: tf.cast((values - low) * self.per_unit, tf.int32),
                         lambda: tf.zeros(values.shape, tf.int32))
    self.counts = tf.raw_ops.DenseBincount(input=self.index, size=bins,
                                           weights=tf.zeros([0], tf.int32))

  def centers(self) -> tf.Tensor:
    """float64 center of each bin, inside [low, high]."""
    per_unit = tf.cast(self.per_unit, tf.float64)
    wide_low, wide_high = tf.cast(self.low, tf.float64), tf.cast(self.high, tf.float64)
    offset = tf.range(HISTOGRAM_BINS, dtype=tf.float64) + 0.5
    return tf.clip_by_value(wide_low + tf.math.divide_no_nan(offset, per_unit), wide_low,
                            wide_high)


def _nearest_by_bins(histogram: _Histogram, values: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
  """float32 `_nearest(values, levels)` of the binned `values`, by a per-bin table.

  A value's nearest level is #{boundaries below it}. For each bin, `below` counts the
  boundaries below a margin under it and `threshold` is the next boundary, so a value
  of the bin has index `below + (value > threshold)`: exact whenever at most one
  boundary lies in the bin widened by the margins (a quarter bin each side, far more
  than the rounding of the bin positions), checked for every occupied bin; otherwise
  `_nearest` itself. Two table lookups cost less than a binary search per value.
  """
  boundaries = _boundaries(levels)
  wide = tf.cast(boundaries, tf.float64)[tf.newaxis]
  # 0 for a constant input: its values all equal `low`, in bin 0, with no margin needed.
  width = tf.math.divide_no_nan(tf.constant(1.0, tf.float64),
                                tf.cast(histogram.per_unit, tf.float64))
  start = (tf.cast(histogram.low, tf.float64)
           + tf.range(HISTOGRAM_BINS, dtype=tf.float64) * width)
  below = tf.searchsorted(wide, (start - width / 4)[tf.newaxis], side="left")[0]
  reach = tf.searchsorted(wide, (start + width * 5 / 4)[tf.newaxis], side="left")[0]
  straddled = (reach - below > 1) & (histogram.counts > 0)

  def by_table():
    past = tf.fill([1], tf.constant(np.inf, boundaries.dtype))
    threshold = tf.gather(tf.concat([boundaries, past], 0), below)
    at = histogram.index[:, tf.newaxis]
    if threshold.dtype == tf.float32:
      # Both entries of a bin in one gather, as the parts of a complex64: one gather of
      # 8 bytes per value costs about what one of 4 does. The CNN's 1.6M-value kernel,
      # one thread: two gathers 7.4 ms; one, 3.8, and its two parts 1.7 and 1.1.
      entries = tf.gather_nd(tf.complex(threshold, tf.cast(below, tf.float32)), at)
      return tf.math.imag(entries) + tf.cast(values > tf.math.real(entries), tf.float32)
    return (tf.gather_nd(tf.cast(below, tf.float32), at)
            + tf.cast(values > tf.gather_nd(threshold, at), tf.float32))

  return tf.cond(tf.reduce_any(straddled) | ~histogram.finite,
                 lambda: tf.cast(_nearest(values, levels), tf.float32), by_table)


def _fit_histogram(histogram: _Histogram, num_elements: int, count: int, method: str,
                   iters: int) -> tf.Tensor:
  """Levels fitted on the histogram: its quantiles, then Lloyd steps on its bins."""
  counts = tf.cast(histogram.counts, tf.float64)
  centers = histogram.centers()
  cumulative = tf.cumsum(counts)
  # The bin holding the value of each quantile's sorted rank.
  ranks = tf.constant(quantile_positions(num_elements, count), tf.float64)
  holding = tf.searchsorted(cumulative, ranks, side="right")
  dtype = histogram.low.dtype
  levels = tf.cast(tf.gather(centers, holding), dtype)
  if method == "lloyd":
    zero = tf.zeros([1], tf.float64)
    prefix_counts = tf.concat([zero, cumulative], 0)
    prefix_sums = tf.concat([zero, tf.cumsum(counts * centers)], 0)
    wide_low = tf.cast(histogram.low, tf.float64)
    per_unit = tf.cast(histogram.per_unit, tf.float64)
    width = tf.math.divide_no_nan(tf.constant(1.0, tf.float64), per_unit)

    def cells(boundaries):
      # Lloyd on the density that is uniform within each bin: bins below a boundary's
      # bin are below it, and its own bin is split at the boundary, the part below
      # holding `fraction` of its values with mean `(1 - fraction) * width / 2` under
      # the center. Whole bins would make the cells jump by a bin at a time, and
      # Lloyd's last small moves (8 bits) stall at worse fixed points.
      position = (tf.cast(boundaries, tf.float64) - wide_low) * per_unit
      crossed = tf.minimum(tf.cast(position, tf.int32), HISTOGRAM_BINS - 1)
      fraction = tf.clip_by_value(position - tf.cast(crossed, tf.float64), 0.0, 1.0)
      split = fraction * tf.gather(counts, crossed)
      below_counts = tf.gather(prefix_counts, crossed) + split
      below_sums = (tf.gather(prefix_sums, crossed)
                    + split * (tf.gather(centers, crossed) - (1 - fraction) * width / 2))
      below_counts = tf.concat([zero, below_counts, prefix_counts[-1:]], 0)
      below_sums = tf.concat([zero, below_sums, prefix_sums[-1:]], 0)
      return below_counts[1:] - below_counts[:-1], below_sums[1:] - below_sums[:-1]

    levels = _lloyd(cells, levels, histogram.low, histogram.high, iters)
  # Cell means of that density lie in their cells, inside [low, high], ascending: the
  # sort and clip only undo float64 rounding.
  return tf.clip_by_value(tf.sort(levels), histogram.low, histogram.high)


def _lloyd(cells, levels: tf.Tensor, low: tf.Tensor, high: tf.Tensor, iters: int,
           tolerance: float = TOLERANCE) -> tf.Tensor:
  """Accelerated Lloyd-Max steps from ascending `levels` in `[low, high]`.

  `cells(boundaries)` gives the float64 size and sum of the values of each cell
  between consecutive `boundaries` (`_sorted_cells`, or whole bins of a histogram in
  `_fit_histogram`): O(2**bits log n) or O(2**bits) per step, no pass over the data.

  Plain Lloyd from the quantiles converges slowly: on 2^20 N(0, 1) values, 20 steps
  left 4 bits 15% above the Lloyd-Max error and it took ~340 to settle; 8 bits were
  still 44% above their settled error after 1,000. So each step here starts from the
  last Lloyd output pushed further along its last move by Nesterov's momentum
  sequence, and restarts (a plain step from the last output) whenever that point has
  a larger error than the one before, the adaptive restart of O'Donoghue and Candes
  ("Adaptive Restart for Accelerated Gradient Schemes", Found. Comput. Math. 15,
  2015). The errors of the points stepped from never increase, and a Lloyd output
  never has more error than its point. On the same values the loop below stops after
  45 steps at 4 bits and 321 at 8 bits, there with 22% less error than plain Lloyd
  after 7,868. It stops once no level moves by more than `tolerance` of the levels'
  span, or after `iters` steps.
  """

  def step(point, output, momentum, error, extrapolated, done):
    del done  # Tested by tf.while_loop.
    sizes, sums = cells(_boundaries(point))
    # The squared error of `point` less sum(x^2), a constant: no prefix sum of squares.
    wide = tf.cast(point, tf.float64)
    point_error = tf.reduce_sum(wide * (wide * sizes - 2 * sums))
    # Only an extrapolated point restarts: a plain step's output can exceed its
    # point's error by rounding alone, and must not restart again and again.
    restart = extrapolated & (point_error > error)
    # An empty cell keeps its level; levels stay sorted (each new level lies inside
    # its own cell).
    means = tf.where(sizes > 0, tf.cast(tf.math.divide_no_nan(sums, sizes), point.dtype),
                     point)
    moved = tf.reduce_max(tf.abs(means - output))
    converged = moved <= tolerance * (means[-1] - means[0])
    following = (1 + tf.sqrt(1 + 4 * momentum**2)) / 2
    ahead = means + (momentum - 1) / following * (means - output)
    # Sorted and clipped: levels stay in [min x, max x] (relative_error_bound).
    ahead = tf.clip_by_value(tf.sort(ahead), low, high)
    return (
        tf.where(restart, output, ahead),
        tf.where(restart, output, means),
        tf.where(restart, tf.ones_like(momentum), following),
        tf.where(restart, error, point_error),
        ~restart & (momentum > 1),
        ~restart & converged,
    )

  initial = (levels, levels, tf.constant(1.0, levels.dtype), tf.constant(np.inf, tf.float64),
             tf.constant(False), tf.constant(False))
  return tf.while_loop(lambda *state: ~state[-1], step, initial,
                       maximum_iterations=iters)[1]


@te.core.tf_style_encoding_stage
class NonUniformQuantizationEncodingStage(_common.StatelessStage):
  """Per-tensor data-fitted levels (quantiles or Lloyd-Max), nearest-level indices.

  Encoded: `{'indices': float32 integers in [0, 2**bits) of the input's shape,
  'codebook': [2**bits] ascending levels of the input dtype}`.
  """

  ENCODED_VALUES_KEY = "indices"
  CODEBOOK_KEY = "codebook"

  def __init__(self, bits: int = 4, method: str = "lloyd", iters: int = DEFAULT_ITERS):
    check_options(bits, method, iters)
    self._bits = bits
    self._method = method
    self._iters = iters

  STAGE_NAME = "nonuniform_quantization"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    n = _common.static_size(x, "nonuniform")
    count = 2**self._bits
    cdtype = _common.compute_dtype(x.dtype)
    flat = tf.reshape(tf.cast(x, cdtype), [-1])
    # Fit on x / 2**e with 2**e <= max|x| < 2**(e+1), so that Lloyd's sums cannot
    # overflow; a power of two scales exactly, so levels that are data values stay
    # data values. e is clamped so 2**e is a normal number of either float type.
    low, high = tf.reduce_min(flat), tf.reduce_max(flat)
    peak = tf.maximum(-low, high)
    exponent = tf.clip_by_value(tf.floor(tf.math.log(peak) / math.log(2.0)), -100.0, 100.0)
    scale = tf.where(peak > 0, tf.pow(tf.constant(2.0, cdtype), exponent),
                     tf.constant(1.0, cdtype))
    # Times 2**-e, which is exact too: the same values as the division (which rounds a
    # subnormal result as the product does), for half the time of a division pass.
    unit = flat * (1 / scale)
    if n <= SORTED_MAX_ELEMENTS:
      levels = _fit_sorted(unit, count, self._method, self._iters)
      indices = _nearest_float(unit, levels)
    else:
      # Division by a power of two is exact and monotone: these are unit's extremes.
      histogram = _Histogram(unit, low / scale, high / scale)
      # At most 2**bits occupied bins: possibly at most 2**bits distinct values, which
      # the sorted fit sends exactly; rare, and then worth a sort.
      levels = tf.cond(
          tf.math.count_nonzero(histogram.counts) <= count,
          lambda: _fit_sorted(unit, count, self._method, self._iters),
          lambda: _fit_histogram(histogram, n, count, self._method, self._iters))
      # The bins' tables compute `_nearest`'s indices with two gathers a value; the
      # native kernel's count of the levels below each value beats them up to 32 levels
      # (1.6M values, one thread: 3.8 against 8.3 ms at 16 levels), its binary search
      # above does not (13 ms at 256).
      indices = (_nearest_float(unit, levels)
                 if native.ops() is not None and count <= _NATIVE_MAX_LEVELS
                 else _nearest_by_bins(histogram, unit, levels))
    # A NaN or an infinity (the extremes propagate both) decodes as NaN everywhere, as
    # through uniform and the rotations: the levels fitted around it were finite, +inf
    # decoded as the top level, and a NaN among few distinct values left the sorted
    # levels unordered, so that finite values took wrong ones. Two scalars and the
    # codebook: finite inputs encode as before.
    codebook = tf.where(tf.math.is_finite(low) & tf.math.is_finite(high), levels * scale,
                        tf.constant(math.nan, cdtype))
    return collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, tf.reshape(indices, x.shape)),
        (self.CODEBOOK_KEY, tf.cast(codebook, x.dtype)),
    ])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands, shape  # Unused.
    indices = encoded_tensors[self.ENCODED_VALUES_KEY]
    # gather_nd by one-element index rows: the same lookup, measured faster on CPU than
    # tf.gather on the CNN's kernel (`python -m tools.codec_speed --codecs=nonuniform`).
    return tf.gather_nd(encoded_tensors[self.CODEBOOK_KEY],
                        tf.cast(indices, tf.int32)[..., tf.newaxis])


@te.core.tf_style_encoding_stage
class PackedNonUniformEncodingStage(_common.StatelessStage):
  """`NonUniformQuantizationEncodingStage` and the bit-packing of its indices in one stage.

  The same words and codebook as the quantization stage with a
  `Bitpack32EncodingStage(bits)` child (whose code it runs), so that the decoder can
  map packed bytes to levels directly: at 1, 2, 4 and 8 bits, one gather of the `8 /
  bits` levels of each byte from a [256, 8 / bits] table of the codebook, where the
  two stages unpacked every index to float32 and then cast and gathered it again.
  Entropy coders code the indices in place of the packing: `split_packing` gives them
  the two stages.

  Encoded: `{'indices': int32[ceil(n * bits / 32)] words, 'codebook': [2**bits]
  ascending levels of the input dtype}`.
  """

  ENCODED_VALUES_KEY = "indices"
  CODEBOOK_KEY = "codebook"
  STAGE_NAME = "nonuniform_quantization"
  # Packed words are not to be transformed further.
  COMPRESSIBLE_KEYS = ()
  DECODE_NEEDS_INPUT_SHAPE = True

  def __init__(self, bits: int = 4, method: str = "lloyd", iters: int = DEFAULT_ITERS):
    self._quantizer = NonUniformQuantizationEncodingStage(bits, method, iters)
    # The indices are integers in [0, 2**bits) whatever the input (nearest of the
    # levels, NaN and infinities included): the packing skips its range check.
    self._packing = Bitpack32EncodingStage(bits, in_range=True)
    self._bits = bits

  def split_packing(self) -> tuple[NonUniformQuantizationEncodingStage, Bitpack32EncodingStage]:
    """The quantization stage and the packing of its indices that this stage fuses."""
    return self._quantizer, self._packing

  def encode(self, x, encode_params):
    encoded = self._quantizer.encode(x, encode_params)
    indices = encoded[self._quantizer.ENCODED_VALUES_KEY]
    packed = self._packing.encode(indices, {})[self._packing.ENCODED_VALUES_KEY]
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, packed),
                                    (self.CODEBOOK_KEY, encoded[self._quantizer.CODEBOOK_KEY])])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    num_values = _common.static_num_elements(shape)
    if not isinstance(num_values, int):
      raise ValueError("nonuniform needs a statically known input shape to decode")
    words = encoded_tensors[self.ENCODED_VALUES_KEY]
    codebook = encoded_tensors[self.CODEBOOK_KEY]
    if _common.LITTLE_ENDIAN and 8 % self._bits == 0 and num_values:
      # Row b: the levels of byte b's fields, least significant first.
      table = _common.take(codebook, tf.constant(packing.byte_fields(self._bits), tf.int32))
      levels = packing.expand_bytes(words, table, num_values)
    else:
      levels = _common.take(codebook, packing.unpack_bits(words, self._bits, num_values))
    return tf.reshape(levels, shape)


def build(bits: int = 4, method: str = "lloyd", iters: int = DEFAULT_ITERS) -> te.core.Encoder:
  """Returns the `nonuniform` encoder (see the module docstring)."""
  return te.core.EncoderComposer(PackedNonUniformEncodingStage(bits, method, iters)).make()


def bits_formula(num_elements: int, *, bits: int = 4, method: str = "lloyd",
                 iters: int = DEFAULT_ITERS, direction: str = "aggregate",
                 dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `nonuniform` (either way)."""
  del method, iters, direction
  return (_common.packed_words(num_elements, bits) * 32
          + 2**bits * _common.dtype_bits(dtype))


def relative_error_bound(num_elements: int, *, bits: int = 4, method: str = "lloyd",
                         iters: int = DEFAULT_ITERS) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  The levels lie in `[min x, max x]` and each value goes to the nearest one, so it
  moves by at most `2 max|x| <= 2 ||x||`; summed over `n` values.
  """
  del bits, method, iters  # The bound holds for any levels inside the range.
  return 2 * math.sqrt(num_elements)
