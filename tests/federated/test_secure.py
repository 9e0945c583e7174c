"""Secure aggregation of sum-compatible codecs, DP noise, and the privacy accounting."""

import collections
import math
import re
import statistics

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp
from tensorflow_federated.python.core.impl.compiler import building_blocks, tree_analysis

import fedcompress
from fedcompress.codecs import CodecSpec, make_codec
from fedcompress.federated import privacy, secure
from fedcompress.federated.robust import RejectNonFiniteFactory

VALUE_TYPE = tff.to_type(collections.OrderedDict(a=tff.TensorType(np.float32, [5]),
                                                 b=tff.TensorType(np.float32, [2, 3])))
CLIENTS = 4


def _values(n=CLIENTS, scale=1.0, seed=0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(a=rng.uniform(-scale, scale, 5).astype(np.float32),
                                  b=rng.uniform(-scale, scale, (2, 3)).astype(np.float32))
          for _ in range(n)]


@pytest.fixture(scope="module")
def secure_sum():
  factory = secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 8, "clip": 1.0}), clients_per_round=CLIENTS)
  return factory, factory.create(VALUE_TYPE)


def test_secure_sum_decodes_the_sum_within_the_quantization_bound(secure_sum):
  _, process = secure_sum
  values = _values()
  output = process.next(process.initialize(), values)
  step = 1.0 / 127  # clip / L: one client's stochastic rounding moves < one step.
  for key in ("a", "b"):
    exact = sum(v[key] for v in values)
    error = np.abs(output.result[key] - exact)
    assert error.max() < CLIENTS * step
    assert error.max() > 0  # Quantized, not passed through.


def test_a_rejected_client_is_left_out_of_the_secure_mean():
  # RejectNonFiniteFactory sends a NaN client's update as zeros with weight 0. The secure
  # mean dropped the weight and still counted that client: [0.5] and [NaN] gave 0.25.
  factory = RejectNonFiniteFactory(secure.build_secure_mean_factory(
      make_codec("fixed_int", options={"bits": 16, "clip": 1.0}), clients_per_round=3))
  process = factory.create(tff.TensorType(np.float32, [4]), tff.TensorType(np.float32))
  good, bad = np.full(4, 0.5, np.float32), np.full(4, np.nan, np.float32)
  output = process.next(process.initialize(), [good, bad, good * 0.5], [1.0, 1.0, 1.0])
  np.testing.assert_allclose(output.result, np.full(4, 0.375), atol=2 / 32767)
  assert output.measurements["rejected_clients"] == 1
  # All three clients sent their field values and count, the rejected one included:
  # 18-bit field (2 * 3 * 32767 + 1 values) for 4 coordinates, a 2-bit count each.
  assert secure.field_bits(32767, 3) == 18
  assert output.measurements["bits"] == 3 * (18 * 4 + 2)
  assert output.measurements[secure.COUNT_KEY] == 2  # Two clients in the mean.


def test_more_clients_than_the_field_holds_fail_rather_than_wrap(secure_sum):
  # TFF's simulated modular sum wraps silently; the decode checks the count.
  _, process = secure_sum
  with pytest.raises(Exception, match="more clients than the field of the secure sum holds"):
    process.next(process.initialize(), _values(CLIENTS + 1))


def test_a_sum_past_int32_is_exact_at_two_hundred_clients():
  # TFF's simulation sums the field's values before the modulus, a negative x as
  # x + 2nL + 1: 200 clients of 16-bit values at -0.9 summed past 2^31, and the int32 sum
  # wrapped to -55.99 where -180 was sent (from 182 clients on, with no error).
  clients = 200
  factory = secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 16, "clip": 1.0}), clients_per_round=clients)
  assert clients * (factory.modulus - 1) > 2**31
  process = factory.create(tff.TensorType(np.float32, [3]))
  values = [np.array([0.9, -0.9, 0.0], np.float32)] * clients
  output = process.next(process.initialize(), values)
  np.testing.assert_allclose(output.result, [180.0, -180.0, 0.0], atol=clients / 32767)


