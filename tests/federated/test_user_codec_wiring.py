"""Wiring that builds its own encoders traces a user's codec first, as CodecSpec does."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import Codec, CodecSpec, register, unregister
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.allocated import AllocatedSumFactory


@te.core.tf_style_encoding_stage
class _HalfUncast(te.core.EncodingStageInterface):
  """Sends float16 and forgets to cast back: breaks tensor_encoding's contract."""

  name = "half_uncast"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def __init__(self, bits=16):
    self.bits = bits

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return encoded_tensors["values"]


def _build(bits=16):
  return te.core.EncoderComposer(_HalfUncast(bits)).add_parent(
      te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY).make()


def test_an_allocated_sum_says_a_broken_user_codec_in_one_line():
  # Under --aggregate_bits_per_coordinate it was a 26-frame TypeError naming no codec.
  register(Codec("half_uncast_of_a_user", _build,
                 bits_formula=lambda n, *, direction, dtype, bits: 16 * n))
  try:
    value_type = tff.types.to_type(collections.OrderedDict(
        big=tff.TensorType(np.float32, [4096])))
    codec = AllocatedCodec(CodecSpec("half_uncast_of_a_user", threshold=100), 20.0, (16,))
    with pytest.raises(ValueError, match=r"^codec 'half_uncast_of_a_user\(bits=16\)>0' on a "
                       r"float32\[4096\] tensor: it decodes to float16, not the input's "
                       r"float32$"):
      AllocatedSumFactory(codec, ["big"], reserved_bits=32, seed=5).create(value_type)
  finally:
    unregister("half_uncast_of_a_user")
