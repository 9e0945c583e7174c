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


@pytest.mark.parametrize("method", nonuniform.METHODS)
@pytest.mark.parametrize("p", [None, [0.89, 0.05, 0.04, 0.02]], ids=["even", "skewed"])
def test_few_distinct_values_are_sent_exactly(method, p):
  # Skewed counts made the quantiles repeat the common value and leave a rare one
  # without a level, which Lloyd from them did not always recover.
  values = np.array([-1.5, 0.0, 0.25, 3.0], np.float32)
  x = np.random.default_rng(0).choice(values, size=100, p=p)
  np.testing.assert_array_equal(_round_trip(x, bits=2, method=method)[1].numpy(), x)
  sparse = np.array([0] * 50 + [1] * 3 + [5] * 2 + [7], np.float32)
  np.testing.assert_array_equal(_round_trip(sparse, bits=2, method=method)[1].numpy(), sparse)


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


# Above SORTED_MAX_ELEMENTS the levels are fitted on a histogram.
LARGE = 2**18


def _sorted_fit_nmse(x: np.ndarray, bits: int) -> float:
  """Normalized MSE of the exact fit on the sorted values (the small-tensor path)."""
  levels = nonuniform._fit_sorted(tf.constant(x), 2**bits, "lloyd", nonuniform.DEFAULT_ITERS)
  levels = levels.numpy()
  nearest = np.searchsorted(levels[:-1] / 2 + levels[1:] / 2, x)
  wide = x.astype(np.float64)
  return float(np.sum((levels[nearest] - wide)**2) / np.sum(wide**2))


def _encode(x, **options):
  stage = Stage(**options)
  encoded = tf.function(lambda v: stage.encode(v, {}))(tf.constant(x))
  return (encoded[Stage.CODEBOOK_KEY].numpy(),
          encoded[Stage.ENCODED_VALUES_KEY].numpy().astype(np.int64))


def _assert_nearest(x: np.ndarray, codebook: np.ndarray, indices: np.ndarray,
                    exact: bool = True):
  """Each value went to its nearest level: as an argmin over all levels up to the
  rounding of the midpoints, and (`exact`) as `_nearest` on the float32 midpoints.

  With subnormal inputs (which TensorFlow's CPU kernels flush to zero) the codebook's
  rounding to subnormals does not keep the midpoints the values were assigned by:
  there only the argmin of the normal values, to a few spacings.
  """
  if exact:
    np.testing.assert_array_equal(
        indices, np.searchsorted(codebook[:-1] / 2 + codebook[1:] / 2, x, side="left"))
  else:
    normal = np.abs(x) >= np.finfo(np.float32).tiny
    x, indices = x[normal], indices[normal]
  wide, levels = x.astype(np.float64), codebook.astype(np.float64)
  distances = np.abs(wide[:, None] - levels)
  gap = distances[np.arange(x.size), indices] - distances.min(1)
  assert np.all(gap <= 4 * np.spacing(np.abs(x).astype(np.float32)).astype(np.float64))


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("draw", ["normal", "student_t"])
def test_histogram_fit_is_as_good_as_the_sorted_fit(draw, bits):
  # Measured at 2^18 elements: within 0.03% of the sorted fit (2 and 4 bits, N(0, 1)
  # and Student-t 3); fitting on whole bins without splitting them was within 0.01%
  # at 4 bits but up to 15% worse at 8.
  assert LARGE > nonuniform.SORTED_MAX_ELEMENTS
  rng = np.random.default_rng(11)
  x = (rng.standard_normal(LARGE) if draw == "normal" else rng.standard_t(3, LARGE))
  x = x.astype(np.float32)
  codebook, indices = _encode(x, bits=bits)
  wide = x.astype(np.float64)
  nmse = np.sum((codebook[indices] - wide)**2) / np.sum(wide**2)
  assert nmse == pytest.approx(_sorted_fit_nmse(x, bits), rel=0.01)
  if draw == "normal" and bits == 4:
    assert nmse == pytest.approx(0.009497, rel=0.02)  # Lloyd-Max D_4 (Max 1960).
  _assert_nearest(x, codebook, indices)
  assert np.all(np.diff(codebook) >= 0) and codebook[0] >= x.min() and codebook[-1] <= x.max()


