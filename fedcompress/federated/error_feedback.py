"""FedAvg with client-side error feedback (EF, EF21) and client state placed at CLIENTS.

Error feedback gives every client a memory of what its uplink codec lost, so that the
compression error is sent later instead of being dropped. Two modes:

* `ef` — error feedback / "memory" (Stich, Cordonnier & Jaggi, "Sparsified SGD with
  memory", NeurIPS 2018; Karimireddy et al., "Error feedback fixes SignSGD and other
  gradient compression schemes", ICML 2019). The client keeps a residual e. With its
  model update u (the FedAvg delta) it forms v = u + e, the codec C transmits v, and
  the client keeps e' = v - D(C(v)).
* `ef21` — EF21 (Richtárik, Sokolov & Fatkhullin, "EF21: a new, simpler, theoretically
  better, and practically faster error feedback", NeurIPS 2021), in its
  partial-participation form (EF21-PP, Fatkhullin et al., "EF21 with bells & whistles",
  2021). Client i keeps g_i (zeros at first), sends c_i = C(u_i - g_i) and sets
  g_i += D(c_i); the server keeps g = the population mean of the g_i, updated with the
  participants' c_i. Adapted to FedAvg, u_i is the client's model delta (EF21 uses a
  gradient) and the server applies g, not the round's mean, through the server
  optimizer: g += (|S|/N) * mean_{i in S} D(c_i), N = `num_clients` of the population,
  S the clients of the round. This is EF21-PP exactly with `UNIFORM` client weighting,
  which `ef21` requires: under `NUM_EXAMPLES` the mean is example-weighted and |S|/N is
  not the participants' share of the population's weight, so g drifted from the mean
  of the g_i for good (in a review's run, 39% off it once every client's g_i had
  converged). Clients not sampled keep their g_i, so g carries their last contribution.
  A client whose update is not finite (TFF's client work gives it weight 0) keeps its
  g_i too, and is not counted in |S|: the round's mean leaves it out as well.

What is implemented here, and why it is exact: the aggregator
(`fedcompress.federated.aggregation.build_mean_factory`, a `tff.aggregators.MeanFactory`
over encoded sums) encodes each client's weight * value, w*v, not v. The client
therefore computes the round trip D(C(w*v)) of exactly that tensor, with the same
codec, the same per-tensor threshold and the same float32 multiplication
(`MeanFactory` multiplies value by weight), and keeps e' = (w*v - D(C(w*v))) / w: the
residual in update units of what the transmitted encoding lost. So after any number of
participations, sum_t D(C(w_t v_t)) / w_t + e_T = sum_t u_t (to float rounding);
`tests/federated/test_error_feedback.py` checks this. For EF21, D(c_i) is likewise
D(C(w (u - g_i))) / w. It is equal to what the aggregator decodes when the encode is a
function of its input: deterministic codecs (`topk`, `uniform` with `deterministic`,
`identity`) and codecs whose encode state is their initial one (the client encodes
with the codec's initial encoder state; a codec whose server-side state moves, such as
`adaptive` with its Huffman coder, is refused: its residual was off by 16% of the
updates' size in a review's 10-round run). Stochastic codecs (stochastic
rounding, random rotations, `randk`) are exact too: the server broadcasts the round key
of the aggregator's own counter (`fedcompress.codecs.seeding`), and the client draws
its round trip under the same keys the aggregator's encode uses (the key folds in the
bytes of the very tensor w*v), so it recomputes the realization that was sent.

Bits: error feedback changes no bit count. The value the aggregator encodes has the
same type and the codec the same size; the residual never leaves the client. The
metrics are `build_fedavg`'s, under the same names (`broadcast/bits`,
`aggregate/bits`, ...). The client's extra encode is simulation work, not traffic.

The process: `tff.learning`'s `LearningProcess` cannot return a CLIENTS-placed value,
so this is TFF's `compose_learning_process` (distributor, FedAvg client work, the
aggregator, the optimizer finalizer: the parts `build_weighted_fed_avg` composes) with
the error-feedback step between client work and aggregator, as one
`tff.federated_computation` `(state, client_data, client_states) -> (state, metrics,
client_states)`. Client states are CLIENTS-placed flat float32 vectors. The round loop
uses `next_files` instead: the CLIENTS-placed values are the paths of the state files,
which the client's worker reads and writes (`fedcompress.harness.client_state`), so
the states never pass through the driver; with remote workers on other machines the
run directory must be shared. Caveat, from compiling `next` with TFF's
`mergeable_comp_compiler` (what the remote context does): it compiles, but TFF's
`after_merge` recomputes the client work to produce the CLIENTS-placed states, so on
remote workers each client trains twice per round, and the states match the
aggregated updates only when client work is deterministic given its inputs (seeded
data order, deterministic broadcast and uplink codecs). With top-k, two rounds through
two workers write the states a local run writes
(`tests/federated/test_remote_workers.py`).
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tree
from tensorflow_federated.python.core.impl.types import type_conversions

from fedcompress.codecs import CodecSpec, seeding, tracing
from fedcompress.federated import residual_growth
from fedcompress.federated.aggregation import (
  build_mean_factory,
  check_weighted_codec,
  encoded_sum_round,
  indexed_encoders,
  moving_state_hint,
)
from fedcompress.federated.broadcast import build_encoded_broadcast_process
from fedcompress.federated.fedavg import (
  ClientWeighting,
  bit_metrics_computation,
  default_optimizers,
  zero_initialized,
)
from fedcompress.federated.robust import RejectNonFiniteFactory

ERROR_FEEDBACK_MODES = ("none", "ef", "ef21")


@dataclasses.dataclass
class ClientStateOutput:
  """What `ClientStateProcess.next` returns: TFF's `LearningProcessOutput` plus states."""

  state: Any
  metrics: Any
  client_states: list


