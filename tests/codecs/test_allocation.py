"""Bit allocation policy: optimal on small cases, water-filling, budget never exceeded."""

import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, allocation
from fedcompress.codecs.allocation import AllocatedCodec, allocate_tf, water_filling


def _allocate(costs, distortions, budget):
  return [int(i) for i in allocate_tf(np.array(costs), np.array(distortions, np.float64),
                                      budget).numpy()]


def _brute_force(costs, distortions, budget):
  best = None
  for choice in itertools.product(*(range(len(row)) for row in costs)):
    cost = sum(row[c] for row, c in zip(costs, choice, strict=True))
    dist = sum(row[c] for row, c in zip(distortions, choice, strict=True))
    if cost <= budget and (best is None or dist < best):
      best = dist
  return best


def _gaussian_case(sizes, variances, widths, side_bits=0):
  """Costs n b (+ side info) and distortions n sigma^2 4^-b of integer widths."""
  costs = [[n * b + side_bits for b in widths] for n in sizes]
  dist = [[n * v * 4.0**-b for b in widths] for n, v in zip(sizes, variances, strict=True)]
  return costs, dist


def test_hand_set_case_is_the_optimum():
  # Sizes 100, 300, 50; variances 16, 1, 0.25; widths 0..4; 2 bits per coordinate.
  costs, dist = _gaussian_case([100, 300, 50], [16.0, 1.0, 0.25], range(5))
  choice = _allocate(costs, dist, 900)
  # Water-filling brackets it: theta = 1/16 gives (2, 1, 0) for 500 bits, theta = 1/64
  # (3, 2, 1) for 950. At 900 bits, (3, 2, 0) costs 300 + 600 + 0 and errs 100 * 16/64 +
  # 300/16 + 50/4 = 56.25; (4, 1, 4) errs 81.3, (2, 2, 2) 119.5.
  assert choice == [3, 2, 0]
  assert sum(dist[i][c] for i, c in enumerate(choice)) == pytest.approx(56.25)
  assert _brute_force(costs, dist, 900) == pytest.approx(56.25)


def test_integral_water_filling_is_reached_exactly():
  # Variances 4^3, 4^1, 4^0, 4^-2 and theta = 1: rates 3, 1, 0, 0 bits.
  sizes, variances = [64, 128, 256, 32], [64.0, 4.0, 1.0, 1 / 16]
  budget = 64 * 3 + 128 * 1
  rates = water_filling(variances, sizes, budget)
  np.testing.assert_allclose(rates, [3, 1, 0, 0], atol=1e-9)
  costs, dist = _gaussian_case(sizes, variances, range(6))
  assert _allocate(costs, dist, budget) == [3, 1, 0, 0]


