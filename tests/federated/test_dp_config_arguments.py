"""Bad DP and secure-aggregation arguments from Python name themselves (s46 R8)."""

import numpy as np
import pytest
import tensorflow_federated as tff

from fedcompress.federated import privacy
from fedcompress.federated.privacy import DPConfig


@pytest.mark.parametrize("field,value,said", [
    ("clip", "0.1", "--dp_clip must be a number, got '0.1'"),
    ("noise_multiplier", None, "--dp_noise_multiplier must be a number, got None"),
    ("delta", True, "--dp_delta must be a number, got True"),
    ("clients_per_round", 2.0, "clients per round must be an integer, got 2.0"),
    ("field_bits", "16", "--dp_field_bits must be an integer, got '16'"),
])
def test_a_value_of_the_wrong_type_is_named(field, value, said):
  # `dp_clip="0.1"` ended in "TypeError: must be real number, not str".
  arguments = dict(mechanism="central", noise_multiplier=0.5, clip=1.0,
                   clients_per_round=2, population=10)
  arguments[field] = value
  with pytest.raises(ValueError) as info:
    DPConfig(**arguments)
  assert str(info.value) == said


def test_numpy_numbers_are_numbers():
  config = DPConfig("central", np.float32(0.5), np.float64(1.0), np.int64(2), 10)
  assert config.clip == 1.0


def test_secure_aggregation_with_no_clients_says_what_it_got():
  # clients_per_round=0 was told "pass clients_per_round", which it had.
  with pytest.raises(ValueError, match=r"pass clients_per_round >= 1 \(got 0\)"):
    privacy.check_protected_mean("identity", secure_aggregation=True, clients_per_round=0,
                                 dp=None,
                                 client_weighting=tff.learning.ClientWeighting.UNIFORM)


@pytest.mark.parametrize("noise,said", [
    # The accountant failed after round 1 had trained, and the run kept no row of it.
    (1e6, "--dp_noise_multiplier=1e+06 is past what dp_accounting's RDP accountant "
          "computes (it fails: Renyi divergence cannot be negative"),
    # Its standard deviation became float32's Inf in TFF's query.
    (1e39, "--dp_clip x --dp_noise_multiplier = 5e+38, the noise's standard deviation, is "
           "past float32's largest number"),
])
def test_noise_past_what_can_be_accounted_or_drawn_is_refused(noise, said):
  with pytest.raises(ValueError) as info:
    DPConfig("central", noise, 0.5, 2, 100)
  assert str(info.value).startswith(said)


def test_large_noise_the_accountant_computes_is_accepted():
  assert DPConfig("central", 1e3, 0.5, 2, 100).noise_multiplier == 1e3
