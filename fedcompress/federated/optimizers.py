"""Server/client optimizers that TFF 0.87 lacks in the form a reference setup used.

`build_keras_adagrad`: Adagrad with epsilon outside the square root,
`w -= lr * g / (sqrt(s) + eps)`, as Keras' `Adagrad` of TF <= 2.10 computed it (TF 2.14's
`tf.keras.optimizers.legacy.Adagrad` still does; its new `Adagrad` puts epsilon inside the
root) and as the FedOpt paper states FedAdagrad (Reddi et al., Adaptive Federated
Optimization, ICLR 2021, Algorithm 2, its tau; google-research/federated ran Keras'
optimizer of its time). TFF's
`build_adagrad` computes `g / sqrt(s + eps)`: with the paper's Shakespeare epsilon 10^-1
and an accumulator starting at 0, a small coordinate then moves sqrt(10) times less.
"""

from __future__ import annotations

import collections
from typing import Any

import tensorflow as tf
import tensorflow_federated as tff

_LEARNING_RATE = "learning_rate"
_EPSILON = "epsilon"
_PRECONDITIONER = "preconditioner"


class _KerasAdagrad(tff.learning.optimizers.Optimizer):
  """See `build_keras_adagrad`."""

  def __init__(self, learning_rate: float, initial_accumulator: float, epsilon: float):
    for name, value in (("learning_rate", learning_rate),
                        ("initial_accumulator", initial_accumulator), ("epsilon", epsilon)):
      if value < 0:
        raise ValueError(f"Adagrad {name} must be >= 0, got {value}")
    self._lr = learning_rate
    self._initial = initial_accumulator
    self._epsilon = epsilon

  def initialize(self, specs: Any) -> collections.OrderedDict:
    return collections.OrderedDict([
        (_LEARNING_RATE, self._lr),
        (_EPSILON, self._epsilon),
        (_PRECONDITIONER, tf.nest.map_structure(
            lambda s: tf.fill(s.shape, tf.cast(self._initial, s.dtype)), specs)),
    ])

  def next(self, state, weights, gradients):
    tf.nest.assert_same_structure(weights, gradients)
    lr, epsilon = state[_LEARNING_RATE], state[_EPSILON]
    new_weights, new_accumulators = [], []
    for w, s, g in zip(tf.nest.flatten(weights), tf.nest.flatten(state[_PRECONDITIONER]),
                       tf.nest.flatten(gradients), strict=True):
      s = s + tf.math.square(g)
      new_accumulators.append(s)
      # divide_no_nan: with epsilon 0, a coordinate never updated stays put (0 / 0).
      new_weights.append(w - tf.cast(lr, g.dtype) * tf.math.divide_no_nan(
          g, tf.math.sqrt(s) + tf.cast(epsilon, g.dtype)))
    new_state = collections.OrderedDict([
        (_LEARNING_RATE, lr), (_EPSILON, epsilon),
        (_PRECONDITIONER, tf.nest.pack_sequence_as(state[_PRECONDITIONER],
                                                   new_accumulators))])
    return new_state, tf.nest.pack_sequence_as(weights, new_weights)

  def get_hparams(self, state):
    return collections.OrderedDict([(k, state[k]) for k in (_LEARNING_RATE, _EPSILON)])

  def set_hparams(self, state, hparams):
    return collections.OrderedDict([(k, hparams.get(k, v)) for k, v in state.items()])


def build_keras_adagrad(learning_rate: float, initial_preconditioner_value: float = 0.0,
                        epsilon: float = 1e-7) -> tff.learning.optimizers.Optimizer:
  """Adagrad as Keras and the FedOpt paper compute it (see the module docstring).

  ```
  s = s + g**2
  w = w - lr * g / (sqrt(s) + eps)
  ```

  Args:
    learning_rate: step size (> 0).
    initial_preconditioner_value: the accumulator's start (the paper's 0; Keras' 0.1).
    epsilon: the paper's tau (>= 0).
  """
  return _KerasAdagrad(learning_rate, initial_preconditioner_value, epsilon)
