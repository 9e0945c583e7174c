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
    assert list(output.state) == expected
    # Every client receives exactly the chosen encoding: the plan's bits, within budget.
    assert output.measurements["bits"] == 2 * plan.total_bits(expected)
    assert plan.total_bits(expected) <= plan.budget == 3 * (4096 + 512 + 8)
    for received in output.result:
      np.testing.assert_array_equal(received["small"], value["small"])
      for k in ("big", "mid"):
        err = np.linalg.norm(received[k] - value[k]) / np.linalg.norm(value[k])
        assert err < 1.0
    seen.append(widths)
  # The energy moved from 'mid' to 'big', and so did the bits.
  assert seen[1][0] > seen[0][0] and seen[1][1] < seen[0][1], seen


def test_sum_adapts_from_last_rounds_norms():
  process = AllocatedSumFactory(CODEC, NAMES, reserved_bits=32).create(VALUE_TYPE)
  plan = CODEC.plan(SPECS, NAMES, direction="aggregate", reserved_bits=32)
  rng = np.random.default_rng(1)
  values = [_value(rng, 0.01, 10.0) for _ in range(3)]
  state = process.initialize()
  exact = {k: sum(v[k].astype(np.float64) for v in values) for k in NAMES}
  # Round 1 assumes equal variance per coordinate; round 2 uses round 1's sum.
  first = plan.allocate([4096.0, 512.0])
  second = plan.allocate([float(np.sum(np.square(exact[k]))) for k in ("big", "mid")])
  assert first != second
  errors = []
  for expected in (first, second):
    output = process.next(state, values)
    widths = [plan.encoded[j].widths[c] for j, c in enumerate(expected)]
    assert [float(output.measurements["widths"][k]) for k in ("big", "mid")] == widths
    assert output.measurements["bits"] == 3 * (plan.total_bits(expected) - 32)
    np.testing.assert_allclose(output.result["small"], exact["small"], rtol=1e-5)
    state = output.state
    errors.append(np.sqrt(sum(np.sum((output.result[k] - exact[k]) ** 2) for k in NAMES)
                          / sum(np.sum(exact[k] ** 2) for k in NAMES)))
  # The mid tensor holds the energy: round 2 gives it the bits, and the error drops.
  assert errors[1] < errors[0]
