"""A codec under a bit budget (reviews R2, R3): what AllocatedCodec refuses, and what it
measures again when a user's codec is registered anew."""

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

import fedcompress
from fedcompress.codecs import CodecSpec, unregister
from fedcompress.codecs.allocation import AllocatedCodec


@te.core.tf_style_encoding_stage
class _HalfPrecisionStage(te.core.EncodingStageInterface):
  """The README's own codec ("Your own codec"): no constructor, so no options."""

  name = "half_precision"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32)


@te.core.tf_style_adaptive_encoding_stage
class _CountingStage(te.core.AdaptiveEncodingStageInterface):
  """float16 values and a state that counts the rounds (decode adds it)."""

  name = "counting"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False
  state_update_aggregation_modes = {"n": te.core.StateAggregationMode.SUM}

  def __init__(self, bits=16):
    self._bits = bits

  def initial_state(self):
    return {"c": tf.constant(0.0)}

  def update_state(self, state, state_update_tensors):
    return {"c": state["c"] + 1.0}

  def get_params(self, state):
    return {}, {"c": state["c"]}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}, {"n": tf.constant(1.0)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32) + decode_params["c"]


@pytest.fixture
def registered():
  """`registered(codec)` registers it, and every codec so registered is removed after."""
  names = []

  def register(codec):
    names.append(codec.name)
    return fedcompress.register(codec, overwrite=True)

  yield register
  for name in names:
    unregister(name)


def test_a_stage_without_options_takes_no_width(registered):
  # Its options are the decorator's (*args, **kwargs), refused only when it is built:
  # under a budget that failed with "cannot be built with options {'bits': 1}".
  registered(fedcompress.register_stage("fp16_alloc", _HalfPrecisionStage))
  with pytest.raises(ValueError, match=r"takes none of the widths \[1, 2, 3, 4, 6, 8\] "
                     r"\(it needs a `bits` option\)"):
    AllocatedCodec(CodecSpec("fp16_alloc"), 8.0)


def test_a_stage_whose_state_moves_is_refused(registered):
  # Each round encoded from the initial state and dropped the new one: the counter
  # decoded 0, 0, 0 where the codec at a fixed width decodes 0, 1, 2.
  registered(fedcompress.Codec(
      "counting_alloc", lambda bits=16: te.core.EncoderComposer(_CountingStage(bits)).make(),
      bits_formula=lambda n, *, direction, dtype, bits: n * 16))
  with pytest.raises(ValueError, match="codec 'counting_alloc' keeps encoder state from "
                     "round to round .* use it at a fixed width"):
    AllocatedCodec(CodecSpec("counting_alloc", threshold=100), 20.0, (16,))


@pytest.mark.parametrize("options", [{"bits": 2}, {"keep": 0.5}, {"bits": 2, "keep": 0.5}])
def test_options_the_widths_set_are_refused(options):
  # eden(bits=2,keep=0.5)>100@1bpc[1,2,3] was recorded for a run that used neither.
  with pytest.raises(ValueError, match="bit allocation sets .* of codec 'eden' itself"):
    AllocatedCodec(CodecSpec("eden", options, threshold=100), 1.0, (1, 2, 3))
  # make_codec writes the default width in, which the user never wrote: said so.
  with pytest.raises(ValueError, match=r"make_codec writes the default bits in"):
    AllocatedCodec(fedcompress.make_codec("eden", threshold=100), 1.0, (1, 2, 3))


def test_a_codec_registered_again_is_measured_again(registered):
  # The errors per width were cached by name: after a lossy codec was replaced by a
  # lossless one under its name, the allocator still used the lossy one's.
  def codec(build):
    return fedcompress.Codec("reregistered", build,
                             bits_formula=lambda n, *, direction, dtype, bits: n * bits + 64)

  spec = [tf.TensorSpec([1000])]
  registered(codec(lambda bits=2: te.encoders.uniform_quantization(bits)))
  budget = AllocatedCodec(CodecSpec("reregistered", threshold=0), 5.0, (2, 4))
  lossy = budget.plan(spec).tensors[0].unit_mse
  registered(codec(lambda bits=2: te.encoders.identity()))
  assert min(lossy) > 1e-4 and budget.plan(spec).tensors[0].unit_mse == (0.0, 0.0)


def test_a_shared_rotation_is_refused():
  # Each client encodes under seed keys of its own tensors: two clients of one round drew
  # rotation seeds 1214928218 and 1533453198, while the run said shared_rotation=True.
  with pytest.raises(ValueError, match="cannot share its rotation there"):
    AllocatedCodec(CodecSpec("eden", {"shared_rotation": True}, threshold=100), 2.0, (1, 2))
  AllocatedCodec(CodecSpec("eden", threshold=100), 2.0, (1, 2))
