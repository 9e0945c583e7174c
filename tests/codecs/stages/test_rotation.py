"""Tests of the blockwise randomized Hadamard rotation (fedcompress/codecs/stages/rotation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import rotation
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = rotation.RandomizedHadamardEncodingStage


class RandomizedHadamardEncodingStageTest(BaseEncodingStageTest):
  """Round-trip suite: 3 x 50 = 150 elements in rows of 64 -> [3, 64]."""

  def default_encoding_stage(self):
    return Stage(block_size=64)

  def default_input(self):
    return tf.random.normal([3, 50])

  @property
  def is_lossless(self):
    return True

  def common_asserts_for_test_data(self, data):
    rotated = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    self.assertEqual(rotated.shape, (3, 64))
    self.assertEqual(data.encoded_x[Stage.SEED_KEY].dtype, np.int32)
    # Orthogonal per row, so the total norm is kept; the decode inverts it.
    self.assertAllClose(np.linalg.norm(rotated), np.linalg.norm(data.x), rtol=1e-5)
    self.assertAllClose(data.x, data.decoded_x, atol=1e-5)


@pytest.mark.parametrize("n, block_size, layout", [
    (1_605_632, 2048, (784, 2048)),  # Tutorial CNN dense kernel: no padding at all.
    (1_605_632, 0, (1, 2_097_152)),  # One block: +31% padding.
    (51_200, 2048, (25, 2048)),
    (5_120, 2048, (3, 2048)),
    (800, 2048, (1, 1024)),  # Smaller than a block: one row, next power of two.
    (1, 2048, (1, 1)),
    (150, 64, (3, 64)),
])
def test_block_layout(n, block_size, layout):
  assert rotation.block_layout(n, block_size) == layout
  assert rotation.rotated_size(n, block_size) == layout[0] * layout[1]


@pytest.mark.parametrize("rounds", [1, 2, 3])
def test_rows_match_a_dense_hadamard_matrix(rounds):
  # Rebuild y = H D_r ... H D_1 x for each row of 4 from the seed the stage sent, with
  # an explicit Sylvester Hadamard matrix, and compare with the fast transform.
  stage = Stage(block_size=4, rounds=rounds)
  x = tf.constant([1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0])
  encoded = stage.encode(x, {})
  seed = encoded[Stage.SEED_KEY]
  h2 = np.array([[1, 1], [1, -1]])
  h4 = np.kron(h2, h2) / 2.0
  expected = x.numpy().reshape(2, 4)
  for i in range(rounds):
    expected = (expected * rotation._signs(seed, 2, 4, tf.float32, i).numpy()) @ h4
  np.testing.assert_allclose(encoded[Stage.ENCODED_VALUES_KEY].numpy(), expected, atol=1e-5)
  decoded = stage.decode(encoded, {}, shape=x.shape)
  np.testing.assert_allclose(decoded.numpy(), x.numpy(), atol=1e-5)


def test_each_encode_draws_a_new_seed():
  stage = Stage()
  x = tf.random.normal([100])
  seeds = {int(stage.encode(x, {})[Stage.SEED_KEY]) for _ in range(5)}
  assert len(seeds) == 5


def test_huge_magnitudes_do_not_overflow():
  # Values of ~1e37 in rows of 2048: the rotated values stay below 1e39 / sqrt(2048)
  # but the transform's unnormalized butterflies overflow float32.
  x = tf.constant(np.random.default_rng(0).standard_normal(4096).astype(np.float32) * 1e37)
  plain = te.utils.fast_walsh_hadamard_transform(tf.reshape(x, [2, 2048]))
  assert not np.all(np.isfinite(plain.numpy())), "premise: the plain transform overflows"
  stage = Stage(block_size=2048)
  encoded = stage.encode(x, {})
  assert np.all(np.isfinite(encoded[Stage.ENCODED_VALUES_KEY].numpy()))
  decoded = stage.decode(encoded, {}, shape=x.shape)
  np.testing.assert_allclose(decoded.numpy(), x.numpy(), rtol=1e-4, atol=1e32)


@pytest.mark.parametrize("block_size", [3, -1, 2**31, True, 2.0])
def test_bad_block_size_raises(block_size):
  with pytest.raises(ValueError, match="block_size"):
    Stage(block_size=block_size)


@pytest.mark.parametrize("rounds", [0, 5, 1.0])
def test_bad_rounds_raise(rounds):
  with pytest.raises(ValueError, match="rounds"):
    Stage(rounds=rounds)


def test_random_signs_are_tensor_encodings_without_its_zeros():
  # Seed (20, 0) draws u = 0.5 exactly at position 818,766 of 2^20: tensor_encoding's
  # sign(u - 0.5) is 0 there, which would zero that coordinate of the rotation.
  n, seed = 2**20, tf.constant([20, 0])
  theirs = te.utils.random_signs(n, seed).numpy()
  ours = rotation.random_signs(n, seed, tf.float32).numpy()
  assert np.flatnonzero(theirs == 0).tolist() == [818_766]
  assert np.all(np.abs(ours) == 1)
  kept = theirs != 0
  np.testing.assert_array_equal(ours[kept], theirs[kept])
  assert ours[818_766] == 1
