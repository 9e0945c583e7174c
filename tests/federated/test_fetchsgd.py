"""FetchSGD (fedcompress/federated/fetchsgd.py): sketch-space momentum and error by hand.

A real TFF aggregation process on a 16-coordinate value: two rounds whose applied
updates and server sketches follow Algorithm 1 of Rothchild et al. (ICML 2020), and
the bits the clients send. Then the factory inside `build_fedavg` on a tiny model.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.codecs.builtin import CountSketch
from fedcompress.federated import fetchsgd
from fedcompress.federated.aggregators import AggregatorSpec

pytestmark = pytest.mark.slow  # builds and runs TFF processes: the slow tier

N = 16
OPTIONS = dict(rows=3, columns=64, topk=1 / N, momentum=0.5, learning_rate=1.0, seed=3)
VALUE = collections.OrderedDict(a=tff.TensorType(np.float32, [4, 2]),
                                b=tff.TensorType(np.float32, [8]))


def _flat(a, b):
  return np.concatenate([np.reshape(a, -1), b]).astype(np.float32)


def _value(flat):
  return collections.OrderedDict(a=np.reshape(flat[:8], (4, 2)), b=flat[8:])


@pytest.fixture(scope="module")
def process():
  value_type = tff.StructWithPythonType(VALUE, collections.OrderedDict)
  return fetchsgd.FetchSGDFactory(**OPTIONS).create(value_type, tff.TensorType(np.float32))


@pytest.fixture(scope="module")
def hashes():
  sketch = CountSketch(N, OPTIONS["rows"], OPTIONS["columns"])
  buckets, signs = sketch.hashes(tf.constant(OPTIONS["seed"]))
  return sketch, buckets.numpy(), signs.numpy()


def _sketch(hashes, x):
  sketch, _, _ = hashes
  return sketch.sketch(tf.constant(x), sketch.hashes(tf.constant(OPTIONS["seed"]))).numpy()


def test_two_rounds_by_hand(process, hashes):
  _, buckets, _ = hashes
  big, small = 2, 11  # Coordinates 2 and 11 share no bucket in any row for this seed.
  assert not set(buckets[:, big]) & set(buckets[:, small])
  x1, x2 = np.zeros(N, np.float32), np.zeros(N, np.float32)
  x1[big], x1[small] = 6.0, 2.0
  x2[big] = 2.0
  state = process.initialize()
  # Weights 3 and 1: the weighted mean is 5.0 at `big` and 1.5 at `small`. k = 1.
  out = process.next(state, [_value(x1), _value(x2)], [3.0, 1.0])
  applied = _flat(out.result["a"], out.result["b"])
  want = np.zeros(N)
  want[big] = 5.0
  np.testing.assert_allclose(applied, want, rtol=1e-6)
  # The buckets of `big` are zeroed in both sketches; what is left is `small`'s.
  residual = _sketch(hashes, np.eye(N, dtype=np.float32)[small] * 1.5)
  np.testing.assert_allclose(out.state["momentum"], residual, rtol=1e-6)
  np.testing.assert_allclose(out.state["error"], residual, rtol=1e-6)
  # Round 2, zero updates: S_u = 0.5 * 1.5 e_small, S_e = 1.5 e_small + S_u = 2.25 e_small,
  # which is applied; then both sketches are zero again.
  zero = _value(np.zeros(N, np.float32))
  out = process.next(out.state, [zero, zero], [1.0, 1.0])
  want = np.zeros(N)
  want[small] = 2.25
  np.testing.assert_allclose(_flat(out.result["a"], out.result["b"]), want, rtol=1e-6)
  np.testing.assert_array_equal(out.state["momentum"], 0.0)
  np.testing.assert_array_equal(out.state["error"], 0.0)
  # Every client sends its 3 x 64 float32 sketch and its float32 weight.
  assert out.measurements["bits"] == 2 * 32 * (3 * 64 + 1)
  assert fetchsgd.client_bits(N, **OPTIONS) == 32 * (3 * 64 + 1)


def test_error_accumulates_until_a_coordinate_is_applied(process, hashes):
  """A coordinate too small for the top-k is kept in S_e and grows with momentum."""
  _, buckets, _ = hashes
  big, small = 2, 11
  x = np.zeros(N, np.float32)
  x[big], x[small] = 10.0, 1.0
  state = process.initialize()
  # Rounds 1 and 2 apply `big` (sent again in round 2); `small` accumulates:
  # round 1: u = 1, e = 1; round 2: u = 0.5 + 1 = 1.5, e = 1 + 1.5 = 2.5.
  for _ in range(2):
    out = process.next(state, [_value(x)], [1.0])
    state = out.state
    assert np.flatnonzero(_flat(out.result["a"], out.result["b"])).tolist() == [big]
  np.testing.assert_allclose(
      state["error"], _sketch(hashes, np.eye(N, dtype=np.float32)[small] * 2.5), rtol=1e-6)
  np.testing.assert_allclose(
      state["momentum"], _sketch(hashes, np.eye(N, dtype=np.float32)[small] * 1.5),
      rtol=1e-6)


def test_options_are_checked():
  with pytest.raises(ValueError, match="momentum must be < 1"):
    fetchsgd.FetchSGDFactory(momentum=1.0)
  with pytest.raises(ValueError, match="topk must be in"):
    AggregatorSpec("fetchsgd", {"topk": 0})
  with pytest.raises(ValueError, match="has no option colums; its options: rows, "):
    AggregatorSpec("fetchsgd", {"colums": 3, "rows": 1})  # rows is valid: not named.
  with pytest.raises(ValueError, match="unknown aggregator"):
    AggregatorSpec("fetchsdg")
  assert AggregatorSpec("fetchsgd", {"rows": 1}).describe().startswith("fetchsgd(")
  # Ignored beside columns, a fraction still named the run: a sweep over it made
  # identical runs under other labels.
  with pytest.raises(ValueError, match="fetchsgd: fraction=0.5 is used only with columns=0"):
    AggregatorSpec("fetchsgd", {"columns": 1000, "fraction": 0.5})
  assert AggregatorSpec("fetchsgd", {"columns": 1000}).options["columns"] == 1000
  # Bucket ids are int32, as in the countsketch codec: TensorFlow failed on a wrapped bound.
  with pytest.raises(ValueError, match="fetchsgd: columns=1073741824 with rows=2 puts bucket "
                     "ids past int32"):
    AggregatorSpec("fetchsgd", {"columns": 2**30, "rows": 2})


def linear_model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(3,)),
      tf.keras.layers.Dense(2, kernel_initializer="zeros")])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=(tf.TensorSpec([None, 3], tf.float32),
                               tf.TensorSpec([None, 2], tf.float32)),
      loss=tf.keras.losses.MeanSquaredError())


def test_in_fedavg_bits_and_update():
  """8 coordinates (kernel 3x2 + bias 2), all applied (topk=1): with one row of 64
  columns and no momentum the model moves by the sketch's estimate of the mean update."""
  options = dict(rows=1, columns=64, topk=1.0, momentum=0.0, seed=5)
  process = fedcompress.build_fedavg(
      linear_model_fn, tff.learning.optimizers.build_sgdm(0.1),
      tff.learning.optimizers.build_sgdm(1.0),
      aggregator=fetchsgd.FetchSGDFactory(**options))
  clients = [tf.data.Dataset.from_tensor_slices(([[1.0, 0.0, 2.0]], [[1.0, -1.0]])).batch(1)
             for _ in range(3)]
  output = process.next(process.initialize(), clients)
  assert output.metrics["aggregate/bits"] == 3 * 32 * (64 + 1)
  assert output.metrics["aggregate/bits"] == 3 * fetchsgd.client_bits(8, **options)
  # Reference: plain FedAvg on the same clients; the sketch with 64 columns for 8
  # coordinates may collide, so compare through the sketch's own estimate.
  plain = fedcompress.build_fedavg(linear_model_fn, tff.learning.optimizers.build_sgdm(0.1),
                                   tff.learning.optimizers.build_sgdm(1.0))
  reference = plain.next(plain.initialize(), clients)
  want = np.concatenate([np.reshape(w, -1) for w in
                         plain.get_model_weights(reference.state).trainable])
  got = np.concatenate([np.reshape(w, -1) for w in
                        process.get_model_weights(output.state).trainable])
  sketch = CountSketch(8, 1, 64)
  h = sketch.hashes(tf.constant(5))
  estimate = sketch.estimate(sketch.sketch(tf.constant(want, tf.float32), h), h).numpy()
  np.testing.assert_allclose(got, estimate, rtol=1e-5, atol=1e-7)
  assert np.abs(want).max() > 0.1


def test_an_aggregator_and_an_aggregate_codec_are_refused():
  with pytest.raises(ValueError, match="replaces the encoded mean"):
    fedcompress.build_fedavg(linear_model_fn, aggregate_codec=fedcompress.CodecSpec("drive"),
                             aggregator=fetchsgd.FetchSGDFactory())