def test_clients_per_round_may_be_a_numpy_integer():
  # DPConfig took np.int64(10), the secure sum refused it as "must be an integer >= 1,
  # got 10".
  codec = make_codec("fixed_int", options={"bits": 8, "clip": 1.0})
  numpy_sized = secure.SecureEncodedSumFactory(codec, clients_per_round=np.int64(10))
  assert numpy_sized.field_bits == secure.SecureEncodedSumFactory(
      codec, clients_per_round=10).field_bits
  for bad in (0, 2.0, True):
    with pytest.raises(ValueError, match="clients_per_round must be an integer >= 1"):
      secure.SecureEncodedSumFactory(codec, clients_per_round=bad)


def test_a_cohort_whose_sum_the_codecs_dtype_cannot_hold_is_refused():
  # 16-bit values of 70,000 clients sum past int32, the dtype `fixed_int` decodes.
  factory = secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 16, "clip": 1.0}), clients_per_round=70_000)
  with pytest.raises(ValueError, match="does not fit in the int32"):
    factory.create(tff.TensorType(np.float32, [3]))


def test_secure_sum_draws_come_from_the_seed_and_round(secure_sum):
  # Stochastic rounding (and a rotation's seed) derive from the run's seed, the round
  # and each client's update, as in the plain encoded sum: a rerun sums the same.
  _, process = secure_sum
  values = _values()
  state = process.initialize()
  first = process.next(state, values)
  again = process.next(state, values)
  for key in ("a", "b"):
    np.testing.assert_array_equal(first.result[key], again.result[key])
  later = process.next(first.state, values)  # The next round draws anew.
  assert any(not np.array_equal(first.result[k], later.result[k]) for k in ("a", "b"))
  other = secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 8, "clip": 1.0}), clients_per_round=CLIENTS,
      seed=1).create(VALUE_TYPE)
  reseeded = other.next(other.initialize(), values)
  assert any(not np.array_equal(first.result[k], reseeded.result[k]) for k in ("a", "b"))


def test_secure_sum_bits_are_field_width_times_coordinates_plus_count(secure_sum):
  factory, process = secure_sum
  output = process.next(process.initialize(), _values())
  # Sum of 4 clients in [-4*127, 4*127]: 1017 values -> 10 bits; 11 coordinates; the
  # count (a 1 summed to at most 4) in ceil(log2(5)) = 3 bits.
  assert factory.field_bits == 10 and factory.modulus == 1017
  assert output.measurements["bits"] == 4 * (10 * 11 + 3)
  assert output.measurements["clients"] == 4


def test_server_receives_only_secure_sums(secure_sum):
  _, process = secure_sum
  text = process.next.to_building_block().compact_representation()
  assert "federated_secure_modular_sum" in text
  assert "federated_secure_sum_bitwidth" in text
  assert "federated_aggregate" not in text and "federated_sum" not in text.replace(
      "federated_secure_sum", "")


def test_rotated_secure_sum_pads_and_decodes():
  factory = secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 12, "clip": 2.0, "rotation": True}),
      clients_per_round=CLIENTS)
  process = factory.create(VALUE_TYPE)
  values = _values(scale=0.5)
  output = process.next(process.initialize(), values)
  assert factory.coordinates == 8 + 8  # 5 -> 8 and 6 -> 8, powers of two.
  for key in ("a", "b"):
    exact = sum(v[key] for v in values)
    # Orthogonal rotation: the error norm is the rotated one, < 1 step per coordinate.
    assert np.linalg.norm(output.result[key] - exact) < CLIENTS * (2.0 / 2047) * math.sqrt(8)


