"""FetchSGD: clients send count sketches, the server keeps momentum and error in sketch space.

Rothchild, Panda, Ullah, Ivkin, Stoica, Braverman, Gonzalez and Arora, "FetchSGD:
Communication-Efficient Federated Learning with Sketching", ICML 2020 (Algorithm 1).
Each sampled client sends the count sketch `S_c` of its weighted model update (the
whole model as one vector, every tensor included) and its weight; all clients use the
same sketch (hashes from one `seed` fixed for the run, known to everybody, never
sent), so the server adds the sketches and divides by the summed weight: the sketch
of the weighted mean update, `S`. The server then, in sketch space,

    S_u <- rho S_u + S                  (momentum)
    S_e <- S_e + lr S_u                 (error accumulation)
    delta <- top-k of unsketch(S_e)     (median-of-rows estimates, k largest magnitudes)
    S_u, S_e <- 0 at the buckets that the k coordinates of delta hash to

and returns `delta` as the round's update, which FedAvg's server optimizer (SGD at
learning rate 1.0, plain FedAvg) subtracts from the model. This is the paper's
one-round variant: the k coordinates' values are the sketch's estimates (the paper's
second round, which asks the clients for the exact values of the k coordinates, is not
implemented). Zeroing both sketches at those buckets is what the authors' reference
code does (kiddyboots216/CommEfficient, `fed_aggregator._server_helper_sketched`, read
at its last commit 833ca44): the error sketch is zeroed instead of having the sketch of
`delta` subtracted, which its comment says made the model diverge, and the momentum
sketch is zeroed at the same buckets as a cheap stand-in for momentum factor masking.

A client's update is whatever its local training made of the broadcast model: in
`build_fedavg`, its FedAvg update (its epochs over its batches at the client learning
rate, several SGD steps). The paper's clients, and the reference code's ("for all
non-fedavg modes, we just do a single step", `fed_worker.py`), send one gradient, which
`learning_rate` scales: one client step over all its data at client learning rate 1
makes the update that gradient (the README gives the flags).

Clients keep nothing between rounds (no client state): momentum and error feedback live
on the server, which is why FetchSGD suits cross-device training where a client is
rarely sampled twice. The two sketches are part of the aggregator's state, so they are
checkpointed with the server state.

Bits (`measurements['bits']`, summed into `aggregate/bits` by `build_fedavg`): every
client sends `rows * columns` float32 values and its float32 weight, `32 (rows *
columns + 1)` bits, counted in-graph from the structure the clients actually send.
"""

from __future__ import annotations

import collections
import math

import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.types import type_conversions

from fedcompress.codecs import accounting
from fedcompress.codecs.builtin import (
  COUNT_SKETCH_DEFAULT_FRACTION,
  CountSketch,
  check_count_sketch_table,
  count_sketch_columns,
)
from fedcompress.codecs.stages import _common


def check_options(rows: int = 1, columns: int = 0,
                  fraction: float = COUNT_SKETCH_DEFAULT_FRACTION,
                  topk: float = 0.01, momentum: float = 0.9, learning_rate: float = 1.0,
                  seed: int = 0) -> dict:
  """FetchSGD's options, checked, with their defaults.

  Args:
    rows: rows of the count sketch.
    columns: columns of the count sketch; 0 sizes it from `fraction`.
    fraction: sketch size `rows * columns` as a fraction of the model's coordinates
      (when `columns` is 0).
    topk: fraction of the model's coordinates the server applies each round (k).
    momentum: rho, the momentum kept in sketch space (0 for none).
    learning_rate: lr of the error accumulation `S_e += lr S_u`.
    seed: the run's sketch seed (fixed: the sketches accumulate across rounds).
  """
  for name, value, low in (("momentum", momentum, 0.0), ("learning_rate", learning_rate, 0.0)):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
        value) or value < low:
      raise ValueError(f"fetchsgd {name} must be a finite number >= {low}, got {value!r}")
  if momentum >= 1.0:
    raise ValueError(f"fetchsgd momentum must be < 1, got {momentum!r}")
  if learning_rate == 0:
    raise ValueError("fetchsgd learning_rate must be > 0")
  sketch = {"rows": _common.check_int("rows", rows, 1, 64),
            "columns": _common.check_int("columns", columns, 0, 2**31 - 1),
            "fraction": _common.check_fraction("fraction", fraction)}
  check_count_sketch_table(**sketch, name="fetchsgd")
  return {**sketch, "topk": _common.check_fraction("topk", topk),
          "momentum": float(momentum), "learning_rate": float(learning_rate),
          "seed": _common.check_int("seed", seed, 0, 2**31 - 1)}


