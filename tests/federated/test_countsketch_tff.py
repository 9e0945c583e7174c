"""The `countsketch` codec in TFF's encoded mean: summed as sketches, decoded once."""

import numpy as np
import pytest
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec
from fedcompress.federated.aggregation import build_mean_factory

pytestmark = pytest.mark.slow  # builds and runs TFF processes: the slow tier


def test_mean_of_sketches_recovers_the_heavy_hitters_of_the_sum():
  n = 2000
  codec = CodecSpec("countsketch", {"rows": 5, "columns": 200, "seed_policy": "fixed",
                                   "seed": 1}, threshold=1)
  process = build_mean_factory(codec).create(tff.TensorType(np.float32, [n]),
                                             tff.TensorType(np.float32))
  # Three clients, each with its own spikes; the sum has 6 non-zero coordinates.
  xs = np.zeros((3, n), np.float32)
  xs[0, [5, 900]] = [3.0, -1.0]
  xs[1, [5, 1999]] = [1.0, 2.0]
  xs[2, [17, 444, 900]] = [4.0, 0.5, -1.0]
  weights = np.array([1.0, 2.0, 1.0], np.float32)
  output = process.next(process.initialize(), list(xs), list(weights))
  mean = (weights[:, None] * xs).sum(0) / weights.sum()
  # The server decodes the summed table once; for this seed no 3 of the 5 rows put a
  # coordinate in a bucket with a spike of the sum, so every estimate is exact.
  np.testing.assert_allclose(output.result, mean, rtol=1e-6, atol=1e-7)
  # Clients send only their 5 x 200 float32 tables (the seed comes from the server)
  # for the numerator and their float32 weight (1 element, under the threshold).
  bits = output.measurements["mean_value"]["bits"] + output.measurements["mean_weight"]["bits"]
  assert bits == 3 * (5 * 200 * 32 + 32)