def test_count_sketch_chain_sums_under_secure_aggregation():
  # Linear sketch with hashes shared by the clients, then shared-scale integers: the
  # chain adds up, the server decodes the summed table once. The hashes are fixed
  # (seed_policy=fixed): with a fresh draw per run, a collision of the heavy coordinates
  # (a few percent of draws for 3 in 100 buckets) failed the accuracy check below once.
  spec = CodecSpec.parse(
      "countsketch(rows=1,fraction=0.25,seed_policy=fixed,seed=1)|fixed_int(bits=4,clip=1.0)")
  assert spec.codec.sum_compatible and spec.codec.sum_bound() == 7
  assert not CodecSpec.parse("topk(fraction=0.25)|fixed_int(bits=4)").codec.sum_compatible
  factory = secure.SecureEncodedSumFactory(spec, clients_per_round=3)
  process = factory.create(tff.to_type(collections.OrderedDict(
      a=tff.TensorType(np.float32, [400]))))
  rng = np.random.default_rng(0)
  values = [collections.OrderedDict(a=np.where(np.arange(400) < 3, 0.9, rng.normal(
      0, 0.01, 400)).astype(np.float32)) for _ in range(3)]
  output = process.next(process.initialize(), values)
  # Field ceil(log2(2*3*7 + 1)) = 6 bits, 100 table entries, the count in 2 bits.
  assert (factory.field_bits, factory.coordinates) == (6, 100)
  assert output.measurements["bits"] == 3 * (6 * 100 + 2)
  # The three heavy coordinates (sum 2.7) come back within the clients' rounding
  # (< 1/7 each) plus the small coordinates sharing their buckets. A small coordinate
  # reads as small unless it shares a heavy one's bucket (about 3 * 400/100 of 397).
  decoded = output.result["a"]
  np.testing.assert_array_less(np.abs(decoded[:3] - 2.7), 3 / 7 + 0.1)
  assert np.mean(np.abs(decoded[3:]) > 3 / 7 + 0.1) < 0.1


def test_codec_that_does_not_add_up_is_refused_in_one_line():
  with pytest.raises(ValueError) as info:
    secure.SecureEncodedSumFactory("uniform", clients_per_round=3)
  message = str(info.value)
  assert "\n" not in message
  assert "'uniform'" in message and "valid codecs: fixed_int, or a chain" in message
  # The count sketch commutes with sum (its floats are what a field cannot add): the
  # message said it "must be decoded per client", and named no chain ending in fixed_int.
  with pytest.raises(ValueError) as info:
    secure.SecureEncodedSumFactory("countsketch", clients_per_round=3)
  assert "decoded per client" not in str(info.value)
  assert "countsketch(rows=1,fraction=0.25)|fixed_int(bits=4,clip=0.02)" in str(info.value)
  assert fedcompress.get_codec("fixed_int").sum_compatible
  assert not fedcompress.get_codec("hadamard").sum_compatible


def _linear_model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.Input(shape=(1,)),
      tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
  return tff.learning.models.from_keras_model(
      keras_model, input_spec=(tf.TensorSpec([None, 1], tf.float32),
                               tf.TensorSpec([None, 1], tf.float32)),
      loss=tf.keras.losses.MeanSquaredError())


@pytest.mark.slow
def test_fedavg_under_secure_aggregation_counts_bits_per_client():
  process = fedcompress.build_fedavg(
      _linear_model_fn, aggregate_codec=make_codec("fixed_int", options={"clip": 1.0}),
      secure_aggregation=True, clients_per_round=3,
      client_weighting=tff.learning.ClientWeighting.UNIFORM)
  data = [tf.data.Dataset.from_tensor_slices(
      (np.ones((1, 1), np.float32), np.full((1, 1), y, np.float32))).batch(1)
      for y in (1.0, 2.0, 3.0)]
  metrics = process.next(process.initialize(), data).metrics
  # One coordinate in a field of ceil(log2(2*3*127+1)) = 10 bits, count in 2 bits.
  assert metrics["aggregate/bits"] == 3 * (10 * 1 + 2)
  # The weight moved by the mean of the three updates 0.02 * 2 * y (SGD 0.02, MSE), each
  # rounded stochastically by less than one step (clip / 127), so the mean too. (Three
  # steps let a mean over 4 clients instead of 3, 0.06 for 0.08, pass.)
  weights = process.get_model_weights(process.next(process.initialize(), data).state)
  assert abs(float(weights.trainable[0][0, 0]) - 0.02 * 2 * 2.0) < 1 / 127


