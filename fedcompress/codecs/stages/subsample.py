"""Sending a fraction of each rotated row: rates below one bit per coordinate.

After a random rotation every coordinate of a row carries the same share of the
row's energy in expectation, so sending the first `m = ceil(keep * L)` coordinates of
each row and zeroing the rest at the receiver is as good as sampling `m` random
coordinates, and needs no indices. A 1-bit quantizer after it sends `keep` bits per
coordinate; for Gaussian-like rotated rows the error is about `(1 - keep) + keep *
D_1` of `||x||^2`, with D_1 the 1-bit codec's own normalized MSE (EDEN's unbiased
0.5708, not the 0.3634 of the sign quantizer before its scale), the shape of the
sub-bit regime of Vargaftik et al., "EDEN", ICML 2022, sec. 5 (random sampling before EDEN's 1-bit
quantization). Zeros stand for the unsent coordinates, with no rescaling: the
estimate is shrunk toward 0 (about `keep * x` in expectation), biased but of lower
error than rescaling by `1 / keep` would give. The bit allocator
(`fedcompress.codecs.allocation`) uses it for widths below 1 and for steps finer than a
bit (1.95: 97.5% of the coordinates at 2 bits).
"""

from __future__ import annotations

import collections

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common


def check_keep(keep) -> float:
  return _common.check_fraction("keep", keep)


def kept_length(length: int, keep: float) -> int:
  """Coordinates sent per row of `length`: ceil(keep * length), at least 1."""
  return _common.kept_count(length, keep)


@te.core.tf_style_encoding_stage
class RowPrefixEncodingStage(_common.StatelessStage):
  """Keeps the first `ceil(keep * L)` columns of a `[rows, L]` input; decodes with zeros.

  Encoded structure: `{'kept': [rows, m] of the input dtype}`.
  """

  ENCODED_VALUES_KEY = "kept"
  STAGE_NAME = "row_prefix"
  COMPRESSIBLE_KEYS = (ENCODED_VALUES_KEY,)
  DECODE_NEEDS_INPUT_SHAPE = True

  def __init__(self, keep: float):
    self._keep = check_keep(keep)

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    m = kept_length(x.shape[-1], self._keep)
    return collections.OrderedDict([(self.ENCODED_VALUES_KEY, x[:, :m])])

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    kept = encoded_tensors[self.ENCODED_VALUES_KEY]
    static = tf.get_static_value(shape) if tf.is_tensor(shape) else shape
    length = int(static[-1]) if static is not None else shape[-1]
    padded = tf.pad(kept, [[0, 0], [0, length - tf.shape(kept)[-1]]])
    # The rotation's decode needs static [rows, L].
    return tf.reshape(padded, [kept.shape[0], length]) if static is not None else padded
