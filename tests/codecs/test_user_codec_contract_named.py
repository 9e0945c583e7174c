"""Two of the README's named contract mistakes are said as such (s47 R5).

A stage class without `@te.core.tf_style_encoding_stage` and an `encode` returning a
tensor were said by the raw errors they caused ("Base.get_params() takes 1 positional
argument but 2 were given", "'SymbolicTensor' object has no attribute 'items'").
"""

import re

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec, register_stage, unregister

SPEC = tf.TensorSpec([40, 30], tf.float32)


class _Half(te.core.EncodingStageInterface):
  name = "half_of_a_test"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32)


@te.core.tf_style_encoding_stage
class _TensorOut(_Half):
  def encode(self, x, encode_params):
    return tf.cast(x, tf.float16)


def _check_refusal(stage) -> str:
  """What the pre-check says of `stage`, registered as a codec of the user's."""
  register_stage("contract_of_a_test", stage, overwrite=True)
  try:
    with pytest.raises(ValueError) as info:
      CodecSpec("contract_of_a_test", threshold=0).checked_encoder(SPEC)
  finally:
    unregister("contract_of_a_test")
  return str(info.value)


@pytest.mark.parametrize("stage,rule", [
    (_Half, r"TypeError: .*get_params\(\) takes 1 positional argument but 2 were given \(its "
            r"stage class is not decorated with @te.core.tf_style_encoding_stage, or "
            r"tf_style_adaptive_encoding_stage\)$"),
    (_TensorOut, r"AttributeError: .* has no attribute 'items' \(its stage's encode returns a "
                 r"tensor, not a dict of tensors\)$"),
])
def test_the_broken_rule_is_named(stage, rule):
  said = _check_refusal(stage)
  assert re.match(r"codec 'contract_of_a_test>0' on a float32\[40, 30\] tensor fails to encode "
                  r"and decode: " + rule, said), said


def test_a_decorated_stage_that_returns_a_dict_passes():
  register_stage("contract_of_a_test", te.core.tf_style_encoding_stage(_Half), overwrite=True)
  try:
    CodecSpec("contract_of_a_test", threshold=0).checked_encoder(SPEC)
  finally:
    unregister("contract_of_a_test")


@te.core.tf_style_encoding_stage
class _NoParamsArgument(_Half):
  def encode(self, x):  # noqa: ARG002 - leaves out encode_params: a mistake of its own.
    return {"values": tf.cast(x, tf.float16)}


@te.core.tf_style_encoding_stage
class _OwnItemsError(_Half):
  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16).items()}


@pytest.mark.parametrize("stage", [_NoParamsArgument, _OwnItemsError])
def test_other_mistakes_get_no_wrong_rule(stage):
  # A decorated stage's encode without encode_params was told it lacked the decorator,
  # and any missing `.items` was put down to an encode returning a tensor (R9 of s47).
  said = _check_refusal(stage)
  assert "fails to encode and decode" in said
  assert "decorated" not in said and "not a dict" not in said
