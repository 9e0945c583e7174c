"""Every codec meets its error promises: worst-case bounds on hard inputs, and the
expected error on typical (Gaussian) inputs, tight enough that a broken codec fails.

Worst-case bounds (`Codec.relative_error_bound`, derived in each technique module) hold
for every input; they are checked on inputs that stress them. Several are large (a
rotation codec's worst case is far from its typical error), so they alone would let a
codec that decodes everything to zeros pass. The typical-error test below pins each
codec's normalized error on N(0, 1) vectors to its known expected value, or to a
ceiling well under 1 where the codec promises accuracy; `test_a_zero_decoder_fails`
shows that replacing a codec's decode by zeros makes it fail.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs
from fedcompress.codecs import testing
from fedcompress.codecs.stages import uniform

N = 300
WORST_CASE = [
    ("uniform", {"bits": 3, "deterministic": True}),
    ("uniform", {"bits": 2}),
    ("hadamard", {"bits": 3, "deterministic": True, "block_size": 64}),
    ("hadamard", {"bits": 2, "block_size": 64}),
    ("kashin", {"bits": 4, "deterministic": True}),
    ("kashin", {"bits": 3}),
    ("drive", {"block_size": 64}),
    ("eden", {"bits": 2, "block_size": 64}),
    ("eden", {"bits": 4, "block_size": 64}),
    ("topk", {"fraction": 0.1}),
    ("randk", {"fraction": 0.1}),
    ("randk", {"fraction": 0.1, "unbiased": False}),
    ("nonuniform", {"bits": 1, "method": "quantile"}),
    ("nonuniform", {"bits": 2, "method": "lloyd"}),
    ("countsketch", {"rows": 3, "columns": 16}),
]


def _hard_inputs():
  rng = np.random.default_rng(0)
  spike = np.zeros(N)
  spike[17] = -4.0
  zero_block = rng.standard_normal(N)
  zero_block[:200] = 0.0
  return {
      "normal": rng.standard_normal(N),
      "constant": np.full(N, 2.5),
      "spike": spike,
      "mixed_scales": rng.standard_normal(N) * np.where(np.arange(N) % 7 == 0, 1e4, 1e-3),
      "alternating": (-1.0)**np.arange(N),
      "zero_block": zero_block,
  }


def _relative_error(encoder, x: np.ndarray) -> float:
  decoded = testing.round_trip(encoder, tf.constant(x.astype(np.float32)))[1].numpy()
  return float(np.linalg.norm(decoded - x) / np.linalg.norm(x))


@pytest.mark.parametrize("name, options", WORST_CASE)
def test_error_within_worst_case_bound(name, options):
  bound = codecs.get_codec(name).relative_error_bound(N, options)
  encoder = testing.simple_encoder(name, tf.TensorSpec([N], tf.float32), **options)
  worst = 0.0
  for x in _hard_inputs().values():
    for _ in range(2):  # The randomized codecs: more than one draw.
      worst = max(worst, _relative_error(encoder, x))
  assert worst <= bound * (1 + 1e-4)


def test_worst_case_bounds_by_hand():
  def bound(name, **options):
    return codecs.get_codec(name).relative_error_bound(300, options)

  # 300 elements in rows of 64: P = 320; 3 bits, deterministic: sqrt(320) / 7.
  assert bound("hadamard", bits=3, deterministic=True, block_size=64) == pytest.approx(
      np.sqrt(320) / 7)
  assert bound("uniform", bits=2) == pytest.approx(2 * np.sqrt(300) / 3)
  assert bound("drive", block_size=64) == pytest.approx(np.sqrt(63))
  assert bound("randk", fraction=0.1) == pytest.approx(9.0)
  assert bound("countsketch", rows=3, columns=16) == pytest.approx(np.sqrt(3 * 300 * 299))
  assert bound("randk", fraction=1.0) == 0.0
  assert bound("topk", fraction=0.1) == pytest.approx(np.sqrt(0.9))
  assert bound("identity") == 0.0
  assert bound("kashin", last_iter_clip=True) is None
  # Kashin: 300 -> a 512-coefficient frame (300 / 512 <= 0.85); stochastic 2 bits, 3
  # iterations at eta 0.9, delta 1: range 2 ||x|| (1 + (1 + 0.9) / sqrt(300)), 3 steps.
  assert bound("kashin", bits=2) == pytest.approx(
      2 * np.sqrt(512) * (1 + 1.9 / np.sqrt(300)) / 3)
  # EDEN in rows of 64: 1 bit has centroids +-sqrt(2/pi), one magnitude: sqrt(64 - 1);
  # 2 bits, Max's N(0, 1) levels +-0.4528 and +-1.5104: sqrt(64 (1.5104/0.4528)^2 - 1).
  assert bound("eden", bits=1, block_size=64) == pytest.approx(np.sqrt(63))
  assert bound("eden", bits=2, block_size=64) == pytest.approx(
      np.sqrt(64 * (1.5104 / 0.4528)**2 - 1), rel=1e-3)
  # Nonuniform: levels inside [min x, max x], each value moves by at most 2 max|x|.
  assert bound("nonuniform", bits=4) == pytest.approx(2 * np.sqrt(300))
  assert bound("fixed_int", bits=4, clip=0.01) is None  # Clipping: no relative bound.
  assert codecs.get_codec("adaptive").relative_error_bound(
      300, {"budget_bits_per_coordinate": 2.0}) is None


# --------------------------------------------------------------------------------------
# Typical inputs: normalized error E||x - x_hat||^2 / ||x||^2 on N(0, 1) vectors.

TYPICAL_N = 2**14
GAUSSIAN = np.random.default_rng(7).standard_normal(TYPICAL_N)


def _top_fraction_loss(x: np.ndarray, fraction: float) -> float:
  """The exact normalized error of top-k: the energy of the dropped coordinates."""
  k = math.ceil(fraction * x.size)
  energy = np.sort(x**2)
  return float(energy[:-k].sum() / energy.sum())


# name -> (options, expected normalized error, relative tolerance); `None` expected means
# "at most the tolerance" for codecs whose error is only bounded, not known in closed form.
TYPICAL = {
    "identity": ({}, 0.0, 0.0),
    # Stochastic rounding: variance frac(1 - frac) <= 1/4 of a step^2 per coordinate;
    # the range of 2^14 Gaussians is about 8, so step^2 / 4 ~ 2.5e-4 at 8 bits.
    "uniform": ({"bits": 8}, None, 3e-4),
    "uniform_huffman": ({"bits": 8}, None, 3e-4),
    "huffman": ({"base": "nonuniform", "bits": 4}, None, 0.012),
    # After the rotation the range is about that of the Gaussian itself (~8.5 over 2^14
    # coordinates): step^2 / 4 = (8.5 / 15)^2 / 4 = 0.08 at 4 bits.
    "hadamard": ({"bits": 4}, None, 0.08),
    "kashin": ({"bits": 4}, None, 0.03),
    # Vargaftik et al. 2021: pi/2 - 1; 2022: D_2 / (1 - D_2) for Lloyd-Max D_2 = 0.1175.
    # Eight rotated rows of 2048 (each with its own random rotation and scale) spread
    # one draw's figure by a few percent; tests/codecs/stages/test_fidelity.py checks
    # both to 2% on 2^20 elements.
    "drive": ({}, math.pi / 2 - 1, 0.1),
    "eden": ({"bits": 2}, 0.1331, 0.1),
    "topk": ({"fraction": 0.1}, _top_fraction_loss(GAUSSIAN, 0.1), 1e-5),
    # Unbiased rand-k: n / k - 1; without the n / k scaling exactly the dropped energy.
    "randk": ({"fraction": 0.25}, 3.0, 0.05),
    "nonuniform": ({"bits": 4}, None, 0.012),
    # One row: each other coordinate shares a bucket with probability 1 / columns, so
    # E = (n - 1) / columns (over the hashes); one draw spreads it by a few percent.
    "countsketch": ({"rows": 1, "columns": 4 * TYPICAL_N}, (TYPICAL_N - 1) / (4 * TYPICAL_N),
                    0.15),
    # Lossless but for float32 rounding of the transform.
    "rotation": ({}, None, 1e-12),
    # 16-bit integers on a +-8 grid (no Gaussian value of this size is clipped): one
    # stochastic step of 8 / 32767 per value, relative error ~ step / sqrt(6) ~ 1e-4.
    "fixed_int": ({"bits": 16, "clip": 8.0}, None, 3e-4),
    # 6 bits per coordinate leave 5-bit symbols after the side information:
    # (8.5 / 31)^2 / 4 = 0.019.
    "adaptive": ({"budget_bits_per_coordinate": 6.0}, None, 0.025),
}


def _normalized_error(name: str, options: dict, x: np.ndarray = GAUSSIAN) -> float:
  encoder = testing.simple_encoder(name, tf.TensorSpec(x.shape, tf.float32), **options)
  return _relative_error(encoder, x)**2


def check_typical_error(name: str) -> None:
  options, expected, tolerance = TYPICAL[name]
  error = _normalized_error(name, options)
  if expected is None:
    assert error <= tolerance, (name, error)
  else:
    assert error == pytest.approx(expected, rel=tolerance, abs=1e-12), (name, error)


def test_every_codec_has_a_typical_error():
  assert set(codecs.available_codecs()) == set(TYPICAL)


# The codecs whose check builds a slow graph (entropy coders, rotations of 2^20 values)
# run in `make test` only; the rest keep every kind of codec in `make test-fast`.
_SLOW_TYPICAL = {"adaptive", "huffman", "uniform_huffman", "eden", "drive"}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in _SLOW_TYPICAL else n
    for n in sorted(TYPICAL)])
def test_typical_error(name):
  check_typical_error(name)


def test_sub_one_bit_eden_error():
  # EDEN below one bit per coordinate (Vargaftik et al., ICML 2022): a fraction p = k/n of
  # the coordinates, 1-bit EDEN on them, scaled by 1/p. Unbiased at each step, so
  # E||x_hat||^2 = (1/p^2) (1 + e) E||x_S||^2 = (1 + e) / p ||x||^2: the normalized error
  # is (1 + e) / p - 1. EDEN's 1-bit error e_1 = pi/2 - 1 is spread evenly over the
  # P = 2048 rotated coordinates, and decoding crops the P - k padding, so e = e_1 k / P.
  # Here k = 1639: 13.56 (14.71 without the padding). Mean of 8 draws (one spreads by
  # ~4%: the sampled energy varies by sqrt(2/k)). Dropping the 1/p scaling gives ~0.9,
  # scaling twice ~140, 2-bit EDEN on the same k about 11.
  n = TYPICAL_N
  k = math.ceil(0.1 * n)
  expected = (1 + (math.pi / 2 - 1) * k / 2048) / (k / n) - 1
  assert expected == pytest.approx(13.56, abs=0.01)
  spec = codecs.CodecSpec("randk(fraction=0.1)|eden(bits=1)", threshold=0)
  encoder = spec.simple_encoder(tf.TensorSpec([n], tf.float32))
  errors = [_relative_error(encoder, GAUSSIAN)**2 for _ in range(8)]
  assert np.mean(errors) == pytest.approx(expected, rel=0.05)


def test_randk_without_scaling_loses_the_dropped_energy():
  # The kept coordinates are exact, so the error is the dropped energy: 3/4 of it in
  # expectation, never anything like the 1.0 of a zero decoder.
  error = _normalized_error("randk", {"fraction": 0.25, "unbiased": False})
  assert error == pytest.approx(0.75, abs=0.02)


class _ZeroDecodingQuantization(uniform.UniformQuantizationStage):
  """`uniform`'s quantization, whose decode returns zeros: a broken codec."""

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None, name=None):
    del decode_params, num_summands, name  # Unused.
    return tf.zeros_like(encoded_tensors[self.ENCODED_VALUES_KEY], tf.float32)


def _zero_decoding_uniform(bits: int = 8, deterministic: bool = False,
                           word_bits: int = 28) -> te.core.Encoder:
  del word_bits  # Packing is not part of this broken codec.
  flatten = te.stages.FlattenEncodingStage
  stage = _ZeroDecodingQuantization(bits, stochastic=not deterministic)
  return (te.core.EncoderComposer(stage)
          .add_parent(flatten(), flatten.ENCODED_VALUES_KEY).make())


def test_a_zero_decoder_fails():
  original = codecs.get_codec("uniform")
  broken = codecs.Codec("uniform", build=_zero_decoding_uniform,
                        check_options=original.check_options,
                        bits_formula=original.bits_formula, error_bound=original.error_bound)
  codecs.register(broken, overwrite=True)
  try:
    with pytest.raises(AssertionError):
      check_typical_error("uniform")
    # The worst-case bound alone (2.5 here: a whole range per coordinate) cannot tell:
    # that is why the typical errors are pinned.
    test_error_within_worst_case_bound("uniform", {"bits": 3, "deterministic": True})
  finally:
    codecs.register(original, overwrite=True)
  check_typical_error("uniform")  # The real codec passes again.
