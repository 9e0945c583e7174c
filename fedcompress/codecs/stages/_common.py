"""Helpers shared by the stages: option checks, widths, word counts, seeds, the stage base.

Randomness. A stage never draws from a stateful generator while a `seed_scope` is
open: `draw_seed`, `draw_seed_pair64` and `dither16` then derive their draws from the
scope's key (a stateless seed) and a counter of draws made under it, so an encode is a
deterministic function of that key. fedcompress's TFF wiring opens one scope per
tensor per encode, keyed by (`--seed`, round, tensor, the tensor's own bytes): see
`fedcompress.codecs.seeding`. Outside a scope (stage tests that encode the same input
many times) they draw unseeded, as tensor_encoding's stages do.

Codec options arrive as plain keyword values (binaries pass `fraction=0.01` strings
that `fedcompress.codecs.spec.parse_options` converts), so every check here rejects the
wrong Python type with a message naming the option, rather than letting TensorFlow fail
later inside a trace. This module imports nothing of fedcompress: every other module
of the package may use it.
"""

from __future__ import annotations

import collections
import contextlib
import math
import numbers
import sys
import threading

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

# Bits of the per-encode random seed the stochastic stages send with their payload.
SEED_BITS = 32
# tensor_encoding's BitpackingEncodingStage fills only 28 of each int32's 32 bits, so
# a serialized value never needs a fifth protobuf varint byte; fedcompress's own
# packing (`packing.py`) uses all 32.
TE_BITPACK_WORD_BITS = 28
# Byte views of words (tf.bitcast between uint8 and wider integers) read bytes in
# memory order; the fast paths built on them assume a little-endian host and fall back
# to shifts elsewhere.
LITTLE_ENDIAN = sys.byteorder == "little"
# Second word of the stateless seed; any constant works, it only has to be shared.
_SEED_SALT = 0x5EED


def is_integer(value) -> bool:
  """An integer of Python or NumPy, not a bool (28.0 and True are not)."""
  return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
  """A real number of Python or NumPy, not a bool: options are often NumPy scalars (a
  sweep over `np.linspace(..., dtype=np.float32)`), which `float` alone would refuse."""
  return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_int(name: str, value, low: int, high: int | None = None) -> int:
  """`value` as an int if it is an integer (not bool) in [low, high], else ValueError.

  NumPy integers count (a sweep over `np.arange`) and come back as Python ints.
  """
  bound = f"in {low}..{high}" if high is not None else f">= {low}"
  if not is_integer(value) or value < low or (high is not None and value > high):
    raise ValueError(f"{name} must be an integer {bound}, got {value!r} "
                     f"({type(value).__name__})")
  return int(value)


def check_bool(name: str, value) -> bool:
  """`value` if it is a bool, or 1/0 as True/False; anything else raises ValueError."""
  # A string such as "false" or "no" is truthy; refusing it keeps a mistyped option
  # from silently meaning the opposite.
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if is_integer(value) and value in (0, 1):
    return bool(value)
  raise ValueError(f"{name} must be true or false (or 1/0), got {value!r} "
                   f"({type(value).__name__})")


def check_fraction(name: str, value) -> float:
  if not is_real(value):
    raise ValueError(f"{name} must be a number in (0, 1], got {value!r} "
                     f"({type(value).__name__})")
  if not 0.0 < float(value) <= 1.0:
    raise ValueError(f"{name} must be in (0, 1], got {value!r}")
  return float(value)


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
  if value not in choices:
    raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
  return value


def dtype_bits(dtype) -> int:
  """Width in bits of one element of `dtype` (bool counts as 8, as serialized)."""
  dtype = tf.as_dtype(dtype)
  if dtype == tf.bool:
    return 8
  if dtype == tf.string:
    # Reached by a codec of the user's that sends bytes (its own coder's output): the
    # message said to count them, which only fedcompress's accounting can.
    raise ValueError("a codec sends a string tensor, whose bits fedcompress does not count "
                     "(strings have no fixed width): send the bytes as uint8 or int32 "
                     "words (tf.io.decode_raw), which it counts")
  return dtype.size * 8


