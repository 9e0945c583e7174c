"""Differentially private aggregation, combined with compression, and its accounting.

Three mechanisms (`DPConfig.mechanism`), all user-level DP over the clients of a round:

* `central`: TFF's `DifferentiallyPrivateFactory` with a `GaussianSumQuery` (the
  query of `DifferentiallyPrivateFactory.gaussian_fixed`): each client's update is
  clipped to L2 norm `clip`, the server adds N(0, (noise_multiplier * clip)^2) to the
  sum and divides by the clients per round (McMahan et al., ICLR 2018). The clipped
  updates are summed by the compressed aggregation: the encoded sum of any codec, or
  the secure sum of a sum-compatible one.
* `central_adaptive`: the same with the clip adapted to a quantile of the update norms
  (TFF's `gaussian_adaptive` query; Andrew et al., NeurIPS 2021); `noise_multiplier`
  covers the value and the clipped-count noise together, as TFF defines it.
* `distributed`: TFF's distributed discrete Gaussian (`DistributedDpSumFactory`,
  mechanism `distributed_dgauss`, randomized Hadamard rotation, as in
  `tff.learning.ddp_secure_aggregator`; Kairouz, Liu and Steinke, ICML 2021): each
  client clips, rotates, scales, rounds to integers and adds its share of discrete
  Gaussian noise, and the integers are reduced modulo `2**field_bits` (modular
  clipping: a value that overflows wraps around, and the scale is chosen so that this
  is rare). That pipeline is itself the compression, so it takes no other codec. TFF
  then sums the `[0, 2**field_bits)` integers with `federated_secure_sum_bitwidth`,
  whose result is the exact sum: each client sends `secure.unsigned_sum_bits(
  2**field_bits - 1, clients)` bits per padded coordinate (20 at 16 bits and 10
  clients), and 0/1 values in `DISTRIBUTED_SCALAR_SUMS` scalar secure sums (see
  `_DistributedDpMeanFactory`).

Accounting (`epsilon`): `dp_accounting`'s RDP accountant for `rounds` compositions of a
Poisson-sampled Gaussian mechanism with sampling rate `clients_per_round / population`
(the clients are sampled uniformly without replacement; Poisson sampling at the same
rate is the usual approximation, as in TFF's DP tutorials). For `distributed` the noise
multiplier accounted is the effective one, the central noise std over the L2
sensitivity inflated by the rounding (both as TFF's factory computes them), with the
sum of discrete Gaussians treated as a Gaussian (the approximation Kairouz et al. show
is tight for the noise levels used).

Caveats, not handled: for `central` the codec encodes and decodes each clipped update
before the noise, so the sensitivity is the largest norm of a decoded update, and a
codec that can enlarge it (`randk`'s n/k rescaling; a count sketch's bucket sums,
`sqrt(1 + (n - 1) / columns)` times the norm over the hashes for one row; min/max
quantizers in the worst case; `fixed_int`'s stochastic rounding, by ~8% on the README's
secure DP run) makes the accounted epsilon optimistic. `central`'s and
`central_adaptive`'s noise is drawn from the run's seed and the round
(`SeededGaussianSumQuery`,
`SeededQuantileAdaptiveClipSumQuery`), so the epsilon holds only against whoever does
not know the seed; `distributed`'s is TFF's own and not seeded.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import numbers
from collections.abc import Mapping

import dp_accounting
import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tensorflow_privacy as tfp
from tensorflow_federated.python.aggregators import differential_privacy, distributed_dp

from fedcompress.codecs import CodecSpec
from fedcompress.federated.aggregation import (
  EncodedSumFactory,
  fixed_range_links,
  moving_state_hint,
)
from fedcompress.federated.secure import (
  SecureEncodedSumFactory,
  build_secure_mean_factory,
  check_sum_compatible,
  count_bits,
  unsigned_sum_bits,
)

MECHANISMS = ("central", "central_adaptive", "distributed")
# The scalar secure sums of a 0/1 each client takes part in under TFF 0.87's
# `DistributedDpSumFactory` (`tests/federated/test_secure.py` counts them in the built
# computation): the client count; the value's `SecureSumFactory`, its count of summands
# and its two clipped-range counts; the "was clipped" indicator of the L2 clipping,
# summed by a second `SecureSumFactory` with the same three of its own.
DISTRIBUTED_SCALAR_SUMS = 8
DEFAULT_DELTA = 1e-5
# TFF's DP queries hold the noise's standard deviation (clip x multiplier) as float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class DPConfig:
  """A DP mechanism and what its accounting needs.

  Attributes:
    mechanism: one of `MECHANISMS`.
    noise_multiplier: noise std / L2 clip (>= 0).
    clip: L2 clip norm of a client update (the initial one for `central_adaptive`).
    clients_per_round: clients summed each round (the denominator of the mean).
    population: clients sampled from (for the sampling rate).
    delta: the delta of the reported epsilon.
    field_bits: `distributed` only: bits per coordinate of the secure sum's field.
    target_quantile: `central_adaptive` only: the update-norm quantile the clip tracks.
  """

  mechanism: str
  noise_multiplier: float
  clip: float
  clients_per_round: int
  population: int
  delta: float = DEFAULT_DELTA
  field_bits: int = 16
  target_quantile: float = 0.5

  def __post_init__(self):
    # From Python a string or None reached `math.isfinite` as a bare TypeError.
    for name, value, kind in (
        ("--dp_noise_multiplier", self.noise_multiplier, numbers.Real),
        ("--dp_clip", self.clip, numbers.Real), ("--dp_delta", self.delta, numbers.Real),
        ("target quantile", self.target_quantile, numbers.Real),
        ("clients per round", self.clients_per_round, numbers.Integral),
        ("population", self.population, numbers.Integral),
        ("--dp_field_bits", self.field_bits, numbers.Integral)):
      if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if kind is numbers.Integral else "a number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if self.mechanism not in MECHANISMS:
      raise ValueError(f"unknown DP mechanism {self.mechanism!r}; valid: {', '.join(MECHANISMS)}")
    if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
      raise ValueError(f"--dp_noise_multiplier must be a finite number >= 0, got "
                       f"{self.noise_multiplier}")
    if not (math.isfinite(self.clip) and self.clip > 0):
      raise ValueError(f"--dp_clip must be a finite number > 0, got {self.clip}")
    if not 1 <= self.clients_per_round <= self.population:
      raise ValueError(f"DP needs 1 <= clients per round <= population, got "
                       f"{self.clients_per_round} of {self.population}")
    if not 0 < self.delta < 1:
      raise ValueError(f"--dp_delta must be in (0, 1), got {self.delta}")
    if not 1 <= self.field_bits <= 22:
      raise ValueError(f"--dp_field_bits must be in 1..22 (TFF's distributed DP), got "
                       f"{self.field_bits}")
    if not 0 < self.target_quantile < 1:
      raise ValueError(f"target quantile must be in (0, 1), got {self.target_quantile}")
    if self.clip * self.noise_multiplier > _FLOAT32_MAX:
      # The noise's standard deviation is float32 in TFF's queries: it became Inf.
      raise ValueError(f"--dp_clip x --dp_noise_multiplier = "
                       f"{self.clip * self.noise_multiplier:.3g}, the noise's standard "
                       "deviation, is past float32's largest number")
    try:  # Checked now: a run failed there after training its first round, unrecorded.
      rdp_epsilon(self.noise_multiplier, self.sampling_rate, 1, self.delta)
    except ValueError as e:
      raise ValueError(f"--dp_noise_multiplier={self.noise_multiplier:g} is past what "
                       f"dp_accounting's RDP accountant computes (it fails: {e}); noise "
                       "this large leaves nothing of the update to learn from") from None
    if self.mechanism == "distributed":
      try:  # TFF's own checks of the field against the clients (Python, no graph).
        distributed_factory(self)
      except ValueError as e:
        raise ValueError(
            f"--dp_field_bits={self.field_bits} is too small for {self.clients_per_round} "
            f"clients per round (TFF: {' '.join(str(e).split())}): raise --dp_field_bits or "
            "lower --clients_per_round") from None
    # TFF's `adaptive_clip_noise_params` splits the noise between the update and the
    # clipped count, whose stddev is 0.05 x clients: it cannot split this much or more.
    most = 2 * 0.05 * self.clients_per_round
    if self.mechanism == "central_adaptive" and self.noise_multiplier >= most:
      raise ValueError(
          f"--dp=central_adaptive with {self.clients_per_round} clients per round takes "
          f"--dp_noise_multiplier below {most:g} (0.1 x clients: part of the noise goes to "
          f"the adaptive clip's count of clipped updates), got {self.noise_multiplier:g}: "
          "lower it or sample more clients per round")

  @property
  def sampling_rate(self) -> float:
    return self.clients_per_round / self.population


@functools.lru_cache(maxsize=256)  # A DPConfig's check and a run's rounds ask again.
def rdp_epsilon(noise_multiplier: float, sampling_rate: float, rounds: int,
                delta: float) -> float:
  """Epsilon at `delta` after `rounds` Poisson-sampled Gaussian rounds (RDP accountant)."""
  if rounds == 0:
    return 0.0
  if noise_multiplier == 0:
    return math.inf
  event = dp_accounting.SelfComposedDpEvent(
      dp_accounting.PoissonSampledDpEvent(sampling_rate,
                                          dp_accounting.GaussianDpEvent(noise_multiplier)),
      rounds)
  accountant = dp_accounting.rdp.RdpAccountant()
  accountant.compose(event)
  return float(accountant.get_epsilon(delta))


def distributed_factory(config: DPConfig) -> distributed_dp.DistributedDpSumFactory:
  """TFF's distributed discrete Gaussian sum for `config` (fixed clip)."""
  return distributed_dp.DistributedDpSumFactory(
      noise_multiplier=config.noise_multiplier,
      expected_clients_per_round=config.clients_per_round, bits=config.field_bits,
      l2_clip=config.clip, mechanism="distributed_dgauss", rotation_type="hd")


