"""Tests of the `eden` codec (fedcompress/codecs/stages/eden.py)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import drive, eden
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = eden.EdenEncodingStage


class EdenEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite on 4 rows of 16, 2 bits."""

  def default_encoding_stage(self):
    return Stage(bits=2)

  def default_input(self):
    return tf.random.normal([4, 16])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    indices = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    scales = data.encoded_x[Stage.SCALES_KEY]
    self.assertAllEqual(indices, np.round(indices))
    self.assertAllInRange(indices, 0, 3)
    # Signs are kept: indices 0, 1 are the negative centroids.
    self.assertAllEqual(indices >= 2, data.x >= 0)
    # The unbiased scale keeps each row's inner product: <x, x_hat> = ||x||^2.
    self.assertAllClose(np.sum(data.x * data.decoded_x, 1), np.sum(data.x**2, 1), rtol=1e-5)
    self.assertAllGreater(scales, 0.0)


def test_lloyd_max_tables_match_max_1960():
  # Max (1960), Table I: optimal levels of the unit normal for 2, 4 and 8 levels.
  np.testing.assert_allclose(eden.gaussian_lloyd_max(1), [-math.sqrt(2 / math.pi),
                                                          math.sqrt(2 / math.pi)], atol=1e-12)
  np.testing.assert_allclose(eden.gaussian_lloyd_max(2), [-1.5104, -0.4528, 0.4528, 1.5104],
                             atol=1e-4)
  # The table gives 8 levels to 3-4 decimals.
  np.testing.assert_allclose(eden.gaussian_lloyd_max(3)[4:], [0.2451, 0.7560, 1.344, 2.152],
                             atol=5e-4)
  assert len(eden.gaussian_lloyd_max(4)) == 16


def test_hand_computed_two_bit_row():
  # y = [3, -1, 0, -2]: ||y|| = sqrt(14), z = y * sqrt(4) / sqrt(14)
  #   = [1.6036, -0.5345, 0, -1.0690]; the 2-bit boundaries are -0.9816, 0, 0.9816, so
  # q = [1.5104, -0.4528, 0.4528, -1.5104] (zero goes up) and
  # S = ||y|| sqrt(4) / <z, q> = 2 sqrt(14) / 4.27874 = 1.74898.
  c1, c2 = eden.gaussian_lloyd_max(2)[2:]
  z = np.array([3, -1, 0, -2]) * 2 / math.sqrt(14)
  q = np.array([c2, -c1, c1, -c2])
  scale = 2 * math.sqrt(14) / np.dot(z, q)
  assert scale == pytest.approx(1.74898, abs=1e-4)
  encoded = Stage(bits=2).encode(tf.constant([[3.0, -1.0, 0.0, -2.0]]), {})
  np.testing.assert_array_equal(encoded[Stage.ENCODED_VALUES_KEY].numpy(), [[3, 1, 2, 0]])
  np.testing.assert_allclose(encoded[Stage.SCALES_KEY].numpy(), [scale], rtol=1e-6)
  decoded = Stage(bits=2).decode(encoded, {}).numpy()
  np.testing.assert_allclose(decoded, [scale * q], rtol=1e-6)


def test_one_bit_eden_is_drive():
  y = tf.random.normal([3, 32])
  by_eden = Stage(bits=1).decode(Stage(bits=1).encode(y, {}), {})
  by_drive = drive.DriveEncodingStage().decode(drive.DriveEncodingStage().encode(y, {}), {})
  np.testing.assert_allclose(by_eden.numpy(), by_drive.numpy(), rtol=1e-5)


@pytest.mark.parametrize("bits, expected", [
    # 3000 elements -> 4096 rotated coordinates in 2 rows; + 2 scales + seed.
    (1, 128 * 32 + 64 + 32),
    (2, 256 * 32 + 64 + 32),
    (3, 384 * 32 + 64 + 32),
    (4, 512 * 32 + 64 + 32),
])
def test_bits_of_hand_computed_cases(bits, expected):
  assert eden.bits_formula(3000, bits=bits) == expected
  encoder = testing.simple_encoder("eden", tf.TensorSpec([3000], tf.float32), bits=bits)
  assert testing.round_trip(encoder, tf.random.normal([3000]))[2] == expected


def test_error_matches_the_lloyd_max_distortion():
  # Rotated coordinates are ~N(0, 1) after normalization, so one 2-bit round trip has
  # squared relative error ~D / (1 - D) with D = 0.1175 (Lloyd-Max, 4 levels): 0.133.
  tf.random.set_seed(7)
  x = tf.random.normal([8192])
  encoder = testing.simple_encoder("eden", tf.TensorSpec([8192], tf.float32), bits=2)
  decoded = testing.round_trip(encoder, x)[1]
  error = float(tf.norm(decoded - x) / tf.norm(x))**2
  assert 0.11 < error < 0.16


