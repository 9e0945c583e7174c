"""InlineEncoder: tensor_encoding's SimpleEncoder, value for value, traced where called."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, seeding
from fedcompress.codecs.stages import rotation

SPEC = tf.TensorSpec([40, 30], tf.float32)


def _x():
  return np.random.default_rng(0).standard_normal([40, 30]).astype(np.float32)


def _round_trip(encoder, x):
  """Encode (in the broadcast's seed scope) and decode in a graph of their own, as TFF
  traces a computation; the values, run in a session."""
  with tf.Graph().as_default() as graph:
    value = tf.constant(x)
    key = seeding.encode_key(seeding.round_key(3, tf.constant(1, tf.int64)), 0, value)
    with seeding.seed_scope(key):
      encoded, state = encoder.encode(value, encoder.initial_state())
    decoded = encoder.decode(encoded)
    with tf.compat.v1.Session(graph=graph) as session:
      return session.run((encoded, state, decoded))


@pytest.mark.parametrize("name,options", [
    ("identity", {}), ("uniform", {"bits": 4}), ("eden", {"bits": 2}), ("topk", {"fraction": 0.1}),
    ("uniform_huffman", {}), ("kashin", {}), ("randk|eden", {})])
def test_same_keys_values_state_and_decode_as_simple_encoder(name, options):
  codec = CodecSpec(name, options, threshold=0)
  simple, inline = codec.simple_encoder(SPEC), codec.inline_encoder(SPEC)
  x = _x()
  # SimpleEncoder's tf.functions trace again in the calling graph, inside the scope (in
  # eager mode, or in a tf.function, they run the trace made with the encoder, unseeded).
  (encoded_s, state_s, decoded_s), (encoded_i, state_i, decoded_i) = (
      _round_trip(simple, x), _round_trip(inline, x))
  assert list(encoded_i) == list(encoded_s)  # The same flat keys, in the same order.
  for key in encoded_s:
    assert encoded_i[key].dtype == encoded_s[key].dtype, key
    np.testing.assert_array_equal(encoded_i[key], encoded_s[key], err_msg=key)
  assert len(state_i) == len(state_s)
  for a, b in zip(state_i, state_s, strict=True):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(decoded_i, decoded_s)
  assert not np.array_equal(decoded_i, x) or name == "identity"  # Lossy: a real encode.


def test_traces_only_where_called(monkeypatch):
  calls = []
  original = rotation._rotate
  monkeypatch.setattr(rotation, "_rotate", lambda *a, **k: calls.append(1) or original(*a, **k))
  encoder = CodecSpec("drive", {}, threshold=0).inline_encoder(SPEC)
  assert calls == []  # Made: nothing traced (SimpleEncoder traces encode and decode).

  @tf.function
  def round_trip(x):
    encoded, _ = encoder.encode(x, encoder.initial_state())
    return encoder.decode(encoded)

  round_trip.get_concrete_function(SPEC)
  assert len(calls) == 2  # One rotation in the encode, its inverse in the decode.


def test_decode_before_any_encode_is_refused():
  encoder = CodecSpec("uniform", {}, threshold=0).inline_encoder(SPEC)
  with pytest.raises(ValueError, match="encode first"):
    encoder.decode({})
  with pytest.raises(ValueError, match="does not match"):
    encoder.encode(tf.zeros([3]))