def effective_noise_multiplier(config: DPConfig, value_type) -> float:
  """The noise multiplier the accounting uses (see the module docstring).

  For `distributed`: `sqrt(n) * local std / inflated L2 bound`, read from the initial
  state of TFF's factory for `value_type` (the factory computes both in Python).
  """
  if config.mechanism != "distributed" or config.noise_multiplier == 0:
    return config.noise_multiplier
  process = distributed_factory(config).create(value_type)
  state = process.initialize()[0]
  # The state comes back as named or plain tuples: fields by name, else by position.
  query_state = _field(_field(_field(state, "inner_agg", 1), "inner_agg_process", 2),
                       "query_state", 0)
  return (math.sqrt(config.clients_per_round) * float(_field(query_state, "local_stddev", 1))
          / float(_field(query_state, "l2_norm_bound", 0)))


def _field(structure, name: str, index: int):
  if isinstance(structure, Mapping):
    return structure[name]
  if hasattr(structure, name):
    return getattr(structure, name)
  return structure[index]


# Streams of the central DP noise within a run's seed: apart from the codecs' draws,
# and, for `central_adaptive`, the update's noise apart from the clipped count's.
_CENTRAL_NOISE_STREAM = 0x44504E53  # "DPNS"
_CLIPPED_COUNT_STREAM = 0x44504343  # "DPCC"


