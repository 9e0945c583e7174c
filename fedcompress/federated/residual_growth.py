"""Whether a codec's error-feedback residual stays bounded: one simulated client.

Error feedback (`fedcompress.federated.error_feedback`) sends v = u + e and keeps
e' = v - D(C(v)), so the residual is the next round's input. The theory asks for a
contraction, `E||v - D(C(v))||^2 <= (1 - delta) ||v||^2` for every v (Stich et al.,
NeurIPS 2018; Karimireddy et al., ICML 2019), which no test can check over every v,
and a single measurement of the codec's error is not the question either: a min/max
quantizer errs by 1.24 times a Gaussian vector at 2 bits, yet its residual settles,
because the error is capped by the step the range sets, and the range of u + e grows
more slowly than e (reviews R7 of s38 and R1 of s39).

So this runs what error feedback runs, on a tensor of the shape and dtype the codec
will encode: one client, a fresh seeded N(0, I) update each round, `ROUNDS` round trips
through the real encoder, and the residual's norm at the last round against the one
halfway. A residual that settles, or still fills up as topk's does (a dropped
coordinate returns in a later round), grows by at most sqrt(2) over the second half
(topk at 0.1%: 1.35x on 2^14 coordinates); one that grows by more than `LIMIT` = 2,
more than a residual that gains a full update every round, is compounding its own
error.

The shape matters, so the check runs on each encoded tensor's own (a review, s39):
a min/max quantizer after a rotation errs more on longer tensors (the range of n
Gaussians grows with n), and a count sketch of fixed columns loses nothing on a tensor
that fits them. On 2^14 coordinates `hadamard(bits=2)` grew 6.9x and `kashin(bits=2)`
0.95x; on the tutorial CNN's 3136 x 512 kernel, `kashin(bits=2)` grew 2.55x and
`countsketch(rows=1,columns=20000)` without bound, which a 2^14 check accepted (0.98x),
while `hadamard(bits=2)` settles on 2,000 coordinates.
"""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np
import tensorflow as tf

from fedcompress.codecs import CodecSpec, registry, seeding

ROUNDS = 40
LIMIT = 2.0
_SEED = 20_181_203  # Stich et al.'s NeurIPS 2018 date: any fixed value would do.


@functools.cache
def _growth(name: str, options: tuple, shape: tuple, dtype_name: str,
            registry_change: int) -> float:
  """`||e_ROUNDS|| / ||e_ROUNDS/2||` of one simulated client (inf if not finite).

  `registry_change` (`registry.registry_change()`) only keys the cache, as in
  `allocation._normalized_mses`. In a graph of its own with a graph-level seed, so the
  codec's own draws are the same every time and the caller's global seed is left alone.
  """
  dtype = tf.as_dtype(dtype_name)
  graph = tf.Graph()
  with graph.as_default():
    tf.random.set_seed(_SEED)
    fed = tf.compat.v1.placeholder(tf.float32, shape)
    value = tf.cast(fed, dtype)
    encoder = CodecSpec(name, dict(options), threshold=0).make_encoder()
    # Parameters drawn in the graph are drawn again at every run, as every round does.
    encode_params, decode_params = encoder.get_params(encoder.initial_state())
    encoded, _, shapes = encoder.encode(value, encode_params)
    residual = tf.cast(value - encoder.decode(encoded, decode_params, shapes), tf.float32)
    updates = np.random.default_rng(_SEED)
    e = np.zeros(shape, np.float32)
    norms = []
    with tf.compat.v1.Session(graph=graph) as session:
      for _ in range(ROUNDS):
        u = updates.standard_normal(shape).astype(np.float32)
        e = session.run(residual, {fed: u + e})
        norms.append(float(np.linalg.norm(e.astype(np.float64))))
        if not math.isfinite(norms[-1]):
          return math.inf
  halfway, last = norms[ROUNDS // 2 - 1], norms[-1]
  if halfway == 0.0:
    return 0.0 if last == 0.0 else math.inf
  return last / halfway


def residual_growth(codec: CodecSpec, spec: tf.TensorSpec) -> float:
  """How much the residual of `codec` on a tensor of `spec` grew over the second half
  of the simulated rounds.

  Raises:
    ValueError: the codec could not be simulated on such a tensor, in one line.
  """
  shape = tuple(spec.shape.as_list())
  with _said_in_one_line(codec, spec):
    return _growth(codec.name, tuple(sorted(codec.options.items())), shape, spec.dtype.name,
                   registry.registry_change())


def unseeded_draws(codec: CodecSpec, spec: tf.TensorSpec) -> list[str]:
  """`seeding.unseeded_param_draws` of `codec` on a tensor of `spec`: the draws a
  client could not recompute (a ValueError in one line if it cannot be traced)."""
  with _said_in_one_line(codec, spec):
    return list(_unseeded(codec.name, tuple(sorted(codec.options.items())),
                          tuple(spec.shape.as_list()), spec.dtype.name,
                          registry.registry_change()))


@functools.cache
def _unseeded(name: str, options: tuple, shape: tuple, dtype_name: str,
              registry_change: int) -> tuple[str, ...]:
  # Cached as `_growth` is: a run's check and its process's build trace it once.
  del registry_change  # Only keys the cache.
  encoder = CodecSpec(name, dict(options), threshold=0).make_encoder()
  return tuple(seeding.unseeded_param_draws(encoder, tf.TensorSpec(shape, dtype_name)))


@contextlib.contextmanager
def _said_in_one_line(codec: CodecSpec, spec: tf.TensorSpec):
  try:
    yield
  except Exception as e:  # A user's codec may raise anything: said in one line.
    raise ValueError(f"--error_feedback could not simulate {codec.name} on a "
                     f"{'x'.join(map(str, spec.shape.as_list()))} {spec.dtype.name} tensor "
                     f"({type(e).__name__}: {str(e).strip().splitlines()[0][:200]})") from None
