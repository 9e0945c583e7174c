"""The Python API's entry points name a wrong argument in one line (a review, s46 R8).

Each was a notebook's likely slip, copying a flag's or ExperimentConfig's spelling into
the lower-level API, and each ended in an error naming an inner parameter, or none.
"""

import pytest

from fedcompress import build_fedavg
from fedcompress.codecs import CodecSpec, get_codec
from fedcompress.federated.aggregators import AggregatorSpec
from fedcompress.harness.experiment import ExperimentConfig


def _never_built():
  raise AssertionError("the model is built after the arguments are checked")


def test_build_fedavg_names_dp_and_aggregator_of_another_kind():
  # AttributeError: 'str' object has no attribute 'clients_per_round'.
  with pytest.raises(ValueError, match=r"^dp must be a fedcompress.federated.privacy.DPConfig "
                     r".* got 'central'$"):
    build_fedavg(_never_built, dp="central")
  # TypeError: inner must be a WeightedAggregationFactory (RejectNonFiniteFactory's).
  with pytest.raises(ValueError, match=r"^aggregator must be a tff.aggregators."
                     r"WeightedAggregationFactory \(an AggregatorSpec's .factory\(\)\), got "
                     "AggregatorSpec$"):
    build_fedavg(_never_built, aggregator=AggregatorSpec("fetchsgd"))


def test_codec_spec_options_as_text_and_bits_of_a_negative_size():
  # 'dictionary update sequence element #0 has length 1; 2 is required'.
  with pytest.raises(ValueError, match=r"^options must be a mapping such as \{'bits': 4\}, "
                     r"got 'bits=4': options as text go in the name"):
    CodecSpec("uniform", "bits=4")
  assert CodecSpec("uniform", None).options == {}  # None still means no options.
  with pytest.raises(ValueError, match=r"^num_elements must be an integer >= 0, got -5$"):
    get_codec("uniform").bits(-5)  # It returned 32.
  assert get_codec("uniform").bits(0) >= 0


@pytest.mark.parametrize("changes, message", [
    # TypeError: '>' not supported between instances of 'str' and 'int'.
    (dict(client_learning_rate="0.1"), "--client_learning_rate must be a finite number > 0, "
     "got '0.1'"),
    (dict(server_learning_rate=True), "--server_learning_rate must be a finite number > 0"),
    # AttributeError: 'list' object has no attribute 'items'.
    (dict(client_optimizer="sgdm", client_optimizer_options=[("momentum", 0.5)]),
     r"client_optimizer_options must be a mapping such as \{'momentum': 0.9\}"),
])
def test_experiment_config_names_numbers_and_options_of_another_kind(changes, message):
  config = ExperimentConfig(root_output_dir="/unused", experiment_name="x", **changes)
  with pytest.raises(ValueError, match=message):
    config.validate()


def test_the_optimizer_builder_names_a_learning_rate_of_another_kind():
  # build_process reaches it without validate(): a bare TypeError there too.
  from fedcompress.harness.experiment import build_optimizer

  with pytest.raises(ValueError, match=r"^--client_learning_rate must be a finite number > "
                     r"0, got '0.1'$"):
    build_optimizer("sgd", "0.1", flag_prefix="client_")
  with pytest.raises(ValueError, match=r"^learning rate must be a finite number > 0"):
    build_optimizer("adam", float("nan"))
