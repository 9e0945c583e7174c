"""A tight budget, a reused options dict, a NumPy threshold: found in a review."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec, allocate_tf


def test_a_budget_that_just_covers_the_cheapest_candidates_is_never_exceeded():
  # Costs rounded up to 1/4096 of the budget no longer fit it: backtracking went below
  # index 0 and gave the first tensor its dearer candidate, 1,199,900 bits of 1,000,000.
  costs = np.array([[100, 200_000], [999_900, 1_500_000]])
  choice = allocate_tf(costs, np.array([[1.0, 0.5], [1.0, 0.5]]), 1_000_000).numpy()
  assert costs[np.arange(2), choice].sum() <= 1_000_000
  assert list(choice) == [0, 0]


def test_a_tight_plan_keeps_its_budget():
  # The same through a plan: a small first tensor, then one of 2,001,000 coordinates,
  # at the smallest budget `plan` accepts (found by the review's search).
  specs = [tf.TensorSpec([200], tf.float32), tf.TensorSpec([2_001_000], tf.float32)]
  bits = 2_034_608 / 2_001_200
  plan = AllocatedCodec(CodecSpec("eden", threshold=100), bits, (1, 2, 3, 4)).plan(specs)
  assert plan.budget == 2_034_608
  assert plan.total_bits(plan.allocate([1.0, 1.0])) <= plan.budget


def test_specs_made_from_one_dict_keep_their_own_options():
  options, specs = {}, []
  for bits in (1, 2, 4):
    options["bits"] = bits
    specs.append(CodecSpec("eden", options, threshold=0))
  assert [s.describe() for s in specs] == ["eden(bits=1)>0", "eden(bits=2)>0", "eden(bits=4)>0"]
  options["bits"] = 9  # Not a width EDEN has: the specs made before are not touched.
  assert specs[-1].options == {"bits": 4}


def test_a_numpy_threshold_counts_as_an_integer():
  spec = CodecSpec("uniform", threshold=np.int64(100))
  assert spec.threshold == 100 and type(spec.threshold) is int
  for bad in (True, -1, 1.5):
    with pytest.raises(ValueError, match="threshold must be a non-negative integer"):
      CodecSpec("uniform", threshold=bad)
