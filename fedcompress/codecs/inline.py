"""te's `SimpleEncoder` interface, traced only into the graphs that call it.

`te.core.SimpleEncoder` wraps its encoder's `initial_state`, `encode` and `decode` in
`tf.function`s and traces them when it is made, to learn the structures its flat
dictionaries stand for. A `tf.function`'s traces are keyed by the graph it is called
from, so each TFF computation that calls it (the broadcast's encode on the server, its
decode at the clients) traces the encoder again: the first trace is thrown away. For
the `drive` broadcast of the tutorial CNN that was 8 traces of the rotation for its 2
encoded tensors, where encode and decode once each are 4.

`InlineEncoder` builds the same ops straight into the calling graph, in the same order,
and returns the same flat dictionaries (tensor_encoding's own flattening, the same keys)
and state tuples. The structures are recorded by the first `encode`, which `decode`
needs first: a TFF decode takes its input type from the encode's result, so the encode
is always traced before.
"""

from __future__ import annotations

import collections

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils import py_utils

# tensor_encoding's SimpleEncoder keys (simple_encoder.py), so the flat keys are its own.
_TENSORS = "encoded_tensors"
_PARAMS = "params"
_SHAPES = "shapes"


class InlineEncoder:
  """`initial_state()`, `encode(x, state)` and `decode(encoded)` as `SimpleEncoder`'s."""

  def __init__(self, encoder: te.core.Encoder, tensorspec: tf.TensorSpec):
    if not isinstance(encoder, te.core.Encoder):
      raise TypeError("The encoder must be an instance of `Encoder`.")
    if not isinstance(tensorspec, tf.TensorSpec) or not tensorspec.shape.is_fully_defined():
      raise TypeError(f"a fully defined tf.TensorSpec is needed, got {tensorspec!r}")
    self._encoder = encoder
    self._tensorspec = tensorspec
    with tf.Graph().as_default():  # The state's structure only (a few scalars at most).
      self._state_structure = tf.nest.map_structure(lambda _: None, self._state())
    self._encoded_structure = None  # (the full nested structure, its Python values)

  @property
  def input_tensorspec(self) -> tf.TensorSpec:
    return self._tensorspec

  def _state(self):
    return tf.nest.map_structure(tf.convert_to_tensor, self._encoder.initial_state())

  def initial_state(self) -> tuple:
    """The encoder's state, flattened to a tuple of tensors."""
    return tuple(tf.nest.flatten(self._state()))

  def encode(self, x: tf.Tensor, state: tuple | None = None
             ) -> tuple[collections.OrderedDict, tuple]:
    """`(flat encoded dict of tensors, updated flat state)`, as `SimpleEncoder.encode`."""
    if state is None:
      state = self.initial_state()
    if not self._tensorspec.is_compatible_with(x):
      raise ValueError(f"{x!r} does not match the encoder's {self._tensorspec!r}")
    state = tf.nest.pack_sequence_as(self._state_structure, state)
    encode_params, decode_params = self._encoder.get_params(state)
    encoded_x, state_update_tensors, input_shapes = self._encoder.encode(x, encode_params)
    updated_state = tuple(tf.nest.flatten(
        self._encoder.update_state(state, state_update_tensors)))
    full = collections.OrderedDict(
        [(_TENSORS, encoded_x), (_PARAMS, decode_params), (_SHAPES, input_shapes)])
    flat = collections.OrderedDict(py_utils.flatten_with_joined_string_paths(full))
    flat_py, flat_tf = py_utils.split_dict_py_tf(flat)
    if self._encoded_structure is None:
      self._encoded_structure = (tf.nest.map_structure(lambda _: None, full), flat_py)
    # Returned through tf.identity as a tf.function's outputs are: an encoder that
    # passes its input on (identity) still gives tensors of its own.
    return (collections.OrderedDict((k, tf.identity(v)) for k, v in flat_tf.items()),
            tuple(tf.identity(s) for s in updated_state))

  def decode(self, encoded_x) -> tf.Tensor:
    """The decoded tensor of a flat encoded dict from `encode`."""
    if self._encoded_structure is None:
      raise ValueError("decode needs the structure the first encode records; encode first")
    full_structure, flat_py = self._encoded_structure
    merged = py_utils.merge_dicts(encoded_x, flat_py)
    full = tf.nest.pack_sequence_as(full_structure, tf.nest.flatten(merged))
    return self._encoder.decode(full[_TENSORS], full[_PARAMS], full[_SHAPES])
