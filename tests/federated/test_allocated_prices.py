"""A codec under a bit budget is planned with its bit formula: the formula is checked
against what its encoder sends (review R3: a user's slip went 2x over the budget)."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

import fedcompress
from fedcompress.codecs import CodecSpec, unregister
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.allocated import build_allocated_broadcast_process

pytestmark = pytest.mark.slow  # builds allocated TFF processes

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(big=tff.TensorType(np.float32, [4096])))


@te.core.tf_style_encoding_stage
class _SignedIntStage(te.core.EncodingStageInterface):
  """`bits`-bit signed integers on a max-abs scale, each sent as an int8 (not packed);
  `ragged`: the values leave with a length the trace does not know."""

  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False
  name = "signed_int"

  def __init__(self, bits=4, ragged=False):
    self._bits, self._ragged = bits, ragged

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    scale = tf.reduce_max(tf.abs(x)) + 1e-12
    values = tf.cast(tf.round(x / scale * (2.0 ** (self._bits - 1) - 1)), tf.int8)
    if self._ragged:
      values = tf.boolean_mask(values, tf.ones_like(values, tf.bool))
    return {"values": values, "scale": scale}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    levels = 2.0 ** (self._bits - 1) - 1
    return tf.cast(encoded_tensors["values"], tf.float32) / levels * encoded_tensors["scale"]


def _register(name, per_value_bits, ragged=False):
  def build(bits=4):
    return te.core.EncoderComposer(_SignedIntStage(bits, ragged)).add_parent(
        te.stages.FlattenEncodingStage(), te.stages.FlattenEncodingStage.ENCODED_VALUES_KEY
    ).make()

  def formula(num_elements, *, direction, dtype, bits):
    del direction, dtype
    return num_elements * per_value_bits(bits) + 32  # the values and the float32 scale

  fedcompress.register(fedcompress.Codec(name, build, bits_formula=formula), overwrite=True)


@pytest.fixture
def codecs():
  _register("sint_slip", lambda bits: bits)  # As if bit-packed: int8 is 8 bits.
  _register("sint_ok", lambda bits: 8)
  _register("sint_ragged_slip", lambda bits: bits, ragged=True)
  yield
  for name in ("sint_slip", "sint_ok", "sint_ragged_slip"):
    unregister(name)


def _budget(name):
  return AllocatedCodec(CodecSpec(name, threshold=100), 8.1, (2, 4))


def _broadcast_once(process):
  """One round to one client (the broadcast's clients come from a CLIENTS argument)."""
  @tff.federated_computation(process.initialize.type_signature.result,
                             tff.FederatedType(VALUE_TYPE, tff.SERVER),
                             tff.FederatedType(np.int32, tff.CLIENTS))
  def run(state, value, clients):
    del clients  # Only fixes the number of clients.
    return process.next(state, value)

  value = collections.OrderedDict(big=np.linspace(-1, 1, 4096, dtype=np.float32))
  return run(process.initialize(), value, [0])


def test_a_formula_that_misprices_a_static_encoding_is_refused_when_built(codecs):
  with pytest.raises(ValueError, match=r"codec 'sint_slip' at width 2: its bits_formula "
                     r"prices big \(4096 elements\) at 8224 bits, but its encoder sends 32800"):
    build_allocated_broadcast_process(VALUE_TYPE, _budget("sint_slip"), ["big"])
  # The same stage priced at what it sends runs, within its budget.
  process = build_allocated_broadcast_process(VALUE_TYPE, _budget("sint_ok"), ["big"])
  output = _broadcast_once(process)
  assert output.measurements["bits"] == 8 * 4096 + 32 + 8  # the values, scale, choice byte


def test_a_formula_that_misprices_an_encoding_of_unknown_size_fails_its_first_encode(codecs):
  process = build_allocated_broadcast_process(VALUE_TYPE, _budget("sint_ragged_slip"),
                                              ["big"])
  with pytest.raises(Exception, match="its bits_formula prices big"):
    _broadcast_once(process)
