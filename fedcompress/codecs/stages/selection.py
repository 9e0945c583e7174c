"""The positions of the k largest of a vector, without ordering all n of them.

`topk` (and the count sketch's heavy hitters) keep the k largest magnitudes of a
tensor, and `randk` falls back to the k largest of n seeded uniforms; `tf.math.top_k`
over all n values (a 1.6M-element kernel at 1%: k = 16,057) was most of their cost.
The k largest are also the k largest of the values at or above any threshold that at
least k values reach, so one pass picks those candidates (`tf.where`, in ascending
position) and `top_k` runs on them alone. `top_k` breaks ties by the lower position
and the candidates keep the positions' order, so the result is exactly what `top_k`
over everything returns. When fewer than k values reach the threshold (a poor guess),
the full `top_k` runs instead (`tf.cond`): the threshold changes the time, never the
result.
"""

from __future__ import annotations

import math

import tensorflow as tf

# How many values `sampled_threshold` looks at: enough that the k-th largest of them
# estimates the whole vector's quantile to a few percent, few enough to cost nothing.
SAMPLE_SIZE = 16384


def largest_k(values: tf.Tensor, k: int, threshold: tf.Tensor) -> tf.Tensor:
  """Positions of the `k` largest of rank-1 `values`, as `tf.math.top_k(values, k)`.

  In the same order too (descending value, ties by ascending position), for values
  without NaN. `threshold` only has to make the candidate set small; any value gives
  the same result.
  """
  n = values.shape[0]
  if k >= n:
    return tf.math.top_k(values, k=k).indices

  candidates = tf.where(values >= threshold)[:, 0]

  def among_candidates():
    top = tf.math.top_k(tf.gather(values, candidates), k=k).indices
    return tf.cast(tf.gather(candidates, top), tf.int32)

  return tf.cond(tf.size(candidates) >= k, among_candidates,
                 lambda: tf.math.top_k(values, k=k).indices)


def largest_magnitudes(values: tf.Tensor, k: int) -> tf.Tensor:
  """Positions of the `k` largest `|values|` (rank 1), as `tf.math.top_k(tf.abs(values))`."""
  magnitudes = tf.abs(values)
  return largest_k(magnitudes, k, sampled_threshold(magnitudes, k))


def sampled_threshold(values: tf.Tensor, k: int) -> tf.Tensor:
  """A value that, for most vectors, a little more than `k` of rank-1 `values` reach.

  The `k n_s / n` quantile of an evenly strided sample of `n_s` values, moved down by
  four standard deviations of its rank (a binomial count) so that the whole vector
  rarely has fewer than k values above it (`largest_k` is exact either way).
  """
  n = values.shape[0]
  stride = max(1, n // SAMPLE_SIZE)
  sample = values[::stride]
  sample_size = sample.shape[0]
  expected = k * sample_size / n
  rank = min(sample_size, math.ceil(expected + 4 * math.sqrt(expected) + 4))
  return tf.math.top_k(sample, k=rank).values[-1]


def uniform_threshold(num_elements: int, k: int) -> float:
  """For `num_elements` uniforms in [0, 1): a level that k + 4 sqrt(k) + 4 of them are
  expected to reach, so fewer than k do with probability below 1e-4."""
  return max(0.0, 1.0 - (k + 4 * math.sqrt(k) + 4) / num_elements)