class SeededGaussianSumQuery(tfp.GaussianSumQuery):
  """`tfp.GaussianSumQuery` whose noise is drawn from the run's seed and the round.

  tensorflow_privacy draws the noise with a `tf.random_normal_initializer` and no seed,
  so no two runs added the same noise. Here the global state also holds the seed and a
  count of noised results (the round), and the noise of leaf `i` in round `r` is
  `stateless_normal` under (seed, stream) folded with `r` then `i`: the same clip,
  standard deviation and accounting, draws fixed by `--seed`. The count is part of
  the aggregator's state, so a resumed run draws what the uninterrupted one did.
  """

  _GlobalState = collections.namedtuple("_GlobalState",
                                        ["l2_norm_clip", "stddev", "seed", "round"])

  def __init__(self, l2_norm_clip: float, stddev: float, seed: int,
               stream: int = _CENTRAL_NOISE_STREAM):
    super().__init__(l2_norm_clip, stddev)
    self._seed = int(seed)
    self._stream = int(stream)

  def make_global_state(self, l2_norm_clip, stddev):
    return self._GlobalState(tf.cast(l2_norm_clip, tf.float32), tf.cast(stddev, tf.float32),
                             tf.constant([self._seed, self._stream], tf.int64),
                             tf.constant(0, tf.int64))

  def get_noised_result(self, sample_state, global_state):
    key = tf.random.experimental.stateless_fold_in(global_state.seed, global_state.round)
    leaves = tf.nest.flatten(sample_state)
    noised = [
        leaf + tf.cast(tf.random.stateless_normal(
            tf.shape(leaf), tf.random.experimental.stateless_fold_in(key, i),
            stddev=global_state.stddev), leaf.dtype)
        for i, leaf in enumerate(leaves)]
    event = dp_accounting.GaussianDpEvent(global_state.stddev / global_state.l2_norm_clip)
    return (tf.nest.pack_sequence_as(sample_state, noised),
            global_state._replace(round=global_state.round + 1), event)


