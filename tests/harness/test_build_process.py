"""`build_process` hands the config's optimizer options to the process it builds."""

import pytest
import tensorflow as tf
import tensorflow_federated as tff

import fedcompress
from fedcompress.harness.experiment import FederatedTask, build_process

_SPEC = (tf.TensorSpec([None, 3], tf.float32), tf.TensorSpec([None, 1], tf.int32))


def _model_fn() -> tff.learning.models.VariableModel:
  keras_model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=_SPEC,
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def test_optimizer_options_reach_the_built_process(tmp_path):
  # The FedOpt flagfile tests checked the options in config.json only, which is written
  # from the flags: a process built with the server optimizer's defaults passed them.
  task = FederatedTask("tiny", ["c0", "c1"], None, None, _model_fn, None, _SPEC)
  config = fedcompress.ExperimentConfig(
      root_output_dir=str(tmp_path), experiment_name="x", client_optimizer="sgdm",
      client_learning_rate=0.05, client_optimizer_options={"momentum": 0.7},
      server_optimizer="adam", server_learning_rate=0.5,
      server_optimizer_options={"epsilon": 0.0123})
  process = build_process(task, config)
  hparams = process.get_hparams(process.initialize())
  assert dict(hparams["client_work"]) == pytest.approx({"learning_rate": 0.05, "momentum": 0.7})
  assert hparams["finalizer"]["learning_rate"] == pytest.approx(0.5)
  assert hparams["finalizer"]["epsilon"] == pytest.approx(0.0123)
