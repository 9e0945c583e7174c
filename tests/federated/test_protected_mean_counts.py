"""The secure sum's and the DP mean's clients per round must be the same number.

A library call with clients_per_round=4 and a DPConfig of 2 built and ran: the field
held 4 clients' sums while the noised mean divided by 2 (the update came out doubled,
with noise 0 and a clip that bounds nothing) and the accountant assumed 2 sampled.
"""

import pytest
import tensorflow_federated as tff

from fedcompress.federated.privacy import DPConfig, check_protected_mean

_UNIFORM = tff.learning.ClientWeighting.UNIFORM
_FIXED = "fixed_int(bits=16,clip=1.0)"


@pytest.mark.parametrize("secure", [True, False])
def test_other_counts_are_refused(secure):
  with pytest.raises(ValueError, match="clients_per_round=4 but the DPConfig's is 2"):
    check_protected_mean(_FIXED, secure_aggregation=secure, clients_per_round=4,
                         dp=DPConfig("central", 0.0, 1e6, 2, 4), client_weighting=_UNIFORM)


def test_the_same_count_is_taken():
  codec = check_protected_mean(_FIXED, secure_aggregation=True, clients_per_round=4,
                               dp=DPConfig("central", 0.0, 1e6, 4, 4),
                               client_weighting=_UNIFORM)
  assert codec.name == "fixed_int"
