"""One FedAvg round per research codec, in both directions, with bits = the formula.

A tiny Keras model (Dense 4->8->3: kernels of 32 and 24 elements, biases of 8 and
3) with the codec threshold lowered to 10, so both kernels are encoded and both
biases go through identity.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.codecs import available_codecs, get_codec
from fedcompress.federated.aggregation import fixed_range_links

pytestmark = pytest.mark.slow  # a FedAvg round per codec

OPTIONS = {
    "hadamard": {"bits": 4},
    "kashin": {"bits": 4},
    "drive": {},
    "eden": {"bits": 2},
    "topk": {"fraction": 0.25},
    "randk": {"fraction": 0.25},
    "nonuniform": {"bits": 3},
    "rotation": {},
    "countsketch": {"rows": 3, "columns": 16},
    "fixed_int": {"bits": 8, "clip": 1.0},
}

THRESHOLD = 10
KERNELS = (4 * 8, 8 * 3)
BIASES = (8, 3)
NUM_CLIENTS = 2


def research_codecs() -> list[str]:
  """The codecs with a bit formula besides the tutorial's two."""
  return [c for c in available_codecs()
          if get_codec(c).bits_formula is not None and c not in ("identity", "uniform")]


def model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(4,)),
      tf.keras.layers.Dense(8, activation="relu",
                            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0)),
      tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1)),
  ])
  return tff.learning.models.from_keras_model(
      keras_model,
      input_spec=collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32),
                                         y=tf.TensorSpec([None, 1], tf.int32)),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def client_data():
  rng = np.random.default_rng(0)
  return [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.standard_normal((4, 4)).astype(np.float32),
      y=rng.integers(0, 3, (4, 1)).astype(np.int32))).batch(2) for _ in range(NUM_CLIENTS)]


def test_every_research_codec_is_covered():
  assert sorted(OPTIONS) == research_codecs()


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_one_round_in_both_directions(name):
  options = OPTIONS[name]
  codec = fedcompress.CodecSpec(name, options, threshold=THRESHOLD)
  # A fixed-range codec (fixed_int) needs uniform weights: the weighted mean encodes
  # weight x update (aggregation.check_weighted_codec).
  weighting = (tff.learning.ClientWeighting.UNIFORM if fixed_range_links(codec)
               else tff.learning.ClientWeighting.NUM_EXAMPLES)
  process = fedcompress.build_fedavg(model_fn, broadcast_codec=codec, aggregate_codec=codec,
                                     client_weighting=weighting)
  output = process.next(process.initialize(), client_data())

  def model_bits(direction):
    encoded = sum(get_codec(name).bits(n, options, direction=direction) for n in KERNELS)
    return encoded + 32 * sum(BIASES)

  assert output.metrics["broadcast/bits"] == NUM_CLIENTS * model_bits("broadcast")
  # Clients send the encoded update and their float32 weight for the mean.
  assert output.metrics["aggregate/bits"] == NUM_CLIENTS * (model_bits("aggregate") + 32)
  weights = process.get_model_weights(output.state)
  assert all(np.all(np.isfinite(w)) for w in weights.trainable)