@dataclasses.dataclass
class ClientStateProcess:
  """A learning process whose round also takes and returns one state per client.

  Shaped like `tff.learning.templates.LearningProcess` (`initialize`, `next`,
  `get_model_weights`, `set_model_weights`) except that `next(state, client_data,
  client_states)` takes the sampled clients' states (flat float32 vectors of
  `client_state_size` elements, zeros for a client not seen before) and returns them
  updated in `.client_states`, in the same order.
  """

  initialize: tff.Computation
  next_computation: tff.Computation
  next_files_computation: tff.Computation
  get_model_weights: tff.Computation
  set_model_weights: tff.Computation
  client_state_size: int
  mode: str

  def next(self, state, client_data: Sequence[Any], client_states: Sequence[np.ndarray]
           ) -> ClientStateOutput:
    if len(client_states) != len(client_data):
      raise ValueError(f"{len(client_data)} clients but {len(client_states)} client states")
    out = self.next_computation(state, client_data, list(client_states))
    return ClientStateOutput(out["state"], out["metrics"], list(out["client_states"]))

  def next_files(self, state, client_data: Sequence[Any], read_paths: Sequence[str],
                 write_paths: Sequence[str]) -> ClientStateOutput:
    """`next` with the states in files, read and written where each client trains.

    `read_paths[i]` holds client i's state (a `tf.io.serialize_tensor` of the flat
    float32 vector; "" for zeros) and its new state is written to `write_paths[i]`, so
    the states never pass through the driver (`fedcompress.harness.client_state`).
    `.client_states` of the output are the element counts written, one per client.
    """
    if not len(read_paths) == len(write_paths) == len(client_data):
      raise ValueError(f"{len(client_data)} clients but {len(read_paths)} read and "
                       f"{len(write_paths)} write paths")
    out = self.next_files_computation(state, client_data, list(read_paths),
                                      list(write_paths))
    return ClientStateOutput(out["state"], out["metrics"], list(out["client_states"]))


def _flatten(structure) -> tf.Tensor:
  return tf.concat([tf.reshape(t, [-1]) for t in tf.nest.flatten(structure)], 0)


