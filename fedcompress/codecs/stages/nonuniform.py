"""`nonuniform` codec: quantization levels placed by the data, codebook sent along.

Uniform levels waste resolution on the tails of bell-shaped model updates. Here the
`2**bits` levels are fitted to each tensor at every encode:

* `method="quantile"`: the levels are the tensor's own `(i + 1/2) / 2**bits`
  quantiles, `i = 0 .. 2**bits - 1`: each level stands for the same number of values
  (equal-mass cells).
* `method="lloyd"`: Lloyd-Max iterations from those quantiles: assign every value to
  its nearest level, move each level to the mean of its values, `iters` times; each
  iteration lowers the mean squared error (Lloyd, "Least Squares Quantization in
  PCM", IEEE Trans. Inf. Theory 28(2), 1982; Max, IRE Trans. Inf. Theory, 1960).

Every value is then sent as the index of its nearest level (deterministic, hence
biased), packed 32 bits per int32 word, and the codebook as `2**bits` values of the
tensor's dtype: side information, counted.

Wire cost per tensor of `n` elements: `ceil(n * bits / 32) * 32 + 2**bits * width`.
A tensor with at most `2**bits` distinct values is sent exactly by `quantile`
(its levels are then the values themselves).

Options:
  bits: 1..8 (the codebook grows as 2**bits).
  method: "quantile" or "lloyd".
  iters: Lloyd iterations (ignored by "quantile"), 1..1000; each costs O(2**bits log n)
    on the sorted values, so the sort dominates the encode time.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage

MAX_BITS = 8
METHODS = ("quantile", "lloyd")


def check_options(bits: int = 4, method: str = "lloyd", iters: int = 20) -> dict:
  """The `nonuniform` codec's options, checked, with their defaults."""
  return {"bits": _common.check_int("bits", bits, 1, MAX_BITS),
          "method": _common.check_choice("method", method, METHODS),
          "iters": _common.check_int("iters", iters, 1, 1000)}


def quantile_positions(num_elements: int, levels: int) -> np.ndarray:
  """Sorted-order positions of the `(i + 1/2) / levels` quantiles (nearest rank)."""
  i = np.arange(levels)
  positions = np.floor((i + 0.5) * num_elements / levels).astype(np.int64)
  return np.clip(positions, 0, num_elements - 1)


def _nearest(values: tf.Tensor, levels: tf.Tensor) -> tf.Tensor:
  """Index of the nearest of the ascending `levels` for each of the rank-1 `values`."""
  # Halves first: (a + b) / 2 overflows for magnitudes near the dtype's maximum.
  boundaries = levels[:-1] / 2 + levels[1:] / 2
  return tf.searchsorted(boundaries[tf.newaxis], values[tf.newaxis], side="left")[0]


def _lloyd(ordered: tf.Tensor, levels: tf.Tensor, iters: int) -> tf.Tensor:
  """`iters` Lloyd-Max steps on sorted values, from ascending `levels`.

  Cells of sorted values are contiguous ranges, so each step needs only the `2**bits
  - 1` cell ends (a binary search each) and prefix sums, not a pass over the data:
  O(2**bits log n) per step after one O(n) cumulative sum. The prefix sums are in
  float64 because differences of float32 sums of ~10^6 values lose ~0.1 absolute.
  """
  n = ordered.shape[0]
  prefix = tf.concat([tf.zeros([1], tf.float64), tf.cumsum(tf.cast(ordered, tf.float64))], 0)

  def step(levels):
    boundaries = levels[:-1] / 2 + levels[1:] / 2
    # Value v belongs to cell #{boundaries < v} (as in `_nearest`), so cell i ends
    # after the values <= boundary i.
    ends = tf.searchsorted(ordered[tf.newaxis], boundaries[tf.newaxis], side="right")[0]
    ends = tf.concat([tf.cast(ends, tf.int64), [n]], 0)
    starts = tf.concat([[0], ends[:-1]], 0)
    sizes = tf.cast(ends - starts, tf.float64)
    means = tf.math.divide_no_nan(tf.gather(prefix, ends) - tf.gather(prefix, starts), sizes)
    # An empty cell keeps its level; levels stay sorted (each new level lies inside
    # its own cell).
    return (tf.where(sizes > 0, tf.cast(means, levels.dtype), levels),)

  return tf.while_loop(lambda _: True, step, (levels,), maximum_iterations=iters)[0]


