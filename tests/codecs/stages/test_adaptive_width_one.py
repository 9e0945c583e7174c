"""`adaptive` leaves width 1 when width 2 fits its budget, which its offset cannot show.

Two symbols never code below 1 bit each, so the saving a client measures at width 1
is ~0 and said nothing of width 2: at a budget of 2.0 bits per coordinate (whose width
2 costs 2.014 before any saving) the codec sent 1-bit updates in every round of every
run, the README's answers and codec tables included.
"""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs.stages import adaptive, huffman

N = 20_000


def _rounds(budget, rounds=3, **options):
  """(width, coded bits per coordinate, side information included) of each round."""
  stage = adaptive.AdaptiveUniformEncodingStage(budget, **options)
  x = tf.constant(np.random.default_rng(0).normal(scale=0.01, size=N).astype(np.float32))
  state, history = stage.initial_state(), []
  for _ in range(rounds):
    encoded, update = stage.encode(x, stage.get_params(state)[0])
    stream = encoded[stage.ENCODED_VALUES_KEY]
    _, width = huffman.stream_header(stream)
    sent = int(tf.size(stream)) * 32 + adaptive.MIN_MAX_BITS + adaptive.STATE_UPDATE_BITS
    history.append((int(width), sent / N))
    decoded = stage.decode(encoded, {}, shape=tf.shape(x))
    low, high = encoded[stage.MIN_MAX_KEY].numpy()
    step = (high - low) / (2 ** int(width) - 1)
    assert np.max(np.abs(decoded.numpy() - x.numpy())) <= step + 1e-6
    state = stage.update_state(state, update)
  return history


def test_width_two_is_sent_when_it_fits_the_budget():
  history = _rounds(2.0)
  # Gaussian updates at width 2: the two middle levels take most of the mass.
  assert [width for width, _ in history] == [2, 2, 2]
  assert all(1.3 < rate <= 2.0 for _, rate in history), history


def test_width_one_stays_when_width_two_would_go_over():
  assert [width for width, _ in _rounds(1.2)] == [1, 1, 1]


@pytest.mark.parametrize("options", [{"coder": "fixed"}, {"max_bits": 1}])
def test_without_a_coder_to_learn_or_a_width_two_nothing_is_tried(options):
  # A fixed-width stream is exactly its known size: width 2 does not fit 2.0.
  assert [width for width, _ in _rounds(2.0, rounds=2, **options)] == [1, 1]