def packed_words(num_values: int, bits: int, word_bits: int = 32) -> int:
  """int32 words holding `num_values` values of `bits` bits, `word_bits` used per word.

  `word_bits` is 32 for fedcompress's packing and `TE_BITPACK_WORD_BITS` (28) for
  tensor_encoding's.
  """
  return -(-num_values * bits // word_bits)


def next_power_of_two(n: int) -> int:
  return 1 << (n - 1).bit_length() if n > 1 else 1


def kept_count(num_elements: int, fraction: float) -> int:
  """k = ceil(fraction * n), at least 1, at most n (the sparsifiers' count)."""
  # round() first so 0.1 * 30 = 3.0000000000000004 does not become 4.
  return min(num_elements, max(1, math.ceil(round(fraction * num_elements, 9))))


class _Scopes(threading.local):
  """Open seed scopes of this thread, innermost last: [key, draws made] pairs."""

  def __init__(self):
    self.stack: list[list] = []


_scopes = _Scopes()


@contextlib.contextmanager
def seed_scope(key: tf.Tensor):
  """Within it, the stages' random draws are pure functions of `key` (int64 [2]).

  The scope is a trace-time context: it must be open while the encode (or
  `get_params`) is traced, which is when the stages call the draw functions below.
  The i-th draw under the scope uses `stateless_fold_in(key, i)`, so two draws of one
  encode are independent and the same trace order gives the same draws.
  """
  _scopes.stack.append([tf.cast(key, tf.int64), 0])
  try:
    yield
  finally:
    _scopes.stack.pop()


def _next_key() -> tf.Tensor | None:
  """The stateless seed of the next draw under the innermost scope, or None outside."""
  if not _scopes.stack:
    return None
  scope = _scopes.stack[-1]
  scope[1] += 1
  return tf.random.experimental.stateless_fold_in(scope[0], scope[1])


def draw_seed() -> tf.Tensor:
  """A fresh int32 scalar seed in [0, 2^31 - 1): from the open `seed_scope`, else unseeded."""
  key = _next_key()
  if key is None:
    return tf.random.uniform([], minval=0, maxval=tf.int32.max, dtype=tf.int32)
  return tf.random.stateless_uniform([], key, minval=0, maxval=tf.int32.max, dtype=tf.int32)


def draw_seed_pair64() -> tf.Tensor:
  """tensor_encoding's int64 [2] seed (Kashin, Hadamard): from the open scope, else unseeded."""
  key = _next_key()
  if key is None:
    return tf.random.uniform((2,), maxval=tf.int64.max, dtype=tf.int64)
  return tf.random.stateless_uniform((2,), key, minval=0, maxval=tf.int64.max,
                                     dtype=tf.int64)


def dither16(shape, dtype: tf.dtypes.DType = tf.float32) -> tf.Tensor:
  """Fresh uniform noise on the 2^16-point grid `(k + 1/2) / 2^16`, for stochastic rounding.

  `floor(y + u)` rounds `y` up with probability `frac(y)` to within 2^-17 (half a grid
  step) for this `u`, against 2^-23 for a float32 uniform; but for the 8-bit levels
  `y + u` itself is a float32 whose spacing is 2^-16 above 128, so the 23-bit draw
  bought nothing there. Two 16-bit draws per Philox word halve the random bits, the
  largest cost of stochastic rounding (drawing takes time in proportion to the random
  words). The stateless kernel draws them under the open `seed_scope`'s next key, or
  outside a scope under a fresh stateful seed (unseeded), so every client and round
  has its own noise either way.
  """
  seed = _next_key()
  if seed is None:
    seed = tf.random.uniform([2], minval=0, maxval=tf.int32.max, dtype=tf.int32)
  size = tf.reduce_prod(shape)
  words = tf.random.stateless_uniform([(size + 1) // 2], seed, minval=None, maxval=None,
                                      dtype=tf.uint32)
  halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
  # In float32, where k + 1/2 and the product are exact (float16 would overflow at 65504).
  noise = tf.cast((tf.cast(halves, tf.float32) + 0.5) * (1.0 / 65536), dtype)
  if dtype.size < 4:  # Near 1 the cast rounds up to 1.0; keep u < 1 as floor(y + u) needs.
    one = dtype.as_numpy_dtype(1)
    noise = tf.minimum(noise, np.nextafter(one, one - one))
  return tf.reshape(noise, shape)


def stateless_seed(seed: tf.Tensor, salt: int = 0) -> tf.Tensor:
  """The shape-[2] seed TensorFlow's stateless ops take, from one sent int32."""
  return tf.stack([tf.cast(seed, tf.int32), tf.constant(_SEED_SALT + salt, tf.int32)])


def static_size(x: tf.Tensor, stage: str) -> int:
  """`x`'s element count, which `stage` needs when it is traced (its layout depends on it)."""
  n = x.shape.num_elements()
  if n is None:
    raise ValueError(f"{stage} needs a statically known shape, got {x.shape}")
  return n


def static_num_elements(shape) -> int | tf.Tensor:
  """Element count of a decode `shape` (Python value when the shape is static)."""
  static = tf.get_static_value(shape) if tf.is_tensor(shape) else shape
  if static is not None:
    return int(math.prod(int(d) for d in static))
  return tf.reduce_prod(shape)


def compute_dtype(dtype: tf.dtypes.DType) -> tf.dtypes.DType:
  # Norms and sums over ~10^6 half-precision values overflow; work in float32 then.
  return tf.float64 if dtype == tf.float64 else tf.float32


DIRECTIONS = ("broadcast", "aggregate")


def check_direction(direction: str) -> str:
  return check_choice("direction", direction, DIRECTIONS)


class StatelessStage(te.core.EncodingStageInterface):
  """The interface's fixed answers for fedcompress's stateless stages, from class attributes.

  Such a stage is per client by default (it does not commute with sum: each client has
  its own scales, codebook, rotation or kept coordinates) and has no parameters; a
  subclass names itself and says which outputs later stages may transform and whether
  decoding needs the input shape. One that commutes with sum and draws its parameters
  on the server overrides both (`rotation.SharedRandomizedHadamardEncodingStage`).
  """

  STAGE_NAME: str
  # Outputs a later stage may transform further (a coded stream or packed words: none).
  COMPRESSIBLE_KEYS: tuple[str, ...] = ()
  DECODE_NEEDS_INPUT_SHAPE = False

  @property
  def name(self):
    return self.STAGE_NAME

  @property
  def compressible_tensors_keys(self):
    return list(self.COMPRESSIBLE_KEYS)

  @property
  def commutes_with_sum(self):
    return False

  @property
  def decode_needs_input_shape(self):
    return self.DECODE_NEEDS_INPUT_SHAPE

  def get_params(self):
    return collections.OrderedDict(), collections.OrderedDict()


def shift_right_nonnegative(x: tf.Tensor, amount) -> tf.Tensor:
  """`x >> amount` for int64 `x >= 0` (int64 out), as a logical shift of its uint64 view.

  TensorFlow's arithmetic shift of int64 has no vector instruction below AVX-512: over
  the CNN's 1.6M-value kernel it took ~7 ms against ~0.5 for the logical one (and `//`
  as long), and with the default threads it is also split across the thread pool.
  `amount` is a Python int or array, or a uint64 tensor.
  """
  return tf.bitcast(tf.bitwise.right_shift(tf.bitcast(x, tf.uint64),
                                           tf.cast(amount, tf.uint64)), tf.int64)


def largest_magnitude(x: tf.Tensor, axis=None, keepdims: bool = False) -> tf.Tensor:
  """`reduce_max(|x|)` as `max(max x, -min x)`: the same value, two reads of `x` and
  no written `|x|` (a pass over a 6 MB kernel costs about as much as both reads)."""
  return tf.maximum(tf.reduce_max(x, axis=axis, keepdims=keepdims),
                    -tf.reduce_min(x, axis=axis, keepdims=keepdims))


def histogram(values: tf.Tensor, size, dtype: tf.dtypes.DType = tf.int32) -> tf.Tensor:
  """`tf.math.bincount(values, minlength=size, maxlength=size, dtype=dtype)`, one pass.

  With both lengths `size`, bincount's output size is `size` whatever the values, but
  it still reduces `max(values)` to find it: a pass more over the values (0.2 ms of the
  CNN kernel's 1.6M, one thread). This calls the same kernel with that size; values
  outside `[0, size)` count as they do there.
  """
  return tf.raw_ops.Bincount(arr=tf.reshape(tf.cast(values, tf.int32), [-1]),
                             size=tf.cast(size, tf.int32), weights=tf.constant([], dtype))


def take(table: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
  """`tf.gather(table, indices)` (entries or rows of `table`), by TensorFlow's GatherNd.

  The same values, out-of-range indices an error as there. TensorFlow 2.14's GatherV2
  copies small slices ~30-45% slower on CPU: 800k uint64 from a table of 65,536 took
  4.6 ms against 3.3, 1.6M from 256 entries 11.7 against 6.4, rows of eight uint32 for
  200k bytes 1.0 against 0.7 (one thread).
  """
  return tf.gather_nd(table, indices[..., tf.newaxis])
