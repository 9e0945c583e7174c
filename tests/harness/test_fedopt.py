"""The FedOpt protocol's pieces: optimizer options, the paper's models, configs/fedopt."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from fedcompress.harness import experiment
from fedcompress.harness import flags as fc_flags
from fedcompress.tasks.models import char_rnn, cnn

FEDOPT = "configs/fedopt"


def _parsed(define, *args):
  fv = flags.FlagValues()
  define(fv)
  fv(["binary", *args])
  return fv


def _hparams(optimizer) -> dict:
  state = optimizer.initialize(tf.TensorSpec([3], tf.float32))
  return {k: float(v) for k, v in optimizer.get_hparams(state).items()}


@pytest.mark.parametrize("name,options,expected", [
    ("adam", {"epsilon": 1e-4}, {"learning_rate": 0.5, "epsilon": 1e-4}),
    ("adagrad", {"epsilon": 0.1, "initial_accumulator": 0.0},
     {"learning_rate": 0.5, "epsilon": 0.1}),
    ("adagrad_keras", {"epsilon": 0.1}, {"learning_rate": 0.5, "epsilon": 0.1}),
    ("yogi", {"epsilon": 1e-3}, {"learning_rate": 0.5, "epsilon": 1e-3}),
    ("sgd", {"momentum": 0.9}, {"learning_rate": 0.5, "momentum": 0.9}),
])
def test_optimizer_options_reach_tff(name, options, expected):
  hparams = _hparams(experiment.build_optimizer(name, 0.5, options))
  for key, value in expected.items():
    assert math.isclose(hparams[key], value, rel_tol=1e-6), (key, hparams)


def test_unset_options_keep_tff_defaults():
  assert _hparams(experiment.build_optimizer("adam", 0.5, {"epsilon": None}))["epsilon"] == (
      pytest.approx(1e-7))
  assert "momentum" not in _hparams(experiment.build_optimizer("sgd", 0.5))  # Plain SGD.
  assert _hparams(experiment.build_optimizer("sgdm", 0.5))["momentum"] == pytest.approx(0.9)


def _two_steps(name, options):
  opt = experiment.build_optimizer(name, 1.0, options)
  state = opt.initialize([tf.TensorSpec([2], tf.float32)])
  state, weights = opt.next(state, [tf.constant([0.0, 0.0])], [tf.constant([3.0, -0.5])])
  first = weights[0].numpy()
  _, weights = opt.next(state, weights, [tf.constant([4.0, 0.0])])
  return first, weights[0].numpy()


def test_adagrad_epsilon_inside_or_outside_the_root():
  g = np.array([3.0, -0.5])
  # FedAdagrad as the paper (Algorithm 2) and Keras compute it: g / (sqrt(v) + tau).
  first, second = _two_steps("adagrad_keras", {"epsilon": 0.1, "initial_accumulator": 0.0})
  np.testing.assert_allclose(first, -g / (np.abs(g) + 0.1), rtol=1e-6)
  np.testing.assert_allclose(second, first - [4.0 / (5.0 + 0.1), 0.0], rtol=1e-6)
  # TFF's Adagrad: g / sqrt(v + eps).
  first, _ = _two_steps("adagrad", {"epsilon": 0.1, "initial_accumulator": 0.0})
  np.testing.assert_allclose(first, -g / np.sqrt(g**2 + 0.1), rtol=1e-6)
  # A start above 0 (Keras' default 0.1) damps the first step.
  first, _ = _two_steps("adagrad_keras", {"epsilon": 0.0, "initial_accumulator": 1.0})
  np.testing.assert_allclose(first, -g / np.sqrt(g**2 + 1.0), rtol=1e-6)
  # Epsilon 0 and a coordinate never moved: it stays (no 0/0).
  _, second = _two_steps("adagrad_keras", {"epsilon": 0.0, "initial_accumulator": 0.0})
  assert np.isfinite(second).all()


@pytest.mark.parametrize("name,options,message", [
    ("adam", {"momentum": 0.9}, "--server_momentum applies to --server_optimizer=sgd|sgdm"),
    ("sgd", {"epsilon": 1e-3}, "--server_epsilon applies to"),
    ("adam", {"initial_accumulator": 0.0}, "adagrad|adagrad_keras|yogi, not adam"),
    ("sgd", {"momentum": 1.0}, "and < 1"),
    ("adam", {"epsilon": 0.0}, "--server_epsilon must be > 0 with --server_optimizer=adam"),
    ("adagrad", {"epsilon": 0.0, "initial_accumulator": 0.0},
     "must be > 0 with --server_optimizer=adagrad and --server_initial_accumulator=0"),
    ("yogi", {"epsilon": 0.0, "initial_accumulator": 0.0}, "optimizer=yogi and"),
    # No optimizer takes it: said as "applies to --server_optimizer=, not sgd".
    ("sgd", {"nesterov": True}, "unknown optimizer option 'nesterov'; valid: momentum, "
     "epsilon, initial_accumulator"),
])
def test_option_the_optimizer_lacks_is_refused(name, options, message):
  with pytest.raises(ValueError, match=message.replace("|", r"\|")):
    experiment.build_optimizer(name, 0.5, options, flag_prefix="server_")


def test_epsilon_zero_where_it_stays_finite():
  # Yogi and Adagrad start their accumulator above 0 by default; Keras' Adagrad guards.
  # A coordinate whose gradient has always been 0 is where 0 / 0 would appear.
  for name in ("yogi", "adagrad", "adagrad_keras"):
    opt = experiment.build_optimizer(name, 0.5, {"epsilon": 0.0}, flag_prefix="server_")
    state = opt.initialize([tf.TensorSpec([2], tf.float32)])
    weights = [tf.constant([0.0, 0.0])]
    for _ in range(2):
      state, weights = opt.next(state, weights, [tf.constant([1.0, 0.0])])
    values = weights[0].numpy()
    assert np.all(np.isfinite(values)) and values[0] < 0 and values[1] == 0, (name, values)


def test_optimizer_flags_have_ranges():
  rule = fc_flags.NUMBER_FLAGS["server_momentum"]
  assert rule.accepts(0.0) and rule.accepts(0.99) and rule.accepts(None)
  assert not rule.accepts(1.0) and not rule.accepts(-0.1) and not rule.accepts(math.nan)
  with pytest.raises(flags.IllegalFlagValueError, match="< 1"):
    _parsed(fc_flags.define_image_experiment_flags, "--server_momentum=1.0")
  with pytest.raises(flags.IllegalFlagValueError, match=">= 0"):
    _parsed(fc_flags.define_image_experiment_flags, "--client_epsilon=-1e-3")


def test_options_are_recorded_so_resume_compares_them():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--server_optimizer=adam",
               "--server_epsilon=1e-4")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.server_optimizer_options == {"epsilon": 1e-4}
  record = config.record()
  assert record["server_epsilon"] == 1e-4 and record["server_momentum"] is None
  other = experiment.ExperimentConfig("runs", "x", server_optimizer="adam",
                                      server_optimizer_options={"epsilon": 1e-3})
  assert other.record()["server_epsilon"] == 1e-3  # Built in Python, no flags.
  from fedcompress.harness import rundir
  assert rundir.differences(record, {**record, "server_epsilon": 1e-3}) == [
      "--server_epsilon=0.001 (recorded 0.0001)"]


def test_fedopt_cnn_is_the_papers():
  # google-research/federated create_conv_dropout_model(only_digits=False).
  model = cnn.create_fedopt_cnn(62, seed=0)
  assert model.count_params() == 1_206_590
  assert [w.shape.as_list() for w in model.trainable_weights] == [
      [3, 3, 1, 32], [32], [3, 3, 32, 64], [64], [9216, 128], [128], [128, 62], [62]]
  x = tf.random.stateless_uniform([4, 28, 28, 1], seed=[1, 2])
  # Dropout only in training; its masks repeat for the same input and seed ...
  np.testing.assert_array_equal(model(x, training=False), model(x))
  np.testing.assert_array_equal(model(x, training=True), model(x, training=True))
  assert not np.allclose(model(x, training=True), model(x))


def test_input_seeded_dropout():
  layer = cnn.InputSeededDropout(0.25, seed=0)
  x = tf.ones([100, 1000])
  y = layer(x, training=True).numpy()
  assert 0.24 < (y == 0).mean() < 0.26  # The rate, ...
  np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)  # ... unbiased.
  np.testing.assert_array_equal(layer(x, training=True), y)  # No hidden RNG state.
  np.testing.assert_array_equal(layer(x), x)  # Identity when not training.
  # Another input (batch, round) or seed draws another mask.
  assert ((layer(2 * x, training=True).numpy() == 0) != (y == 0)).any()
  other = cnn.InputSeededDropout(0.25, seed=1)
  assert ((other(x, training=True).numpy() == 0) != (y == 0)).any()


def test_fedopt_lstm_is_the_papers():
  # google-research/federated create_recurrent_model: Embedding 8, 2 x LSTM 256, Dense.
  model = char_rnn.create_fedopt_lstm(seed=0)
  assert [w.shape.as_list() for w in model.trainable_weights] == [
      [86, 8], [8, 1024], [256, 1024], [1024], [256, 1024], [256, 1024], [1024],
      [256, 86], [86]]
  assert model.count_params() == 819_462
  copy = char_rnn.rebuild(model.get_config(), batch_size=1, stateful=True)
  assert copy.count_params() == model.count_params() and copy.layers[1].stateful


@pytest.mark.parametrize("name,optimizer,client_lr,server_lr,options", [
    ("emnist62_fedadam", "adam", 10**-1.5, 10**-2.5, {"epsilon": 1e-4}),
    ("emnist62_fedavgm", "sgd", 10**-1.5, 10**-0.5, {"momentum": 0.9}),
    ("emnist62_fedavg", "sgd", 0.1, 1.0, {}),
])
def test_emnist62_flagfiles_are_the_published_hyperparameters(
    repo_root, monkeypatch, name, optimizer, client_lr, server_lr, options):
  monkeypatch.chdir(repo_root)  # Flagfiles include each other relative to the root.
  fv = _parsed(fc_flags.define_image_experiment_flags, f"--flagfile={FEDOPT}/{name}.flags",
               "--flagfile=configs/codecs/up_eden1.flags")
  config = fc_flags.image_config_from_flags(fv)
  assert (fv.dataset, fv.only_digits, fv.model) == ("emnist", False, "fedopt_cnn")
  assert (config.rounds, config.clients_per_round, fv.client_batch_size,
          fv.client_epochs) == (1500, 10, 20, 1)
  assert config.experiment_name == name and config.client_optimizer == "sgd"
  assert config.client_optimizer_options == {}
  assert config.server_optimizer == optimizer
  assert config.client_learning_rate == pytest.approx(client_lr, rel=1e-15)
  assert config.server_learning_rate == pytest.approx(server_lr, rel=1e-15)
  assert config.server_optimizer_options == options
  assert config.aggregate_codec.describe() == "eden(bits=1)>10000"  # The codec on top.


@pytest.mark.parametrize("name,optimizer,server_lr,epsilon", [
    ("shakespeare_fedadagrad", "adagrad_keras", 10**-0.5, 0.1),
    ("shakespeare_fedyogi", "yogi", 10**-2, 1e-3),
])
def test_shakespeare_flagfiles_are_the_published_hyperparameters(
    repo_root, monkeypatch, name, optimizer, server_lr, epsilon):
  monkeypatch.chdir(repo_root)
  fv = _parsed(fc_flags.define_shakespeare_experiment_flags,
               f"--flagfile={FEDOPT}/{name}.flags", "--flagfile=configs/codecs/up_eden1.flags")
  config = fc_flags.shakespeare_config_from_flags(fv)
  assert (fv.model, fv.pretrained_model, fv.seq_length, fv.client_batch_size) == (
      "fedopt_lstm", None, 80, 4)
  assert (config.rounds, config.clients_per_round, config.fixed_clients) == (1200, 10, None)
  assert (config.client_optimizer, config.client_learning_rate) == ("sgd", 1.0)
  assert config.server_optimizer == optimizer
  assert config.server_learning_rate == pytest.approx(server_lr, rel=1e-15)
  assert config.server_optimizer_options == {"epsilon": epsilon, "initial_accumulator": 0.0}
  assert config.aggregate_codec.describe() == "eden(bits=1)>10000"


def test_shakespeare_model_and_pretrained_exclude_each_other():
  fv = _parsed(fc_flags.define_shakespeare_experiment_flags, "--model=fedopt_lstm",
               "--pretrained_model=x.keras")
  with pytest.raises(ValueError, match="leave --pretrained_model unset"):
    fc_flags.shakespeare_config_from_flags(fv)
  fv = _parsed(fc_flags.define_shakespeare_experiment_flags)
  with pytest.raises(ValueError, match="--pretrained_model is required"):
    fc_flags.shakespeare_config_from_flags(fv)
