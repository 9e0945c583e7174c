"""tools/uncounted_bits: the README's list of what crosses the wire uncounted, checked.

A tiny model's FedAvg: the calls the tool takes for payload carry exactly the bits the
process reports, and what it lists beside them is the README's list, no more.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress import metrics as m
from fedcompress.federated.fedavg import build_fedavg
from fedcompress.federated.privacy import DPConfig
from tools import uncounted_bits

_SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32),
                                y=tf.TensorSpec([None, 1], tf.int32))


def _model_fn():
  keras_model = tf.keras.Sequential([tf.keras.layers.Input(shape=(4,)),
                                     tf.keras.layers.Dense(3)])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=_SPEC,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


@pytest.mark.slow  # builds a FedAvg process
def test_payload_is_what_is_counted_and_the_rest_is_the_readmes_list():
  process = build_fedavg(_model_fn)
  rng = np.random.default_rng(0)
  clients = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.normal(size=(3, 4)).astype(np.float32),
      y=rng.integers(0, 3, (3, 1)).astype(np.int32))).batch(2) for _ in range(2)]
  metrics = process.next(process.initialize(), clients).metrics
  found = uncounted_bits.crossings(process.next)
  payload = [c for c in found if c.payload]
  # Down: the 4x3 kernel and the bias, float32; up: the same update plus the mean's weight.
  assert sum(c.bits for c in payload if c.direction == "down") == 15 * 32
  assert sum(c.bits for c in payload if c.direction == "up") == 15 * 32 + 32
  assert metrics[m.BROADCAST_BITS] == 2 * 15 * 32
  assert metrics[m.AGGREGATE_BITS] == 2 * (15 * 32 + 32)
  listed = sorted((c.direction, c.bits, c.type_text) for c in uncounted_bits.uncounted(
      process.next))
  assert listed == sorted([
      ("down", 32, "<learning_rate=float32>"),  # TFF's client optimizer hyperparameters
      ("down", 128, "<<<>,<>>,int64[2]>"),  # the numerator's round key
      ("down", 128, "<<>,int64[2]>"),  # the weight's round key
      # TFF's training metrics (no Keras metric here: 192 bits, the CNN's accuracy adds 64)
      ("up", 192, "<loss=<float32,float32>,num_examples=<int64>,num_batches=<int64>>"),
      ("up", 64, "<bits=int64>"),  # the count of each counting process: broadcast,
      ("up", 64, "<bits=int64>"),  # numerator
      ("up", 64, "<bits=int64>"),  # and weight
      ("up", 64, "<rejected=int32,accepted=int32>"),  # RejectNonFiniteFactory's count
  ])


def test_no_config_is_refused(capsys):
  # It printed nothing and exited 0.
  with pytest.raises(SystemExit) as exit_info:
    uncounted_bits.main(["--configs=,"])
  assert exit_info.value.code == 2
  assert "--configs lists no configuration" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--clients=5"],
                                  ["--configs=identity,dp_adaptive", "--clients=3"]])
def test_too_few_clients_for_dp_adaptive_is_refused_before_any_config(capsys, argv):
  # The default configs include dp_adaptive: a traceback after the others printed before.
  with pytest.raises(SystemExit) as exit_info:
    uncounted_bits.main(argv)
  assert exit_info.value.code == 2
  out, err = capsys.readouterr()
  assert out == ""
  assert "--configs=dp_adaptive takes --clients above 5" in err.strip().splitlines()[-1]


def test_the_clients_dp_adaptive_takes_are_the_ones_dpconfig_accepts():
  with pytest.raises(ValueError, match="central_adaptive"):
    DPConfig("central_adaptive", uncounted_bits.NOISE_MULTIPLIER, 0.5, 5, 10)
  DPConfig("central_adaptive", uncounted_bits.NOISE_MULTIPLIER, 0.5, 6, 12)


@pytest.mark.slow  # builds a FedAvg process per codec
@pytest.mark.parametrize("codec", [
    {"name": "uniform", "options": {"bits": 8}},
    {"name": "topk", "options": {"fraction": 0.5}},
])
def test_encoded_payload_is_what_is_counted(codec):
  # The identity case above alone could not show an encoded tensor, or its side
  # information, sent but not counted: here both directions are encoded (threshold 0).
  from fedcompress.codecs import CodecSpec

  spec = CodecSpec(codec["name"], codec["options"], threshold=0)
  process = build_fedavg(_model_fn, broadcast_codec=spec, aggregate_codec=spec)
  rng = np.random.default_rng(0)
  clients = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      x=rng.normal(size=(3, 4)).astype(np.float32),
      y=rng.integers(0, 3, (3, 1)).astype(np.int32))).batch(2) for _ in range(2)]
  metrics = process.next(process.initialize(), clients).metrics
  payload = [c for c in uncounted_bits.crossings(process.next) if c.payload]
  down = sum(c.bits for c in payload if c.direction == "down")
  up = sum(c.bits for c in payload if c.direction == "up")
  assert metrics[m.BROADCAST_BITS] == 2 * down
  assert metrics[m.AGGREGATE_BITS] == 2 * up
  assert down < 15 * 32 or codec["name"] == "topk"  # uniform: packed, not float32.


# Builds a secure FedAvg process of a tiny model: a few seconds.
def test_the_secure_sums_modulus_is_listed_at_64_bits_per_tensor():
  # The README listed it at 32 bits per tensor (and the secure configurations' totals
  # from that) after the modulus became an int64 (R1, s41): only the uncompressed list
  # was checked. Here fixed_int encodes both of the tiny model's tensors (threshold 0).
  from fedcompress.codecs import CodecSpec

  process = build_fedavg(
      _model_fn, aggregate_codec=CodecSpec("fixed_int", {"bits": 8, "clip": 0.05}, threshold=0),
      secure_aggregation=True, clients_per_round=2,
      client_weighting=tff.learning.ClientWeighting.UNIFORM)
  moduli = [c for c in uncounted_bits.uncounted(process.next)
            if c.direction == "down" and "values=int64" in c.type_text]
  assert [(c.bits, c.type_text.count("=int64")) for c in moduli] == [(128, 2)]