@pytest.mark.slow
def test_distributed_dp_mean_divides_by_the_clients_that_came():
  # Nearly no noise: the mean of known updates, up to the field's rounding. A sum (no
  # division by the securely counted clients) would be 3x off; with two of the three
  # clients the factory is sized for, dividing by --clients_per_round (3, not TFF's
  # secure count 2) gives 2/3 of the mean.
  config = privacy.DPConfig("distributed", noise_multiplier=1e-3, clip=1.0,
                            clients_per_round=3, population=10, field_bits=16)
  process = privacy.build_dp_mean_factory(config, sum_factory=None).create(
      tff.TensorType(np.float32, [64]))
  rng = np.random.default_rng(0)
  for clients in (3, 2):
    updates = [rng.uniform(-0.05, 0.05, 64).astype(np.float32) for _ in range(clients)]
    output = process.next(process.initialize(), updates)
    assert output.measurements["actual_num_clients"] == clients
    expected = np.mean(updates, axis=0)
    error = np.max(np.abs(np.asarray(output.result) - expected))
    # Noise std 1e-3 * sqrt(2/3) / 2 and the field's rounding: well under a tenth of the
    # mean's largest coordinate, which a wrong divisor misses by a third or more.
    assert error < 0.1 * np.max(np.abs(expected)), (clients, error)
  # The two clients that came each sent the field sized for three (18 bits: 3 (2^16 - 1)
  # + 1 values) per coordinate and 8 scalars of 0/1 in ceil(log2(3 + 1)) = 2 bits.
  assert output.measurements["bits"] == 2 * (18 * 64 + 8 * 2)


@pytest.mark.slow
def test_fedavg_with_distributed_dp_runs_under_secure_sum_and_counts_field_bits():
  # Used to fail building: TFF's proto nesting past upb's 100-level copy limit.
  config = privacy.DPConfig("distributed", noise_multiplier=0.5, clip=1.0,
                            clients_per_round=3, population=10, field_bits=16)
  process = fedcompress.build_fedavg(
      _linear_model_fn, secure_aggregation=True, dp=config, clients_per_round=3,
      client_weighting=tff.learning.ClientWeighting.UNIFORM)
  intrinsics = set(re.findall(r"federated_\w+",
                              process.next.to_building_block().compact_representation()))
  # TFF's distributed DP clips modularly itself, then sums in a plain secure sum; the
  # other sums are of the training metrics (loss, example counts), not of the update.
  assert "federated_secure_sum_bitwidth" in intrinsics
  assert not intrinsics & {"federated_aggregate", "federated_mean", "federated_weighted_mean"}
  data = [tf.data.Dataset.from_tensor_slices(
      (np.ones((1, 1), np.float32), np.full((1, 1), y, np.float32))).batch(1)
      for y in (1.0, 2.0, 3.0)]
  # What each client sends: one vector and DISTRIBUTED_SCALAR_SUMS scalars of 0/1, all
  # through `federated_secure_sum_bitwidth` (TFF's result is their exact sum).
  calls = []
  tree_analysis.visit_postorder(process.next.to_building_block(), lambda b: calls.append(
      b.argument.type_signature[0].member) if isinstance(b, building_blocks.Call) and
      isinstance(b.function, building_blocks.Intrinsic) and
      b.function.uri == "federated_secure_sum_bitwidth" else None)
  scalars = [t for t in calls if all(s.shape == () for s in tff.structure.flatten(t))]
  assert len(calls) - len(scalars) == 1 and len(scalars) == privacy.DISTRIBUTED_SCALAR_SUMS
  output = process.next(process.initialize(), data)
  # One coordinate (the Hadamard rotation pads to 1 = 2^0): integers below 2^16 whose sum
  # over 3 clients needs ceil(log2(3 (2^16 - 1) + 1)) = 18 bits; 8 scalar sums of 0/1 in
  # ceil(log2(3 + 1)) = 2 bits each; from each of the 3 clients.
  assert output.metrics["aggregate/bits"] == 3 * (18 * 1 + 8 * 2)
  assert np.isfinite(process.get_model_weights(output.state).trainable[0]).all()


