"""nonuniform's native level search gives the indices its graph ops give.

The graph path finds them by `tf.searchsorted` (tensors of up to 2^16 values) or by the
histogram bins' tables (`_nearest_by_bins`, larger ones); the kernel by one search.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import native
from fedcompress.codecs import CodecSpec, seeding


@pytest.fixture(scope="module", autouse=True)
def _native_built(native_ops):
  return native_ops


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("m", [0, 1, 3, 15, 32, 33, 255, 1000])
def test_search_is_tensorflows_lower_bound(m, dtype):
  rng = np.random.default_rng(m)
  sorted_ = np.sort(rng.standard_normal(m))
  if m > 3:
    sorted_[1] = sorted_[2]  # ties
  values = np.concatenate([rng.standard_normal(2000), sorted_,  # values on the entries
                           [np.inf, -np.inf, np.nan, 0.0, -0.0]])
  sorted_t, values_t = tf.constant(sorted_, dtype), tf.constant(values, dtype)
  got = native.ops().fedcompress_search_sorted_left(sorted_t, values_t)
  want = tf.searchsorted(sorted_t[tf.newaxis], values_t[tf.newaxis], side="left")[0]
  assert got.dtype == tf.float32
  np.testing.assert_array_equal(got.numpy(), want.numpy().astype(np.float32))


def test_search_in_unordered_or_nan_entries_is_still_tensorflows():
  # Not what a codec passes, but where the count and the binary search could differ from
  # std::lower_bound: the kernel then runs it.
  for entries in ([3.0, 1.0, 2.0, 0.5, 4.0], [0.0, np.nan, 1.0, 2.0], [np.nan] * 40):
    values = tf.constant([-1.0, 0.7, 1.5, 2.5, 5.0, np.nan], tf.float32)
    sorted_t = tf.constant(entries, tf.float32)
    got = native.ops().fedcompress_search_sorted_left(sorted_t, values)
    want = tf.searchsorted(sorted_t[tf.newaxis], values[tf.newaxis], side="left")[0]
    np.testing.assert_array_equal(got.numpy(), want.numpy().astype(np.float32))


def _encode(codec, x):
  with tf.Graph().as_default() as graph:
    value = tf.constant(x)
    key = seeding.encode_key(seeding.round_key(3, tf.constant(1, tf.int64)), 0, value)
    encoder = codec.inline_encoder(tf.TensorSpec(x.shape, x.dtype))
    with seeding.seed_scope(key):
      encoded, _ = encoder.encode(value, encoder.initial_state())
    decoded = encoder.decode(encoded)
    with tf.compat.v1.Session(graph=graph) as session:
      return session.run((encoded, decoded))


def _inputs():
  rng = np.random.default_rng(3)
  big = (rng.standard_t(3, 200_000) * 0.01).astype(np.float32)  # the histogram's path
  few = np.repeat(np.float32([0.5, -0.25, 2.0]), 30_000)  # few distinct: sorted fit
  small = rng.standard_normal([40, 50]).astype(np.float32)  # searchsorted's path
  wild = big.copy()
  wild[:3] = [np.inf, -np.inf, np.nan]  # non-finite values decode as NaN
  return {"big": big, "few": few, "small": small, "wild": wild,
          "float64": rng.laplace(size=100_000), "tiny": np.float32([1e-40, -3e-39, 2e-38] * 9000)}


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
@pytest.mark.parametrize("case", sorted(_inputs()))
def test_nonuniform_encodes_the_same_indices(case, bits):
  x = _inputs()[case]
  codec = CodecSpec("nonuniform", {"bits": bits}, threshold=0)
  encoded, decoded = _encode(codec, x)
  with native.disabled():
    graph_encoded, graph_decoded = _encode(codec, x)
  assert list(encoded) == list(graph_encoded)
  for key in encoded:
    np.testing.assert_array_equal(encoded[key], graph_encoded[key], err_msg=key)
  np.testing.assert_array_equal(decoded, graph_decoded)
  if case == "wild":
    assert math.isnan(decoded.ravel()[5])


def test_the_native_search_is_the_one_traced():
  def op_types(disable):
    graph = tf.Graph()
    with graph.as_default():
      encoder = CodecSpec("nonuniform", {}, threshold=0).inline_encoder(
          tf.TensorSpec([100_000], tf.float32))
      if disable:
        with native.disabled():
          encoder.encode(tf.zeros([100_000]), encoder.initial_state())
      else:
        encoder.encode(tf.zeros([100_000]), encoder.initial_state())
    graph_def = graph.as_graph_def()
    return ({node.op for node in graph_def.node}
            | {node.op for f in graph_def.library.function for node in f.node_def})

  assert "FedcompressSearchSortedLeft" in op_types(False)
  assert "FedcompressSearchSortedLeft" not in op_types(True)
