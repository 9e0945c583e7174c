"""A user codec whose `bits` has no default takes its width from `bits` (the flag)."""

import pytest
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs

NAME = "required_bits_of_a_user"


@pytest.fixture
def required_bits():
  codecs.register_codec(NAME, lambda bits: te.encoders.uniform_quantization(bits))
  yield
  codecs.unregister(NAME)


def test_bits_fills_a_width_the_codec_requires(required_bits):
  # Asked whether it takes `bits` by checking its options without one, the codec raised
  # "missing a required argument: 'bits'" for the width --aggregate_bits gave.
  assert codecs.takes_bits(NAME)
  assert codecs.make_codec(NAME, bits=4).describe() == f"{NAME}(bits=4)>10000"
  assert codecs.make_codec(f"randk(fraction=0.1)|{NAME}", bits=3).describe() == (
      f"randk(fraction=0.1)|{NAME}(bits=3)>10000")
  with pytest.raises(ValueError, match="missing a required argument: 'bits'"):
    codecs.make_codec(NAME)