def _unflatten(vector: tf.Tensor, specs) -> Any:
  flat_specs = tf.nest.flatten(specs)
  sizes = [math.prod(s.shape.as_list()) for s in flat_specs]
  parts = tf.split(vector, sizes)
  return tf.nest.pack_sequence_as(
      specs, [tf.reshape(p, s.shape) for p, s in zip(parts, flat_specs, strict=True)])


def _round_trip(encoders, value, key):
  """D(C(value)) for one client, as the encoded sum of one summand decodes it.

  Drawn under the seed scopes `EncodedSumFactory` opens for the same tensor in the
  round of `key`, so a stochastic codec gives the realization the aggregator sent.
  """

  def one(indexed_encoder, x):
    index, encoder = indexed_encoder
    with seeding.seed_scope(seeding.params_key(key, index)):
      encode_params, before_sum_params, after_sum_params = encoder.get_params(
          encoder.initial_state())
    with seeding.seed_scope(seeding.encode_key(key, index, x)):
      encoded, _ = encoder.encode(x, encode_params)
    part = encoder.decode_before_sum(encoded, before_sum_params)
    return encoder.decode_after_sum(part, after_sum_params, tf.constant((1,), tf.int32))

  return tree.map_structure_up_to(encoders, one, indexed_encoders(encoders), value)


def update_specs(model_fn: Callable[[], tff.learning.models.VariableModel]) -> list:
  """The `tf.TensorSpec`s of a model's update (its trainable weights), flattened."""
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  return tf.nest.flatten(type_conversions.type_to_tf_tensor_specs(weights_type.trainable))


def check_error_feedback(mode: str, aggregate_codec: CodecSpec | str | None,
                         client_weighting: ClientWeighting,
                         specs: Sequence[tf.TensorSpec] | None = None) -> None:
  """What error feedback cannot be exact with, or cannot bound: one-line ValueErrors.

  A client's residual is what its own round trip lost, so the server's decoded sum
  must be the sum of the clients' decodes (not a count sketch's median over three or
  more rows); and EF21's server estimate is the population mean of the g_i only under
  uniform weights. With `specs` (the update's tensors, `update_specs(model_fn)`), the codec is also
  simulated on each tensor it encodes (`residual_growth`).
  """
  if mode not in ("ef", "ef21"):
    raise ValueError(f"unknown error feedback mode {mode!r}; valid: ef, ef21")
  codec = CodecSpec.parse(aggregate_codec)
  if not codec.codec.decodes_sums_exactly(codec.options):
    raise ValueError(f"--error_feedback needs an uplink codec whose decoded sum is the sum "
                     f"of the clients' decodes; {codec.name} decodes the summed encodings "
                     "non-linearly (a count sketch's median over three or more rows)")
  if codec.codec.moves_state(codec.options):
    # The client's round trip encodes with the codec's initial state; the aggregator
    # with its current one (adaptive's width follows last round's offset).
    raise ValueError(f"--error_feedback needs an uplink codec a client can recompute; "
                     f"{codec.name}'s encoder state moves from round to round at the server"
                     f"{moving_state_hint(codec)}")
  if mode == "ef21" and client_weighting != ClientWeighting.UNIFORM:
    raise ValueError("--error_feedback=ef21 keeps the population mean of the clients' "
                     "estimates, which needs --client_weighting=uniform")
  check_residual_growth(codec, specs or ())


