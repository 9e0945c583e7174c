"""Tests of the k-largest selection behind `topk` and `randk` (stages/selection.py)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs.stages import selection


def _vectors():
  rng = np.random.default_rng(0)
  normal = rng.standard_normal(50_000).astype(np.float32)
  ties = np.round(rng.standard_normal(50_000), 1).astype(np.float32)  # many equal values
  periodic = np.tile(np.arange(64, dtype=np.float32), 50_000 // 64)  # defeats the stride
  return {"normal": np.abs(normal), "ties": np.abs(ties), "periodic": periodic,
          "constant": np.ones(50_000, np.float32)}


@pytest.mark.parametrize("name", ["normal", "ties", "periodic", "constant"])
@pytest.mark.parametrize("k", [1, 7, 500, -1])
def test_same_positions_in_the_same_order_as_top_k(name, k):
  values = tf.constant(_vectors()[name])
  k = k % values.shape[0]  # -1: all but one
  expected = tf.math.top_k(values, k=k).indices.numpy()
  got = selection.largest_k(values, k, selection.sampled_threshold(values, k)).numpy()
  np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threshold", [-np.inf, 0.0, 2.5, 1e9])
def test_any_threshold_gives_the_same_result(threshold):
  # 1e9: no candidate at all, so the full top_k runs; -inf: every value is one.
  values = tf.constant(_vectors()["normal"])
  expected = tf.math.top_k(values, k=300).indices.numpy()
  got = selection.largest_k(values, 300, tf.constant(threshold, tf.float32)).numpy()
  np.testing.assert_array_equal(got, expected)


def test_the_sampled_threshold_keeps_the_candidates_few():
  values = tf.constant(_vectors()["normal"])
  threshold = selection.sampled_threshold(values, 500)
  reached = int(tf.reduce_sum(tf.cast(values >= threshold, tf.int32)))
  assert 500 <= reached < 1000


def test_uniform_threshold_is_reached_by_more_than_k():
  n, k = 1_605_632, 16_057
  threshold = selection.uniform_threshold(n, k)
  assert k < n * (1 - threshold) < 1.05 * k
  assert selection.uniform_threshold(10, 9) == 0.0
