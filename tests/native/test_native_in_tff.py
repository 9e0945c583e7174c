"""The native kernels inside TFF: the owned worker runs them, and FedAvg rounds with them
end in the very weights and bits that the graph ops give.

The worker links TensorFlow statically; `LocalWorker` preloads the kernels' worker build
(`fedcompress.native.build`). A worker started without it cannot run them.
"""

from __future__ import annotations

import collections
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress import native
from fedcompress.federated import runtime

pytestmark = pytest.mark.slow  # FedAvg processes built twice

NUM_CLIENTS = 3


def model_fn():
  # Kernels of 64 and 24 elements, over the threshold of 10; biases through identity.
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(8,)),
      tf.keras.layers.Dense(8, activation="relu",
                            kernel_initializer=tf.keras.initializers.GlorotUniform(seed=0)),
      tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1)),
  ])
  return tff.learning.models.from_keras_model(
      keras_model,
      input_spec=collections.OrderedDict(x=tf.TensorSpec([None, 8], tf.float32),
                                         y=tf.TensorSpec([None, 1], tf.int32)),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def client_data():
  rng = np.random.default_rng(0)
  return [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.standard_normal((6, 8)).astype(np.float32),
      y=rng.integers(0, 3, (6, 1)).astype(np.int32))).batch(3) for _ in range(NUM_CLIENTS)]


# Three: with huffman.py's decoder unsliced (Grappler then rewrote the server's sums
# otherwise), this model's weights first differed in round 3.
def _rounds(broadcast, aggregate, rounds=3):
  process = fedcompress.build_fedavg(model_fn, broadcast_codec=broadcast,
                                     aggregate_codec=aggregate, seed=4)
  state, data, metrics = process.initialize(), client_data(), []
  for _ in range(rounds):
    output = process.next(state, data)
    state = output.state
    metrics.append({k: v for k, v in output.metrics.items() if "bits" in k})
  return process.get_model_weights(state).trainable, metrics


# Each codec with a kernel, one way or the other: two processes, not four (each built
# twice). The server's sum of Huffman-decoded updates is where Grappler's rewrites met
# the kernels' shapes (huffman.py's decoder).
@pytest.mark.parametrize("broadcast,aggregate", [
    (("uniform", {"bits": 8}), ("uniform_huffman", {})),
    (("nonuniform", {"bits": 3}), ("adaptive", {"budget_bits_per_coordinate": 3.0}))])
def test_rounds_end_in_the_same_weights_and_bits(broadcast, aggregate, native_ops):
  del native_ops  # Built: the rounds below use the kernels.
  codecs = [fedcompress.CodecSpec(name, options, threshold=10)
            for name, options in (broadcast, aggregate)]
  weights, metrics = _rounds(*codecs)
  with native.disabled():
    graph_weights, graph_metrics = _rounds(*codecs)
  assert metrics == graph_metrics
  # Entropy-coded: the Huffman kernels ran.
  assert any(m["aggregate/coded_bits"] != m["aggregate/bits"] for m in metrics)
  for w, g in zip(weights, graph_weights, strict=True):
    np.testing.assert_array_equal(np.asarray(w).view(np.int32), np.asarray(g).view(np.int32))


def _decode_comp():
  ops = native.ops()

  @tff.tensorflow.computation(tff.TensorType(np.int32, [2]))
  def decode(words):
    return ops.fedcompress_huffman_decode_blocks(
        words, tf.constant([0], tf.int64), tf.constant([5, 9]), tf.constant([1, 1], tf.int64),
        tf.constant([0, 1 << 14], tf.int64), tf.constant(4, tf.int64), block_size=1024,
        max_code_length=15)
  return decode


def test_the_owned_worker_runs_the_kernels(native_ops):
  # Bits 0101...: symbols 5 (code 0), 9 (code 1), 5, 9.
  np.testing.assert_array_equal(_decode_comp()(np.array([0x50000000, 0], np.int32)),
                                [5, 9, 5, 9])


def test_a_worker_without_the_preload_has_no_such_op(native_ops):
  worker = runtime.LocalWorker()
  env_preload = native.worker_preload
  try:
    native.worker_preload = lambda: None
    worker.start()
  finally:
    native.worker_preload = env_preload
  try:
    runtime.set_remote_context([f"localhost:{worker.port}"])
    with pytest.raises(runtime.COMPUTATION_ERRORS) as raised:
      _decode_comp()(np.array([0x50000000, 0], np.int32))
    assert runtime.describe_computation_error(raised.value) == (
        "the TFF worker has no kernel FedcompressHuffmanDecodeBlocks: it was started "
        "without fedcompress's native kernels (remote workers: start them with "
        "experiments/worker.py where the kernels build, or run this driver with "
        "FEDCOMPRESS_NATIVE=0)")
  finally:
    runtime.set_local_context()
    worker.stop()


def test_the_preload_refuses_another_binary(native_ops):
  # Its trampolines hold offsets into this worker_binary only; in another program it
  # says so and registers nothing, and the program runs on.
  done = subprocess.run(["/bin/true"], env={**os.environ, "LD_PRELOAD": native.worker_preload()},
                        capture_output=True, text=True, timeout=60)
  assert done.returncode == 0
  assert "is not the worker_binary its native ops were built for" in done.stderr