@pytest.mark.parametrize("field_bits,clients", [(2, 10), (3, 40)])
def test_a_field_too_small_for_the_clients_names_the_flags(field_bits, clients):
  # TFF refused both later, naming neither flag (the second: k std devs of the noise).
  with pytest.raises(ValueError, match=rf"^--dp_field_bits={field_bits} is too small for "
                     rf"{clients} clients per round \(TFF: .*--clients_per_round$"):
    privacy.DPConfig("distributed", 0.5, 0.1, clients, 100, field_bits=field_bits)
  privacy.DPConfig("distributed", 0.5, 0.1, clients, 100, field_bits=field_bits + 4)


def test_protected_mean_refusals_are_one_line():
  uniform = tff.learning.ClientWeighting.UNIFORM
  dp = privacy.DPConfig("distributed", 1.0, 0.1, 10, 100)
  cases = [
      dict(aggregate_codec="fixed_int", secure_aggregation=True, dp=None,
           client_weighting=tff.learning.ClientWeighting.NUM_EXAMPLES),
      dict(aggregate_codec="topk", secure_aggregation=True, dp=None, client_weighting=uniform),
      dict(aggregate_codec=None, secure_aggregation=False, dp=dp, client_weighting=uniform),
      dict(aggregate_codec="fixed_int", secure_aggregation=True, dp=dp,
           client_weighting=uniform),
      # The adaptive query's clipped-count signal would be quantized with the update.
      dict(aggregate_codec="fixed_int", secure_aggregation=True,
           dp=privacy.DPConfig("central_adaptive", 0.5, 0.1, 10, 100),
           client_weighting=uniform),
      # Without it too, once fixed_int encodes scalars (the signal is one).
      dict(aggregate_codec=CodecSpec("fixed_int", threshold=0), secure_aggregation=False,
           dp=privacy.DPConfig("central_adaptive", 0.5, 0.1, 10, 100),
           client_weighting=uniform),
  ]
  for case in cases:
    with pytest.raises(ValueError) as info:
      privacy.check_protected_mean(clients_per_round=10, **case)
    assert "\n" not in str(info.value)
  # Without secure aggregation the adaptive query is accepted with other codecs, and with
  # fixed_int on tensors of 1 element or more.
  for codec in ("uniform", CodecSpec("uniform", threshold=0), CodecSpec("fixed_int", threshold=1)):
    privacy.check_protected_mean(clients_per_round=10, aggregate_codec=codec,
                                 secure_aggregation=False, client_weighting=uniform,
                                 dp=privacy.DPConfig("central_adaptive", 0.5, 0.1, 10, 100))


def test_dp_refuses_a_codec_whose_state_the_clients_move():
  # adaptive's rate offset is summed from the clients' updates outside the noised mean
  # and sets every client's width next round: round t's data reached round t+1's model
  # through a channel the epsilon did not cover (R1, s41). With coder=fixed it stays.
  uniform = tff.learning.ClientWeighting.UNIFORM
  central = privacy.DPConfig("central", 1.0, 0.1, 10, 100)
  with pytest.raises(ValueError, match=r"^--dp does not cover adaptive's encoder state, "
                     r"which the clients' updates move from round to round outside the "
                     r"noised mean \(adaptive's rate offset: use coder=fixed\)$"):
    privacy.check_protected_mean(CodecSpec("adaptive(budget_bits_per_coordinate=4)"),
                                 secure_aggregation=False, clients_per_round=10, dp=central,
                                 client_weighting=uniform)
  privacy.check_protected_mean(CodecSpec("adaptive(budget_bits_per_coordinate=4,coder=fixed)"),
                               secure_aggregation=False, clients_per_round=10, dp=central,
                               client_weighting=uniform)