def check_residual_growth(codec: CodecSpec, specs: Sequence[tf.TensorSpec]) -> None:
  """Refuses `codec` if error feedback's residual compounds on a tensor of `specs`.

  The residual is the next round's input: with a codec that errs too much for what it
  encodes it compounds (reviews R2 and R7: unbiased randk at 5% 1,620 updates after 8
  rounds, hadamard(bits=1) 54,500, a digits run ending at loss 13 against 2.2). No
  formula covers every codec and chain, so one client is simulated (residual_growth),
  on each shape the codec encodes: whether a residual compounds depends on it.
  """
  encoded = {(tuple(s.shape.as_list()), s.dtype.name): s for s in specs
             if codec.applies_to(s)}
  for spec in encoded.values():
    # The client recomputes its encode under the aggregator's keys: a draw outside them
    # (tensor_encoding's own stages draw so) made residuals that were not what was lost
    # (13 of 20 coordinates off by up to 30% with its uniform stage).
    draws = residual_growth.unseeded_draws(codec, spec)
    if draws:
      raise ValueError(f"--error_feedback needs an uplink codec a client can recompute; "
                       f"{codec.name} draws from TensorFlow's global generator "
                       f"({', '.join(draws)}), so the residual would not be what was sent: "
                       "draw seeds with fedcompress.codecs.seeding.draw_seed() and "
                       "stateless ops")
  for (shape, _), spec in sorted(encoded.items(), key=lambda kv: -math.prod(kv[0][0])):
    trend = residual_growth.residual_trend(codec, spec)
    if trend.compounds:
      half, rounds = residual_growth.ROUNDS // 2, residual_growth.ROUNDS
      grew = "without bound" if math.isinf(trend.growth) else f"{trend.growth:.3g}x"
      raise ValueError(f"--error_feedback needs an uplink codec whose residual stays "
                       f"bounded; with {codec.name} on the {'x'.join(map(str, shape))} "
                       f"tensor a simulated client's grew {grew} from round {half} to "
                       f"{rounds}, the codec's squared error {trend.error_ratio:.4g} times "
                       "what it encoded (a fresh Gaussian update each round; 1 or more "
                       "never settles): its error compounds; use topk, "
                       "randk(unbiased=false), eden, drive, or more bits")


