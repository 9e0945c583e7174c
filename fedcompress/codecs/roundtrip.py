"""A user's codec traced once on a tensor before TFF builds with it: its mistakes in one line.

tensor_encoding and TFF take an encoder on trust. A user's stage that returns a tensor
from `encode` instead of a dict, decodes to float16 a float32 input (the README's
half-precision example without its cast back), or decodes to a shape known only at run
time failed deep inside a TFF build, as a bare `AssertionError`, a 60-line type diff or
"Cannot convert a partially known TensorShape", none naming the codec. Here the encoder
encodes and decodes a placeholder of the tensor's spec in a throwaway graph, and what
breaks the contract is said as a `ValueError` naming the codec and the tensor.

Only codecs with the user's code in them (any not registered by fedcompress's own
loader) are traced, fedcompress's own being tested: one encode and decode more per
tensor and build, a few milliseconds for a small stage.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Mapping
from typing import Any

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te


def _containers_are_dicts(value: Any, where: str = "") -> str | None:
  """Where the encoded structure holds something other than dicts of tensors, or None."""
  if isinstance(value, Mapping):
    for key, item in value.items():
      if (found := _containers_are_dicts(item, f"{where}/{key}")) is not None:
        return found
    return None
  return None if isinstance(value, tf.Tensor) else f"{type(value).__name__} at {where or '/'}"


def _received(structure: Any) -> Any:
  """`structure` with its tensors replaced by placeholders of their dtypes and shapes."""
  return tf.nest.map_structure(
      lambda t: tf.compat.v1.placeholder(t.dtype, t.shape) if isinstance(t, tf.Tensor) else t,
      structure)


def _static_mismatch(decoded: Any, spec: tf.TensorSpec) -> str | None:
  """How `decoded` differs from a tensor of `spec`, or None."""
  if not isinstance(decoded, tf.Tensor):
    return f"{type(decoded).__name__}, not a tensor"
  if decoded.dtype != spec.dtype:
    return f"{decoded.dtype.name}, not the input's {spec.dtype.name}"
  if not decoded.shape.is_compatible_with(spec.shape):
    return f"shape {decoded.shape}, not the input's {spec.shape}"
  return None


def _contract_broken(error: Exception) -> str | None:
  """Which of tensor_encoding's rules for a stage `error` most likely comes from."""
  text = str(error)
  # Who made the call that failed: the innermost frame outside TensorFlow's and six's
  # own code (a tensor's missing `.items` is raised in TensorFlow's `__getattr__`).
  callers = [f.filename for f in traceback.extract_tb(error.__traceback__)
             if f"{os.sep}tensorflow{os.sep}" not in f.filename
             and os.path.basename(f.filename) != "six.py"]
  if not callers or "tensor_encoding" not in callers[-1]:
    return None  # Raised in the stage's own code: its own mistake, said as it is.
  if isinstance(error, AttributeError) and "Tensor' object has no attribute 'items'" in text:
    # tensor_encoding reads the stage's encode output as a dict.
    return "its stage's encode returns a tensor, not a dict of tensors"
  if isinstance(error, TypeError) and (
      "get_params() takes 1 positional argument but 2 were given" in text):
    # tensor_encoding passes get_params a name, which the decorator's wrapper takes; a
    # decorated stage's own methods missing an argument fail otherwise (review R9).
    return ("its stage class is not decorated with @te.core.tf_style_encoding_stage, or "
            "tf_style_adaptive_encoding_stage")
  return None


def check(encoder: te.core.Encoder, spec: tf.TensorSpec, codec: str, *,
          summed: bool = False) -> None:
  """Raises ValueError naming `codec` where `encoder` breaks tensor_encoding's contract.

  Args:
    encoder: the codec's Encoder.
    spec: the tensor it will encode.
    codec: what to call the codec in the message (its description).
    summed: whether it encodes client updates that the server sums (TFF's
      `EncodedSumFactory`), which needs more: encoded values are dicts of tensors (a
      list there failed as "must be from the same graph"), and what is decoded before
      the sum has a static shape (one known only at run time cannot be summed into).
  """
  where = f"codec {codec!r} on a {spec.dtype.name}{spec.shape.as_list()} tensor"
  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(spec.dtype, spec.shape)
    try:
      encode_params, decode_params = encoder.get_params(encoder.initial_state())
      encoded, _, shapes = encoder.encode(x, encode_params)
      if summed and (found := _containers_are_dicts(encoded)) is not None:
        raise ValueError(f"{where}: its encode returns a {found} among its encoded values; "
                         "a summed codec's encoded values are dicts of tensors")
      # As the receiver gets them: values of the same static shapes, not the constants
      # the trace may have folded (a size that `tf.size(x)` gave as one).
      encoded, shapes = _received(encoded), _received(shapes)
      decoded = encoder.decode(encoded, decode_params, shapes)
      if summed:
        before = encoder.decode_before_sum(encoded, decode_params, shapes)
        unknown = [t.shape for t in tf.nest.flatten(before)
                   if isinstance(t, tf.Tensor) and not t.shape.is_fully_defined()]
        if unknown:
          raise ValueError(f"{where}: it decodes to shape {unknown[0]} before the sum, "
                           "known only when it runs; the server's sum needs static shapes "
                           "(a stage with decode_needs_input_shape=True gets the input's "
                           "shape in decode)")
        decoded = encoder.decode_after_sum(before, decode_params, 1, shapes)
    except ValueError as e:
      if str(e).startswith(where):
        raise
      raise ValueError(f"{where} fails to encode and decode: {e}") from e
    except Exception as e:  # noqa: BLE001 (a user's stage failing: said in one line)
      rule = _contract_broken(e)
      raise ValueError(f"{where} fails to encode and decode: {type(e).__name__}: {e}"
                       + (f" ({rule})" if rule else "")) from e
  if (mismatch := _static_mismatch(decoded, spec)) is not None:
    raise ValueError(f"{where}: it decodes to {mismatch}")
