"""Seed scopes: an encode inside one is a function of (key, input); outside, unseeded."""

import numpy as np
import tensorflow as tf

from fedcompress.codecs import CodecSpec, seeding

X = tf.constant(np.random.default_rng(0).normal(size=[4096]).astype(np.float32))


def _encode(name, options, x=X, key=None):
  # The plain Encoder, eagerly: te's Simple/GatherEncoder trace a tf.function when built,
  # outside any scope, and reuse it eagerly; inside a TFF computation they are traced
  # again, in the scope (tests/harness/test_reproducible.py checks that path).
  encoder = CodecSpec(name, options, threshold=0).make_encoder()

  def encode():
    params, _ = encoder.get_params(encoder.initial_state())
    encoded, _, _ = encoder.encode(x, params)
    return tf.nest.map_structure(lambda t: t.numpy(), encoded)

  if key is None:
    return tf.nest.flatten(encode())
  with seeding.seed_scope(key):
    return tf.nest.flatten(encode())


def _same(a, b):
  return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_same_key_same_encode_other_key_other_encode():
  key = seeding.encode_key(seeding.round_key(0, 3), 0, X)
  for name, options in (("uniform", {"bits": 2}), ("drive", {}), ("randk", {"fraction": 0.1}),
                        ("hadamard", {"bits": 2}), ("kashin", {"bits": 2}),
                        ("adaptive", {"budget_bits_per_coordinate": 3.0}),
                        ("fixed_int", {"bits": 8, "clip": 2.0, "rotation": True})):
    first = _encode(name, options, key=key)
    assert _same(first, _encode(name, options, key=key)), name
    other = seeding.encode_key(seeding.round_key(0, 4), 0, X)  # The next round.
    assert not _same(first, _encode(name, options, key=other)), name
    # Outside a scope the stages draw unseeded: two encodes differ.
    assert not _same(_encode(name, options), _encode(name, options)), name


def test_keys_differ_by_seed_round_index_and_input():
  keys = [seeding.encode_key(seeding.round_key(seed, r), i, x).numpy().tolist()
          for seed, r, i, x in ((0, 1, 0, X), (1, 1, 0, X), (0, 2, 0, X), (0, 1, 1, X),
                                (0, 1, 0, X + 1e-3))]
  assert len({tuple(k) for k in keys}) == len(keys)
  # And are pure functions of them.
  assert seeding.encode_key(seeding.round_key(0, 1), 0, X).numpy().tolist() == keys[0]


def test_draws_in_one_scope_are_independent():
  from fedcompress.codecs.stages import _common

  with seeding.seed_scope(seeding.round_key(0, 0)):
    a, b = _common.dither16([64]), _common.dither16([64])
  assert not np.array_equal(a.numpy(), b.numpy())
  with seeding.seed_scope(seeding.round_key(0, 0)):
    again = _common.dither16([64])
  np.testing.assert_array_equal(a.numpy(), again.numpy())
