"""Two inputs that passed the codecs' checks and then misbehaved (R2 of s48).

- `fixed_int` with a clip whose step clip/L is below float32's smallest normal number
  (which TensorFlow's CPU kernels flush to 0) sent or decoded every value as 0.
- A tensor of a partly unknown shape ended in `TypeError: unsupported operand type(s)
  for *: 'int' and 'NoneType'` in `CodecSpec.tensor_bits` and `applies_to`.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.testing import round_trip


@pytest.mark.parametrize("bits", [2, 8, 16])
def test_a_clip_whose_step_is_not_a_normal_float32_is_refused(bits):
  smallest = (2 ** (bits - 1) - 1) * np.finfo(np.float32).tiny
  with pytest.raises(ValueError, match=rf"^clip must be at least "
                     rf"{smallest:.3g} at bits={bits} \(its step clip/\d+ is below "
                     r"float32's smallest normal number\), got 1e-40$"):
    CodecSpec("fixed_int", {"bits": bits, "clip": 1e-40})


def test_the_smallest_clip_allowed_still_encodes():
  clip = float(np.float32(127 * np.finfo(np.float32).tiny * 1.001))
  spec = CodecSpec("fixed_int", {"bits": 8, "clip": clip}, threshold=0)
  x = tf.constant(np.full(100, clip / 2, np.float32))
  _, decoded, _ = round_trip(spec.simple_encoder(tf.TensorSpec([100], tf.float32)), x)
  assert np.all(decoded.numpy() > 0)


@pytest.mark.parametrize("call", ["tensor_bits", "applies_to", "simple_encoder"])
def test_a_partly_unknown_shape_is_one_line(call):
  spec = CodecSpec("uniform", {"bits": 8})
  with pytest.raises(ValueError, match=r"^codecs encode tensors of a known shape, got "
                     r"\(None, 784\) \(float32\)$"):
    getattr(spec, call)(tf.TensorSpec([None, 784], tf.float32))


def test_adaptive_budget_note_puts_the_budget_first():
  # It advised raising the threshold, which sends the tensors at 32 bits a coordinate
  # instead of about 1.3 (R6 of s48).
  from fedcompress.codecs.stages import adaptive

  note = adaptive.budget_note([101, 150, 1_000_000], direction="aggregate",
                              budget_bits_per_coordinate=2.0, coder="fixed")
  worst = adaptive.narrowest_rate(101, coder="fixed")
  assert worst > adaptive.narrowest_rate(150, coder="fixed") > 2.0
  advised = math.ceil(worst * 1000) / 1000  # Rounded up: 2.851 left the note as it was.
  assert note.endswith(
      f"so each round goes over there; raise the budget to {advised:.3f} to cover them, or "
      "the threshold (--compression_threshold, or threshold=) to 150 to send them unencoded "
      "(32 bits a float32 coordinate, more than width 1; the flag sets both directions)")
  assert adaptive.budget_note([101, 1_000_000], direction="aggregate",
                              budget_bits_per_coordinate=advised, coder="fixed") is None


def test_budget_mapping_messages_say_what_was_given():
  # An int32 tensor of 50,000 elements was said to have at most 10,000; a dict of specs
  # was named by its keys, "got ['str']" (R6 of s48).
  from fedcompress.codecs import budget

  with pytest.raises(ValueError, match=r"^no float tensor has more than 10000 elements: "
                     r"nothing to encode$"):
    budget.budget_bits_per_coordinate(1e7, 10, [tf.TensorSpec([50_000], tf.int32)])
  with pytest.raises(ValueError, match=r"got a mapping: give its values, "
                     r"list\(value_specs.values\(\)\)$"):
    budget.budget_bits_per_coordinate(1e7, 10, {"w": tf.TensorSpec([50_000], tf.float32)})


@pytest.mark.parametrize("bits,clip", [(2, 1e38), (8, 1e39)])
def test_a_clip_whose_scale_is_not_a_normal_float32_is_refused(bits, clip):
  # clip=1e38 at 2 bits decoded every value to NaN, 1e39 (Inf as a float32) to zeros
  # (R8 of s48).
  with pytest.raises(ValueError, match=rf"^clip must be at most \S+ at bits={bits} \(its "
                     r"scale \d+/clip must be a normal float32 number\)"):
    CodecSpec("fixed_int", {"bits": bits, "clip": clip})


def test_the_largest_clip_allowed_still_encodes():
  clip = float(np.float32(1 / np.finfo(np.float32).tiny / 1.001))
  spec = CodecSpec("fixed_int", {"bits": 2, "clip": clip}, threshold=0)
  x = tf.constant(np.full(100, clip / 2, np.float32))
  _, decoded, _ = round_trip(spec.simple_encoder(tf.TensorSpec([100], tf.float32)), x)
  assert np.all(np.isfinite(decoded.numpy())) and np.all(decoded.numpy() >= 0)
  assert np.mean(decoded.numpy().astype(np.float64)) == pytest.approx(clip / 2, rel=0.25)
