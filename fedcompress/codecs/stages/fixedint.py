"""`fixed_int` codec: integer quantization with a shared scale, whose encodings add up.

Each coordinate is clipped to `[-clip, clip]`, multiplied by the scale
`s = (2^(bits-1) - 1) / clip` and rounded stochastically (unbiased) to an integer in
`[-L, L]`, `L = 2^(bits-1) - 1`. The scale is fixed by the options, the same for every
client and round, so decoding (`/ s`) is linear: the sum of the clients' integers,
divided by `s`, is the decoded sum. The stage commutes with sum, which is what secure
aggregation needs (`fedcompress.federated.secure`: the server decodes only the sum).

With `rotation=True` a randomized Hadamard rotation comes first (tensor_encoding's
`HadamardEncodingStage`, its seed drawn by `_common.draw_seed_pair64` so that the run's
seed scopes fix it, as Kashin's: the seed is drawn on the server each round and sent with
the encode parameters, so all clients rotate alike and the rotation commutes with sum
too; the tensor is padded to the next power of two; its signs are `rotation.random_signs`,
never 0). It spreads a tensor's energy over
its coordinates so that a small `clip` cuts little (Suresh, Yu, Kumar and McMahan, ICML
2017). Rotate, scale, round stochastically, sum in a modular field is the pipeline of
the distributed discrete Gaussian (Kairouz, Liu and Steinke, ICML 2021).

The range is absolute, so as an uplink codec it needs uniform client weights: the
example-weighted mean encodes weight x update, which the clip would cut at clip /
weight (`fedcompress.federated.aggregation.check_weighted_codec` refuses it).

Outside secure aggregation each client sends the int32 values: 32 bits per (padded)
coordinate, nothing else (the scale is an option; the rotation seed comes from the
server). In a broadcast the rotation seed travels with the payload: 2 int64 = 128 bits.
Under secure aggregation the same integers are sent in the summation field, whose width
`fedcompress.federated.secure` sizes from `sum_bound` and the clients per round.

Float32 tensors only (decoding gives float32). A NaN coordinate is sent as 0 (int32
has no NaN), +-inf as +-clip: the integers always lie in `[-L, L]`. With `rotation` a
NaN spreads to every rotated coordinate first, so the whole tensor is sent as 0.

Options:
  bits: 2..16, the signed width of one client's integers (`L = 2^(bits-1) - 1`).
  clip: coordinate range `[-clip, clip]` (after rotation), > 0.
  rotation: rotate first (shared per-round seed).
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, rotation

_BROADCAST_SEED_BITS = 2 * 64  # tensor_encoding's Hadamard seed: int64[2].


def check_options(bits: int = 8, clip: float = 0.01, rotation: bool = False) -> dict:
  """The `fixed_int` codec's options, checked, with their defaults."""
  bits = _common.check_int("bits", bits, 2, 16)
  if not _common.is_real(clip) or not (math.isfinite(clip) and clip > 0):
    raise ValueError(f"clip must be a finite number > 0, got {clip!r}")
  # The step clip/L is a float32: TensorFlow's CPU kernels flush numbers below float32's
  # smallest normal one to 0, and the decode's division by the scale L/clip multiplies by
  # the step, so below it every value was sent or decoded as 0, unsaid (R2 of s48).
  smallest = level(bits) * float(np.finfo(np.float32).tiny)
  if clip < smallest:
    raise ValueError(f"clip must be at least {smallest:.3g} at bits={bits} (its step "
                     f"clip/{level(bits)} is below float32's smallest normal number), got "
                     f"{clip!r}")
  # And the other way: the scale L/clip flushes to 0 past L / (that number), and a clip
  # past float32's largest is Inf (NaN or zeros decoded; review R8 of s48).
  largest = min(level(bits) / float(np.finfo(np.float32).tiny),
                float(np.finfo(np.float32).max))
  if clip > largest:
    raise ValueError(f"clip must be at most {largest:.3g} at bits={bits} (its scale "
                     f"{level(bits)}/clip must be a normal float32 number), got {clip!r}")
  return {"bits": bits, "clip": float(clip), "rotation": _common.check_bool("rotation", rotation)}


def level(bits: int) -> int:
  """L = 2^(bits-1) - 1: one client's integers lie in [-L, L]."""
  return 2 ** (bits - 1) - 1


def sum_bound(*, bits: int = 8, clip: float = 0.01, rotation: bool = False) -> int:
  """The largest |integer| one client sends per coordinate (for sizing the field)."""
  del clip, rotation
  return level(bits)


def plain_note(*, direction: str, bits: int = 8, clip: float = 0.01,
               rotation: bool = False) -> str:
  """What sending it as it encodes (outside the secure sum) does that `bits` does not say,
  and on the broadcast what its clip does to the model (the digits model's dense kernels
  arrived with 75-91% of their weights clipped at the default 0.01, without a word)."""
  note = (f"sends int32 outside --secure_aggregation, 32 bits a coordinate: its bits={bits} "
          "sets its precision, not its size on the wire")
  if direction == "broadcast":
    clipped = "the rotated coordinates of" if rotation else "the weights of"
    note += (f"; and it clips {clipped} every tensor it encodes to [-{clip:g}, {clip:g}] (its "
             "clip bounds an update, not the model)")
  return note


