"""A user codec's mistakes and bad options are one line naming the codec."""

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import Codec, get_codec, register, register_stage, unregister


class _SubsampleStage(te.stages.IdentityEncodingStage):
  def __init__(self, fraction=0.5):
    self._fraction = float(fraction)  # float('abc') raises ValueError


def test_a_stage_refusing_an_option_value_names_the_codec():
  register_stage("subsample_of_a_user", _SubsampleStage)
  try:
    with pytest.raises(ValueError, match=r"^codec 'subsample_of_a_user' cannot be built with "
                       r"options \{'fraction': 'abc'\}: could not convert string to float"):
      get_codec("subsample_of_a_user").encoder({"fraction": "abc"})
  finally:
    unregister("subsample_of_a_user")


def test_a_bits_formula_of_another_signature_is_one_line():
  def bits_formula(num_elements, bits):  # no direction, dtype keywords
    return num_elements * bits

  register(Codec("formula_of_a_user", lambda bits=8: te.encoders.uniform_quantization(bits),
                 bits_formula=bits_formula))
  try:
    with pytest.raises(ValueError, match=r"^codec 'formula_of_a_user': its bits_formula "
                       r"cannot be called as bits_formula\(num_elements, \*, direction, dtype, "
                       r"\*\*options\) with options \{'bits': 8\}: "):
      get_codec("formula_of_a_user").bits(100, dtype=tf.float32)
  finally:
    unregister("formula_of_a_user")


def test_a_tensor_encoding_stage_registered_as_is_takes_its_own_options():
  # Its `bits` was skipped with tensor_encoding's interfaces: --aggregate_bits=3 given to
  # it was dropped, with a warning that it takes no width, and it ran at 8 bits.
  from fedcompress.codecs import takes_bits

  register_stage("te_uniform_of_a_user", te.stages.UniformQuantizationEncodingStage)
  try:
    assert takes_bits("te_uniform_of_a_user", "")
    assert get_codec("te_uniform_of_a_user").options({"bits": 3})["bits"] == 3
  finally:
    unregister("te_uniform_of_a_user")