def test_water_filling_shape():
  # Equal variances share the budget equally; doubling one variance adds half a bit.
  np.testing.assert_allclose(water_filling([1.0, 1.0], [10, 10], 40), [2, 2], atol=1e-9)
  r = water_filling([2.0, 1.0], [10, 10], 40)
  np.testing.assert_allclose(r[0] - r[1], 0.5, atol=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_random_cases_optimal_and_within_budget(seed):
  rng = np.random.default_rng(seed)
  num, k = int(rng.integers(1, 5)), int(rng.integers(2, 5))
  # Arbitrary (not convex, not monotone) candidates: costs and distortions at random.
  costs = np.sort(rng.integers(1, 60, size=(num, k)), axis=1)
  dist = rng.uniform(0, 10, size=(num, k))
  budget = int(costs[:, 0].sum() + rng.integers(0, 120))
  choice = _allocate(costs, dist, budget)
  assert sum(costs[i, c] for i, c in enumerate(choice)) <= budget
  # Budgets under 4096 bits are one bit per grain: the dynamic program is exact.
  assert sum(dist[i, c] for i, c in enumerate(choice)) == pytest.approx(
      _brute_force(costs.tolist(), dist.tolist(), budget))


@pytest.mark.parametrize("seed", range(20))
def test_large_budgets_never_exceeded(seed):
  # Budgets far above the grain count: costs are rounded up to grains, then the greedy
  # fill spends the rest; the total may only be under the budget.
  rng = np.random.default_rng(100 + seed)
  num, k = 6, 5
  costs = np.sort(rng.integers(1_000, 2_000_000, size=(num, k)), axis=1)
  dist = np.sort(rng.uniform(0, 1e6, size=(num, k)), axis=1)[:, ::-1]
  budget = int(costs[:, 0].sum() + rng.integers(0, costs[:, -1].sum() - costs[:, 0].sum()))
  choice = _allocate(costs, dist, budget)
  spent = sum(costs[i, c] for i, c in enumerate(choice))
  assert spent <= budget
  # Nothing that fits is left on the table (the greedy fill).
  for i, c in enumerate(choice):
    better = [j for j in range(k) if dist[i, j] < dist[i, c]]
    assert all(costs[i, j] - costs[i, c] > budget - spent for j in better)


@pytest.mark.parametrize("num", [1, 3])
def test_in_a_graph_as_eagerly(num):
  # TFF traces it: with one encoded tensor (a model whose bias is under the threshold)
  # the loop's `choice` lost its static shape and every allocated process failed to build.
  rng = np.random.default_rng(num)
  costs = np.sort(rng.integers(1, 60, size=(num, 4)), axis=1)
  dist = np.sort(rng.uniform(0, 10, size=(num, 4)), axis=1)[:, ::-1].copy()
  budget = int(costs[:, 0].sum() + 40)
  graph = tf.function(lambda d: allocate_tf(costs, d, budget))(tf.constant(dist))
  assert graph.shape == (num,)
  assert [int(c) for c in graph.numpy()] == _allocate(costs, dist, budget)


def test_budget_below_the_narrowest_widths_is_refused():
  with pytest.raises(ValueError, match="does not cover"):
    allocate_tf(np.array([[10, 20], [10, 20]]), np.ones([2, 2]), 19)


CNN = [tf.TensorSpec(s) for s in [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,), (3136, 512),
                                  (512,), (512, 10), (10,)]]


def test_plan_counts_every_bit_of_the_tutorial_cnn():
  codec = AllocatedCodec(CodecSpec("eden", {}, threshold=100), 2.0, (1, 2, 3, 4))
  plan = codec.plan(CNN, direction="aggregate", reserved_bits=32)
  assert plan.budget == 2 * 1_663_370
  assert [t.num_elements for t in plan.encoded] == [800, 51_200, 1_605_632, 512, 5_120]
  # Unencoded: 32 + 64 + 10 float32, one uint8 choice per encoded tensor, the weight.
  assert plan.budget - plan.allocatable == (32 + 64 + 10) * 32 + 5 * 8 + 32
  eden = CodecSpec("eden", {"bits": 2}, threshold=0)
  assert plan.encoded[2].costs[1] == eden.codec.bits(1_605_632, eden.options)
  # EDEN's own normalized MSE (Vargaftik et al.): 0.5708 at 1 bit, 0.1331 at 2 bits.
  assert plan.encoded[2].unit_mse[0] == pytest.approx(0.5708, rel=0.03)
  assert plan.encoded[2].unit_mse[1] == pytest.approx(0.1331, rel=0.03)
  choice = plan.allocate([float(t.num_elements) for t in plan.encoded])
  assert plan.total_bits(choice) <= plan.budget


def test_sub_bit_widths_reach_one_bit_per_coordinate():
  # 32x: one bit per coordinate of the whole CNN, side information and the unencoded
  # biases included, needs the big kernel just under one bit.
  codec = AllocatedCodec(CodecSpec("eden", {"block_size": 16384}, threshold=100), 1.0,
                         (0.9, 0.95, 0.98, 1, 2))
  plan = codec.plan(CNN, direction="broadcast")
  choice = plan.allocate([float(t.num_elements) for t in plan.encoded])
  assert plan.total_bits(choice) <= 1_663_370
  widths = [t.widths[c] for t, c in zip(plan.encoded, choice, strict=True)]
  assert widths[2] < 1 and max(widths) >= 1