@te.core.tf_style_encoding_stage
class SharedScaleIntegerStage(te.core.EncodingStageInterface):
  """Clip, scale by a fixed `s`, round stochastically to int32; decode divides by `s`.

  Encoded: `{'values': int32, same shape}`. Commutes with sum.
  """

  ENCODED_VALUES_KEY = "values"

  def __init__(self, bits: int = 8, clip: float = 0.01):
    self._clip = float(clip)
    self._level = level(bits)
    self._scale = self._level / self._clip

  @property
  def name(self):
    return "shared_scale_integer"

  @property
  def compressible_tensors_keys(self):
    return []

  @property
  def commutes_with_sum(self):
    return True

  @property
  def decode_needs_input_shape(self):
    return False

  def get_params(self):
    return collections.OrderedDict(), collections.OrderedDict()

  def encode(self, x, encode_params):
    del encode_params  # The scale is a constant: no parameter needs to travel.
    x = tf.convert_to_tensor(x)
    if x.dtype != tf.float32:  # Decoding gives float32: another dtype cannot round-trip.
      raise ValueError(f"fixed_int encodes float32 tensors, got {x.dtype.name}")
    # int32 has no NaN (a cast makes it -2^31, far outside [-L, L] and the secure sum's
    # field): a NaN coordinate is sent as 0. FedAvg's non-finite guard, on by default,
    # rejects such a client before its update reaches the codec. +-inf clip to +-clip.
    x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    y = tf.clip_by_value(x, -self._clip, self._clip) * self._scale
    # floor(y + u), u uniform in [0, 1): rounds up with probability frac(y), unbiased;
    # each client draws its own u. Clamped because y + u may round up to L + 1 in float.
    rounded = tf.clip_by_value(tf.floor(y + _common.dither16(tf.shape(y))),
                               -self._level, self._level)
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, tf.cast(rounded, tf.int32))])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands, shape  # Linear: a sum decodes like one value.
    return tf.cast(encoded_tensors[self.ENCODED_VALUES_KEY], tf.float32) / self._scale


class SeededHadamardStage(te.stages.HadamardEncodingStage):
  """tensor_encoding's Hadamard stage whose seed obeys `_common.seed_scope`.

  tensor_encoding draws it with an unseeded `tf.random.uniform`, so a run could not be
  repeated from its `--seed`, nor a client's encode recomputed (error feedback).
  """

  def get_params(self, name=None):
    del name  # tensor_encoding's decorator passes it; the scope is the caller's.
    params = collections.OrderedDict([(self.SEED_PARAMS_KEY, _common.draw_seed_pair64())])
    return params, params

  def _random_signs(self, num_elements, seed, dtype):
    # tensor_encoding's are sign(u - 0.5): 0 when u is exactly 0.5, which would lose
    # that coordinate both ways (about one round in six for the CNN's dense kernel).
    # `rotation.random_signs` gives the same signs wherever those are not 0.
    return rotation.random_signs(num_elements, seed, dtype)


def build(bits: int = 8, clip: float = 0.01, rotation: bool = False) -> te.core.Encoder:
  """Returns the `fixed_int` encoder (see the module docstring)."""
  composer = te.core.EncoderComposer(SharedScaleIntegerStage(bits, clip))
  if rotation:
    composer = composer.add_parent(SeededHadamardStage(),
                                   SeededHadamardStage.ENCODED_VALUES_KEY)
  return composer.add_parent(te.stages.FlattenEncodingStage(),
                             te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY).make()


def coordinates(num_elements: int, *, rotation: bool = False) -> int:
  """Integers one client sends for a tensor: padded to a power of two when rotated."""
  return _common.next_power_of_two(num_elements) if rotation else num_elements


def bits_formula(num_elements: int, *, bits: int = 8, clip: float = 0.01,
                 rotation: bool = False, direction: str = "aggregate",
                 dtype=tf.float32) -> int:
  """Exact bits of one tensor outside secure aggregation: int32 per coordinate, and in
  a broadcast the rotation's seed. Only float32 tensors are encoded (see the encode):
  others are refused here too, so that no budget or table prices them."""
  del bits, clip
  if tf.as_dtype(dtype) != tf.float32:
    raise ValueError(f"fixed_int encodes float32 tensors, got {tf.as_dtype(dtype).name}")
  seed = _BROADCAST_SEED_BITS if rotation and _common.check_direction(direction) == (
      "broadcast") else 0
  return 32 * coordinates(num_elements, rotation=rotation) + seed


def relative_error_bound(num_elements: int, *, bits: int = 8, clip: float = 0.01,
                         rotation: bool = False) -> None:
  """None: clipping to a fixed range has no worst case relative to ||x||."""
  del num_elements, bits, clip, rotation
  return None
