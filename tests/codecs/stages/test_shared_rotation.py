"""Tests of `drive` and `eden` with `shared_rotation` (fedcompress/codecs/stages/rotation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec, testing
from fedcompress.codecs.stages import drive, eden, rotation
from fedcompress.codecs.testing import BaseEncodingStageTest
from fedcompress.federated.aggregation import EncodedSumFactory

Stage = rotation.SharedRandomizedHadamardEncodingStage


class SharedRandomizedHadamardEncodingStageTest(BaseEncodingStageTest):
  """tensor_encoding's suite, which for a stage that commutes with sum also checks that
  decoding a sum of encodings gives the sum of the decodes."""

  def default_encoding_stage(self):
    return Stage(block_size=64, rounds=2)

  def default_input(self):
    return tf.random.normal([3, 50])

  @property
  def is_lossless(self):
    return True

  def common_asserts_for_test_data(self, data):
    rotated = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    self.assertEqual(rotated.shape, (3, 64))
    self.assertEqual(set(data.encoded_x), {Stage.ENCODED_VALUES_KEY})  # No seed sent.
    self.assertAllClose(np.linalg.norm(rotated), np.linalg.norm(data.x), rtol=1e-5)
    self.assertAllClose(data.x, data.decoded_x, atol=1e-5)


def test_the_rotation_is_the_per_client_stages_for_the_same_seed():
  x = tf.random.normal([5, 300])
  seed = tf.constant(4321, tf.int32)
  shared = Stage(256, 2).encode(x, {Stage.SEED_PARAMS_KEY: seed})[Stage.ENCODED_VALUES_KEY]
  padded = tf.reshape(tf.pad(tf.reshape(x, [-1]), [[0, 1536 - 1500]]), [6, 256])
  np.testing.assert_array_equal(shared.numpy(),
                                rotation._rotate(padded, seed, 2, inverse=False).numpy())


@pytest.mark.parametrize("codec, options", [("drive", {}), ("eden", {"bits": 2})])
def test_the_server_sums_rotated_values_and_unrotates_once(codec, options):
  encoder = CodecSpec(codec, {**options, "shared_rotation": True}, threshold=0).gather_encoder(
      tf.TensorSpec([3000], tf.float32))
  state = encoder.initial_state()
  encode_params, decode_before_params, decode_after_params = encoder.get_params(state)
  xs = [tf.random.normal([3000]) for _ in range(3)]
  encoded = [encoder.encode(x, encode_params)[0] for x in xs]
  parts = [encoder.decode_before_sum(e, decode_before_params) for e in encoded]
  # Before the sum, each client's values are only dequantized: still rotated rows.
  assert tf.nest.flatten(parts)[0].shape == (2, 2048)
  summed = tf.nest.map_structure(lambda *t: tf.add_n(t), *parts)
  decoded_sum = encoder.decode_after_sum(summed, decode_after_params, 3)
  one_by_one = tf.add_n([encoder.decode_after_sum(p, decode_after_params, 1) for p in parts])
  np.testing.assert_allclose(decoded_sum.numpy(), one_by_one.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("codec, module, options", [
    ("drive", drive, {}), ("eden", eden, {"bits": 1}), ("eden", eden, {"bits": 3, "keep": 0.5})])
def test_bits_are_the_payload_without_the_seed(codec, module, options):
  # A broadcast (`SimpleEncoder`) carries the seed its decoders need; in aggregation the
  # clients get it with the parameters, so their payload is 32 bits less.
  spec = tf.TensorSpec([30, 100], tf.float32)
  shared = testing.simple_encoder(codec, spec, **options, shared_rotation=True)
  _, decoded, bits = testing.round_trip(shared, tf.random.normal([30, 100]))
  assert bits == module.bits_formula(3000, **options, shared_rotation=True,
                                     direction="broadcast")
  assert bits == module.bits_formula(3000, **options)
  assert decoded.shape == (30, 100)
  aggregate = module.bits_formula(3000, **options, shared_rotation=True, direction="aggregate")
  assert aggregate == module.bits_formula(3000, **options) - 32


@pytest.mark.slow
def test_a_round_shares_one_rotation_across_clients():
  # The counterpart of test_drive.py's independent rotations: 8 clients sending nearly
  # the same vector under one rotation make nearly the same error, so their mean keeps
  # the single-client error (~0.76 relative) instead of shrinking to ~0.27.
  value_type = tff.TensorType(np.float32, [64])
  process = EncodedSumFactory.from_codec(
      CodecSpec("drive", {"shared_rotation": True}, threshold=0)).create(value_type)
  x = np.random.default_rng(5).standard_normal(64).astype(np.float32)
  clients = [x + np.float32(1e-6 * i) for i in range(8)]
  state = process.initialize()
  errors, sums = [], []
  for _ in range(3):
    output = process.next(state, clients)
    state = output.state
    assert output.measurements["bits"] == 8 * drive.bits_formula(64, shared_rotation=True)
    errors.append(np.linalg.norm(output.result / 8 - x) / np.linalg.norm(x))
    sums.append(output.result)
  assert min(errors) > 0.4
  assert len(set(errors)) == 3  # A new rotation each round.
  # The seed is drawn from the round's key: the same state gives the same rotation.
  np.testing.assert_array_equal(process.next(process.initialize(), clients).result, sums[0])


@pytest.mark.slow
def test_unbiased_over_the_rounds_rotations():
  # As test_drive.py's unbiasedness test: the mean of 4000 round trips, each under a
  # fresh shared seed (a `SimpleEncoder` draws its parameters at every encode).
  x = np.random.default_rng(3).standard_normal(64).astype(np.float32)
  encoder = testing.simple_encoder("drive", tf.TensorSpec([64], tf.float32),
                                   shared_rotation=True)
  mean = testing.mean_of_decodes(encoder, tf.constant(x), 4000).numpy()
  assert np.linalg.norm(mean - x) / np.linalg.norm(x) < 0.05


@pytest.mark.parametrize("value", [2, "yes", None])
def test_shared_rotation_must_be_a_bool(value):
  with pytest.raises(ValueError, match="shared_rotation"):
    CodecSpec("drive", {"shared_rotation": value})
