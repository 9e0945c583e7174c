"""Allocated broadcast and sum: widths chosen per tensor in-graph, bits exact, budget kept."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.allocated import AllocatedSumFactory, build_allocated_broadcast_process

pytestmark = pytest.mark.slow  # builds allocated TFF processes: the slow tier

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    big=tff.TensorType(np.float32, [4096]), mid=tff.TensorType(np.float32, [512]),
    small=tff.TensorType(np.float32, [8])))
SPECS = [tf.TensorSpec([4096]), tf.TensorSpec([512]), tf.TensorSpec([8])]
NAMES = ["big", "mid", "small"]
# 3 bits per coordinate on average; 'small' (8 elements) is under the threshold.
CODEC = AllocatedCodec(CodecSpec("eden", {"block_size": 512}, threshold=100), 3.0, (1, 2, 3, 4))


def _value(rng, big_scale, mid_scale):
  return collections.OrderedDict(
      big=(big_scale * rng.standard_normal(4096)).astype(np.float32),
      mid=(mid_scale * rng.standard_normal(512)).astype(np.float32),
      small=rng.standard_normal(8).astype(np.float32))


@pytest.fixture(scope="module")
def broadcast():
  return build_allocated_broadcast_process(VALUE_TYPE, CODEC, NAMES)


def test_broadcast_widths_follow_the_norms_and_bits_are_exact(broadcast):
  @tff.federated_computation(broadcast.initialize.type_signature.result,
                             tff.FederatedType(VALUE_TYPE, tff.SERVER),
                             tff.FederatedType(np.int32, tff.CLIENTS))
  def run(state, value, clients):
    del clients  # Only fixes the number of clients.
    return broadcast.next(state, value)

  plan = CODEC.plan(SPECS, NAMES, direction="broadcast")
  rng = np.random.default_rng(0)
  seen = []
  for big_scale, mid_scale in ((0.01, 10.0), (10.0, 0.01)):
    value = _value(rng, big_scale, mid_scale)
    output = run(broadcast.initialize(), value, [0, 0])
    expected = plan.allocate([float(np.sum(np.square(value[k], dtype=np.float64)))
                              for k in ("big", "mid")])
    widths = [plan.encoded[j].widths[c] for j, c in enumerate(expected)]
    assert [float(output.measurements["widths"][k]) for k in ("big", "mid")] == widths
    assert list(output.state["choice"]) == expected and output.state["round"] == 1
    # Every client receives exactly the chosen encoding: the plan's bits, within budget.
    assert output.measurements["bits"] == 2 * plan.total_bits(expected)
    assert plan.total_bits(expected) <= plan.budget == 3 * (4096 + 512 + 8)
    for received in output.result:
      np.testing.assert_array_equal(received["small"], value["small"])
      for k in ("big", "mid"):
        err = np.linalg.norm(received[k] - value[k]) / np.linalg.norm(value[k])
        assert err < 1.0
    seen.append(widths)
    # Seeded: the same round and value encode to the same bits.
    again = run(broadcast.initialize(), value, [0, 0])
    for k in NAMES:
      np.testing.assert_array_equal(again.result[0][k], output.result[0][k])
  # The energy moved from 'mid' to 'big', and so did the bits.
  assert seen[1][0] > seen[0][0] and seen[1][1] < seen[0][1], seen


def _squared_norms(value):
  return [float(np.sum(np.square(value[k], dtype=np.float64))) for k in ("big", "mid")]


def test_sum_each_client_allocates_on_its_own_value():
  process = AllocatedSumFactory(CODEC, NAMES, reserved_bits=32, seed=5).create(VALUE_TYPE)
  plan = CODEC.plan(SPECS, NAMES, direction="aggregate", reserved_bits=32)
  rng = np.random.default_rng(1)
  # Two clients hold their energy in 'mid', one in 'big'.
  values = [_value(rng, 0.01, 10.0), _value(rng, 0.01, 10.0), _value(rng, 10.0, 0.01)]
  choices = [plan.allocate(_squared_norms(v)) for v in values]
  assert choices[0] != choices[2]
  state = process.initialize()
  output = process.next(state, values)
  assert output.state == 1  # The round counter of the seeded randomness.
  widths = np.mean([[plan.encoded[j].widths[c] for j, c in enumerate(choice)]
                    for choice in choices], axis=0)
  np.testing.assert_allclose([output.measurements["widths"][k] for k in ("big", "mid")],
                             widths, rtol=1e-6)
  # Each client sends exactly its own choice's encoding (the weight's 32 bits are the
  # weight sum's), within its budget.
  assert output.measurements["bits"] == sum(plan.total_bits(c) - 32 for c in choices)
  assert all(plan.total_bits(c) <= plan.budget for c in choices)
  exact = {k: sum(v[k].astype(np.float64) for v in values) for k in NAMES}
  np.testing.assert_allclose(output.result["small"], exact["small"], rtol=1e-5)
  # The sum errs as the clients' chosen widths predict (independent unbiased errors):
  # each decoded with its own choice, not one shared.
  expected = sum(plan.encoded[j].unit_mse[c] * norm
                 for v, choice in zip(values, choices, strict=True)
                 for j, (c, norm) in enumerate(zip(choice, _squared_norms(v), strict=True)))
  error = sum(np.sum((output.result[k] - exact[k]) ** 2) for k in ("big", "mid"))
  assert 0.7 * expected < error < 1.3 * expected, (error, expected)
  # Seeded: the same round encodes the same bits; the next round draws anew.
  again = process.next(state, values)
  later = process.next(output.state, values)
  np.testing.assert_array_equal(again.result["big"], output.result["big"])
  assert not np.array_equal(later.result["big"], output.result["big"])
