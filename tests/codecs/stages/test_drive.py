"""Tests of the `drive` codec (fedcompress/codecs/stages/drive.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import drive
from fedcompress.codecs.testing import BaseEncodingStageTest
from fedcompress.federated.aggregation import EncodedSumFactory

Stage = drive.DriveEncodingStage


class DriveEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite on 4 rows of 16 (as they come out of the rotation)."""

  def default_encoding_stage(self):
    return Stage()

  def default_input(self):
    return tf.random.normal([4, 16])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    signs = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    scales = data.encoded_x[Stage.SCALES_KEY]
    self.assertAllEqual(signs, (data.x >= 0).astype(np.float32))
    # DRIVE's unbiased scale, row by row: ||x||^2 / ||x||_1.
    self.assertAllClose(scales, np.sum(data.x**2, 1) / np.sum(np.abs(data.x), 1), rtol=1e-5)
    self.assertAllClose(data.decoded_x, scales[:, None] * (2 * signs - 1), rtol=1e-6)


def test_hand_computed_row():
  # ||x||^2 = 9 + 1 + 0 + 4 = 14, ||x||_1 = 6: scale 7/3; zero counts as positive.
  encoded = Stage().encode(tf.constant([[3.0, -1.0, 0.0, -2.0]]), {})
  np.testing.assert_array_equal(encoded[Stage.ENCODED_VALUES_KEY].numpy(), [[1, 0, 1, 0]])
  np.testing.assert_allclose(encoded[Stage.SCALES_KEY].numpy(), [7 / 3])
  decoded = Stage().decode(encoded, {})
  np.testing.assert_allclose(decoded.numpy(), [[7 / 3, -7 / 3, 7 / 3, -7 / 3]], rtol=1e-6)


@pytest.mark.slow
def test_bits_of_a_hand_computed_case():
  # 3000 elements -> 2 rows of 2048 = 4096 signs = 128 int32 words (4096 bits),
  # 2 float32 scales (64 bits), one int32 seed (32 bits).
  encoder = testing.simple_encoder("drive", tf.TensorSpec([30, 100], tf.float32))
  encoded, decoded, bits = testing.round_trip(encoder, tf.random.normal([30, 100]))
  assert bits == 4096 + 64 + 32 == drive.bits_formula(3000)
  assert encoded["encoded_tensors/rotated/signs/packed"].shape == (128,)
  assert decoded.shape == (30, 100) and decoded.dtype == tf.float32


def test_bits_formula_on_the_tutorial_dense_kernel():
  # 1,605,632 = 784 rows of 2048: one bit each, 784 scales, one seed.
  assert drive.bits_formula(1_605_632) == 1_605_632 + 784 * 32 + 32
  # One block padded to 2**21 with block_size=0.
  assert drive.bits_formula(1_605_632, block_size=0) == 2**21 + 32 + 32
  assert drive.bits_formula(100, dtype=tf.float64) == 128 + 64 + 32


def test_each_block_keeps_its_inner_product():
  # With a scale per rotated row, <x_r, x_hat_r> = ||x_r||^2 holds for every rotation
  # (the paper's identity, per block). A single scale for the whole tensor would not.
  x = np.concatenate([np.random.default_rng(0).standard_normal(32) * s for s in (0.1, 1, 3, 10)])
  encoder = testing.simple_encoder("drive", tf.TensorSpec([128], tf.float32), block_size=32)
  _, decoded, _ = testing.round_trip(encoder, tf.constant(x, tf.float32))
  blocks, decoded_blocks = x.reshape(4, 32), decoded.numpy().reshape(4, 32)
  np.testing.assert_allclose(np.sum(blocks * decoded_blocks, 1), np.sum(blocks**2, 1),
                             rtol=1e-4)


def test_a_spike_is_sent_exactly():
  # One H D round turns c * e_j into a vector of equal magnitudes, which signs and the
  # unbiased scale reproduce exactly, whatever the seed.
  x = np.zeros(64, np.float32)
  x[5] = -3.0
  encoder = testing.simple_encoder("drive", tf.TensorSpec([64], tf.float32), rounds=1)
  for _ in range(3):
    np.testing.assert_allclose(testing.round_trip(encoder, x)[1].numpy(), x, atol=1e-5)


def test_zero_tensor_decodes_to_zero():
  encoder = testing.simple_encoder("drive", tf.TensorSpec([50], tf.float32))
  np.testing.assert_array_equal(testing.round_trip(encoder, tf.zeros([50]))[1].numpy(), 0.0)


def _relative_bias(x, draws, **options):
  tf.random.set_seed(1234)
  encoder = testing.simple_encoder("drive", tf.TensorSpec(x.shape, tf.float32), **options)
  mean = testing.mean_of_decodes(encoder, tf.constant(x, tf.float32), draws).numpy()
  return np.linalg.norm(mean - x) / np.linalg.norm(x)


@pytest.mark.slow
def test_unbiased_on_a_random_input():
  # One draw has relative error ~sqrt(pi/2 - 1) = 0.76, so the mean of 4000 draws of
  # an unbiased estimate has ~0.012; the biased scale ||Rx||_1 / d would give 0.36.
  x = np.random.default_rng(3).standard_normal(64).astype(np.float32)
  assert _relative_bias(x, 4000) < 0.05


@pytest.mark.slow
def test_two_rotation_rounds_remove_the_bias_on_a_structured_input():
  # Ones plus a spike, 16 coordinates: one H D round is far from a random rotation
  # (measured bias 0.33); two rounds bring it within sampling noise (~0.012 + 0.013).
  x = np.ones(16, np.float32)
  x[-1] += 5.0
  assert _relative_bias(x, 4000, rounds=2) < 0.06
  assert _relative_bias(x, 4000, rounds=1) > 0.15


@pytest.mark.slow
def test_clients_rotate_independently_in_aggregation():
  # 8 clients send nearly the same vector. With independent rotations their errors
  # average out (~0.76 / sqrt(8) = 0.27); with one shared rotation the mean would keep
  # the single-client error (~0.76). Not exactly the same vector: a client's rotation
  # seed derives from the round key and its update's bytes (fedcompress.codecs.seeding),
  # so bit-identical updates rotate alike, by design.
  value_type = tff.TensorType(np.float32, [64])
  process = EncodedSumFactory.from_codec(CodecSpec("drive", threshold=0)).create(value_type)
  x = np.random.default_rng(5).standard_normal(64).astype(np.float32)
  clients = [x + np.float32(1e-6 * i) for i in range(8)]
  output = process.next(process.initialize(), clients)
  assert output.measurements["bits"] == 8 * drive.bits_formula(64)
  mean = output.result / 8
  assert np.linalg.norm(mean - x) / np.linalg.norm(x) < 0.5


@pytest.mark.parametrize("options", [{"block_size": 3}, {"rounds": 0}, {"bits": 2}])
def test_bad_options_raise(options):
  with pytest.raises((ValueError, TypeError)):
    CodecSpec("drive", options)
