"""What a user's codec is told when it cannot be used, and why."""

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs
from fedcompress.codecs import accounting
from fedcompress.federated.aggregation import moving_state_hint


@pytest.mark.parametrize("name", ["a|b", "my codec", "x,y", "x=y", "a(b", "a)"])
def test_a_name_no_flag_or_chain_can_spell_is_refused_when_registered(name):
  # Registered, it failed at every use as "not of the form name or name(key=value,...)".
  with pytest.raises(ValueError, match="holds a space or one of"):
    codecs.register_stage(name, te.stages.IdentityEncodingStage)
  assert name not in codecs.available_codecs()


def test_the_hint_for_a_moving_state_is_adaptive_s_only():
  # A user's codec with moving state was told to pass adaptive's coder=fixed.
  assert moving_state_hint(codecs.CodecSpec.parse(
      "adaptive(budget_bits_per_coordinate=2.0)")) == (
          " (adaptive's rate offset: use coder=fixed)")
  assert moving_state_hint(codecs.CodecSpec.parse("randk(fraction=0.5)|uniform")) == ""


def test_a_string_tensor_is_said_to_be_sent_as_words():
  # It said "count their bytes instead", which only fedcompress's accounting can.
  with pytest.raises(ValueError, match=r"a codec sends a string tensor.*uint8 or int32"):
    accounting.structure_bits_tf({"bytes": tf.constant([b"abc"])})
