"""A user codec that breaks tensor_encoding's contract is said in one line naming it.

Before, each of these failed deep inside TFF or tensor_encoding: a bare AssertionError
(a float16 decode), "'SymbolicTensor' object has no attribute 'items'", "Cannot convert a
partially known TensorShape", "The encoder must be an instance of `Encoder`", or a
`TypeError` summing a formula's None into a run's bits.
"""

import contextlib

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import Codec, CodecSpec, get_codec, register, register_stage, unregister

SPEC = tf.TensorSpec([40, 30], tf.float32)


@contextlib.contextmanager
def _registered(name, factory, **kwargs):
  register_stage(name, factory, **kwargs)
  try:
    yield CodecSpec(name, threshold=0)
  finally:
    unregister(name)


def _stage(encode, decode, *, needs_shape=False):
  """A stage class of the user's from its encode and decode functions."""

  @te.core.tf_style_encoding_stage
  class Stage(te.core.EncodingStageInterface):
    name = "users"
    compressible_tensors_keys = ["values"]
    commutes_with_sum = False
    decode_needs_input_shape = needs_shape

    def get_params(self):
      return {}, {}

    def encode(self, x, encode_params):
      return encode(x)

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
      return decode(encoded_tensors, shape)

  return Stage


def _half(x):
  return {"values": tf.cast(x, tf.float16)}


def _sparse(x):
  # A size the trace knows as a constant, but the server receives as a value.
  keep = tf.abs(x) > 0.5
  return {"values": tf.boolean_mask(x, keep),
          "indices": tf.cast(tf.where(keep)[:, 0], tf.int32), "size": tf.size(x)}


def _scatter(encoded, shape):
  size = [encoded["size"]] if shape is None else tf.reshape(shape, [-1])
  return tf.scatter_nd(encoded["indices"][:, None], encoded["values"], size)


def test_a_correct_user_stage_passes_both_ways():
  stage = _stage(_half, lambda e, shape: tf.cast(e["values"], tf.float32))
  with _registered("half_of_a_user", stage) as spec:
    spec.inline_encoder(SPEC)
    spec.gather_encoder(SPEC)


def test_a_decode_to_another_dtype_is_said_both_ways():
  # The README's half-precision stage without its cast back.
  stage = _stage(_half, lambda e, shape: e["values"])
  with _registered("half_uncast_of_a_user", stage) as spec:
    for build in (spec.inline_encoder, spec.gather_encoder):
      with pytest.raises(ValueError, match=r"^codec 'half_uncast_of_a_user>0' on a "
                         r"float32\[40, 30\] tensor: it decodes to float16, not the input's "
                         r"float32$"):
        build(SPEC)


def test_an_encode_returning_a_tensor_is_said():
  stage = _stage(lambda x: x, lambda e, shape: e)
  with _registered("tensor_of_a_user", stage) as spec:
    with pytest.raises(ValueError, match=r"^codec 'tensor_of_a_user>0' on a float32\[40, 30\] "
                       r"tensor fails to encode and decode: AttributeError: "):
      spec.gather_encoder(SPEC)


def test_a_decode_of_run_time_shape_is_said_where_the_server_sums():
  # The broadcast takes it; the sum needs what decode_needs_input_shape gives.
  stage = _stage(_sparse, _scatter)
  with _registered("sparse_of_a_user", stage) as spec:
    spec.inline_encoder(SPEC)
    with pytest.raises(ValueError, match=r"^codec 'sparse_of_a_user>0' on a float32\[40, 30\] "
                       r"tensor: it decodes to shape \(None,\) before the sum, known only "
                       r"when it runs; .*decode_needs_input_shape=True"):
      spec.gather_encoder(SPEC)
  with _registered("sparse_shaped_of_a_user", _stage(_sparse, _scatter, needs_shape=True)
                   ) as spec:
    spec.gather_encoder(SPEC)


def test_a_list_among_summed_encoded_values_is_said():
  stage = _stage(lambda x: {"values": [x, x]}, lambda e, shape: e["values"][0])
  with _registered("list_of_a_user", stage) as spec:
    spec.inline_encoder(SPEC)  # A broadcast sends both, and counts them.
    with pytest.raises(ValueError, match=r"^codec 'list_of_a_user>0' on a float32\[40, 30\] "
                       r"tensor: its encode returns a list at /flattened_values/values among"):
      spec.gather_encoder(SPEC)


def test_a_builder_returning_no_encoder_says_what_to_return():
  stage = te.stages.IdentityEncodingStage
  cases = {"stage_of_a_user": (lambda: stage(), "a stage: return te.core.EncoderComposer"),
           "composer_of_a_user": (lambda: te.core.EncoderComposer(stage()),
                                  "an EncoderComposer: return its .make()"),
           "nothing_of_a_user": (lambda: None, None)}
  for name, (build, hint) in cases.items():
    register(Codec(name, build))
    try:
      with pytest.raises(ValueError) as raised:
        get_codec(name).encoder()
    finally:
      unregister(name)
    message = str(raised.value)
    assert message.startswith(f"codec {name!r}: its build returned "), message
    assert (f"not a tensor_encoding Encoder ({hint}" in message) if hint else message.endswith(
        "returned NoneType, not a tensor_encoding Encoder")


