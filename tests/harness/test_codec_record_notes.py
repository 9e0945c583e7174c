"""The start-up note and the refusal hint that belong to a codec come from its record.

They were keyed on the names 'fixed_int' and 'adaptive': the same records registered
under another name (a researcher's copy of fixed_int) sent int32 at every `bits` without
the note, and a moving state was refused without the hint.
"""

import dataclasses

import pytest

from fedcompress import codecs
from fedcompress.codecs import CodecSpec, registry
from fedcompress.federated.aggregation import moving_state_hint
from fedcompress.harness.experiment import ExperimentConfig, plain_codec_note

_COPIES = {"my_int": "fixed_int", "my_adaptive": "adaptive"}


@pytest.fixture
def copies():
  for name, original in _COPIES.items():
    registry.register(dataclasses.replace(codecs.get_codec(original), name=name))
  yield
  for name in _COPIES:
    registry.unregister(name)


def test_a_copy_of_fixed_int_is_said_to_send_int32(copies):
  config = ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="e",
                            aggregate_codec=CodecSpec("my_int", {"bits": 2}),
                            client_weighting="uniform")
  assert plain_codec_note(config) == (
      "--aggregate_encoder: my_int sends int32 outside --secure_aggregation, 32 bits a "
      "coordinate: its bits=2 sets its precision, not its size on the wire")


def test_a_copy_of_adaptive_gets_its_hint(copies):
  assert moving_state_hint(CodecSpec.parse("my_adaptive(budget_bits_per_coordinate=2.0)")) == (
      " (adaptive's rate offset: use coder=fixed)")


def test_fixed_int_on_the_broadcast_says_what_it_clips():
  # With rotation=true it clips rotated coordinates, not the weights (35-43% of the
  # decoded weights were outside the clip), and only in the tensors it encodes.
  for rotation, clipped in ((False, "the weights of"), (True, "the rotated coordinates of")):
    config = ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="e",
                              broadcast_codec=CodecSpec("fixed_int", {"rotation": rotation}))
    assert plain_codec_note(config).endswith(
        f"; and it clips {clipped} every tensor it encodes to [-0.01, 0.01] (its clip bounds "
        "an update, not the model)")


@pytest.mark.parametrize("codec,said", [
    ("topk", "topk keeps a 0.01 fraction of each tensor's coordinates, the largest in "
     "magnitude, and zeroes the rest"),
    ("randk(fraction=0.1)|uniform(bits=4)", "randk keeps a 0.1 fraction of each tensor's "
     "coordinates, chosen at random, and zeroes the rest"),
    ("countsketch", "countsketch decodes each tensor it encodes from a count sketch's "
     "estimate")])
def test_a_sparsifier_on_the_broadcast_is_said_to_act_on_the_weights(codec, said):
  # Every client trained from a model with 99% of its weights zeroed (round 1's train
  # loss 13.99 against 2.26 uncompressed), without a word (R1 of s48).
  down = ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="e",
                          broadcast_codec=CodecSpec(codec))
  assert plain_codec_note(down) == (
      f"--broadcast_encoder: {said}: on the broadcast these are the model's weights, not an "
      f"update, so every client starts its round from that "
      f"{'estimate (a sketch' if codec == 'countsketch' else 'model (a sparsifier'} goes on "
      "the uplink)")
  up = ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="e",
                        aggregate_codec=CodecSpec(codec))
  assert plain_codec_note(up) is None
