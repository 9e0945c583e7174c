"""Tests of the `nonuniform` codec (fedcompress/codecs/stages/nonuniform.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import nonuniform
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = nonuniform.NonUniformQuantizationEncodingStage


class NonUniformQuantizationEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite on a 5 x 8 input, 2 bits, Lloyd-Max."""

  def default_encoding_stage(self):
    return Stage(bits=2, method="lloyd")

  def default_input(self):
    return tf.random.normal([5, 8])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    codebook = data.encoded_x[Stage.CODEBOOK_KEY]
    indices = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    self.assertEqual(codebook.shape, (4,))
    self.assertAllEqual(np.sort(codebook), codebook)
    self.assertAllEqual(data.decoded_x, codebook[indices.astype(np.int64)])
    # Every value went to its nearest level.
    distances = np.abs(data.x[..., None] - codebook)
    self.assertAllClose(np.abs(data.x - data.decoded_x), distances.min(-1), atol=1e-6)


def _round_trip(x, **options):
  x = tf.constant(x, tf.float32)
  encoder = testing.simple_encoder("nonuniform", tf.TensorSpec(x.shape, tf.float32), **options)
  return testing.round_trip(encoder, x)


def test_hand_computed_quantile_levels():
  # 8 values, 2 levels: the (i + 1/2) / 2 quantiles are ranks floor(2) and floor(6) of
  # the sorted values, 2 and 6; the boundary 4 sends 0..4 down and 5..7 up.
  encoded, decoded, bits = _round_trip(np.arange(8.0), bits=1, method="quantile")
  np.testing.assert_array_equal(encoded["encoded_tensors/codebook"].numpy(), [2.0, 6.0])
  np.testing.assert_array_equal(decoded.numpy(), [2, 2, 2, 2, 2, 6, 6, 6])
  assert bits == 32 + 2 * 32 == nonuniform.bits_formula(8, bits=1, method="quantile")


def test_hand_computed_lloyd_iterations():
  # Sorted [0 x 6, 1, 10]; quantile start [0, 1]. Boundary 0.5: cells {0 x 6}, {1, 10}
  # -> levels [0, 5.5]; boundary 2.75: cells {0 x 6, 1}, {10} -> [1/7, 10], a fixed
  # point. The quantile codebook decodes 10 as 1; Lloyd-Max keeps it.
  x = [0.0, 0.0, 10.0, 0.0, 0.0, 1.0, 0.0, 0.0]
  encoded, decoded, _ = _round_trip(x, bits=1, method="lloyd", iters=10)
  np.testing.assert_allclose(encoded["encoded_tensors/codebook"].numpy(), [1 / 7, 10.0],
                             rtol=1e-6)
  _, by_quantile, _ = _round_trip(x, bits=1, method="quantile")
  np.testing.assert_array_equal(by_quantile.numpy(), [0, 0, 1, 0, 0, 1, 0, 0])
  np.testing.assert_allclose(decoded.numpy()[2], 10.0)


def test_iters_caps_the_steps_and_the_first_is_plain_lloyd():
  # The values above, one step from the quantile start [0, 1]: boundary 0.5 gives
  # [0, 5.5]; momentum only acts from the second step on.
  x = [0.0, 0.0, 10.0, 0.0, 0.0, 1.0, 0.0, 0.0]
  encoded, _, _ = _round_trip(x, bits=1, method="lloyd", iters=1)
  np.testing.assert_array_equal(encoded["encoded_tensors/codebook"].numpy(), [0.0, 5.5])


def _plain_lloyd_nmse(x: np.ndarray, bits: int, steps: int) -> float:
  """Normalized MSE after `steps` plain Lloyd steps from the quantiles, in float64."""
  ordered = np.sort(x)
  prefix = np.concatenate([[0.0], np.cumsum(ordered)])
  levels = ordered[nonuniform.quantile_positions(x.size, 2**bits)]
  for _ in range(steps):
    ends = np.append(np.searchsorted(ordered, levels[:-1] / 2 + levels[1:] / 2, "right"),
                     x.size)
    starts = np.append(0, ends[:-1])
    sizes = ends - starts
    levels = np.where(sizes > 0, (prefix[ends] - prefix[starts]) / np.maximum(sizes, 1),
                      levels)
  nearest = np.searchsorted(levels[:-1] / 2 + levels[1:] / 2, x)
  return float(np.sum((x - levels[nearest])**2) / np.sum(x**2))


@pytest.mark.slow
def test_lloyd_converges_by_default_on_heavy_tails():
  # Student-t with 2 degrees of freedom, 2^20 values, 2 bits: 20 plain Lloyd steps
  # from the quantiles (the former default) leave normalized MSE 0.7533; converged
  # (plain, 2000 steps) it is 0.3962.
  x = np.random.default_rng(5).standard_t(2, 2**20).astype(np.float32)
  wide = x.astype(np.float64)
  assert _plain_lloyd_nmse(wide, 2, 20) == pytest.approx(0.7533, abs=1e-4)
  converged = _plain_lloyd_nmse(wide, 2, 2000)
  assert converged == pytest.approx(0.3962, abs=1e-4)
  decoded = _round_trip(x, bits=2)[1].numpy().astype(np.float64)
  assert np.sum((decoded - wide)**2) / np.sum(wide**2) == pytest.approx(converged, rel=0.05)


def test_few_distinct_values_are_sent_exactly():
  values = np.array([-1.5, 0.0, 0.25, 3.0], np.float32)
  x = np.random.default_rng(0).choice(values, size=100)
  np.testing.assert_array_equal(_round_trip(x, bits=2, method="quantile")[1].numpy(), x)
  # Lloyd starts there and cell means of equal values stay (up to rounding) the same.
  np.testing.assert_allclose(_round_trip(x, bits=2, method="lloyd")[1].numpy(), x, rtol=1e-6)


def test_lloyd_lowers_the_error_of_quantiles():
  x = np.random.default_rng(1).standard_normal(5000).astype(np.float32)
  errors = {m: float(tf.norm(_round_trip(x, bits=3, method=m)[1] - x)) for m in nonuniform.METHODS}
  assert errors["lloyd"] < errors["quantile"]
  # Lloyd-Max for 8 levels of N(0, 1) has distortion 0.03454 (Max 1960): rel. err 0.186.
  assert errors["lloyd"] / np.linalg.norm(x) == pytest.approx(0.186, abs=0.01)


@pytest.mark.parametrize("n, bits, expected", [
    (3000, 4, 375 * 32 + 16 * 32),
    (1_605_632, 2, 100_352 * 32 + 4 * 32),
    (10, 8, 3 * 32 + 256 * 32),
])
def test_bits_formula(n, bits, expected):
  assert nonuniform.bits_formula(n, bits=bits) == expected


def test_bits_match_the_encoded_structure():
  assert _round_trip(np.random.default_rng(2).standard_normal(3000), bits=4)[2] == 12512


@pytest.mark.parametrize("options", [{"bits": 9}, {"method": "kmeans"}, {"iters": 0},
                                     {"iters": 1001}])
def test_bad_options_raise(options):
  with pytest.raises(ValueError):
    CodecSpec("nonuniform", options)
