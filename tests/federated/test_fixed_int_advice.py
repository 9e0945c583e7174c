"""fixed_int under the example-weighted mean: the advice given is one that is accepted."""

import pytest
import tensorflow_federated as tff

from fedcompress.federated.aggregation import check_weighted_codec
from fedcompress.federated.privacy import check_protected_mean

UNIFORM = tff.learning.ClientWeighting.UNIFORM
BY_EXAMPLES = tff.learning.ClientWeighting.NUM_EXAMPLES


def _secure(client_weighting):
  return check_protected_mean("fixed_int", secure_aggregation=True, clients_per_round=2,
                              dp=None, client_weighting=client_weighting)


def test_the_advice_names_what_secure_aggregation_needs_too():
  # It offered --secure_aggregation as another way out, which is refused under the same
  # weighting.
  with pytest.raises(ValueError, match=r"pass --client_weighting=uniform \(which "
                     r"--secure_aggregation needs too\)$"):
    check_weighted_codec("fixed_int", BY_EXAMPLES)
  with pytest.raises(ValueError, match="--client_weighting=uniform"):
    _secure(BY_EXAMPLES)
  check_weighted_codec("fixed_int", UNIFORM)
  _secure(UNIFORM)