@pytest.mark.slow
def test_unbiased_on_a_random_input():
  # Relative error of one 2-bit draw ~0.36, of the mean of 3000 draws ~0.007.
  tf.random.set_seed(11)
  x = np.random.default_rng(3).standard_normal(64).astype(np.float32)
  encoder = testing.simple_encoder("eden", tf.TensorSpec([64], tf.float32), bits=2)
  mean = testing.mean_of_decodes(encoder, tf.constant(x), 3000).numpy()
  assert np.linalg.norm(mean - x) / np.linalg.norm(x) < 0.03


def _huge_inputs() -> dict[str, np.ndarray]:
  """4096-element float32 inputs whose rotated rows are finite but ||y|| sqrt(L) is not.

  `spike`: one 1e37 among N(0, 1) values (||y|| is finite, ||y|| sqrt(2048) is not);
  `spikes`: +-3e38 at every 512th place (||y|| = 6e38 per row); `wide`: N(0, 1) * 3e37
  (||y|| ~ 1.4e39 per row). `drive` encodes all three. (All values near 3e38 would
  not do: their rotated values exceed float32, for `drive` as well.)
  """
  rng = np.random.default_rng(21)
  spike = rng.standard_normal(4096).astype(np.float32)
  spike[0] = 1e37
  spikes = rng.standard_normal(4096).astype(np.float32)
  spikes[::512] = np.float32(3e38) * np.array([1, -1] * 4, np.float32)
  wide = (rng.standard_normal(4096) * 3e37).astype(np.float32)
  return {"spike": spike, "spikes": spikes, "wide": wide}


@pytest.mark.parametrize("name", ["spike", "spikes", "wide"])
def test_huge_rows_keep_the_unbiased_scale(name):
  # The stage on unrotated rows, deterministic. Before the scales were computed on
  # y / max|y| these decoded to infinities (`spike`, `spikes`) or zeros (`wide`).
  # Spikes of 3e38 become 1e38 here: in an unrotated row of four of them the 1-bit
  # scale is 3e38 / c_max, beyond float32 (c_max = 0.80) although the decoded 3e38 is
  # not; the rotation spreads spikes out and keeps the scales near the rows' RMS.
  x = _huge_inputs()[name]
  rows = np.where(np.abs(x) == np.float32(3e38), x / 3, x).reshape(2, 2048)
  y = rows.astype(np.float64)
  for bits in range(1, 5):
    stage = Stage(bits=bits)
    decoded = stage.decode(stage.encode(tf.constant(rows), {}), {}).numpy()
    assert np.all(np.isfinite(decoded)), bits
    # <y, y_hat> = ||y||^2 row by row, as for ordinary inputs.
    np.testing.assert_allclose(np.sum(y * decoded, 1), np.sum(y**2, 1), rtol=1e-5)
  by_drive = drive.DriveEncodingStage().decode(drive.DriveEncodingStage().encode(
      tf.constant(rows), {}), {})
  by_eden = Stage(bits=1).decode(Stage(bits=1).encode(tf.constant(rows), {}), {})
  # Magnitudes only: N(0, 1) values next to a 1e37 spike are flushed to zero in
  # y / max|y| and then count as positive, where `drive` keeps their sign.
  np.testing.assert_allclose(np.abs(by_eden.numpy()), np.abs(by_drive.numpy()), rtol=1e-5)


@functools.cache
def _encoder_of_4096(codec, **options):
  return testing.simple_encoder(codec, tf.TensorSpec([4096], tf.float32), **options)


# Normalized MSE of one round trip of N(0, 1)-like rotated rows: DRIVE pi/2 - 1, EDEN
# D_b / (1 - D_b) (see the module docstring of fedcompress/codecs/stages/eden.py).
_NMSE = {1: 0.5708, 2: 0.1331, 3: 0.03578, 4: 0.009588}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["spike", "spikes", "wide"])
def test_huge_inputs_decode_as_accurately_as_ordinary_ones(name):
  # Huge values matter in one or two rows of 2048 rotated coordinates: over seeds the
  # normalized MSE of one round trip varied by up to 19% (4 bits) around the figure.
  x = _huge_inputs()[name]

  def nmse(codec, **options):
    decoded = testing.round_trip(_encoder_of_4096(codec, **options), x)[1]
    decoded = decoded.numpy().astype(np.float64)
    return np.sum((decoded - x.astype(np.float64))**2) / np.sum(x.astype(np.float64)**2)

  tf.random.set_seed(5)
  assert nmse("drive") == pytest.approx(_NMSE[1], rel=0.25)
  for bits in range(1, 5):
    assert nmse("eden", bits=bits) == pytest.approx(_NMSE[bits], rel=0.25), bits


@pytest.mark.parametrize("options", [{"bits": 0}, {"bits": 5}, {"block_size": 6},
                                     {"rounds": 9}])
def test_bad_options_raise(options):
  with pytest.raises(ValueError):
    CodecSpec("eden", options)