class _SeededQuantileEstimatorQuery(tfp.QuantileEstimatorQuery):
  """`tfp.QuantileEstimatorQuery` whose noisy count of unclipped updates is seeded."""

  def __init__(self, *args, seed: int, **kwargs):
    self._seed = int(seed)  # Read by the parent's __init__, through the method below.
    super().__init__(*args, **kwargs)

  def _construct_below_estimate_query(self, below_estimate_stddev, expected_num_records):
    # tensorflow_privacy's own, with the seeded sum query.
    return tfp.NormalizedQuery(
        SeededGaussianSumQuery(0.5, below_estimate_stddev, self._seed, _CLIPPED_COUNT_STREAM),
        denominator=expected_num_records)


class SeededQuantileAdaptiveClipSumQuery(tfp.QuantileAdaptiveClipSumQuery):
  """`tfp.QuantileAdaptiveClipSumQuery` with both its noises drawn from the run's seed.

  The update's noise and the clipped count's come from `SeededGaussianSumQuery` on two
  streams. The parent rebuilds the sum query's state from the new clip every round,
  which would restart its round count (the same draws, rescaled, each round): here the
  clip and standard deviation are replaced in the state the round left instead. The
  clip's adaptation and the accounting are the parent's.
  """

  def __init__(self, initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile,
               learning_rate, clipped_count_stddev, expected_num_records,
               geometric_update=True, *, seed: int):
    super().__init__(initial_l2_norm_clip, noise_multiplier, target_unclipped_quantile,
                     learning_rate, clipped_count_stddev, expected_num_records,
                     geometric_update)
    self._quantile_estimator_query = _SeededQuantileEstimatorQuery(
        initial_l2_norm_clip, target_unclipped_quantile, learning_rate,
        clipped_count_stddev, expected_num_records, geometric_update, seed=seed)
    self._sum_query = SeededGaussianSumQuery(
        initial_l2_norm_clip, noise_multiplier * initial_l2_norm_clip, seed)

  def get_noised_result(self, sample_state, global_state):
    noised, sum_state, sum_event = self._sum_query.get_noised_result(
        sample_state.sum_state, global_state.sum_state)
    clip, quantile_state, quantile_event = self._quantile_estimator_query.get_noised_result(
        sample_state.quantile_estimator_state, global_state.quantile_estimator_state)
    clip = tf.maximum(clip, 0.0)
    sum_state = sum_state._replace(l2_norm_clip=clip,
                                   stddev=clip * global_state.noise_multiplier)
    event = dp_accounting.ComposedDpEvent(events=[sum_event, quantile_event])
    return noised, self._GlobalState(global_state.noise_multiplier, sum_state,
                                     quantile_state), event


def _central_query(config: DPConfig, seed: int) -> tfp.DPQuery:
  if config.mechanism == "central":
    query = SeededGaussianSumQuery(l2_norm_clip=config.clip,
                                   stddev=config.clip * config.noise_multiplier, seed=seed)
  else:
    # What `DifferentiallyPrivateFactory.gaussian_adaptive` builds, with its defaults.
    value_noise_multiplier, clipped_count_stddev = (
        differential_privacy.adaptive_clip_noise_params(
            config.noise_multiplier, float(config.clients_per_round)))
    query = SeededQuantileAdaptiveClipSumQuery(
        initial_l2_norm_clip=config.clip, noise_multiplier=value_noise_multiplier,
        target_unclipped_quantile=config.target_quantile, learning_rate=0.2,
        clipped_count_stddev=clipped_count_stddev,
        expected_num_records=config.clients_per_round, geometric_update=True, seed=seed)
  return tfp.NormalizedQuery(query, denominator=config.clients_per_round)


