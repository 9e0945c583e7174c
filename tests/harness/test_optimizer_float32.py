"""Optimizer options are checked as the float32 values TFF's optimizers compute with.

Checked as float64 they passed: epsilon 1e39 was inf in float32 and the model never
moved (eval loss 2.3037519 every round), 1e-50 was 0 and round 1 ended in NaN blamed on
the learning rates, momentum 0.9999999999 was 1; a string raised a bare TypeError.
"""

import numpy as np
import pytest

from fedcompress.harness import experiment


@pytest.mark.parametrize("name,options,message", [
    ("adam", {"epsilon": 1e39}, r"--server_epsilon=1e\+39 is inf in float32"),
    ("yogi", {"initial_accumulator": 1e39}, "--server_initial_accumulator=1e.39 is inf"),
    ("adam", {"epsilon": 1e-50}, "--server_epsilon=1e-50 is 0 in float32"),
    ("sgdm", {"momentum": 0.9999999999}, r"is 1 in float32.*\(below 1\)"),
    ("adam", {"epsilon": "1e-3"}, "--server_epsilon must be a number, got '1e-3'"),
])
def test_values_float32_cannot_hold_are_refused(name, options, message):
  with pytest.raises(ValueError, match=message):
    experiment.check_optimizer(name, 0.5, options, flag_prefix="server_")


def test_values_float32_holds_are_taken():
  assert experiment.check_optimizer("adam", 0.5, {"epsilon": 1e-38}) == {"epsilon": 1e-38}
  assert experiment.check_optimizer("yogi", 0.5, {"initial_accumulator": np.float32(3e38)})
  assert experiment.check_optimizer("sgdm", 0.5, {"momentum": 0.99}) == {"momentum": 0.99}