@pytest.mark.parametrize("clients_per_round", [2, 10])
def test_a_fixed_client_list_not_the_fields_size_is_refused(tmp_path, clients_per_round):
  # More clients would wrap the sum; fewer (the Shakespeare tutorial's 2 under the default
  # 10) sent 12-bit values where 9 bits hold the sum, and counted them.
  from types import SimpleNamespace

  from fedcompress.harness import experiment

  def config(clients_per_round):
    return experiment.ExperimentConfig(
        root_output_dir=str(tmp_path), experiment_name="run",
        clients_per_round=clients_per_round, fixed_clients=("a", "b", "c"),
        secure_aggregation=True, aggregate_codec=make_codec("fixed_int"),
        client_weighting="uniform", progress=False)

  task = SimpleNamespace(name="t", client_ids=["a", "b", "c", "d"], settings={})
  with pytest.raises(ValueError, match="--clients lists 3 clients but secure aggregation "
                     f"sizes its field for --clients_per_round={clients_per_round}: "
                     "pass --clients_per_round=3"):
    experiment.check_experiment(task, config(clients_per_round))
  experiment.check_experiment(task, config(3))


@pytest.mark.parametrize("rounds,noise,rate", [(1, 1.0, 0.01), (100, 1.0, 0.01),
                                               (200, 0.8, 0.5)])
# Each accountant call takes 0.2-2 s: the composition is by count, not round by round.
def test_epsilon_matches_dp_accounting_directly(rounds, noise, rate):
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(dp_accounting.PoissonSampledDpEvent(
      rate, dp_accounting.GaussianDpEvent(noise)), count=rounds)
  expected = accountant.get_epsilon(1e-5)
  assert privacy.rdp_epsilon(noise, rate, rounds, 1e-5) == pytest.approx(expected, rel=1e-9)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise():
  eps = [privacy.rdp_epsilon(1.0, 0.1, r, 1e-5) for r in (1, 10, 100)]
  assert eps[0] < eps[1] < eps[2]
  assert privacy.rdp_epsilon(2.0, 0.1, 100, 1e-5) < eps[2]
  assert privacy.rdp_epsilon(1.0, 0.1, 0, 1e-5) == 0.0


DIM = 4096
ZERO_TYPE = tff.TensorType(np.float32, [DIM])


@pytest.mark.parametrize("clients", [1, 4])
@pytest.mark.parametrize("secure_records", [False, True])
def test_central_dp_noise_is_on_the_sum_so_the_mean_has_std_over_the_clients(
    secure_records, clients):
  # The clients send zeros: the server adds N(0, (2.0 * 0.5)^2) to their sum, then
  # divides by their count, so the mean is the noise alone with std 1.0 / clients. Noise
  # scaled by the clients, or not divided, is 4x off at 4 clients; one cannot tell them
  # apart.
  config = privacy.DPConfig("central", noise_multiplier=2.0, clip=0.5,
                            clients_per_round=clients, population=10)
  records = (secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"clip": 0.5}), clients_per_round=clients)
      if secure_records else None)
  process = privacy.build_dp_mean_factory(config, sum_factory=records).create(ZERO_TYPE)
  result = process.next(process.initialize(), [np.zeros(DIM, np.float32)] * clients).result
  # The std estimate over 4096 seeded draws is within 2.2% (2 sigma).
  assert np.std(result) == pytest.approx(1.0 / clients, rel=0.06)
  assert abs(np.mean(result)) < 0.1 / clients

@pytest.mark.parametrize("secure_records", [False, True])
def test_central_dp_mean_clips_each_update_and_divides_by_the_clients(secure_records):
  # Without noise the DP mean is (sum of clipped updates) / clients_per_round: one
  # update over the clip (norm 5 -> 1), one under it, one zero; worked out by hand.
  config = privacy.DPConfig("central", noise_multiplier=0.0, clip=1.0, clients_per_round=3,
                            population=10)
  records = (secure.SecureEncodedSumFactory(
      make_codec("fixed_int", options={"bits": 16, "clip": 1.0}), clients_per_round=3)
      if secure_records else None)
  process = privacy.build_dp_mean_factory(config, sum_factory=records).create(
      tff.TensorType(np.float32, [4]))
  updates = [np.array(v, np.float32) for v in
             ([3.0, 4.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0])]
  result = process.next(process.initialize(), updates).result
  expected = (np.array([0.6, 0.8, 0.0, 0.0]) + np.array([0.1, 0.0, 0.0, 0.2])) / 3
  # fixed_int at 16 bits: each client's value within one step (1 / 32767) of its own.
  np.testing.assert_allclose(result, expected, atol=3 / 32767 if secure_records else 1e-6)


