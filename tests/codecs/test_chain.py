"""Composed codecs (fedcompress/codecs/chain.py): notation, refusals, bits, equivalences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import codecs
from fedcompress.codecs import CodecSpec, accounting, make_codec, testing
from fedcompress.codecs.stages import _common

SUB_BIT = "randk(fraction=0.1)|eden(bits=1)"


def _encoder(text: str, shape, dtype=tf.float32):
  return CodecSpec(text, threshold=0).simple_encoder(tf.TensorSpec(shape, dtype))


# --------------------------------------------------------------------------------------
# Notation: the same text in Python, flags and flagfiles.


def test_spec_notation_is_canonical():
  spec = CodecSpec("randk(fraction=0.1) | eden( bits=1 )", threshold=100)
  assert spec.name == SUB_BIT and spec.options == {} and spec.is_chain
  assert spec.describe() == f"{SUB_BIT}>100"
  assert CodecSpec("eden(rounds=1,bits=2)") == CodecSpec("eden", {"bits": 2, "rounds": 1})
  assert not CodecSpec("eden(bits=2)").is_chain
  assert codecs.parse_chain("uniform(bits=4,deterministic=true)|huffman") == [
      ("uniform", {"bits": 4, "deterministic": True}), ("huffman", {})]


def test_make_codec_fills_bits_into_each_link_that_takes_them():
  assert make_codec("randk(fraction=0.1)|eden", bits=1).name == SUB_BIT
  # Without --aggregate_bits the default width is recorded, as for a single codec.
  assert make_codec("rotation|uniform").name == "rotation|uniform(bits=8)"
  assert make_codec("uniform(bits=4)|huffman", bits=8).name == "uniform(bits=4)|huffman"
  # Single codecs keep working with inline options, separate options and bits.
  assert make_codec("eden(bits=2)").describe() == "eden(bits=2)>10000"
  assert make_codec("randk", options="fraction=0.05").describe() == (
      "randk(fraction=0.05)>10000")
  assert make_codec("uniform", bits=4).describe() == "uniform(bits=4)>10000"


@pytest.mark.parametrize("text, options, message", [
    ("nope|eden", {}, "unknown codec 'nope'; valid codecs: adaptive"),
    ("huffman|uniform", {}, "'huffman' entropy-codes quantized symbols, so it cannot come "
     "first"),
    ("randk|huffman", {}, "cannot put 'huffman' after 'randk': an entropy coder needs "
     "quantized symbols"),
    ("eden(bits=1)|randk", {}, "cannot put 'randk' after 'eden(bits=1)': 'eden(bits=1)' "
     "ends in 'bitpack32'"),
    ("uniform|huffman|randk", {}, "cannot put 'randk' after 'huffman': 'huffman' ends in "
     "'huffman'"),
    ("uniform(bits=4)|huffman(base=eden)", {}, "in a chain, 'huffman' has no option 'base'"),
    ("randk(fraction=2)|eden", {}, "fraction must be in (0, 1], got 2"),
    ("randk(levels=3)|eden", {}, "codec 'randk' has no option 'levels'"),
    # The coder's own option errors, not "sends none" (which they were rewritten to).
    ("uniform(bits=8)|huffman(max_code_length=4)", {},
     "max_code_length must be an integer in 8..24 (at least bits=8), got 4"),
    ("nonuniform(bits=4)|huffman(block_size=0)", {}, "block_size must be an integer in"),
    ("huffman", {"blocksize": 64}, "no option 'blocksize': an entropy-coded codec takes "
     "base, coder, max_code_length, block_size and its base uniform's options (bits, "),
    ("uniform_huffman", {"max_code_len": 20}, "no option 'max_code_len'"),
    ("randk(fraction=0.1|eden", {}, "is not of the form name or name(key=value,...)"),
    ("randk|eden", {"bits": 1}, "options of a chain go inside it"),
    ("eden(bits=1)", {"bits": 2}, "option 'bits' is given twice"),
])
def test_chains_that_cannot_work_are_refused_in_one_line(text, options, message):
  with pytest.raises(ValueError) as info:
    CodecSpec(text, options)
  assert message in str(info.value) and "\n" not in str(info.value)


def test_chain_options_are_refused_outside_it():
  with pytest.raises(ValueError, match="options of a chain go inside it"):
    make_codec("randk|eden", options="bits=1")


# --------------------------------------------------------------------------------------
# Bits: formula == in-graph count == hand count.

# (chain, shape, hand-counted bits of one float32 tensor)
HAND = [
    # k = 2,000 of 20,000; EDEN pads them to one row of 2,048: 64 words, one scale,
    # EDEN's rotation seed, randk's seed.
    (SUB_BIT, [20_000], 64 * 32 + 32 + 32 + 32),
    # k = 10 values and their int32 indices; 10 x 4 bits in two 28-bit words, min/max.
    ("topk(fraction=0.01)|uniform(bits=4)", [1000], 10 * 32 + 2 * 32 + 2 * 32),
    # Rows of 64: 100 -> 2 x 64 = 128 rotated coordinates; 2 bits in 8 full words.
    ("rotation(block_size=64)|uniform(bits=2,word_bits=32)", [10, 10], 32 + 8 * 32 + 64),
    # Three links: 50 of 500 kept, rotated in one row of 64, 1-bit EDEN: two words,
    # one scale, two rotation seeds and randk's seed.
    ("randk(fraction=0.1)|rotation|eden(bits=1,block_size=64)", [500],
     32 + 32 + 2 * 32 + 32 + 32),
]


@pytest.mark.parametrize("text, shape, want", HAND)
def test_bits_formula_equals_in_graph_count_and_hand_count(text, shape, want):
  spec = CodecSpec(text, threshold=0)
  assert spec.tensor_bits(tf.TensorSpec(shape, tf.float32)) == want
  x = tf.random.stateless_normal(shape, [1, 2])
  encoded, decoded, counted = testing.round_trip(_encoder(text, shape), x)
  assert counted == want
  assert accounting.bit_counts_tf(encoded, spec.raw_bits_rules)["bits"] == want
  assert decoded.shape == x.shape


def _aggregate_bits(text: str, n: int) -> int:
  """What one client sends through the gather encoder: its encoding, its decode-before-
  sum parameters and its state updates (as the aggregation processes count)."""
  encoder = CodecSpec(text, threshold=0).gather_encoder(tf.TensorSpec([n], tf.float32))
  encode_params, before_sum, _ = encoder.get_params(encoder.initial_state())
  encoded, updates = encoder.encode(tf.random.stateless_normal([n], [5, 6]), encode_params)
  return int(accounting.structure_bits_tf((encoded, before_sum, updates)))


@pytest.mark.parametrize("text, seed_bits", [
    # Alone, Kashin's and the count sketch's shared seeds stay on the server until the
    # sum; behind randk, which does not commute with sum, every client sends them back.
    ("kashin(bits=2)", 0),
    ("randk(fraction=0.5)|kashin(bits=2)", 128),
    ("countsketch(rows=1,fraction=0.5)", 0),
    ("randk(fraction=0.5)|countsketch(rows=1,fraction=0.5)", 32),
])
def test_aggregate_formula_counts_seeds_sent_behind_a_link_not_commuting(text, seed_bits):
  for n in (64, 1741):
    spec = CodecSpec(text, threshold=0)
    formula = spec.tensor_bits(tf.TensorSpec([n], tf.float32), "aggregate")
    assert formula == _aggregate_bits(text, n), (text, n)
    broadcast = spec.tensor_bits(tf.TensorSpec([n], tf.float32), "broadcast")
    seeds_in_broadcast = {"kashin": 128, "countsketch": 32}[text.split("|")[-1].split("(")[0]]
    assert broadcast - formula == seeds_in_broadcast - seed_bits, (text, n)


def test_side_information_of_every_link_is_in_the_encoded_structure():
  encoded, _, _ = testing.round_trip(_encoder(SUB_BIT, [5000]),
                                     tf.random.stateless_normal([5000], [3, 4]))
  keys = sorted(key.replace("encoded_tensors/", "") for key in encoded)
  # randk's seed; EDEN's packed indices, scales and rotation seed, under randk's values.
  assert keys == ["seed", "values/rotated/indices/packed", "values/rotated/scales",
                  "values/seed"]


def test_sub_bit_chain_costs_a_tenth_of_a_bit_per_coordinate():
  n = 1_605_632  # The tutorial CNN's dense kernel.
  bits = CodecSpec(SUB_BIT).tensor_bits(tf.TensorSpec([n]))
  # k = 160,564 values in 79 rows of 2,048 (1 bit each), 79 scales, 2 seeds.
  assert bits == math.ceil(160_564 / 2048) * (2048 + 32) + 64
  assert 0.1 < bits / n < 0.103


# --------------------------------------------------------------------------------------
# Registered codecs that are chains.


@pytest.mark.parametrize("shape, dtype", [([300], tf.float32), ([7, 13], tf.float32),
                                          ([100], tf.float64)])
def test_rotation_then_uniform_is_hadamard(shape, dtype, monkeypatch):
  # The same rotation seed for both (each encode draws its own otherwise).
  monkeypatch.setattr(_common, "draw_seed", lambda: tf.constant(1234, tf.int32))
  chain = "rotation(block_size=64)|uniform(bits=3,deterministic=true,word_bits=32)"
  hadamard = {"bits": 3, "deterministic": True, "block_size": 64}
  spec = tf.TensorSpec(shape, dtype)
  assert CodecSpec(chain).tensor_bits(spec) == CodecSpec("hadamard", hadamard).tensor_bits(spec)
  x = tf.random.stateless_normal(shape, [5, 6], dtype=dtype)
  results = []
  for encoder in (_encoder(chain, shape, dtype),
                  testing.simple_encoder("hadamard", spec, **hadamard)):
    results.append(testing.round_trip(encoder, x))
  (chain_encoded, chain_decoded, chain_bits), (had_encoded, had_decoded, had_bits) = results
  assert chain_bits == had_bits
  np.testing.assert_array_equal(chain_decoded.numpy(), had_decoded.numpy())
  assert sorted(v.numpy().tobytes() for v in chain_encoded.values()) == sorted(
      v.numpy().tobytes() for v in had_encoded.values())


def test_uniform_then_huffman_is_uniform_huffman():
  options = {"bits": 6, "deterministic": True}
  x = tf.random.stateless_normal([3000], [7, 8])
  chain = CodecSpec("uniform(bits=6,deterministic=true)|huffman", threshold=0)
  named = CodecSpec("uniform_huffman", options, threshold=0)
  spec = tf.TensorSpec([3000], tf.float32)
  chain_encoded, chain_decoded, _ = testing.round_trip(chain.simple_encoder(spec), x)
  named_encoded, named_decoded, _ = testing.round_trip(named.simple_encoder(spec), x)
  np.testing.assert_array_equal(chain_decoded.numpy(), named_decoded.numpy())
  assert [v.numpy().tolist() for v in chain_encoded.values()] == [
      v.numpy().tolist() for v in named_encoded.values()]
  counts = accounting.bit_counts_tf(chain_encoded, chain.raw_bits_rules)
  assert int(counts["bits"]) == codecs.get_codec("uniform").bits(3000, options)
  assert int(counts["coded_bits"]) < int(counts["bits"])  # Gaussian symbols code short.


# --------------------------------------------------------------------------------------
# Round trips and error bounds.


def test_lossless_chain_round_trips():
  x = tf.random.stateless_normal([40, 25], [9, 10])
  _, decoded, _ = testing.round_trip(_encoder("rotation(block_size=256)|identity",
                                              [40, 25]), x)
  np.testing.assert_allclose(decoded.numpy(), x.numpy(), atol=1e-5)


def test_chain_error_bound_composes():
  n = 300
  bound = CodecSpec(SUB_BIT).codec.relative_error_bound(n)
  # randk keeps 30 (its own worst case max(1, 10 - 1) = 9, decode gain 10), then EDEN
  # on 30 coordinates padded to one row of 32.
  eden = codecs.get_codec("eden").relative_error_bound(30, {"bits": 1})
  assert bound == pytest.approx(9.0 + 10.0 * eden)
  assert CodecSpec("rotation|uniform(bits=2)").codec.relative_error_bound(n) == (
      codecs.get_codec("uniform").relative_error_bound(512, {"bits": 2}))
  assert CodecSpec("uniform|huffman").codec.relative_error_bound(n) == (
      codecs.get_codec("uniform").relative_error_bound(n, {"bits": 8}))
  assert CodecSpec("randk|adaptive(budget_bits_per_coordinate=2.0)").codec.relative_error_bound(
      n) is None


def test_error_within_the_composed_bound_on_hard_inputs():
  rng = np.random.default_rng(0)
  spike = np.zeros(300)
  spike[17] = -4.0
  text = "topk(fraction=0.2)|uniform(bits=2)"
  bound = CodecSpec(text).codec.relative_error_bound(300)
  encoder = _encoder(text, [300])
  for x in (rng.standard_normal(300), spike, np.full(300, 2.5)):
    _, decoded, _ = testing.round_trip(encoder, tf.constant(x, tf.float32))
    assert np.linalg.norm(decoded.numpy() - x) <= bound * np.linalg.norm(x) * (1 + 1e-4)