def client_bits(num_elements: int, **options) -> int:
  """Exact bits one client sends for a model of `num_elements` float32 coordinates."""
  o = check_options(**options)
  columns = count_sketch_columns(num_elements, o["rows"], o["columns"], o["fraction"])
  return 32 * (o["rows"] * columns + 1)


class FetchSGDFactory(tff.aggregators.WeightedAggregationFactory):
  """FetchSGD's aggregation (see the module docstring): sketched uplink, sketch-space memory.

  Its process's state is `{'momentum', 'error'}`, two `[rows, columns]` float32
  sketches at the server; its result is the round's update `delta` (k non-zero
  coordinates) in the value's structure; its measurement `bits` what the clients sent.
  """

  def __init__(self, **options):
    self._options = check_options(**options)

  @property
  def options(self) -> dict:
    return dict(self._options)

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    specs = type_conversions.type_to_tf_tensor_specs(value_type)
    flat_specs = tf.nest.flatten(specs)
    if not all(s.dtype.is_floating and s.shape.is_fully_defined() for s in flat_specs):
      raise ValueError("fetchsgd needs float tensors of fully known shapes")
    sizes = [s.shape.num_elements() for s in flat_specs]
    n = sum(sizes)
    o = self._options
    sketch = CountSketch(n, o["rows"],
                         count_sketch_columns(n, o["rows"], o["columns"], o["fraction"]))
    k = _common.kept_count(n, o["topk"])
    table_shape = [sketch.rows, sketch.columns]

    def hashes():
      return sketch.hashes(tf.constant(o["seed"], tf.int32))

    @tff.tensorflow.computation
    def initial_state_fn():
      return collections.OrderedDict(momentum=tf.zeros(table_shape),
                                     error=tf.zeros(table_shape))

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(initial_state_fn, tff.SERVER)

    state_type = initial_state_fn.type_signature.result

    @tff.tensorflow.computation(value_type, weight_type)
    def client_fn(value, weight):
      weight = tf.cast(weight, tf.float32)
      flat = tf.concat([tf.reshape(tf.cast(t, tf.float32), [-1])
                        for t in tf.nest.flatten(value)], axis=0)
      return collections.OrderedDict(table=sketch.sketch(weight * flat, hashes()),
                                     weight=weight)

    contribution_type = client_fn.type_signature.result

    @tff.tensorflow.computation(contribution_type)
    def bits_fn(contribution):
      return accounting.structure_bits_tf(contribution)

    @tff.tensorflow.computation(state_type, contribution_type)
    def server_fn(state, summed):
      mean = tf.math.divide_no_nan(summed["table"], summed["weight"])
      momentum = o["momentum"] * state["momentum"] + mean
      error = state["error"] + o["learning_rate"] * momentum
      h = hashes()
      estimate = sketch.estimate(error, h)
      top = sketch.largest(estimate, k)
      delta = tf.scatter_nd(top[:, tf.newaxis], tf.gather(estimate, top), [n])
      # The buckets the k applied coordinates hash to, in every row.
      hit = tf.scatter_nd(tf.reshape(tf.gather(h[0], top, axis=1), [-1, 1]),
                          tf.ones([sketch.rows * k], tf.bool), [sketch.rows * sketch.columns])
      hit = tf.reshape(hit, table_shape)
      new_state = collections.OrderedDict(
          momentum=tf.where(hit, 0.0, momentum), error=tf.where(hit, 0.0, error))
      parts = tf.split(delta, sizes)
      update = tf.nest.pack_sequence_as(specs, [
          tf.cast(tf.reshape(p, s.shape), s.dtype)
          for p, s in zip(parts, flat_specs, strict=True)])
      return new_state, update

    @tff.federated_computation(init_fn.type_signature.result,
                               tff.FederatedType(value_type, tff.CLIENTS),
                               tff.FederatedType(weight_type, tff.CLIENTS))
    def next_fn(state, value, weight):
      contributions = tff.federated_map(client_fn, (value, weight))
      summed = tff.federated_sum(contributions)
      new_state, update = tff.federated_map(server_fn, (state, summed))
      bits = tff.federated_sum(tff.federated_map(bits_fn, contributions))
      measurements = tff.federated_zip(collections.OrderedDict(bits=bits))
      return tff.templates.MeasuredProcessOutput(state=new_state, result=update,
                                                 measurements=measurements)

    return tff.templates.AggregationProcess(init_fn, next_fn)