def test_widths_are_checked():
  base = CodecSpec("eden", {})
  assert AllocatedCodec(base, 2.0, (8, 1, 2, 4)).widths == (1, 2, 4)  # eden: 1..4
  with pytest.raises(ValueError, match="takes none"):
    AllocatedCodec(CodecSpec("topk", {}), 2.0, (1, 2))
  with pytest.raises(ValueError, match="positive"):
    AllocatedCodec(base, 0.0)
  assert allocation.parse_widths("0.5, 1,2") == (0.5, 1, 2)
  with pytest.raises(ValueError):
    allocation.parse_widths("1,x")


def test_widths_that_are_not_whole_keep_a_fraction_at_the_next_width():
  base = CodecSpec("eden", {"block_size": 512})
  assert allocation.width_options(base, 1.95) == {"block_size": 512, "bits": 2, "keep": 0.975}
  assert allocation.width_options(base, 0.5) == {"block_size": 512, "bits": 1, "keep": 0.5}
  assert allocation.width_options(base, 4.5) is None  # eden has no 5 bits.
  assert allocation.width_options(CodecSpec("uniform", {}), 1.5) is None  # No `keep`.
  assert AllocatedCodec(base, 2.0, (1.95, 2, 4.5)).widths == (1.95, 2)
  # 1.95 is a step finer than a bit: ceil(97.5% x 512) = 500 coordinates of each of the
  # 10 rows at 2 bits, packed in int32 words, 10 float32 scales and the seed.
  eden = base.codec
  assert (eden.bits(5120, {"block_size": 512, "bits": 2, "keep": 0.975})
          == math.ceil(10 * 500 * 2 / 32) * 32 + 10 * 32 + 32)


@pytest.mark.parametrize("direction", ["aggregate", "broadcast"])
@pytest.mark.parametrize("name", ["kashin", "fixed_int(rotation=true)", "eden"])
def test_candidate_prices_are_what_the_allocated_processes_send(name, direction):
  # The allocated processes encode each candidate with a SimpleEncoder, which sends every
  # parameter (Kashin's and fixed_int's shared seeds too, whose aggregate formulas leave
  # them on the server): the plan must price that, or its budget could be exceeded.
  from fedcompress.codecs import accounting, tracing

  spec = tf.TensorSpec([1200], tf.float32)
  widths = (2, 4) if name.startswith("fixed_int") else (1, 2)
  plan = AllocatedCodec(CodecSpec(name, threshold=100), 64.0, widths).plan(
      [spec], ["w"], direction=direction)
  (tensor,) = plan.encoded
  x = tf.random.stateless_normal([1200], [7, 8]) * 0.01
  for cost, candidate in zip(tensor.costs, tensor.specs, strict=True):
    encoder = tracing.simple_encoder(candidate.make_encoder(), spec)
    encoded, _ = encoder.encode(x, encoder.initial_state())
    assert int(accounting.structure_bits_tf(encoded)) == cost, candidate.describe()


def test_the_recorded_budget_is_exact():
  # describe() is what a run records of the codec and a resume compares: `:g` made
  # 7.0000001 and 7.0000049 bits per coordinate one setting.
  base = CodecSpec("eden", {}, threshold=40)
  assert AllocatedCodec(base, 1.0, (1, 2)).describe() == "eden>40@1bpc[1,2]"
  assert AllocatedCodec(base, 2.01918, (1, 2)).describe() == "eden>40@2.01918bpc[1,2]"
  assert AllocatedCodec(base, 7.0000001, (1, 2)).describe() == "eden>40@7.0000001bpc[1,2]"
  assert (AllocatedCodec(base, 7.0000049, (1, 2)).describe()
          != AllocatedCodec(base, 7.0000001, (1, 2)).describe())
