"""Codec registry and the built-in codecs, through real tensor_encoding encoders."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import codecs
from fedcompress.codecs import CodecSpec
from fedcompress.codecs import accounting as bits


def _roundtrip(spec: CodecSpec, x: np.ndarray):
  tensor_spec = tf.TensorSpec(x.shape, tf.as_dtype(x.dtype))
  encoder = spec.simple_encoder(tensor_spec)
  encoded, _ = encoder.encode(tf.constant(x), encoder.initial_state())
  decoded = encoder.decode(encoded)
  return decoded.numpy(), int(bits.structure_bits_tf(encoded))


def test_unknown_codec_lists_valid_names():
  with pytest.raises(ValueError, match="valid codecs: .*identity.*uniform"):
    CodecSpec("nope")


@pytest.mark.parametrize("bad", [0, 17, -1, 8.0, True])
def test_uniform_bits_out_of_range(bad):
  with pytest.raises(ValueError, match="1..16"):
    CodecSpec("uniform", {"bits": bad})


def test_numpy_integer_options_are_integers():
  # A sweep over np.arange: refused before as "bits must be an integer ..., got 4".
  spec = codecs.make_codec("uniform", options={"bits": np.int64(4), "word_bits": np.int32(32)})
  assert spec.describe() == "uniform(bits=4,word_bits=32)>10000"
  assert spec.resolved_links() == codecs.make_codec(
      "uniform", options={"bits": 4, "word_bits": 32}).resolved_links()
  assert {type(v) for v in spec.resolved_links()[0][1].values()} <= {int, bool}


@pytest.mark.parametrize("name", ["drive", "eden", "hadamard", "rotation"])
def test_numpy_integer_block_sizes_come_back_as_ints(name):
  # The rotation's check discarded check_int's int: the resolved options kept np.int64
  # and the bit formula returned one.
  spec = codecs.make_codec(name, options={"block_size": np.int64(1024)}, threshold=0)
  assert spec.resolved_links() == codecs.make_codec(
      name, options={"block_size": 1024}, threshold=0).resolved_links()
  assert {type(v) for v in spec.resolved_links()[0][1].values()} <= {int, bool, float, str}
  assert type(spec.codec.bits(3000, spec.options)) is int


@pytest.mark.parametrize("name, options", [
    ("uniform_huffman", {"bits": np.int64(8), "deterministic": True,
                         "max_code_length": np.int64(12), "block_size": np.int32(64)}),
    # max_bits=16 raises the code-length limit to 16 from the given value: as a NumPy
    # integer it reached int.bit_length and the encode failed with an AttributeError.
    ("adaptive", {"budget_bits_per_coordinate": 6.0, "stochastic": False,
                  "max_bits": np.int64(16), "block_size": np.int64(512)}),
])
def test_numpy_integer_options_of_the_huffman_coders_act_as_ints(name, options):
  # Before, max_code_length and block_size as NumPy integers were refused in a line that
  # contradicted itself ("must be an integer in 8..24 ..., got 12").
  as_ints = {k: int(v) if isinstance(v, np.integer) else v for k, v in options.items()}
  x = np.random.default_rng(3).normal(size=3000).astype(np.float32)
  decoded, coded_bits = _roundtrip(CodecSpec(name, options, threshold=0), x)
  expected, expected_bits = _roundtrip(CodecSpec(name, as_ints, threshold=0), x)
  np.testing.assert_array_equal(decoded, expected)
  assert coded_bits == expected_bits
  assert np.abs(decoded - x).max() < 0.1 * np.abs(x).max()


@pytest.mark.parametrize("word_bits", [28.0, True, 30])
def test_uniform_word_bits_must_be_28_or_32_as_integers(word_bits):
  # 28.0 passed and made the bit count a float (416.0).
  with pytest.raises(ValueError, match="word_bits must be 28 or 32"):
    codecs.make_codec("uniform", options={"word_bits": word_bits})


def test_an_option_given_twice_is_refused():
  # The last one won without a word: 'bits=2,bits=3' was uniform(bits=3).
  with pytest.raises(ValueError, match="codec option 'bits' is given twice in 'bits=2,bits=3'"):
    codecs.parse_options("bits=2,bits=3")
  with pytest.raises(ValueError, match="'fraction' is given twice"):
    CodecSpec.parse("randk(fraction=0.1,fraction=0.9)|eden(bits=1)")


def test_negative_threshold_rejected():
  with pytest.raises(ValueError, match="non-negative"):
    CodecSpec("uniform", threshold=-1)


def test_identity_roundtrips_exactly():
  x = np.random.default_rng(0).normal(size=(40, 30)).astype(np.float32)
  decoded, nbits = _roundtrip(CodecSpec("identity", threshold=0), x)
  np.testing.assert_array_equal(decoded, x)
  assert nbits == 1200 * 32


def test_threshold_policy():
  spec = CodecSpec("uniform", {"bits": 8}, threshold=100)
  assert spec.applies_to(tf.TensorSpec([101], tf.float32))
  assert not spec.applies_to(tf.TensorSpec([100], tf.float32))
  assert not spec.applies_to(tf.TensorSpec([1000], tf.int32))
  # At or under the threshold a tensor travels unchanged, at full width.
  x = np.linspace(-1, 1, 100).astype(np.float32)
  decoded, nbits = _roundtrip(spec, x)
  np.testing.assert_array_equal(decoded, x)
  assert nbits == 100 * 32


@pytest.mark.parametrize("nbits_q", [1, 2, 4, 8, 12, 16])
def test_uniform_error_bound_and_bits(nbits_q):
  rng = np.random.default_rng(nbits_q)
  x = rng.normal(size=(37, 29)).astype(np.float32)  # 1,073 elements: odd sizes
  spec = CodecSpec("uniform", {"bits": nbits_q}, threshold=0)
  decoded, nbits = _roundtrip(spec, x)
  step = (x.max() - x.min()) / (2**nbits_q - 1)
  assert np.max(np.abs(decoded - x)) <= step * (1 + 1e-5) + 1e-6
  assert nbits == codecs.get_codec("uniform").bits(x.size, {"bits": nbits_q})


def test_uniform_deterministic_rounds_to_nearest():
  # Levels of 2 bits over [0, 3] are exactly 0, 1, 2, 3.
  x = np.array([0.0, 0.4, 0.6, 1.5001, 2.2, 3.0], np.float32)
  decoded, nbits = _roundtrip(CodecSpec("uniform", {"bits": 2, "deterministic": True},
                                        threshold=0), x)
  np.testing.assert_allclose(decoded, [0, 0, 1, 2, 2, 3], atol=1e-6)
  # 6 values x 2 bits = 12 bits -> one 28-bit word; plus min and max.
  assert nbits == 32 + 64


def test_uniform_stochastic_is_unbiased():
  x = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0], np.float32)
  spec = CodecSpec("uniform", {"bits": 1}, threshold=0)
  encoder = spec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))

  @tf.function
  def draw():
    encoded, _ = encoder.encode(tf.constant(x), encoder.initial_state())
    return encoder.decode(encoded)

  draws = np.stack([draw().numpy() for _ in range(4000)])
  # 1-bit levels are {0, 1}: each draw is Bernoulli(x), std of the mean <= 0.5/sqrt(4000)
  # = 0.0079; 4 standard errors is 0.032.
  np.testing.assert_allclose(draws.mean(axis=0), x, atol=0.032)
  assert set(np.unique(draws)) <= {0.0, 1.0}


def test_gather_encoder_roundtrip_through_sum():
  spec = CodecSpec("uniform", {"bits": 8, "deterministic": True}, threshold=0)
  x = np.linspace(-2, 2, 50).astype(np.float32)
  encoder = spec.gather_encoder(tf.TensorSpec(x.shape, tf.float32))
  state = encoder.initial_state()
  encode_params, before_sum_params, after_sum_params = encoder.get_params(state)
  encoded, _ = encoder.encode(tf.constant(x), encode_params)
  part = encoder.decode_before_sum(encoded, before_sum_params)
  decoded = encoder.decode_after_sum(part, after_sum_params, 1)
  step = 4.0 / 255
  np.testing.assert_allclose(decoded.numpy(), x, atol=step / 2 + 1e-6)


def test_register_codec_rejects_duplicates_and_bad_names():
  with pytest.raises(ValueError, match="already registered"):
    codecs.register_codec("uniform", lambda: None)
  with pytest.raises(ValueError):
    codecs.register_codec("", lambda: None)


def test_codec_spec_parse():
  assert CodecSpec.parse(None).is_identity
  assert CodecSpec.parse("uniform", options={"bits": 4}).options == {"bits": 4}
  spec = CodecSpec("uniform", {"bits": 8})
  assert CodecSpec.parse(spec) is spec
  assert spec.describe() == "uniform(bits=8)>10000"
