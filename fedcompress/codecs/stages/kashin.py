"""`kashin` codec: Kashin's representation, then uniform quantization.

Kashin's representation writes a vector in an overcomplete tight frame (here a
subsampled randomized Hadamard frame) so that every coefficient is at most
O(||x|| / sqrt(d)): the smallest dynamic range possible, which uniform quantization
turns into a small error (Lyubarskii and Vershynin, "Uncertainty Principles and Vector
Quantization", IEEE Trans. Inf. Theory 56(7), 2010; used for federated mean
estimation by Caldas et al., "Expanding the Reach of Federated Learning by Reducing
Client Resource Requirements", 2018).

Pipeline: tensor_encoding's `FlattenEncodingStage` ->
`FastKashinHadamardEncodingStage(num_iters, eta, delta, last_iter_clip)` (tensor_encoding's
Kashin stage with its seed drawn below, iterated in the frame with a faster transform) ->
`uniform.UniformQuantizationStage(bits)` (tensor_encoding's quantization with seedable
stochastic rounding) -> `Bitpack32EncodingStage(bits)`.

The frame is overcomplete: `n` elements become `pad(n)` coefficients, the next power
of two, doubled when `n / pow2 > 0.85` (tensor_encoding's `pad_extra_level_threshold`)
so the frame keeps enough redundancy. That is the price of the small range.

The rotation seed comes from `get_params` (tensor_encoding's, with the seed drawn by
`_common.draw_seed_pair64` so that fedcompress's seed scopes fix it): in aggregation it is
one seed per round shared by all clients (sent with the encode parameters, not by the
clients), the stage commutes with sum and the server undoes the representation once
after summing. In a broadcast the seed travels with the payload: 2 int64 = 128 bits.

Wire cost per tensor: `ceil(pad(n) * bits / 32)` int32 words, min and max (2 values of
the dtype), the seed in broadcasts, one dtype marker for non-float32 tensors.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
from tensorflow_model_optimization.python.core.internal.tensor_encoding.core import (
    encoding_stage as te_encoding_stage,
)

from fedcompress.codecs.stages import _common, rotation
from fedcompress.codecs.stages.packing import Bitpack32EncodingStage
from fedcompress.codecs.stages.uniform import UniformQuantizationStage

# tensor_encoding's default; it is not an option here because the bit formula and
# the frame both depend on it.
PAD_EXTRA_LEVEL_THRESHOLD = 0.85
_BROADCAST_SEED_BITS = 2 * 64  # tensor_encoding's seed: int64[2].


class KashinStage(te.stages.research.KashinHadamardEncodingStage):
  """tensor_encoding's Kashin stage whose rotation seed obeys `_common.seed_scope`."""

  def get_params(self, name=None):
    del name  # tensor_encoding's decorator passes it; the scope is the caller's.
    seed = _common.draw_seed_pair64()
    encode_params = collections.OrderedDict([(self.ETA_PARAMS_KEY, self._eta),
                                             (self.DELTA_PARAMS_KEY, self._delta),
                                             (self.SEED_PARAMS_KEY, seed)])
    return encode_params, collections.OrderedDict([(self.SEED_PARAMS_KEY, seed)])


def check_options(bits: int = 8, deterministic: bool = False, num_iters: int = 3,
                  eta: float = 0.9, delta: float = 1.0, last_iter_clip: bool = False) -> dict:
  """The `kashin` codec's options, checked, with their defaults."""
  for name, value in (("eta", eta), ("delta", delta)):
    if not _common.is_real(value) or not math.isfinite(value):
      raise ValueError(f"{name} must be a finite number, got {value!r}")
  if not 0.0 < eta < 1.0:
    raise ValueError(f"eta must be in (0, 1), got {eta!r}")
  if delta <= 0.0:
    raise ValueError(f"delta must be > 0, got {delta!r}")
  return {"bits": _common.check_int("bits", bits, 1, 16),
          "deterministic": _common.check_bool("deterministic", deterministic),
          "num_iters": _common.check_int("num_iters", num_iters, 1, 100),
          "eta": float(eta), "delta": float(delta),
          "last_iter_clip": _common.check_bool("last_iter_clip", last_iter_clip)}


def build(bits: int = 8, deterministic: bool = False, num_iters: int = 3, eta: float = 0.9,
          delta: float = 1.0, last_iter_clip: bool = False) -> te.core.Encoder:
  """Returns the `kashin` encoder (see the module docstring)."""
  uniform = UniformQuantizationStage
  kashin = FastKashinHadamardEncodingStage
  flatten = te.stages.FlattenEncodingStage
  return (te.core.EncoderComposer(Bitpack32EncodingStage(bits))
          .add_parent(uniform(bits, stochastic=not deterministic), uniform.ENCODED_VALUES_KEY)
          .add_parent(kashin(num_iters=num_iters, eta=float(eta), delta=float(delta),
                             last_iter_clip=last_iter_clip,
                             pad_extra_level_threshold=PAD_EXTRA_LEVEL_THRESHOLD),
                      kashin.ENCODED_VALUES_KEY)
          .add_parent(flatten(), flatten.ENCODED_VALUES_KEY)
          .make())


