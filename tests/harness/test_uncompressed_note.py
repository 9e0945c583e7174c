"""What a run says of its codecs and the model's tensors: a codec that encodes none of
them (not run as identity silently), and one that cannot do what it is asked on some."""

import dataclasses
import types

import numpy as np
import tensorflow_federated as tff

from fedcompress import codecs
from fedcompress.harness import experiment


def _process(*sizes):
  """A process whose state's model weights are float32 tensors of these sizes."""
  weights = tff.StructType([
      ("trainable", tff.StructType([tff.TensorType(np.float32, [n]) for n in sizes])),
      ("non_trainable", tff.StructType([]))])
  state = tff.FederatedType(tff.StructType([("global_model_weights", weights)]), tff.SERVER)
  signature = types.SimpleNamespace(result=state)
  return types.SimpleNamespace(initialize=types.SimpleNamespace(type_signature=signature))


def _config(codec, **changes):
  return experiment.ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="r",
                                     aggregate_codec=codecs.make_codec(codec, **changes))


def test_a_codec_whose_threshold_no_tensor_passes_is_said():
  note = experiment.uncompressed_note(_process(4000, 200), _config("uniform"))
  assert note.startswith("no tensor of the model is over its codec's threshold: the "
                         "aggregate codec uniform(bits=8)>10000 (the largest tensor has 4000 "
                         "elements) sends")
  both = dataclasses.replace(_config("uniform"), broadcast_codec=codecs.make_codec("eden"))
  assert ("the broadcast codec eden(bits=2)>10000 (the largest tensor has 4000 elements) and "
          "the aggregate codec uniform(bits=8)>10000 (the largest tensor has 4000 elements) "
          "send every tensor") in experiment.uncompressed_note(_process(4000), both)
  assert experiment.uncompressed_note(_process(4000, 200),
                                      _config("uniform", threshold=1000)) is None
  assert experiment.uncompressed_note(_process(10_001), _config("uniform")) is None
  assert experiment.uncompressed_note(_process(4000), _config("identity")) is None


def test_under_secure_aggregation_only_the_broadcast_keeps_its_threshold():
  # The secure sum encodes every tensor; the note was skipped for the broadcast too.
  secure = dataclasses.replace(_config("fixed_int"), secure_aggregation=True,
                               broadcast_codec=codecs.make_codec("uniform"))
  note = experiment.uncompressed_note(_process(4000), secure)
  assert "the broadcast codec uniform(bits=8)>10000" in note and "aggregate" not in note
  secure = dataclasses.replace(secure, broadcast_codec=codecs.make_codec("identity"))
  assert experiment.uncompressed_note(_process(4000), secure) is None


def test_a_budget_that_small_tensors_cannot_meet_is_said():
  # adaptive at 2.0 bits per coordinate sent 2.85 on a 101-element tensor every round.
  config = _config("adaptive(budget_bits_per_coordinate=2.0,coder=fixed)", threshold=100)
  note = experiment.tensors_codec_note(_process(101, 20_000, 50), config)
  assert note.startswith("--aggregate_encoder: adaptive cannot meet "
                         "budget_bits_per_coordinate=2 on 1 of its 2 tensors: width 1 sends "
                         "2.851 bits per coordinate on the one of 101 elements"), note
  assert experiment.tensors_codec_note(_process(20_000, 50), config) is None
  # Both ways; and not in a chain, whose adaptive link encodes what randk sends.
  both = dataclasses.replace(config, broadcast_codec=config.aggregate_codec)
  assert experiment.tensors_codec_note(_process(101), both).count("cannot meet") == 2
  chain = _config("randk(fraction=0.5)|adaptive(budget_bits_per_coordinate=2.0)", threshold=100)
  assert experiment.tensors_codec_note(_process(101), chain) is None


def test_error_feedback_over_the_identity_uplink_is_said():
  # It fed back nothing and wrote each client's zeros to disk every round, unsaid.
  config = dataclasses.replace(_config("identity"), error_feedback="ef")
  assert experiment.error_feedback_note(config) == (
      "--error_feedback=ef with the identity uplink codec feeds back nothing (every residual "
      "is 0), yet writes each client's state to client_states/ every round")
  assert experiment.error_feedback_note(
      dataclasses.replace(_config("topk"), error_feedback="ef")) is None
  assert experiment.error_feedback_note(_config("identity")) is None
  # ef21's states are its clients' estimates: they change its results even uncompressed.
  assert experiment.error_feedback_note(
      dataclasses.replace(_config("identity"), error_feedback="ef21")) is None