def build_dp_mean_factory(config: DPConfig, *,
                          sum_factory: tff.aggregators.UnweightedAggregationFactory | None,
                          seed: int = 0) -> tff.aggregators.UnweightedAggregationFactory:
  """The DP mean of client updates for `config`.

  Args:
    config: the mechanism.
    sum_factory: for central DP, the (compressed, possibly secure) sum of the clipped
      updates; must be None for `distributed`, whose pipeline is its own compression.
    seed: the run's seed; fixes the noise of `central` and `central_adaptive`. The
      noise of `distributed` is TFF's own and not seeded.

  Raises:
    ValueError: a codec given with `distributed`.
  """
  if config.mechanism == "distributed":
    if sum_factory is not None:
      raise ValueError("--dp=distributed quantizes and sums in its own field "
                       "(--dp_field_bits): leave --aggregate_encoder at identity")
    allow_deep_computations()
    return _DistributedDpMeanFactory(config)
  return tff.aggregators.DifferentiallyPrivateFactory(
      _central_query(config, seed), record_aggregation_factory=sum_factory)


def allow_deep_computations() -> None:
  """Lets Python's protobuf copy computations nested deeper than 100 messages.

  TFF builds each computation's proto by nesting its parts' protos (`Block.Local(value=
  ...)`), and the upb runtime (protobuf 4.25) copies a submessage by parsing it, refusing
  more than 100 levels unless oversize protos are allowed ("DecodeError: Error parsing
  message"). Distributed DP inside FedAvg nests deeper than that. Process-wide, so it is
  set only when such a process is built, not at import.
  """
  try:
    from google._upb import _message as upb_message  # noqa: PLC0415 (only the upb runtime)
  except ImportError:  # The pure-Python or C++ runtime: no such limit on copies.
    return
  upb_message.SetAllowOversizeProtos(True)


class _DistributedDpMeanFactory(tff.aggregators.UnweightedAggregationFactory):
  """The distributed-DP sum divided by its client count, with `bits` measured.

  TFF's factory already sums the client count securely (`actual_num_clients`), so the
  mean reuses it rather than wrapping the sum in `UnweightedMeanFactory` (which would
  send the count twice). Each client sends, per padded coordinate, its integer in
  `[0, 2**field_bits)` in the field of their exact sum (`secure.unsigned_sum_bits`:
  TFF sums them with `federated_secure_sum_bitwidth`, not modulo `2**field_bits`), and
  a 0/1 in each of `DISTRIBUTED_SCALAR_SUMS` secure sums, in a field that holds the
  round's clients (`secure.count_bits`). Before 2026-12-03 this counted `field_bits`
  per coordinate and two of the scalar sums.
  """

  def __init__(self, config: DPConfig):
    self._config = config

  def create(self, value_type) -> tff.templates.AggregationProcess:
    inner = distributed_factory(self._config).create(value_type)
    result_type = inner.next.type_signature.result.result.member
    measurements_type = inner.next.type_signature.result.measurements.member
    clients_per_round = self._config.clients_per_round
    field = unsigned_sum_bits(2**self._config.field_bits - 1, clients_per_round)
    scalars = DISTRIBUTED_SCALAR_SUMS * count_bits(clients_per_round)

    @tff.tensorflow.computation(result_type, measurements_type)
    def mean_fn(total, measurements):
      clients = measurements["actual_num_clients"]
      mean = tf.nest.map_structure(
          lambda t: tf.math.divide_no_nan(t, tf.cast(clients, t.dtype)), total)
      out = dict(measurements)
      out["bits"] = tf.cast(clients, tf.int64) * (
          field * tf.cast(measurements["padded_dim"], tf.int64) + scalars)
      return mean, out

    @tff.federated_computation(inner.next.type_signature.parameter)
    def next_fn(state, value):
      output = inner.next(state, value)
      mean_and_measurements = tff.federated_map(mean_fn, (output.result, output.measurements))
      return tff.templates.MeasuredProcessOutput(output.state, mean_and_measurements[0],
                                                 mean_and_measurements[1])

    return tff.templates.AggregationProcess(inner.initialize, next_fn)


