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
Kashin stage with its seed drawn below and a faster transform) ->
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
        value):
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
  """`KashinStage` with `rotation.fast_walsh_hadamard` as its transform.

  The representation takes `2 * num_iters` transforms of the whole padded frame
  (2^21 coordinates for the CNN's dense kernel); tensor_encoding's 21 butterfly passes
  per transform made `kashin` by far the slowest codec. Its signs are
  `rotation.random_signs` (the parent's can be 0). Everything else (clipping, padding,
  the seeded get_params) is the parent's.
  """

  def _random_signs(self, num_elements, seed, dtype):
    return rotation.random_signs(num_elements, seed, dtype)

  def _kashin_forward(self, x, signs, clip_level, clip):
    x = rotation.fast_walsh_hadamard(self._pad(x * signs))
    return tf.clip_by_value(x, -clip_level, clip_level) if clip else x

  def _kashin_backward(self, x, shape, signs=None):
    x = rotation.fast_walsh_hadamard(x)
    # The leading `shape` coordinates: the parent's slice (what makes the inverse unique).
    x = tf.slice(x, [0, 0], [tf.shape(x)[0], shape])
    return x if signs is None else x * signs


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
