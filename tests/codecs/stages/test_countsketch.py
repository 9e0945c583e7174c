"""Tests of the `countsketch` codec (fedcompress/codecs/stages/countsketch.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec, accounting, get_codec, testing
from fedcompress.codecs.builtin import CountSketch
from fedcompress.codecs.stages import countsketch
from fedcompress.codecs.testing import BaseEncodingStageTest

Stage = countsketch.CountSketchEncodingStage


class CountSketchEncodingStageTest(BaseEncodingStageTest):
  """tensor_encoding's round-trip suite (its commutes-with-sum check included) with one
  row, where decoding is a signed gather and so linear; 4 x 5 input, 8 columns."""

  def default_encoding_stage(self):
    return Stage(rows=1, columns=8)

  def default_input(self):
    return tf.random.normal([4, 5])

  @property
  def is_lossless(self):
    return False

  def common_asserts_for_test_data(self, data):
    self.assertEqual(data.encoded_x[Stage.ENCODED_VALUES_KEY].shape, (1, 8))
    # Every coordinate lands in one bucket with a sign: the table keeps the sum of
    # absolute values at most, and the signed sum exactly up to the signs.
    table = data.encoded_x[Stage.ENCODED_VALUES_KEY]
    self.assertLessEqual(np.abs(table).sum(), np.abs(data.x).sum() + 1e-5)


SEED = tf.constant(11)


def test_sketch_of_a_sum_is_the_sum_of_sketches():
  sketch = CountSketch(1000, 5, 37)
  h = sketch.hashes(SEED)
  rng = np.random.default_rng(0)
  xs = [rng.standard_normal(1000).astype(np.float32) for _ in range(4)]
  summed = sketch.sketch(tf.constant(np.sum(xs, axis=0)), h).numpy()
  parts = sum(sketch.sketch(tf.constant(x), h).numpy() for x in xs)
  np.testing.assert_allclose(summed, parts, rtol=1e-5, atol=1e-5)
  # Integer-valued inputs are summed exactly in float32: equality, bit for bit.
  ints = [rng.integers(-50, 50, 1000).astype(np.float32) for _ in range(4)]
  np.testing.assert_array_equal(
      sketch.sketch(tf.constant(np.sum(ints, axis=0)), h).numpy(),
      sum(sketch.sketch(tf.constant(x), h).numpy() for x in ints))


def test_the_hashes_are_a_function_of_the_seed():
  sketch = CountSketch(500, 3, 40)
  a, b = sketch.hashes(SEED), sketch.hashes(SEED)
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], sketch.hashes(tf.constant(12))[0])
  buckets = a[0].numpy()
  # Row j's buckets are in [j * columns, (j + 1) * columns); signs are +-1, both seen.
  for j in range(3):
    assert buckets[j].min() >= 40 * j and buckets[j].max() < 40 * (j + 1)
  assert set(np.unique(a[1])) == {-1, 1}


def test_heavy_hitters_of_a_sparse_vector_come_back_exactly():
  n = 5000
  x = np.zeros(n, np.float32)
  x[[7, 1234, 4999]] = [10.0, -7.0, 0.5]
  sketch = CountSketch(n, 5, 500)
  h = sketch.hashes(SEED)
  estimate = sketch.estimate(sketch.sketch(tf.constant(x), h), h).numpy()
  np.testing.assert_array_equal(estimate, x)  # No 3 of 5 rows collide for this seed.
  top = sketch.heavy_hitters(sketch.sketch(tf.constant(x), h), h, k=2).numpy()
  want = np.zeros(n, np.float32)
  want[[7, 1234]] = [10.0, -7.0]
  np.testing.assert_array_equal(top, want)


def test_one_row_errs_by_n_over_columns_and_the_median_of_five_less():
  """One row's normalized squared error is (n - 1) / columns in expectation (each other
  coordinate collides with probability 1 / columns); the median of 5 rows is lower. A
  spike of 5.0 in the noise comes back within 0.5 either way."""
  rng = np.random.default_rng(1)
  n = 20_000
  x = rng.standard_normal(n).astype(np.float32)
  errors = {}
  for rows in (1, 5):
    sketch = CountSketch(n, rows, 2000)
    h = sketch.hashes(SEED)
    estimate = sketch.estimate(sketch.sketch(tf.constant(x), h), h).numpy()
    errors[rows] = np.linalg.norm(estimate - x) ** 2 / np.linalg.norm(x) ** 2
    spiky = x * 0.02
    spiky[123] = 5.0
    assert abs(sketch.estimate(sketch.sketch(tf.constant(spiky), h), h)[123] - 5.0) < 0.5
  # One draw of the hashes spreads this by about 5% (10 seeds: 9.45 to 10.52, mean 10.06).
  assert errors[1] == pytest.approx((n - 1) / 2000, rel=0.1)
  assert errors[5] < 0.6 * errors[1]


@pytest.mark.parametrize("options", [{"rows": 5, "columns": 50},
                                     {"rows": 3, "fraction": 0.1},
                                     {"rows": 1, "fraction": 0.01, "seed_policy": "fixed"}])
@pytest.mark.parametrize("direction", ["broadcast", "aggregate"])
def test_bits_formula_is_the_in_graph_count(options, direction):
  n = 1001
  spec = tf.TensorSpec([7, 143], tf.float32)
  codec = CodecSpec("countsketch", options, threshold=0)
  if direction == "broadcast":
    encoded, _ = codec.simple_encoder(spec).encode(tf.random.normal(spec.shape))
  else:
    encoder = codec.gather_encoder(spec)
    state = encoder.initial_state()
    encode_params, decode_before, _ = encoder.get_params(state)
    encoded, _ = encoder.encode(tf.random.normal(spec.shape), encode_params)
    # What a client sends: the encoded values and the decode-before-sum parameters.
    encoded = (encoded, decode_before)
  want = get_codec("countsketch").bits(n, options, direction=direction)
  assert int(accounting.structure_bits_tf(encoded)) == want
  columns = countsketch.column_count(n, options["rows"], options.get("columns", 0),
                                     options.get("fraction", 0.05))
  assert want == options["rows"] * columns * 32 + (32 if direction == "broadcast" else 0)


def test_columns_from_fraction():
  assert countsketch.column_count(1_663_370, 1, 0, 0.048) == 79_842
  assert countsketch.column_count(1_663_370, 5, 0, 0.048) == 15_969
  assert countsketch.column_count(10, 5, 0, 0.01) == 1
  assert countsketch.column_count(10, 5, 7, 0.01) == 7


def test_round_policy_draws_a_fresh_shared_seed_and_fixed_does_not():
  stage = Stage(rows=1, columns=4)
  assert int(stage.get_params()[0]["seed"]) != int(stage.get_params()[0]["seed"])
  fixed = Stage(rows=1, columns=4, seed_policy="fixed", seed=9)
  params, decode = fixed.get_params()
  assert int(params["seed"]) == int(decode["seed"]) == 9


def test_options_are_checked():
  with pytest.raises(ValueError, match="rows must be an integer in 1..64"):
    CodecSpec("countsketch", {"rows": 0})
  with pytest.raises(ValueError, match="seed_policy must be one of round, fixed"):
    CodecSpec("countsketch", {"seed_policy": "client"})
  # A seed with the per-round policy would be silently ignored.
  with pytest.raises(ValueError, match="seed=5 needs seed_policy=fixed"):
    CodecSpec.parse("countsketch(seed=5)")
  # A seed that is no integer is named so, whatever the policy.
  with pytest.raises(ValueError, match="seed must be an integer in 0..2147483647, got 'abc'"):
    CodecSpec("countsketch", {"seed": "abc"})
  with pytest.raises(ValueError, match="has no option 'cols'"):
    CodecSpec("countsketch", {"cols": 4})


def test_columns_whose_bucket_ids_overflow_int32_are_refused():
  # One row: each hash draws in [0, 2 * columns), which must stay an int32.
  assert CodecSpec("countsketch", {"rows": 1, "columns": 2**30 - 1}).options["columns"] == (
      2**30 - 1)
  with pytest.raises(ValueError, match=r"columns=1073741824 with rows=1 puts bucket ids "
                                       r"past int32; at most 1073741823 columns"):
    CodecSpec("countsketch", {"rows": 1, "columns": 2**30})
  # Five rows: row 4's ids start at 4 * columns and end below 5 * columns.
  with pytest.raises(ValueError, match="at most 429496729 columns"):
    CodecSpec("countsketch", {"rows": 5, "columns": 429496730})


def test_round_trip_through_the_codec():
  x = np.zeros(3000, np.float32)
  x[42] = 3.0
  # A fixed seed: a coordinate that shares two of its three buckets with the spike, with
  # the same sign, has a median estimate of 3 too. That happens for 14 of the seeds
  # 0..199 (about 3 * 2999 / 300**2 / 2); with a fresh seed per run this test failed
  # about one run in fifteen.
  encoder = testing.simple_encoder("countsketch", tf.TensorSpec([3000], tf.float32),
                                   rows=3, columns=300, seed_policy="fixed", seed=0)
  _, decoded, bits = testing.round_trip(encoder, tf.constant(x))
  np.testing.assert_array_equal(decoded.numpy(), x)
  assert bits == 3 * 300 * 32 + 32