@te.core.tf_style_encoding_stage
class NonUniformQuantizationEncodingStage(_common.StatelessStage):
  """Per-tensor data-fitted levels (quantiles or Lloyd-Max), nearest-level indices.

  Encoded: `{'indices': float32 integers in [0, 2**bits) of the input's shape,
  'codebook': [2**bits] ascending levels of the input dtype}`.
  """

  ENCODED_VALUES_KEY = "indices"
  CODEBOOK_KEY = "codebook"

  def __init__(self, bits: int = 4, method: str = "lloyd", iters: int = 20):
    check_options(bits, method, iters)
    self._bits = bits
    self._method = method
    self._iters = iters

  STAGE_NAME = "nonuniform_quantization"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    n = x.shape.num_elements()
    if n is None:
      raise ValueError(f"nonuniform needs a statically known shape, got {x.shape}")
    count = 2**self._bits
    cdtype = _common.compute_dtype(x.dtype)
    flat = tf.reshape(tf.cast(x, cdtype), [-1])
    # Fit on x / 2**e with 2**e <= max|x| < 2**(e+1), so that Lloyd's sums cannot
    # overflow; a power of two scales exactly, so levels that are data values stay
    # data values. e is clamped so 2**e is a normal number of either float type.
    peak = tf.reduce_max(tf.abs(flat))
    exponent = tf.clip_by_value(tf.floor(tf.math.log(peak) / math.log(2.0)), -100.0, 100.0)
    scale = tf.where(peak > 0, tf.pow(tf.constant(2.0, cdtype), exponent),
                     tf.constant(1.0, cdtype))
    unit = flat / scale
    ordered = tf.sort(unit)
    levels = tf.gather(ordered, quantile_positions(n, count))
    if self._method == "lloyd":
      levels = _lloyd(ordered, levels, self._iters)
    indices = _nearest(unit, levels)
    return collections.OrderedDict([
        (self.ENCODED_VALUES_KEY, tf.reshape(tf.cast(indices, tf.float32), x.shape)),
        (self.CODEBOOK_KEY, tf.cast(levels * scale, x.dtype)),
    ])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands, shape  # Unused.
    indices = encoded_tensors[self.ENCODED_VALUES_KEY]
    return tf.gather(encoded_tensors[self.CODEBOOK_KEY], tf.cast(indices, tf.int32))


def build(bits: int = 4, method: str = "lloyd", iters: int = 20) -> te.core.Encoder:
  """Returns the `nonuniform` encoder (see the module docstring)."""
  stage = NonUniformQuantizationEncodingStage
  return (te.core.EncoderComposer(Bitpack32EncodingStage(bits))
          .add_parent(stage(bits, method, iters), stage.ENCODED_VALUES_KEY)
          .make())


def bits_formula(num_elements: int, *, bits: int = 4, method: str = "lloyd", iters: int = 20,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `nonuniform` (either way)."""
  del method, iters, direction
  return (_common.packed_words(num_elements, bits) * 32
          + 2**bits * _common.dtype_bits(dtype))



def relative_error_bound(num_elements: int, *, bits: int = 4, method: str = "lloyd",
                         iters: int = 20) -> float:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs (up to float rounding).

  The levels lie in `[min x, max x]` and each value goes to the nearest one, so it
  moves by at most `2 max|x| <= 2 ||x||`; summed over `n` values.
  """
  del bits, method, iters  # The bound holds for any levels inside the range.
  return 2 * math.sqrt(num_elements)
