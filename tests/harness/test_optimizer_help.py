"""The optimizer flags' help says the defaults the optimizers are built with."""

import pytest
import tensorflow as tf
from absl import flags

from fedcompress.harness import flags as fc_flags
from fedcompress.harness.experiment import build_optimizer


@pytest.mark.parametrize("optimizer, momentum", [("sgd", 0.0), ("sgdm", 0.9)])
def test_the_momentum_help_says_what_an_unset_momentum_builds(optimizer, momentum):
  # The help said "default: TFF's" for both, whose build_sgdm has no momentum, but an
  # sgdm run without --server_momentum ran FedAvgM's 0.9.
  fv = flags.FlagValues()
  fc_flags.define_optimizer_flags(fv)
  assert "default: none for sgd, 0.9 for sgdm." in fv["server_momentum"].help
  built = build_optimizer(optimizer, 1.0)
  hparams = built.get_hparams(built.initialize(tf.TensorSpec([2], tf.float32)))
  assert float(hparams.get("momentum", 0.0)) == pytest.approx(momentum)


def test_adagrad_keras_defaults_are_the_ones_the_help_says():
  fv = flags.FlagValues()
  fc_flags.define_optimizer_flags(fv)
  assert "0.0 for adagrad_keras." in fv["server_initial_accumulator"].help
  assert "1e-7 for adagrad_keras." in fv["server_epsilon"].help
  built = build_optimizer("adagrad_keras", 1.0)
  state = built.initialize(tf.TensorSpec([2], tf.float32))
  assert float(built.get_hparams(state)["epsilon"]) == pytest.approx(1e-7)
  preconditioner = [v for k, v in state.items() if k not in ("learning_rate", "epsilon")]
  assert [float(x) for x in tf.nest.flatten(preconditioner)[0].numpy()] == [0.0, 0.0]
