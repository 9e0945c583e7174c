"""seeding.unseeded_param_draws: the draws no seed scope reaches, wherever they sit."""

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec, registry, seeding
from tools.benchmark import CODEC_OPTIONS

_SPEC = tf.TensorSpec([64, 64], tf.float32)


@pytest.mark.parametrize("name", [n for n in registry.available_codecs()])
def test_the_built_in_codecs_draw_only_through_the_seed_scopes(name):
  codec = CodecSpec(name, CODEC_OPTIONS.get(name, {}), threshold=0)
  assert seeding.unseeded_param_draws(codec.make_encoder(), _SPEC) == []


@tf.function
def _seeded_rounding(y, seed):
  # An assert makes this a StatefulPartitionedCall, which is no draw.
  tf.debugging.assert_all_finite(y, "non-finite update")
  return tf.floor(y + tf.random.stateless_uniform(tf.shape(y), seed))


def _dither_stage(draw):
  @te.core.tf_style_encoding_stage
  class DitherStage(te.core.EncodingStageInterface):
    """Stochastic rounding to a grid of 0.5, by `draw(x)`."""

    name = "dither_of_a_user"
    compressible_tensors_keys = ["values"]
    commutes_with_sum = True
    decode_needs_input_shape = False

    def get_params(self):
      return {}, {}

    def encode(self, x, encode_params):
      return {"values": draw(x)}

    def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
      return encoded_tensors["values"]

  return DitherStage


@pytest.mark.parametrize("where,draw", [
    ("plain", lambda x: tf.floor(x * 2 + tf.random.uniform(tf.shape(x))) / 2),
    # Inside a cond's branch, a map_fn's body and a tf.function: in the graph's
    # function library, where they were missed and accepted.
    ("cond", lambda x: tf.cond(tf.reduce_sum(x) > -1e30,
                               lambda: tf.random.uniform(tf.shape(x)), lambda: x)),
    ("map_fn", lambda x: tf.map_fn(lambda r: tf.random.uniform(tf.shape(r)), x)),
    ("function", lambda x: tf.function(lambda s: tf.random.uniform(s))(tf.shape(x)))])
def test_a_draw_from_the_global_generator_is_found_wherever_it_sits(where, draw):
  registry.register_stage("dither_of_a_user", _dither_stage(draw), overwrite=True)
  try:
    encoder = CodecSpec("dither_of_a_user", threshold=0).make_encoder()
    assert seeding.unseeded_param_draws(encoder, _SPEC) == ["RandomUniform"], where
  finally:
    registry.unregister("dither_of_a_user")


def test_a_seeded_draw_inside_a_function_with_an_assert_is_not_one():
  # Matched as `Stateful*`, this refused a codec seeded as the README asks.
  stage = _dither_stage(
      lambda x: _seeded_rounding(x * 2, tf.stack([seeding.draw_seed(), 0])) / 2)
  registry.register_stage("dither_of_a_user", stage, overwrite=True)
  try:
    encoder = CodecSpec("dither_of_a_user", threshold=0).make_encoder()
    assert seeding.unseeded_param_draws(encoder, _SPEC) == []
  finally:
    registry.unregister("dither_of_a_user")


def test_a_seeded_index_shuffle_is_not_a_draw_of_the_global_generator():
  # `RandomIndexShuffle` (tf.random.experimental.index_shuffle) is stateless and
  # seeded; matched as `Random*`, it refused a codec seeded with draw_seed().
  def shuffled(x):
    flat = tf.reshape(x, [-1])
    seed = tf.cast(tf.stack([seeding.draw_seed(), 0]), tf.int64)
    order = tf.random.experimental.index_shuffle(
        tf.range(tf.size(flat, out_type=tf.int64)), seed, tf.size(flat, out_type=tf.int64) - 1)
    return tf.reshape(tf.gather(flat, order), tf.shape(x))

  registry.register_stage("dither_of_a_user", _dither_stage(shuffled), overwrite=True)
  try:
    encoder = CodecSpec("dither_of_a_user", threshold=0).make_encoder()
    assert seeding.unseeded_param_draws(encoder, _SPEC) == []
  finally:
    registry.unregister("dither_of_a_user")
