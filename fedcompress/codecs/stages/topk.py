"""`topk` codec: keep the k largest magnitudes, send their values and indices.

Top-k sparsification (Aji and Heafield, "Sparse Communication for Distributed
Gradient Descent", EMNLP 2017; Stich, Cordonnier and Jaggi, "Sparsified SGD with
Memory", NeurIPS 2018). It is biased: the dropped coordinates are lost (the papers
pair it with error feedback, which is a training-loop concern, not a codec's).

With `n` elements, `k = ceil(fraction * n)` (at least 1). The encoded structure is
the `k` values at the tensor's dtype and their `k` flat indices as int32, so a tensor
costs `k * (width + 32)` bits: the index cost is counted in full.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, selection


@te.core.tf_style_encoding_stage
class TopKEncodingStage(_common.StatelessStage):
  """Keeps the `ceil(fraction * n)` largest-magnitude elements of any-shaped input.

  Encoded: `{'values': [k] input dtype, 'indices': [k] int32 (flat positions)}`.
  Decoded: zeros of the input shape with the kept values scattered back.
  """

  ENCODED_VALUES_KEY = "values"
  INDICES_KEY = "indices"

  def __init__(self, fraction: float = 0.01):
    self._fraction = _common.check_fraction("fraction", fraction)

  STAGE_NAME = "topk"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
  DECODE_NEEDS_INPUT_SHAPE = True

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    n = _common.static_size(x, "topk")
    flat = tf.reshape(x, [-1])
    indices = selection.largest_magnitudes(flat, _common.kept_count(n, self._fraction))
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, tf.gather(flat, indices)),
                                    (self.INDICES_KEY, tf.cast(indices, tf.int32))])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    values = encoded_tensors[self.ENCODED_VALUES_KEY]
    indices = encoded_tensors[self.INDICES_KEY]
    n = _common.static_num_elements(shape)
    dense = tf.scatter_nd(indices[:, tf.newaxis], values, tf.reshape(n, [1]))
    return tf.reshape(dense, shape)


def plain_note(*, direction: str, fraction: float = 0.01) -> str | None:
  """On the broadcast, what it does to the model: it encodes the weights themselves, and
  every client trained from a model with 99% of them zeroed, unsaid (review R1 of s48)."""
  if direction != "broadcast":
    return None
  return (f"keeps a {fraction:g} fraction of each tensor's coordinates, the largest in magnitude, "
          "and zeroes the rest: on the broadcast these are the model's weights, not "
          "an update, so every client starts its round from that model (a sparsifier "
          "goes on the uplink)")


def check_options(fraction: float = 0.01) -> dict:
  """The `topk` codec's options, checked, with their defaults."""
  return {"fraction": _common.check_fraction("fraction", fraction)}


def build(fraction: float = 0.01) -> te.core.Encoder:
  """The `topk` encoder: the stage alone (it flattens by itself)."""
  return te.core.EncoderComposer(TopKEncodingStage(fraction)).make()


def bits_formula(num_elements: int, *, fraction: float = 0.01, direction: str = "aggregate",
                 dtype=tf.float32) -> int:
  """Exact bits of one `num_elements`-element tensor through `topk` (either way)."""
  del direction
  return _common.kept_count(num_elements, fraction) * (_common.dtype_bits(dtype) + 32)



def output_size(num_elements: int, *, fraction: float = 0.01) -> int:
  """The `k` values a next codec in a chain encodes (the indices stay side information)."""
  return _common.kept_count(num_elements, fraction)


def error_gain(num_elements: int, *, fraction: float = 0.01) -> float:
  """Decoding scatters the values unscaled; they have at most the input's norm."""
  del num_elements, fraction
  return 1.0


def relative_error_bound(num_elements: int, *, fraction: float = 0.01) -> float:
  """Worst-case `||x - x_hat|| / ||x||`: only dropped coordinates err, by themselves.

  Top-k keeps the largest magnitudes, so at most `sqrt(1 - k/n)` of the norm is lost
  (equal magnitudes are the worst case); with `k = n` nothing is.
  """
  k = _common.kept_count(num_elements, fraction)
  return math.sqrt(1 - k / num_elements)
