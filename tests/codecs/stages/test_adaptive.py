"""Adaptive-rate codec: the width follows the budget over rounds; bits by formula."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec, budget, get_codec
from fedcompress.codecs import accounting as bits
from fedcompress.codecs import testing as stage_testing
from fedcompress.codecs.stages import adaptive, huffman
from fedcompress.federated.aggregation import build_mean_factory

N = 4000
NUM_CLIENTS = 3

UNIFORM = get_codec("uniform")


def _uniform_bits(n, b):
  """What the `uniform` codec sends for n values at b bits: 28-bit words + min/max."""
  return UNIFORM.bits(n, {"bits": b})


class AdaptiveUniformStageTest(stage_testing.BaseEncodingStageTest):
  """tensor_encoding's suite for adaptive stages (state, many-to-one, graphs)."""

  def default_encoding_stage(self):
    return adaptive.AdaptiveUniformEncodingStage(4.0, stochastic=False)

  def default_input(self):
    return tf.constant(np.random.default_rng(0).normal(size=(20, 100)).astype(np.float32))

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    stream = data.encoded_x[adaptive.AdaptiveUniformEncodingStage.ENCODED_VALUES_KEY]
    self.assertEqual(stream[0], 2000)  # n
    width = (int(stream[1]) >> 28 & 0xF) + 1
    # Offset 0: the known cost of 4 bits is 4 + (36 + 16 x 4 + 14 + 128) / 2000 > 4.
    self.assertEqual(width, 3)
    low, high = data.encoded_x[adaptive.AdaptiveUniformEncodingStage.MIN_MAX_KEY]
    step = (high - low) / (2**width - 1)
    self.assertLessEqual(np.max(np.abs(data.decoded_x - data.x)), step / 2 + 1e-6)
    if data.state_update_tensors is not None:
      self.assertGreater(data.state_update_tensors["count"], 0)


def test_options_are_checked():
  with pytest.raises(ValueError, match="needs budget_bits_per_coordinate"):
    CodecSpec("adaptive")
  with pytest.raises(ValueError, match="positive number"):
    CodecSpec("adaptive", {"budget_bits_per_coordinate": 0})
  with pytest.raises(ValueError, match="coder must be one of huffman, fixed"):
    CodecSpec("adaptive", {"budget_bits_per_coordinate": 2.0, "coder": "rans"})


def test_budget_mapping_by_hand():
  specs = [tf.TensorSpec([N], tf.float32), tf.TensorSpec([10], tf.float32)]
  # Per client: 4 bits per encoded coordinate + the 10-element tensor at float32 + the
  # mean's float32 weight.
  total = NUM_CLIENTS * (N * 4 + 10 * 32 + 32)
  assert budget.budget_bits_per_coordinate(total, NUM_CLIENTS, specs, threshold=100) == 4.0
  with pytest.raises(ValueError, match="does not cover"):
    budget.budget_bits_per_coordinate(NUM_CLIENTS * 352, NUM_CLIENTS, specs, threshold=100)


def _client_values(round_num):
  rng = np.random.default_rng(100 + round_num)
  return [rng.normal(scale=0.1, size=N).astype(np.float32) for _ in range(NUM_CLIENTS)]


def _simulate(options, rounds):
  """Runs the GatherEncoder protocol by hand; per round: widths, coded and raw bits."""
  encoder = CodecSpec("adaptive", options, threshold=0).gather_encoder(
      tf.TensorSpec([N], tf.float32))

  # Inside a graph, as in TFF: the stream's length is dynamic there.
  @tf.function
  def client(x, encode_params, decode_before_sum_params):
    encoded, state_update = encoder.encode(x, encode_params)
    stream = encoded["tensors/flattened_values/adaptive_stream"]
    _, width = huffman.stream_header(stream)
    sent = (encoded, state_update)
    return (width, bits.structure_bits_tf(sent),
            bits.raw_structure_bits_tf(sent, adaptive.RAW_BITS_RULES),
            encoder.decode_before_sum(encoded, decode_before_sum_params), state_update)

  state = encoder.initial_state()
  history = []
  for r in range(rounds):
    encode_params, before_params, after_params = encoder.get_params(state)
    outputs = [client(x, encode_params, before_params) for x in _client_values(r)]
    widths = {int(o[0]) for o in outputs}
    assert len(widths) == 1  # every client derives the same width from the same state
    total = tf.nest.map_structure(lambda *parts: tf.add_n(parts), *[o[3] for o in outputs])
    decoded = encoder.decode_after_sum(total, after_params, NUM_CLIENTS)
    np.testing.assert_allclose(decoded, np.sum(_client_values(r), axis=0), atol=0.3)
    updates = [tf.add_n(list(parts)) for parts in zip(*[o[4] for o in outputs], strict=True)]
    state = encoder.update_state(state, tuple(updates))
    history.append((widths.pop(), [int(o[1]) for o in outputs], [int(o[2]) for o in outputs]))
  return history


@pytest.mark.slow
def test_fixed_width_meets_the_budget_exactly_from_the_first_round():
  history = _simulate({"budget_bits_per_coordinate": 4.0, "coder": "fixed",
                       "stochastic": False}, rounds=2)
  for width, coded, raw in history:
    # 4 bits would cost 32 x ceil((36 + 4 x 4000) / 32) + 128 = 16,160 > 4 x 4000.
    assert width == 3
    assert coded == [32 * math.ceil((36 + 3 * N) / 32) + 64 + 64] * NUM_CLIENTS
    assert raw == [_uniform_bits(N, 3) + 64] * NUM_CLIENTS


@pytest.mark.slow
def test_huffman_width_moves_up_to_the_budget():
  budget = 4.0
  history = _simulate({"budget_bits_per_coordinate": budget, "stochastic": False}, rounds=4)
  widths = [width for width, _, _ in history]
  # Round 1 knows nothing of the coder's saving: the known cost of 4 bits,
  # 4 + (36 + 16 x 4 + 3 x 14 + 128) / 4000 > 4, leaves 3 bits. Afterwards the measured
  # saving (~0.9 bit for Gaussian data) lets it use 4.
  assert widths[0] == 3
  assert widths == sorted(widths) and widths[-1] == 4
  for width, coded, raw in history:
    assert all(c <= budget * N for c in coded), coded
    # Raw size: the uniform codec at the chosen width + the state-update scalars.
    assert raw == [_uniform_bits(N, width) + 64] * NUM_CLIENTS
  # Once adapted the budget is used: over 3 of 4 bits per coordinate.
  assert all(c > 3 * N for c in history[-1][1])


@pytest.fixture(scope="module")
def mean_process():
  codec = CodecSpec("adaptive", {"budget_bits_per_coordinate": 4.0, "stochastic": False},
                    threshold=100)
  return build_mean_factory(codec).create(tff.TensorType(np.float32, [N]),
                                          tff.TensorType(np.float32))


@pytest.mark.slow
def test_tff_mean_adapts_and_reports_formula_bits(mean_process):
  expected_widths = [3, 4, 4]
  state = mean_process.initialize()
  for r, width in enumerate(expected_widths):
    values = _client_values(r)
    output = mean_process.next(state, values, [1.0] * NUM_CLIENTS)
    state = output.state
    np.testing.assert_allclose(output.result, np.mean(values, axis=0), atol=0.1)
    measured = output.measurements["mean_value"]
    assert measured["bits"] == NUM_CLIENTS * (_uniform_bits(N, width) + 64), r
    assert 0 < measured["coded_bits"] <= NUM_CLIENTS * 4.0 * N, r
    assert output.measurements["mean_weight"]["bits"] == NUM_CLIENTS * 32