@pytest.mark.parametrize("mechanism", ["central", "central_adaptive"])
def test_central_dp_noise_comes_from_the_seed_and_the_round(mechanism):
  # tensorflow_privacy's noise was unseeded: no two runs with --dp=central were equal.
  # With 100 expected clients the adaptive query can split noise multiplier 2 between
  # the update and the clipped count (one client's zeros stand for the round).
  config = privacy.DPConfig(mechanism, noise_multiplier=2.0, clip=0.5, clients_per_round=100,
                            population=1000)

  def two_rounds(seed):
    process = privacy.build_dp_mean_factory(config, sum_factory=None,
                                            seed=seed).create(ZERO_TYPE)
    state, results = process.initialize(), []
    for _ in range(2):
      output = process.next(state, [np.zeros(DIM, np.float32)])
      state = output.state
      results.append(np.asarray(output.result))
    return results

  first, second = two_rounds(seed=3)
  again = two_rounds(seed=3)
  # A rerun draws the same noise, the adaptive clip's count noise included (the clip
  # sets round 2's noise scale)...
  np.testing.assert_array_equal(first, again[0])
  np.testing.assert_array_equal(second, again[1])
  # ...new draws each round, not round 1's rescaled by a new clip...
  assert abs(np.corrcoef(first, second)[0, 1]) < 0.1
  assert not np.array_equal(first, two_rounds(seed=4)[0])  # ...and per seed.
  # The round count lives in the aggregator's state: a resumed run continues it.
  process = privacy.build_dp_mean_factory(config, sum_factory=None, seed=3).create(ZERO_TYPE)
  after = process.next(process.initialize(), [np.zeros(DIM, np.float32)]).state
  np.testing.assert_array_equal(
      process.next(after, [np.zeros(DIM, np.float32)]).result, second)


def test_adaptive_noise_too_large_to_split_is_refused_naming_the_flags():
  # TFF's own error named its clipped_count_stddev, which no flag sets.
  with pytest.raises(ValueError, match=r"--dp_noise_multiplier below 0.5 .* got 0.5"):
    privacy.DPConfig("central_adaptive", noise_multiplier=0.5, clip=0.1, clients_per_round=5,
                     population=100)
  config = privacy.DPConfig("central_adaptive", noise_multiplier=0.49, clip=0.1,
                            clients_per_round=5, population=100)
  privacy.build_dp_mean_factory(config, sum_factory=None)  # TFF splits it.


def test_seeded_adaptive_clip_adapts_as_tensorflow_privacys():
  # Without noise the seeded query's clip follows tensorflow_privacy's own, round by
  # round: norms 1, 2, 3, 4 against a clip of 0.5 (all clipped) move it up by exp(0.2 *
  # target) each round.
  args = dict(initial_l2_norm_clip=0.5, noise_multiplier=0.0, target_unclipped_quantile=0.5,
              learning_rate=0.2, clipped_count_stddev=0.0, expected_num_records=4)
  records = [tf.constant([float(n), 0.0]) for n in (1, 2, 3, 4)]
  clips = []
  for query in (tfp.QuantileAdaptiveClipSumQuery(**args),
                privacy.SeededQuantileAdaptiveClipSumQuery(**args, seed=0)):
    state, trajectory = query.initial_global_state(), []
    for _ in range(3):
      params = query.derive_sample_params(state)
      sample = query.initial_sample_state(records[0])
      for record in records:
        sample = query.accumulate_record(params, sample, record)
      _, state, _ = query.get_noised_result(sample, state)
      trajectory.append(float(query.derive_metrics(state)["clip"]))
    clips.append(trajectory)
  np.testing.assert_allclose(clips[1], clips[0], rtol=1e-6)
  np.testing.assert_allclose(clips[0], 0.5 * np.exp(0.2 * 0.5 * np.arange(1, 4)), rtol=1e-5)


