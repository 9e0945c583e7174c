"""A codec that encodes none of the model's tensors is said, not run as identity silently."""

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