class FastKashinHadamardEncodingStage(KashinStage):
  """`KashinStage` iterated in the frame, with `rotation`'s fast transform.

  tensor_encoding's encode takes `2 * num_iters - 1` transforms of the whole padded
  frame (five, of 2^21 coordinates, for the CNN's dense kernel at `num_iters=3`): each
  iteration maps its residual `r` into the frame, `u = F r` with `F = H P^T D` (signs
  `D`, zero padding `P^T`, transform `H`), clips it to `f`, and maps `f` back to the
  next residual `r - F^T f`. The next iteration needs only `F` of that residual,
  `u - F F^T f`, and `F F^T = H P^T P H` (the signs cancel). When `n = m 2^t` with `m`
  odd, `P^T P` keeps the first `m` of every `2^t`-coordinate slab of the frame seen as
  `[A, 2^t]` (`A = L / 2^t`), and by Sylvester's `H_L = H_A (x) H_(2^t)` the inner
  transforms cancel: `F F^T = (H_A P_m H_A) (x) I`, one `[A, A]` matrix (an orthogonal
  projection, entries multiples of `1 / A`) applied to the frame's `A` slabs. So the
  encode is one transform of `x` and, per iteration, one small matrix product: for the
  CNN's kernels `A` is 64 and 32. Mathematically the same coefficients as tensor_encoding's;
  in floats they agree to rounding. Above `A = rotation.MAX_FACTOR` each iteration runs
  the transform's outer factors (those of `H_A`) twice (`frame_projection`).

  Overflow, checked once on the clip level's `||x||` (the largest of the rows'): every
  value the iterations compute is at most `num_iters ||x||` (`F` and the projection do
  not grow norms), and the transform's partial sums stay below the dtype's largest while
  `max|x| <= rotation.overflow_limit(L)`, which `||x||` below it ensures. Inputs above
  it, or whose `||x||^2` overflows to inf (from max|x| ~ 1e16-1e19 in float32), are
  encoded divided by their largest magnitude and the coefficients multiplied back: the
  representation is homogeneous. (tensor_encoding's clip level is inf there, and it
  does not clip at all.)
  The decode (`F^T`, once per round after the sum) is the parent's, with this
  transform. Its signs are `rotation.random_signs` (the parent's can be 0).
  """

  def _random_signs(self, num_elements, seed, dtype):
    return rotation.random_signs(num_elements, seed, dtype)

  def _kashin_backward(self, x, shape, signs=None):
    x = rotation.fast_walsh_hadamard(x)
    # The leading `shape` coordinates: the parent's slice (what makes the inverse unique).
    x = tf.slice(x, [0, 0], [tf.shape(x)[0], shape])
    return x if signs is None else x * signs

  @te_encoding_stage._tf_style_encode  # The scopes and conversions of the parent's encode.
  def encode(self, x, encode_params, name=None):
    del name  # The decorator's scope.
    x = self._validate_and_expand_encode_input(x)
    length = x.shape.as_list()[1]
    frame = self._get_pad_dim(length)
    # Every coordinate is at most its row's norm, so below the limit max|x| is too; and an
    # overflowed ||x||^2 makes the norm inf. One reduction instead of max|x| and ||x||.
    limit = min(rotation.overflow_limit(frame, x.dtype),
                x.dtype.max / (4 * self._num_iters * math.sqrt(frame)))
    norms = tf.norm(x, axis=1, keepdims=True)

    def scaled():
      peak = _common.largest_magnitude(x)
      unit = tf.math.divide_no_nan(x, peak)
      return self._coefficients(unit, tf.norm(unit, axis=1, keepdims=True), encode_params) * peak

    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, tf.cond(
        tf.reduce_max(norms) <= limit, lambda: self._coefficients(x, norms, encode_params),
        scaled))])

  def _coefficients(self, x, norms, encode_params):
    """Kashin's coefficients of `x` rows `[rows, n]` of `norms`, within the limit above."""
    length = x.shape.as_list()[1]
    clip_level = norms / tf.math.sqrt(
        tf.cast(encode_params[self.DELTA_PARAMS_KEY], x.dtype) * length)
    eta = tf.cast(encode_params[self.ETA_PARAMS_KEY], x.dtype)
    signs = self._random_signs(length, encode_params[self.SEED_PARAMS_KEY], x.dtype)
    project = frame_projection(length, self._get_pad_dim(length))
    # `u = F r` for the current residual `r`: the parent's forward step, unchecked.
    u = rotation.orthonormal_wht(self._pad(x * signs))
    coefficients = None
    for _ in range(self._num_iters - 1):
      clipped = tf.clip_by_value(u, -clip_level, clip_level)
      coefficients = clipped if coefficients is None else coefficients + clipped
      u = u - project(clipped)
      clip_level *= eta
    if self._last_iter_clip:
      u = tf.clip_by_value(u, -clip_level, clip_level)
    coefficients = u if coefficients is None else coefficients + u
    if self._last_iter_clip:
      # The parent's rescaling: a clipped last iteration loses mass.
      coefficients *= tf.math.divide_no_nan(norms, tf.norm(coefficients, axis=1, keepdims=True))
    return coefficients