@pytest.mark.slow
def test_distributed_dp_noise_has_the_configured_std_and_counts_field_bits():
  config = privacy.DPConfig("distributed", noise_multiplier=2.0, clip=0.5,
                            clients_per_round=1, population=10, field_bits=16)
  process = privacy.build_dp_mean_factory(config, sum_factory=None).create(ZERO_TYPE)
  output = process.next(process.initialize(), [np.zeros(DIM, np.float32)])
  # Central std noise_multiplier * clip = 1.0 (TFF splits it over the clients).
  assert np.std(output.result) == pytest.approx(1.0, rel=0.06)
  # One client: its integers below 2^16 in 16 bits, and 8 scalar sums of 0/1 in 1 bit.
  assert output.measurements["bits"] == 16 * DIM + 8 * 1
  effective = privacy.effective_noise_multiplier(config, ZERO_TYPE)
  assert 0.5 * 2.0 < effective <= 2.0  # The rounding inflates the sensitivity a little.


@pytest.mark.slow
def test_distributed_effective_noise_multiplier_follows_tffs_formulas_at_four_clients():
  # TFF's DistributedDpSumFactory (distributed_dp.py, beta = 0, modclip_prob 1e-4): each
  # of n clients adds local std nm * clip / sqrt(n), scaled by s; the L2 bound is the
  # clip inflated by the rounding, (clip + sqrt(d) / s + 1e-5) * s. The accounting's
  # multiplier, the central std over that bound, is sqrt(n) * local / bound. Dropping
  # the sqrt(n) halves it at n = 4; the rounding's inflation takes 2.0 to 1.609.
  nm, clip, n, bits, d = 2.0, 0.5, 4, 12, DIM
  k = statistics.NormalDist().inv_cdf(1 - 1e-4 / 2)  # TFF's sqrt(2) erfcinv(1e-4).
  local = nm * clip / math.sqrt(n)
  scale = (math.sqrt(2.0**(2 * bits) - n * k**2)
           / (2 * k * math.sqrt(clip**2 * n**2 / d + n * local**2)))
  bound = clip + math.sqrt(d) / scale + 1e-5
  expected = math.sqrt(n) * local / bound
  assert expected == pytest.approx(1.6086, abs=1e-4)
  config = privacy.DPConfig("distributed", noise_multiplier=nm, clip=clip,
                            clients_per_round=n, population=10, field_bits=bits)
  # TFF computes in float32: agreement to 1e-6, far below the effects above.
  assert privacy.effective_noise_multiplier(config, ZERO_TYPE) == pytest.approx(
      expected, rel=1e-6)


@pytest.mark.slow
def test_the_adaptive_clip_is_a_column_of_every_round():
  # TFF reports it in `dp_query_metrics`, which never reached metrics.csv or TensorBoard.
  from fedcompress import metrics as m

  process = fedcompress.build_fedavg(
      _linear_model_fn, dp=privacy.DPConfig("central_adaptive", 0.2, 0.1, 3, 10),
      clients_per_round=3, client_weighting=tff.learning.ClientWeighting.UNIFORM)
  data = [tf.data.Dataset.from_tensor_slices(
      (np.ones((1, 1), np.float32), np.full((1, 1), y, np.float32))).batch(1)
      for y in (1.0, 2.0, 3.0)]
  row = m.flatten_round_metrics(process.next(process.initialize(), data).metrics)
  # Updates of norm 0.04, 0.08 and 0.12 (SGD 0.02, MSE) against a clip of 0.1: it moved.
  assert 0 < row[m.PRIVACY_CLIP] != pytest.approx(0.1) and m.PRIVACY_CLIP in m.OPTIONAL