def check_protected_mean(aggregate_codec: CodecSpec | str | None, *, secure_aggregation: bool,
                         clients_per_round: int | None, dp: DPConfig | None,
                         client_weighting: tff.learning.ClientWeighting) -> CodecSpec:
  """The codec, if secure aggregation and DP accept it; else one-line ValueError.

  What `build_protected_mean` refuses, checked without building anything.
  """
  if client_weighting != tff.learning.ClientWeighting.UNIFORM:
    raise ValueError("--secure_aggregation and --dp bound each client's contribution, so the "
                     "mean is unweighted: pass --client_weighting=uniform")
  if secure_aggregation and not clients_per_round:
    raise ValueError("secure aggregation sizes its field from the clients per round: "
                     f"pass clients_per_round >= 1 (got {clients_per_round})")
  if dp is not None and clients_per_round and dp.clients_per_round != clients_per_round:
    # The field held clients_per_round clients while the noised mean divided by the
    # other (a library call with 4 and 2 doubled the update) and the accountant
    # assumed that many sampled.
    raise ValueError(f"clients_per_round={clients_per_round} but the DPConfig's is "
                     f"{dp.clients_per_round}: give both the clients a round samples")
  codec = CodecSpec.parse(aggregate_codec)
  if dp is not None and codec.codec.moves_state(codec.options):
    # Its state updates are summed from the clients' data outside the noised mean and
    # set how every client encodes next round: round t's data reach round t+1's model
    # through a channel the accounted epsilon does not cover.
    raise ValueError(f"--dp does not cover {codec.name}'s encoder state, which the clients' "
                     "updates move from round to round outside the noised mean"
                     f"{moving_state_hint(codec)}")
  if dp is not None and dp.mechanism == "distributed":
    if not secure_aggregation:
      raise ValueError("--dp=distributed adds its noise on the clients and needs the secure "
                       "sum: pass --secure_aggregation")
    if not codec.is_identity:
      raise ValueError("--dp=distributed quantizes and sums in its own field "
                       f"(--dp_field_bits): leave --aggregate_encoder at identity, not "
                       f"{codec.name!r}")
  elif secure_aggregation:
    check_sum_compatible(codec)
    if dp is not None and dp.mechanism == "central_adaptive":
      # The adaptive query's record carries the clipped-count indicator (+-0.5) beside the
      # update, and the secure sum would clip it to fixed_int's range with the update,
      # slowing the clip's adaptation by clip / 0.5.
      raise ValueError("--dp=central_adaptive cannot run under --secure_aggregation: its "
                       "clipped-count signal would be quantized with the update; use "
                       "--dp=central")
  elif (dp is not None and dp.mechanism == "central_adaptive" and codec.threshold < 1
        and fixed_range_links(codec)):
    # The same without secure aggregation, once the codec encodes scalars: fixed_int
    # clipped the +-0.5 indicator to +-clip (0.01: the clip grew by 1.002 in a round
    # with every update clipped, instead of 1.105).
    raise ValueError(
        f"--dp=central_adaptive with --compression_threshold={codec.threshold} would "
        f"clip its clipped-count signal (+-0.5) to {', '.join(fixed_range_links(codec))}'s "
        "range: raise --compression_threshold to 1 or more, or use --dp=central")
  return codec


def build_protected_mean(aggregate_codec: CodecSpec | str | None, *, secure_aggregation: bool,
                         clients_per_round: int | None, dp: DPConfig | None,
                         client_weighting: tff.learning.ClientWeighting, seed: int = 0
                         ) -> tff.aggregators.WeightedAggregationFactory:
  """The mean of client updates under secure aggregation and/or DP, for FedAvg.

  Both bound what one client contributes, so the mean is unweighted (each client counts
  once), as in TFF's DP aggregators; `client_weighting` must be `UNIFORM`.

  Raises:
    ValueError: one line: weighting by examples, a codec whose encodings do not add up
      under secure aggregation, a codec with distributed DP, distributed DP without
      secure aggregation, or no `clients_per_round` for secure aggregation.
  """
  codec = check_protected_mean(aggregate_codec, secure_aggregation=secure_aggregation,
                               clients_per_round=clients_per_round, dp=dp,
                               client_weighting=client_weighting)
  if dp is not None and dp.mechanism == "distributed":
    mean = build_dp_mean_factory(dp, sum_factory=None)
  elif dp is not None:
    sum_factory = (SecureEncodedSumFactory(codec, clients_per_round=clients_per_round,
                                           seed=seed)
                   if secure_aggregation else EncodedSumFactory.from_codec(codec, seed=seed))
    mean = build_dp_mean_factory(dp, sum_factory=sum_factory, seed=seed)
  else:
    # Weighted only in that a client of weight 0 (one rejected as non-finite) is not
    # counted; the DP means above count every client by design.
    return build_secure_mean_factory(codec, clients_per_round=clients_per_round, seed=seed)
  return tff.aggregators.as_weighted_aggregator(mean)
