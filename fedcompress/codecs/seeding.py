"""Seeds of the codecs' randomness: from (`--seed`, round, tensor, the tensor's bytes).

Every stochastic stage (stochastic rounding, rotations, random coordinates, Kashin's
frame) draws through `fedcompress.codecs.stages._common`, which derives its draws from
the key of the innermost open `seed_scope`. The TFF wiring (`fedcompress.federated`)
opens one scope per tensor around each encode, with the key from `encode_key` below,
and one around each `get_params` with `params_key`; so a run's codecs draw the same
numbers when it is run again, or resumed from a checkpoint, with the same `--seed`.

Why this key, and not a seed per client. A TFF aggregator's client-side encode is one
computation mapped over the clients: it does not know which client it runs for.
Giving it a per-client seed means a CLIENTS-placed input to every aggregator, which
TFF's `model_aggregator` interface (one CLIENTS value, one weight) does not carry.
Instead the server keeps a round counter in the aggregator's state and broadcasts the
round key `round_key(seed, round)` with the encode parameters, and each client folds
in a fingerprint of the very tensor it encodes (`tf.fingerprint`, 64 bits of
FarmHash over its bytes) and its position in the model. Clients with different
updates therefore draw independent-looking randomness, and the same client's update
is encoded the same way on rerun. The caveat: two clients whose updates are
bit-identical (e.g. the same data and the same broadcast model, or updates that are
all zero) draw the same randomness in that round, so their errors are equal rather
than independent; with real data this does not happen. The round key costs nothing on
the wire that counts: a client can compute it from the round number and the public
seed.

A consequence clients' stateful algorithms can use: an encode is a deterministic
function of (its input, the round key), so a client can recompute exactly what it
sent (error feedback keeps `x - decode(encode(x))`).
"""

from __future__ import annotations

import contextlib
import re

import tensorflow as tf

from fedcompress.codecs.stages import _common

# Distinguish the keys of get_params from those of encodes. The broadcast's encodes and
# the aggregation's share the encode salt: each runs under its own process's round
# counter and folds in the fingerprint of the tensor it encodes, which tells them apart.
_PARAMS_SALT = 0x9A7A
_ENCODE_SALT = 0xE7C0


def round_key(seed: int, round_num: tf.Tensor) -> tf.Tensor:
  """int64 [2] key of round `round_num` (a counter kept in process state) of run `seed`."""
  base = tf.constant([seed, 0x5EED], tf.int64)
  return tf.random.experimental.stateless_fold_in(base, tf.cast(round_num, tf.int64))


def fingerprint64(x: tf.Tensor) -> tf.Tensor:
  """int64 scalar FarmHash fingerprint of the bytes of `x` (not of its shape or dtype)."""
  x = tf.convert_to_tensor(x)
  flat = tf.reshape(x, [1, -1])
  return tf.bitcast(tf.fingerprint(flat)[0], tf.int64)


def _fold(key: tf.Tensor, *data) -> tf.Tensor:
  for value in data:
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(value, tf.int64))
  return key


def encode_key(key: tf.Tensor, index: int, x: tf.Tensor) -> tf.Tensor:
  """Key of encoding tensor number `index` of a structure, whose value is `x`."""
  return _fold(key, _ENCODE_SALT, index, fingerprint64(x))


def params_key(key: tf.Tensor, index: int) -> tf.Tensor:
  """Key of `get_params` of the encoder of tensor number `index` (server side)."""
  return _fold(key, _PARAMS_SALT, index)


def seed_scope(key: tf.Tensor) -> contextlib.AbstractContextManager:
  """The stages' draws traced inside are functions of `key` (see `_common.seed_scope`)."""
  return _common.seed_scope(key)


def draw_seed() -> tf.Tensor:
  """A fresh int32 scalar seed for a stage's own draws (`tf.random.stateless_*`).

  Drawn from the open `seed_scope`'s key, so a run draws the same with the same
  `--seed`, and the server's parameters are the same each time TFF computes them (on
  `--workers`, once to encode and once to decode); outside a scope, unseeded.
  """
  return _common.draw_seed()


# Ops that draw from TensorFlow's global or a stateful generator, which no seed scope
# reaches (tensor_encoding's own stages draw their seeds so). Not every `Stateful*` op:
# `StatefulPartitionedCall` is any `tf.function` holding a stateful op (an assert), and
# refused a codec seeded as the README asks; the draws inside it are found below. Nor
# `RandomIndexShuffle` (`tf.random.experimental.index_shuffle`): stateless, seeded.
_STATEFUL_RANDOM = re.compile(r"^(Random(?!IndexShuffle)|"
                              r"Stateful(Uniform|StandardNormal|TruncatedNormal|"
                              r"RandomBinomial)|TruncatedNormal$|Multinomial$|"
                              r"ParameterizedTruncatedNormal$|RngSkip$|RngReadAndSkip$)")


def unseeded_param_draws(encoder, spec: tf.TensorSpec | None = None) -> list[str]:
  """The op types of the draws `encoder.get_params` (and, with `spec`, its encode of
  such a tensor) makes outside the seed scopes they run in: each such draw differs
  every time it is computed."""
  graph = tf.Graph()
  with graph.as_default():
    key = round_key(0, tf.constant(0, tf.int64))
    with seed_scope(params_key(key, 0)):
      encode_params, _ = encoder.get_params(encoder.initial_state())
    if spec is not None:
      x = tf.zeros(spec.shape, spec.dtype)
      with seed_scope(encode_key(key, 0, x)):
        encoder.encode(x, encode_params)
  # The ops of the graph and of its functions: the branches of a `tf.cond`, the bodies
  # of `map_fn` and `while_loop`, and `tf.function`s live in its library (a draw inside
  # a cond was accepted).
  types = {op.type for op in graph.get_operations()}
  types.update(node.op for function in graph.as_graph_def().library.function
               for node in function.node_def)
  return sorted(t for t in types if _STATEFUL_RANDOM.match(t))
