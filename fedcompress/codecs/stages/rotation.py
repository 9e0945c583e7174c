"""Randomized Hadamard rotation in blocks, with a fresh seed per encode.

The building block of the `hadamard`, `drive` and `eden` codecs. The flattened tensor
is zero-padded to `rows * L` and cut into rows of `L` coordinates (`L` a power of
two); each row is multiplied by independent random signs `D` and by the normalized
Walsh-Hadamard matrix `H`, so `y = H D x` row by row (an orthogonal map, computed in
O(L log L) with tensor_encoding's fast transform). With `rounds=r` the map is
`H D_r ... H D_1`, each `D_i` independent.

Why more than one round: one `H D` is far from a uniformly random rotation for
structured inputs, and codecs whose unbiasedness rests on the rotation (DRIVE, EDEN)
then show a bias. Measured for DRIVE over 20,000-40,000 draws (relative error of the
mean decode, sampling noise ~0.004-0.005): a half-ones/half-zeros vector of 128
coordinates 0.071 with one round, 0.006 with two, 0.004 with three; of 2048
coordinates 0.015 / 0.005 / 0.005; ones plus a spike of 5 in 16 coordinates 0.33
with one round, 0.013 with two. Repeating `H D` to approach a random rotation is the
construction of Andoni, Indyk, Laarhoven, Razenshteyn and Schmidt, "Practical and
Optimal LSH for Angular Distance", NeurIPS 2015 (`H D_3 H D_2 H D_1`).

Why not tensor_encoding's `HadamardEncodingStage`:

* Blocks. That stage pads the whole tensor to the next power of two: the tutorial
  CNN's 1,605,632-element dense kernel becomes 2,097,152 coordinates (+31%), which
  a 1-bit codec pays for in full. With `L = 2048` it is exactly 784 rows.
* Independent rotations per client. That stage draws its seed in `get_params`, so in
  aggregation every client uses the same rotation; codecs whose only randomness is
  the rotation (DRIVE, EDEN) then make correlated errors and the mean's error does
  not shrink with the number of clients. Here each `encode` draws its own seed and
  sends it: one int32 (32 bits), counted like every tensor, in both directions. The
  stage therefore does not commute with sum; the server inverts each client's
  rotation before summing (O(d log d) per client, like the client's own encode).
  `SharedRandomizedHadamardEncodingStage` is the other choice, for `drive` and `eden`
  with `shared_rotation=true`: one seed per round from `get_params`, a stage that
  commutes with sum, one inverse rotation per round, correlated client errors.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, packing

DEFAULT_BLOCK_SIZE = 2048


def check_block_size(block_size) -> int:
  """0 (one block: the whole tensor, padded to a power of two) or a power of two."""
  block_size = _common.check_int("block_size", block_size, 0, 2**30)
  if block_size and block_size & (block_size - 1):
    raise ValueError(f"block_size must be 0 or a power of two, got {block_size}")
  return block_size


def block_layout(num_elements: int, block_size: int) -> tuple[int, int]:
  """(rows, L) of the rotated representation of `num_elements` coordinates."""
  length = _common.next_power_of_two(max(num_elements, 1))
  if block_size:
    length = min(length, block_size)
  return math.ceil(max(num_elements, 1) / length), length


def rotated_size(num_elements: int, block_size: int) -> int:
  """Coordinates after padding: what a quantizer after the rotation pays for."""
  rows, length = block_layout(num_elements, block_size)
  return rows * length


MAX_ROUNDS = 4


def check_rounds(rounds) -> int:
  return _common.check_int("rounds", rounds, 1, MAX_ROUNDS)


def random_signs(num_elements: int, seed: tf.Tensor, dtype) -> tf.Tensor:
  """`num_elements` random +1/-1 of `dtype` from a shape-[2] stateless seed.

  tensor_encoding's `random_signs` is `sign(u - 0.5)` of a float32 uniform `u`, which
  is 0 when `u` is exactly 0.5: probability 2^-23 per sign, so about one draw in six
  for the CNN's 1.6M-element kernel zeroes a coordinate and the "orthogonal" rotation
  loses it. Here the same `u` gives -1 below 0.5 and +1 from it: the same signs
  wherever those were not 0, in one select instead of a subtraction, a sign and a cast.
  """
  u = tf.random.stateless_uniform([num_elements], seed)
  return tf.where(u < 0.5, tf.constant(-1, dtype), tf.constant(1, dtype))


# Bit j of a packed sign word goes to the top bit of coordinate j's mask.
_SIGN_SHIFTS = np.arange(31, -1, -1, dtype=np.uint32)
# The same masks a byte at a time (`packing.expand_bytes`): bit j of a byte, least
# significant first, in the top bit.
_SIGN_MASKS = packing.BIT_TABLE.astype(np.uint32) << np.uint32(31)
_UNSIGNED = {16: tf.uint16, 32: tf.uint32, 64: tf.uint64}


def sign_masks(words: tf.Tensor, n: int, by_bytes: bool = _common.LITTLE_ENDIAN
               ) -> tf.Tensor:
  """uint32 `[n]`: bit j of word i, as the top bit of coordinate 32 i + j's mask.

  By bytes, one gather of eight masks per byte: the same masks as the shifts in one
  pass instead of two (0.3-1.5 ms less per flip of the CNN's kernel, two runs); the
  byte view needs a little-endian host, elsewhere the shifts run.
  """
  if by_bytes:
    return packing.expand_bytes(words, _SIGN_MASKS, n)
  top = tf.bitwise.bitwise_and(tf.bitwise.left_shift(words[:, tf.newaxis], _SIGN_SHIFTS),
                               tf.constant(0x80000000, tf.uint32))
  return tf.reshape(top, [-1])[:n]


def flip_signs(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """`D x` for a random +1/-1 diagonal `D`, 32 signs per Philox word, from a [2] seed.

  `random_signs` spends one Philox uint32 and a float conversion per sign, and the
  product another pass: for the CNN's 1.6M-element kernel that was 7 ms of every `H D`
  round (4 per client and round for DRIVE, in encode and decode), against 4 ms for the
  transform itself. Here one word gives 32 signs, each bit applied by flipping the
  sign bit of the coordinate (`x XOR mask`): exactly `-x` where the bit is 1, `x`
  where it is 0, zeros and infinities included: 2.6 ms. Philox's output bits are
  independent and uniform, so `D` has the same distribution as before (i.i.d. signs);
  the draws for a seed differ from `random_signs`'.
  """
  return apply_sign_mask(x, sign_mask(x, seed))


def sign_mask(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """The unsigned `[n]` mask `flip_signs(x, seed)` XORs into `x`'s bits (see there)."""
  width = x.dtype.size * 8
  if not x.dtype.is_floating or width not in _UNSIGNED:
    raise ValueError(f"the rotation needs a float16/32/64 tensor, got {x.dtype}")
  n = _common.static_size(x, "the rotation")
  words = tf.random.stateless_uniform([-(-n // 32)], seed, dtype=tf.uint32, minval=None,
                                      maxval=None)
  mask = sign_masks(words, n)
  if width == 16:
    mask = tf.cast(tf.bitwise.right_shift(mask, 16), tf.uint16)
  elif width == 64:
    mask = tf.bitwise.left_shift(tf.cast(mask, tf.uint64), tf.constant(32, tf.uint64))
  return mask


def apply_sign_mask(x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """`x` with the sign bit of each coordinate flipped where `mask`'s top bit is 1."""
  flipped = tf.bitwise.bitwise_xor(tf.bitcast(tf.reshape(x, [-1]), mask.dtype), mask)
  return tf.reshape(tf.bitcast(flipped, x.dtype), x.shape)


def _signs(seed: tf.Tensor, rows: int, length: int, dtype, round_index: int = 0) -> tf.Tensor:
  """The `[rows, length]` +1/-1 that round `round_index`'s `flip_signs` multiplies by."""
  return flip_signs(tf.ones([rows, length], dtype), _common.stateless_seed(seed, round_index))


# Largest Hadamard block multiplied as a matrix. A transform of length L = k_1 ... k_t
# (each k_i <= this) is the Kronecker product H_{k_t} x ... x H_{k_1} (Sylvester's
# construction), so it is t small matrix products, one per axis of the row reshaped to
# [k_t, ..., k_1]: for L = 2048 a [.., 64] x [64, 64] GEMM and a [32, 32] x [32, ..]
# one: several times faster on the CNN's kernel than tensor_encoding's 11 butterfly
# passes, each of which is a [n/2, 2] x [2, 2] matmul and a transpose, in a while_loop
# (`python -m tools.codec_speed` measures the codecs). Summation order differs
# from the butterflies, so results agree to float rounding (~1e-6 relative), not bit
# for bit.
MAX_FACTOR = 64


def _factors(length: int) -> list[int]:
  """Powers of two, each <= MAX_FACTOR, of product `length`, near-equal in size."""
  log2 = length.bit_length() - 1
  max_log2 = MAX_FACTOR.bit_length() - 1
  count = max(1, -(-log2 // max_log2))
  return [1 << (log2 // count + (i < log2 % count)) for i in range(count)]


def sylvester(size: int) -> np.ndarray:
  """Sylvester's `[size, size]` Hadamard matrix of +-1 (symmetric; `size` a power of 2)."""
  h = np.ones([1, 1])
  while h.shape[0] < size:
    h = np.block([[h, h], [h, -h]])
  return h


def _hadamard_matrix(size: int, dtype) -> tf.Tensor:
  """The orthonormal Sylvester Hadamard matrix H_size / sqrt(size) (symmetric)."""
  return tf.constant(sylvester(size) / math.sqrt(size), dtype)


def orthonormal_wht(x: tf.Tensor, slab: int = 1) -> tf.Tensor:
  """Rows of `x` times H_L / sqrt(L), one small matrix product per factor of L.

  With `slab` > 1 (a power of two dividing L) each row is `[L / slab, slab]` and only
  its first axis is transformed: the rows times `H_(L / slab) / sqrt(L / slab) (x) I_slab`,
  the outer factors of the whole transform.
  """
  length = x.shape.as_list()[1]
  size = length // slab
  if size == 1:
    return x
  factors = _factors(size)
  y = tf.reshape(x, [-1] + factors[::-1] + ([slab] if slab > 1 else []))
  for axis, k in enumerate(factors[::-1], start=1):
    h = _hadamard_matrix(k, x.dtype)
    if axis == len(factors) and slab == 1:
      y = tf.reshape(tf.matmul(tf.reshape(y, [-1, k]), h), y.shape)
    else:
      before = math.prod(y.shape.as_list()[:axis])
      after = math.prod(y.shape.as_list()[axis + 1:])
      # H times each [k, after] slice: a batch matmul broadcasting `h`, bit for bit
      # what the einsum "ij,ajb->aib" gives, at a third of its time (its transposes).
      z = tf.matmul(h[tf.newaxis], tf.reshape(y, [before, k, after]))
      y = tf.reshape(z, y.shape)
  return tf.reshape(y, [-1, length])


def overflow_limit(length: int, dtype) -> float:
  """Largest max|x| whose unscaled transform cannot overflow.

  A partial sum inside a product by H_k / sqrt(k) is at most sqrt(k) times the norm of
  what it sums, and every norm is at most sqrt(L) * max|x|: below this limit nothing
  overflows.
  """
  return dtype.max / (2 * math.sqrt(length) * math.sqrt(max(_factors(length))))


def _surely_at_most(x: tf.Tensor, bound: float) -> tf.Tensor:
  """A bool scalar, True only if max|x| <= `bound` (False may still be within it).

  max|x| <= ||x|| (1 + 1e-7) in float arithmetic (a rounded sum of squares is at least
  its largest term), so a norm at most `bound (1 - 1e-6)` puts max|x| under `bound`.
  The norm is one read of `x` where max|x| is two, a max and a min (0.36 against 0.60
  ms for the CNN's kernel, one thread); it is False for NaN and for a norm that
  overflows, where the callers take their checked path. Half-precision norms overflow
  at ~65504, so there max|x| itself is compared.
  """
  if x.dtype.size < 4:
    return _common.largest_magnitude(x) <= bound
  return tf.math.reduce_euclidean_norm(x) <= bound * (1 - 1e-6)


def fast_walsh_hadamard(x: tf.Tensor) -> tf.Tensor:
  """Rows of `x` times the normalized Walsh-Hadamard matrix, safe from overflow."""
  length = x.shape.as_list()[1]
  # Above the limit (values near the dtype's largest), each row is scaled by its
  # largest magnitude first and back afterwards, as the transform was before. Where the
  # cheap test is unsure, `_select_scaled_wht` checks max|x| itself: the same bits.
  return tf.cond(_surely_at_most(x, overflow_limit(length, x.dtype)),
                 lambda: orthonormal_wht(x), lambda: _select_scaled_wht(x))


def _select_scaled_wht(x: tf.Tensor) -> tf.Tensor:
  """`fast_walsh_hadamard(x)` bit for bit, without its `tf.cond`: cheaper to build.

  Each row is divided by, and the transform multiplied by, its largest magnitude above
  the overflow limit and 1 below it; `x / 1` and `y * 1` are exact, so below the limit
  this is the unscaled transform. It always runs the reductions, the division and the
  product (three passes more than the unscaled path), so it is only for the branches
  that run when a cheaper test could not rule out the limit: `fast_walsh_hadamard`'s and
  `_rotate`'s, for inputs within a factor ~sqrt(L) of it. In `_rotate` a `tf.cond` per
  round held both transforms of every round, each branch a function of its own, to be
  built in every trace of every codec with a rotation.
  """
  length = x.shape.as_list()[1]
  above = _common.largest_magnitude(x) > overflow_limit(length, x.dtype)
  scale = tf.where(above, tf.reduce_max(tf.abs(x), axis=1, keepdims=True),
                   tf.ones([], x.dtype))
  return orthonormal_wht(tf.math.divide_no_nan(x, scale)) * scale


def _rotate(x: tf.Tensor, seed: tf.Tensor, rounds: int, inverse: bool) -> tf.Tensor:
  """`H D_r ... H D_1 x` (or its inverse `D_1 H ... D_r H x`) row by row.

  Every `fast_walsh_hadamard` checks its own input against the overflow limit: a
  reduction over the tensor per `H D` round. Checked once here instead: a sign flip
  keeps magnitudes and `H` keeps each row's norm, so every intermediate row has
  max|.| <= ||row|| <= sqrt(L) max|x| (times 1 + 1e-3 for rounding, far above float
  error). Below `limit / (sqrt(L) (1 + 1e-3))` no round takes the scaled path, and the
  unchecked transforms compute exactly what the checked ones would; above it, each
  round checks as `fast_walsh_hadamard` does (`_select_scaled_wht`, the same bits).

  Graph size, which is build time (every codec with a rotation traces it in encode and
  decode, for each tensor, in each TFF computation that holds it): two rounds on a
  [784, 2048] input were 273 nodes and 118 ms to trace with a `tf.cond` per round in
  the fallback and the sign masks drawn in both branches; 191 nodes and 81 ms now.
  """
  length = x.shape.as_list()[1]
  order = list(reversed(range(rounds))) if inverse else list(range(rounds))

  def run(transform, masks):
    y = x
    for i in order:
      y = apply_sign_mask(transform(y), masks[i]) if inverse else transform(
          apply_sign_mask(y, masks[i]))
    return y

  # The sign masks are drawn before the `tf.cond` below, not in each of its branches:
  # the same ops either way, but built once (22 of a round's ~50 graph nodes). All
  # `rounds` masks are then held at once, 4 bytes per coordinate each.
  masks = {i: sign_mask(x, _common.stateless_seed(seed, i)) for i in order}
  if rounds == 1:
    return run(fast_walsh_hadamard, masks)
  safe = overflow_limit(length, x.dtype) / (math.sqrt(length) * (1 + 1e-3))
  # Where the test is unsure (max|x| may be below `safe` all the same), the fallback's
  # per-round checks find nothing to scale: the same bits either way.
  return tf.cond(_surely_at_most(x, safe), lambda: run(orthonormal_wht, masks),
                 lambda: run(_select_scaled_wht, masks))


@te.core.tf_style_encoding_stage
class RandomizedHadamardEncodingStage(_common.StatelessStage):
  """Blockwise randomized Hadamard rotation (`rounds` times); lossless up to rounding.

  Encoded structure: `{'rotated': [rows, L] of the input dtype, 'seed': int32 []}`.
  """

  ENCODED_VALUES_KEY = "rotated"
  SEED_KEY = "seed"

  def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE, rounds: int = 1):
    self._block_size = check_block_size(block_size)
    self._rounds = check_rounds(rounds)

  STAGE_NAME = "randomized_hadamard"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
  DECODE_NEEDS_INPUT_SHAPE = True

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    padded = _blocks(x, self._block_size)
    seed = _common.draw_seed()
    rotated = _rotate(padded, seed, self._rounds, inverse=False)
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, rotated), (self.SEED_KEY, seed)])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    return _unblocked(encoded_tensors[self.ENCODED_VALUES_KEY], encoded_tensors[self.SEED_KEY],
                      self._rounds, shape)


def _blocks(x: tf.Tensor, block_size: int) -> tf.Tensor:
  """`x` flattened, zero-padded and cut into the `[rows, L]` of `block_layout`."""
  n = _common.static_size(x, "the rotation")
  rows, length = block_layout(n, block_size)
  return tf.reshape(tf.pad(tf.reshape(x, [-1]), [[0, rows * length - n]]), [rows, length])


def _unblocked(rotated: tf.Tensor, seed: tf.Tensor, rounds: int, shape) -> tf.Tensor:
  """The inverse rotation of `rotated`, its padding cut, in the input's `shape`."""
  n = _common.static_num_elements(shape)
  unrotated = _rotate(rotated, seed, rounds, inverse=True)
  return tf.reshape(tf.reshape(unrotated, [-1])[:n], shape)


@te.core.tf_style_encoding_stage
class SharedRandomizedHadamardEncodingStage(_common.StatelessStage):
  """The rotation of `RandomizedHadamardEncodingStage`, one per round for all clients.

  The seed is drawn by `get_params`, which runs on the server once per round (under the
  round's seed scope), and reaches the clients with the encoder's parameters, as
  tensor_encoding's own Hadamard stage does; it is not in the payload. Every client of
  a round then applies the same rotation, so the stage commutes with sum: the server
  adds the clients' rotated (partially decoded) values and inverts the rotation once
  per round instead of once per client. The cost is statistical: the clients'
  quantization errors are no longer independent (see `drive` and `eden`,
  `shared_rotation`).

  Encoded structure: `{'rotated': [rows, L] of the input dtype}`.
  """

  ENCODED_VALUES_KEY = "rotated"
  SEED_PARAMS_KEY = "seed"

  def __init__(self, block_size: int = DEFAULT_BLOCK_SIZE, rounds: int = 1):
    self._block_size = check_block_size(block_size)
    self._rounds = check_rounds(rounds)

  STAGE_NAME = "shared_randomized_hadamard"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
  DECODE_NEEDS_INPUT_SHAPE = True

  @property
  def commutes_with_sum(self):
    return True

  def get_params(self):
    params = collections.OrderedDict([(self.SEED_PARAMS_KEY, _common.draw_seed())])
    return params, params

  def encode(self, x, encode_params):
    rotated = _rotate(_blocks(x, self._block_size), encode_params[self.SEED_PARAMS_KEY],
                      self._rounds, inverse=False)
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, rotated)])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del num_summands  # Linear: a sum of rotated values decodes like one.
    return _unblocked(encoded_tensors[self.ENCODED_VALUES_KEY],
                      decode_params[self.SEED_PARAMS_KEY], self._rounds, shape)


def seed_bits(shared: bool, direction: str) -> int:
  """Payload bits of the rotation's seed: always per client; shared, only in a broadcast.

  A broadcast is decoded by the clients, so tensor_encoding's `SimpleEncoder` sends the
  decode parameters, the shared seed among them, with the payload; in aggregation the
  clients get it with the encoder's parameters and the server keeps its own.
  """
  return 0 if shared and direction != "broadcast" else _common.SEED_BITS


def rotation_stage(block_size: int, rounds: int, shared: bool) -> te.core.EncodingStageInterface:
  """The rotation stage of `drive` and `eden`: per client (default) or shared per round."""
  kind = SharedRandomizedHadamardEncodingStage if shared else RandomizedHadamardEncodingStage
  return kind(block_size, rounds)


# The `rotation` codec: the rotation alone, a link of chains (`rotation|uniform` is
# `hadamard` with uniform's own quantizer; fedcompress.codecs.chain). One round by
# default, as `hadamard`: in front of a quantizer the range reduction is what counts.


def check_options(block_size: int = DEFAULT_BLOCK_SIZE, rounds: int = 1) -> dict:
  """The `rotation` codec's options, checked, with their defaults."""
  return {"block_size": check_block_size(block_size), "rounds": check_rounds(rounds)}


def build(block_size: int = DEFAULT_BLOCK_SIZE, rounds: int = 1) -> te.core.Encoder:
  """The `rotation` encoder: the stage alone (it flattens and pads by itself)."""
  return te.core.EncoderComposer(RandomizedHadamardEncodingStage(block_size, rounds)).make()


def output_size(num_elements: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
                rounds: int = 1) -> int:
  """The `rows * L` rotated coordinates a next codec in a chain encodes."""
  del rounds
  return rotated_size(num_elements, block_size)


def bits_formula(num_elements: int, *, block_size: int = DEFAULT_BLOCK_SIZE, rounds: int = 1,
                 direction: str = "aggregate", dtype=tf.float32) -> int:
  """The padded rotated coordinates at the tensor's width, and the 32-bit seed."""
  del direction
  return (output_size(num_elements, block_size=block_size, rounds=rounds)
          * _common.dtype_bits(dtype) + _common.SEED_BITS)


def error_gain(num_elements: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
               rounds: int = 1) -> float:
  """The inverse rotation is orthogonal and cropping the padding shrinks norms."""
  del num_elements, block_size, rounds
  return 1.0


def relative_error_bound(num_elements: int, *, block_size: int = DEFAULT_BLOCK_SIZE,
                         rounds: int = 1) -> float:
  """Lossless up to float rounding."""
  del num_elements, block_size, rounds
  return 0.0