def test_an_option_check_returning_no_dict_is_said():
  def check(bits=8):
    dict(bits=bits)  # The user's check, without its return.

  register(Codec("check_of_a_user", lambda bits=8: te.encoders.uniform_quantization(bits),
                 check_options=check))
  try:
    with pytest.raises(ValueError, match=r"^codec 'check_of_a_user': its check_options "
                       r"returned NoneType, not the dict of the checked options$"):
      get_codec("check_of_a_user").options({"bits": 4})
  finally:
    unregister("check_of_a_user")


@pytest.mark.parametrize("formula, said", [
    (lambda n, *, direction, dtype, bits: n * bits // 0,
     r"its bits_formula failed for 100 elements with options \{'bits': 8\}: "
     r"ZeroDivisionError: integer division or modulo by zero$"),
    (lambda n, *, direction, dtype, bits: None,
     r"its bits_formula returned None for 100 elements; it must return the exact bits"),
    (lambda n, *, direction, dtype, bits: n * bits / 1.0,
     r"its bits_formula returned 800.0 for 100 elements"),
], ids=["raises", "none", "float"])
def test_a_bits_formula_failing_or_returning_no_int_is_said_naming_its_codec(formula, said):
  register(Codec("formula_of_a_user", lambda bits=8: te.encoders.uniform_quantization(bits),
                 bits_formula=formula))
  try:
    with pytest.raises(ValueError, match=r"^codec 'formula_of_a_user': " + said):
      get_codec("formula_of_a_user").bits(100)
    # In a chain it is the link that is named, not the chain's composed formula (which
    # read a None as a formula that "cannot be called").
    with pytest.raises(ValueError, match=r"^codec 'formula_of_a_user': its bits_formula "):
      CodecSpec("rotation|formula_of_a_user", threshold=0).tensor_bits(SPEC)
  finally:
    unregister("formula_of_a_user")


def test_a_chain_after_a_stage_of_several_outputs_asks_which_goes_on():
  # It was refused as ending in "bit-packed words or a coded stream", which its plain
  # float32 values are not.
  @te.core.tf_style_encoding_stage
  class TwoOutputs(te.core.EncodingStageInterface):
    name = "two_outputs"
    compressible_tensors_keys = ["values", "scale"]
    commutes_with_sum = False
    decode_needs_input_shape = False

    def get_params(self):
      return {}, {}

    def encode(self, x, encode_params):
      scale = tf.reduce_max(tf.abs(x))
      return {"values": x / scale, "scale": scale}

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
      return encoded_tensors["values"] * encoded_tensors["scale"]

  with _registered("two_of_a_user", TwoOutputs):
    with pytest.raises(ValueError, match=r"^cannot put 'uniform\(bits=8\)' after "
                       r"'two_of_a_user': 'two_of_a_user' ends in a stage of several "
                       r"compressible outputs \(values, scale\); set ENCODED_VALUES_KEY"):
      CodecSpec("two_of_a_user|uniform(bits=8)")
    TwoOutputs.ENCODED_VALUES_KEY = "values"
    CodecSpec("two_of_a_user|uniform(bits=8)", threshold=0).gather_encoder(SPEC)


def test_a_codec_whose_source_python_cannot_find_is_checked_too():
  # Typed into a REPL or piped to `python -`: no source, so no digest, and the check
  # keyed on the digest skipped it (the float16 decode was a bare AssertionError again).
  namespace = {"te": te, "tf": tf}
  exec(compile(
      "@te.core.tf_style_encoding_stage\n"
      "class Half(te.core.EncodingStageInterface):\n"
      "  name = 'half'\n"
      "  compressible_tensors_keys = ['values']\n"
      "  commutes_with_sum = False\n"
      "  decode_needs_input_shape = False\n"
      "  def get_params(self):\n"
      "    return {}, {}\n"
      "  def encode(self, x, encode_params):\n"
      "    return {'values': tf.cast(x, tf.float16)}\n"
      "  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):\n"
      "    return encoded_tensors['values']\n", "<stdin>", "exec"), namespace)
  with _registered("typed_of_a_user", namespace["Half"]) as spec:
    assert get_codec("typed_of_a_user").source_digest is None
    with pytest.raises(ValueError, match=r"it decodes to float16, not the input's float32$"):
      spec.gather_encoder(SPEC)


def test_a_check_adding_a_derived_key_is_priced_in_a_chain_too():
  # The chain's formula checked each link's checked options again, and a key the check
  # adds (levels beside bits) was refused as an option the user never gave.
  def check(bits=8):
    return {"bits": bits, "levels": 2**bits}

  def build(bits=8, levels=256):
    del levels
    return te.encoders.uniform_quantization(bits)

  def formula(n, *, direction, dtype, bits, levels):
    del direction, dtype, levels
    return -(-n * bits // 28) * 32 + 64

  register(Codec("derived_of_a_user", build, check_options=check, bits_formula=formula))
  try:
    alone = CodecSpec("derived_of_a_user", threshold=0).tensor_bits(SPEC)
    chained = CodecSpec("rotation|derived_of_a_user", threshold=0).tensor_bits(SPEC)
    assert alone == 343 * 32 + 64 and chained > alone  # ceil(1200 * 8 / 28) words
  finally:
    unregister("derived_of_a_user")