def frame_projection(num_elements: int, frame: int):
  """`F F^T` on `[rows, frame]` coefficients, for `F` the Kashin frame of `num_elements`.

  See `FastKashinHadamardEncodingStage`: `(H_A P_m H_A) (x) I_(2^t)` for `num_elements =
  m 2^t`, `m` odd, as one matrix product when `A = frame / 2^t` is at most
  `rotation.MAX_FACTOR`; otherwise `H_A (x) I` (the transform's outer factors only), the
  zero slabs from `m` on, and `H_A (x) I` again (for odd `n`, `A = frame`: the whole
  transform twice).
  """
  slab = num_elements & -num_elements  # 2^t, the largest power of two dividing n.
  blocks, kept = frame // slab, num_elements // slab
  if blocks > rotation.MAX_FACTOR:
    def by_outer_factors(f):
      y = tf.reshape(rotation.orthonormal_wht(f, slab), [-1, blocks, slab])
      y = tf.pad(y[:, :kept], [[0, 0], [0, blocks - kept], [0, 0]])
      return rotation.orthonormal_wht(tf.reshape(y, [-1, frame]), slab)
    return by_outer_factors
  sylvester = rotation.sylvester(blocks)[:, :kept]
  matrix = sylvester @ sylvester.T / blocks  # Integers over a power of two: exact.

  def by_matrix(f):
    m = tf.constant(matrix, f.dtype)
    if f.shape[0] == 1:
      return tf.reshape(tf.matmul(m, tf.reshape(f, [blocks, slab])), [1, frame])
    return tf.reshape(tf.matmul(m[tf.newaxis], tf.reshape(f, [-1, blocks, slab])),
                      [-1, frame])
  return by_matrix


def frame_size(num_elements: int) -> int:
  """Number of Kashin coefficients for `num_elements` inputs (tensor_encoding's rule)."""
  pad = _common.next_power_of_two(num_elements)
  if num_elements / pad > PAD_EXTRA_LEVEL_THRESHOLD:
    pad *= 2
  return pad


def bits_formula(num_elements: int, *, bits: int = 8, deterministic: bool = False,
                 num_iters: int = 3, eta: float = 0.9, delta: float = 1.0,
                 last_iter_clip: bool = False, direction: str = "aggregate",
                 dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `kashin`."""
  del deterministic, num_iters, eta, delta, last_iter_clip
  width = _common.dtype_bits(dtype)
  marker = width if tf.as_dtype(dtype) != tf.float32 else 0
  seed = _BROADCAST_SEED_BITS if direction == "broadcast" else 0
  return _common.packed_words(frame_size(num_elements), bits) * 32 + 2 * width + seed + marker



def relative_error_bound(num_elements: int, *, bits: int = 8, deterministic: bool = False,
                         num_iters: int = 3, eta: float = 0.9, delta: float = 1.0,
                         last_iter_clip: bool = False) -> float | None:
  """Worst-case `||x - x_hat|| / ||x||` over all inputs, or None with last_iter_clip.

  The frame `F` has orthonormal columns, so every residual has norm <= ||x|| and
  every coefficient of it is <= ||x||. The clipped iterations add at most
  `M_k = ||x|| eta**k / sqrt(delta n)` each, so the quantized range is at most
  `2 ||x|| (1 + sum_k eta**k / sqrt(delta n))`; the decode `F^T` does not grow the
  coefficient error. A clipped last iteration loses mass and rescales: no such bound.
  """
  if last_iter_clip:
    return None
  clipped = sum(eta**k for k in range(num_iters - 1)) / math.sqrt(delta * num_elements)
  steps = 1 if deterministic else 2
  return steps * math.sqrt(frame_size(num_elements)) * (1 + clipped) / (2**bits - 1)