@tracing.unconverted(tracing.TFF_HELPER_PACKAGES)  # As `build_fedavg`.
def build_fedavg_with_error_feedback(
    model_fn: Callable[[], tff.learning.models.VariableModel],
    client_optimizer: tff.learning.optimizers.Optimizer | None = None,
    server_optimizer: tff.learning.optimizers.Optimizer | None = None,
    *,
    mode: str = "ef",
    num_clients: int | None = None,
    broadcast_codec: CodecSpec | str | None = None,
    aggregate_codec: CodecSpec | str | None = None,
    client_weighting: ClientWeighting = ClientWeighting.NUM_EXAMPLES,
    reject_non_finite: bool = True,
    loop_implementation: tff.learning.LoopImplementation = (
        tff.learning.LoopImplementation.DATASET_ITERATOR),
    seed: int = 0,
) -> ClientStateProcess:
  """`build_fedavg`'s process with client error feedback on the uplink codec.

  Args:
    model_fn: no-arg function returning a fresh `tff.learning.models.VariableModel`.
    client_optimizer: TFF optimizer for local training; SGD 0.02.
    server_optimizer: TFF optimizer applying the mean update; SGD 1.0.
    mode: `ef` or `ef21` (see the module docstring).
    num_clients: the population size N (EF21's server update); required for `ef21`.
    broadcast_codec: codec for server -> client weights (`None` = identity).
    aggregate_codec: codec of the clients' updates, as in `build_fedavg`.
    client_weighting: `NUM_EXAMPLES` (FedAvg) or `UNIFORM`.
    reject_non_finite: as in `build_fedavg`; a client whose update or new state is not
      finite keeps its old state.
    loop_implementation: as in `build_fedavg`.
    seed: as in `build_fedavg` (the codecs' seeded randomness). The client's own round
      trip D(C(w*v)) draws with the aggregator's keys: the residual is what was sent.

  Returns:
    A `ClientStateProcess`; its metrics are those of `build_fedavg` under the same names.
  """
  check_error_feedback(mode, aggregate_codec, client_weighting)
  if mode == "ef21" and not (isinstance(num_clients, int) and num_clients >= 1):
    raise ValueError(f"ef21 needs num_clients (the population size) >= 1, got {num_clients!r}")
  client_optimizer, server_optimizer = default_optimizers(client_optimizer, server_optimizer)
  aggregate_codec = CodecSpec.parse(aggregate_codec)
  weights_type = tff.learning.models.weights_type_from_model(model_fn)
  update_type = weights_type.trainable
  update_tensor_specs = type_conversions.type_to_tf_tensor_specs(update_type)
  check_residual_growth(aggregate_codec, tf.nest.flatten(update_tensor_specs))
  size = sum(math.prod(s.shape.as_list()) for s in tf.nest.flatten(update_tensor_specs))
  state_type = tff.TensorType(np.float32, [size])

  distributor = build_encoded_broadcast_process(weights_type, broadcast_codec, seed=seed)
  client_work = tff.learning.templates.build_model_delta_client_work(
      zero_initialized(model_fn), client_optimizer, client_weighting,
      loop_implementation=loop_implementation)
  check_weighted_codec(aggregate_codec, client_weighting)
  factory = build_mean_factory(aggregate_codec, seed=seed)
  if reject_non_finite:
    factory = RejectNonFiniteFactory(factory)
  aggregator = factory.create(update_type, tff.TensorType(np.float32))
  finalizer = tff.learning.templates.build_apply_optimizer_finalizer(
      server_optimizer, weights_type)
  # The aggregator's numerator encoders, built the same way (EncodedSumFactory maps
  # the codec over the value's tensor specs).
  encoders = tf.nest.map_structure(aggregate_codec.gather_encoder, update_tensor_specs)

  @tff.tensorflow.computation(aggregator.initialize.type_signature.result.member)
  def round_key_fn(aggregator_state):
    return seeding.round_key(seed, encoded_sum_round(aggregator_state))

  key_type = round_key_fn.type_signature.result

  @tff.tensorflow.computation(update_type, tf.float32, state_type, key_type)
  def client_fn(update, weight, memory, key):
    memory_tree = _unflatten(memory, update_tensor_specs)
    if mode == "ef":
      value = tf.nest.map_structure(tf.add, update, memory_tree)
    else:
      value = tf.nest.map_structure(tf.subtract, update, memory_tree)
    weighted = tf.nest.map_structure(lambda x: x * tf.cast(weight, x.dtype), value)
    decoded = tf.nest.map_structure(lambda d: tf.math.divide_no_nan(d, weight),
                                    _round_trip(encoders, weighted, key))
    if mode == "ef":
      # What the transmitted w*v lost, in update units (v - D(C(w v)) / w).
      new_memory = _flatten(value) - _flatten(decoded)
    else:
      new_memory = memory + _flatten(decoded)
    keep = tf.logical_and(weight > 0, tf.reduce_all(tf.math.is_finite(new_memory)))
    return value, tf.where(keep, new_memory, memory)

  @tff.tensorflow.computation
  def initial_weights_fn():
    return tff.learning.models.ModelWeights.from_model(model_fn())

  def learner_state(weights, distributor_state, client_work_state, aggregator_state,
                    finalizer_state):
    return tff.learning.templates.LearningAlgorithmState(
        weights, distributor_state, client_work_state, aggregator_state, finalizer_state)

  @tff.tensorflow.computation
  def zero_estimate_fn():
    return tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), update_tensor_specs)

  @tff.federated_computation
  def init_fn():
    learner = tff.federated_zip(learner_state(
        tff.federated_eval(initial_weights_fn, tff.SERVER), distributor.initialize(),
        client_work.initialize(), aggregator.initialize(), finalizer.initialize()))
    if mode == "ef":
      return learner
    return tff.federated_zip(collections.OrderedDict(
        learner=learner, server_estimate=tff.federated_eval(zero_estimate_fn, tff.SERVER)))

  server_state_type = init_fn.type_signature.result
  client_data_type = client_work.next.type_signature.parameter[2]
  metrics_type = tff.StructWithPythonType([
      ("distributor", distributor.next.type_signature.result.measurements.member),
      ("client_work", client_work.next.type_signature.result.measurements.member),
      ("aggregator", aggregator.next.type_signature.result.measurements.member),
      ("finalizer", finalizer.next.type_signature.result.measurements.member)],
      collections.OrderedDict)
  add_bits = bit_metrics_computation(metrics_type)

  @tff.tensorflow.computation(tf.float32)
  def participant_fn(weight):
    # |S| counts the clients in the round's mean: TFF's client work gives a non-finite
    # update weight 0, which leaves it out of the mean (and the client keeps its g_i).
    return tf.cast(weight > 0, tf.float32)

  @tff.tensorflow.computation(update_type, update_type, tf.float32)
  def server_estimate_fn(estimate, mean_c, participants):
    share = participants / float(num_clients or 1)
    return tf.nest.map_structure(lambda g, c: g + share * c, estimate, mean_c)

  @tff.federated_computation(server_state_type, client_data_type,
                             tff.FederatedType(state_type, tff.CLIENTS))
  def next_fn(state, client_data, client_states):
    learner = state if mode == "ef" else state.learner
    distributor_output = distributor.next(learner.distributor, learner.global_model_weights)
    client_work_output = client_work.next(learner.client_work, distributor_output.result,
                                          client_data)
    weight = client_work_output.result.update_weight
    key = tff.federated_broadcast(tff.federated_map(round_key_fn, learner.aggregator))
    value, new_client_states = tff.federated_map(
        client_fn, (client_work_output.result.update, weight, client_states, key))
    aggregator_output = aggregator.next(learner.aggregator, value, weight)
    if mode == "ef":
      model_update = aggregator_output.result
    else:
      participants = tff.federated_sum(tff.federated_map(participant_fn, weight))
      model_update = tff.federated_map(server_estimate_fn, (
          state.server_estimate, aggregator_output.result, participants))
    finalizer_output = finalizer.next(learner.finalizer, learner.global_model_weights,
                                      model_update)
    new_learner = tff.federated_zip(learner_state(
        finalizer_output.result, distributor_output.state, client_work_output.state,
        aggregator_output.state, finalizer_output.state))
    new_state = new_learner if mode == "ef" else tff.federated_zip(collections.OrderedDict(
        learner=new_learner, server_estimate=model_update))
    metrics = tff.federated_map(add_bits, tff.federated_zip(collections.OrderedDict(
        distributor=distributor_output.measurements,
        client_work=client_work_output.measurements,
        aggregator=aggregator_output.measurements,
        finalizer=finalizer_output.measurements)))
    return collections.OrderedDict(state=new_state, metrics=metrics,
                                   client_states=new_client_states)

  @tff.tensorflow.computation(tf.string)
  def load_fn(path):
    def read():
      return tf.ensure_shape(tf.io.parse_tensor(tf.io.read_file(path), tf.float32), [size])
    return tf.cond(tf.equal(path, ""), lambda: tf.zeros([size], tf.float32), read)

  @tff.tensorflow.computation(state_type, tf.string)
  def save_fn(value, path):
    written = tf.io.write_file(path, tf.io.serialize_tensor(value))
    # The count is what the round returns for the client: it runs only after the write.
    with tf.control_dependencies([written]):
      return tf.size(value)

  strings_at_clients = tff.FederatedType(tff.TensorType(np.str_), tff.CLIENTS)

  @tff.federated_computation(server_state_type, client_data_type, strings_at_clients,
                             strings_at_clients)
  def next_files_fn(state, client_data, read_paths, write_paths):
    out = next_fn(state, client_data, tff.federated_map(load_fn, read_paths))
    written = tff.federated_map(save_fn, (out["client_states"], write_paths))
    return collections.OrderedDict(state=out["state"], metrics=out["metrics"],
                                   client_states=written)

  state_member = server_state_type.member

  @tff.tensorflow.computation(state_member)
  def get_model_weights_fn(state):
    return state.global_model_weights if mode == "ef" else state["learner"].global_model_weights

  @tff.tensorflow.computation(state_member, weights_type)
  def set_model_weights_fn(state, weights):
    learner = state if mode == "ef" else state["learner"]
    new = learner_state(weights, learner.distributor, learner.client_work,
                        learner.aggregator, learner.finalizer)
    if mode == "ef":
      return new
    return collections.OrderedDict(learner=new, server_estimate=state["server_estimate"])

  return ClientStateProcess(init_fn, next_fn, next_files_fn, get_model_weights_fn,
                            set_model_weights_fn, client_state_size=size, mode=mode)