def test_histogram_quantile_levels_are_the_quantiles_to_a_bin():
  x = np.random.default_rng(12).standard_normal(LARGE).astype(np.float32)
  codebook, indices = _encode(x, bits=3, method="quantile")
  exact = np.sort(x)[nonuniform.quantile_positions(LARGE, 8)]
  np.testing.assert_allclose(codebook, exact, atol=(x.max() - x.min()) / nonuniform.HISTOGRAM_BINS)
  _assert_nearest(x, codebook, indices)


def test_values_in_bins_holding_two_boundaries_still_go_to_their_nearest_level():
  # Half the values in a cluster narrower than one bin, the other half spread over
  # [-1, 1]: half the quantile levels fall in the cluster's bin, so that bin holds
  # several boundaries and the per-bin table cannot decide; the assignment falls back
  # to the binary search.
  rng = np.random.default_rng(13)
  x = np.concatenate([rng.uniform(-1, 1, LARGE // 2),
                      0.3 + 1e-6 * rng.standard_normal(LARGE // 2)]).astype(np.float32)
  codebook, indices = _encode(x, bits=4, method="quantile")
  boundaries = codebook[:-1] / 2 + codebook[1:] / 2
  width = (x.max() - x.min()) / nonuniform.HISTOGRAM_BINS
  assert np.sum(np.abs(boundaries - 0.3) < width) >= 2  # The case is the one meant.
  _assert_nearest(x, codebook, indices)


@pytest.mark.parametrize("method", nonuniform.METHODS)
def test_few_distinct_values_are_sent_exactly_above_the_histogram_threshold(method):
  # At most 2**bits distinct values occupy at most 2**bits bins: the sorted fit then.
  values = np.array([-1.5, 0.0, 0.25, 3.0, 3.0000002], np.float32)
  for p in (None, [0.996, 0.001, 0.001, 0.001, 0.001]):  # even, and a sparse update's
    x = np.random.default_rng(14).choice(values, size=LARGE, p=p)
    codebook, indices = _encode(x, bits=3, method=method)
    np.testing.assert_array_equal(codebook[indices], x)


# Still above SORTED_MAX_ELEMENTS, half as long to check.
EDGE = 2**17


@pytest.mark.parametrize("x", [
    pytest.param(np.zeros(EDGE), id="zeros"),
    pytest.param(np.full(EDGE, -2.5), id="constant"),
    pytest.param(1e37 * np.random.default_rng(15).standard_normal(EDGE), id="huge"),
    pytest.param(1e-38 * np.random.default_rng(16).standard_normal(EDGE), id="tiny"),
    pytest.param(np.random.default_rng(17).standard_cauchy(EDGE), id="cauchy"),
])
@pytest.mark.parametrize("bits", [1, 4])
def test_large_edge_cases_decode_finite_nearest_levels_in_range(x, bits):
  x = x.astype(np.float32)
  codebook, indices = _encode(x, bits=bits)
  assert np.all(np.isfinite(codebook))
  assert np.all(np.diff(codebook) >= 0) and codebook[0] >= x.min() and codebook[-1] <= x.max()
  _assert_nearest(x, codebook, indices, exact=np.all(np.abs(x) >= np.finfo(np.float32).tiny))
  # The bound of tests/codecs/test_properties.py, with its allowance for underflow.
  error = np.linalg.norm(codebook[indices].astype(np.float64) - x)
  norm = np.linalg.norm(x.astype(np.float64))
  assert error <= nonuniform.relative_error_bound(EDGE, bits=bits) * norm * 1.001 + 1e-18


def test_large_bits_match_the_encoded_structure():
  x = np.random.default_rng(18).standard_normal(LARGE)
  assert _round_trip(x, bits=4)[2] == nonuniform.bits_formula(LARGE, bits=4) == 1_049_088
