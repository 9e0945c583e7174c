"""Found in a review: a tight budget, a reused options dict, a NumPy threshold, and a
user's stage in a chain."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

import fedcompress
from fedcompress.codecs import CodecSpec, unregister
from fedcompress.codecs.allocation import AllocatedCodec, allocate_tf


def test_a_budget_that_just_covers_the_cheapest_candidates_is_never_exceeded():
  # Costs rounded up to 1/4096 of the budget no longer fit it: backtracking went below
  # index 0 and gave the first tensor its dearer candidate, 1,199,900 bits of 1,000,000.
  costs = np.array([[100, 200_000], [999_900, 1_500_000]])
  choice = allocate_tf(costs, np.array([[1.0, 0.5], [1.0, 0.5]]), 1_000_000).numpy()
  assert costs[np.arange(2), choice].sum() <= 1_000_000
  assert list(choice) == [0, 0]


def test_a_tight_plan_keeps_its_budget():
  # The same through a plan: a small first tensor, then one of 2,001,000 coordinates,
  # at the smallest budget `plan` accepts (found by the review's search).
  specs = [tf.TensorSpec([200], tf.float32), tf.TensorSpec([2_001_000], tf.float32)]
  bits = 2_034_608 / 2_001_200
  plan = AllocatedCodec(CodecSpec("eden", threshold=100), bits, (1, 2, 3, 4)).plan(specs)
  assert plan.budget == 2_034_608
  assert plan.total_bits(plan.allocate([1.0, 1.0])) <= plan.budget


def test_a_width_sets_keep_whatever_the_base_gave():
  from fedcompress.codecs import allocation

  base = CodecSpec("eden", {"keep": 0.5})
  assert allocation.width_options(base, 1) == {"bits": 1}
  assert allocation.width_options(base, 1.95) == {"bits": 2, "keep": 0.975}


def test_specs_made_from_one_dict_keep_their_own_options():
  options, specs = {}, []
  for bits in (1, 2, 4):
    options["bits"] = bits
    specs.append(CodecSpec("eden", options, threshold=0))
  assert [s.describe() for s in specs] == ["eden(bits=1)>0", "eden(bits=2)>0", "eden(bits=4)>0"]
  options["bits"] = 9  # Not a width EDEN has: the specs made before are not touched.
  assert specs[-1].options == {"bits": 4}


def test_a_numpy_threshold_counts_as_an_integer():
  spec = CodecSpec("uniform", threshold=np.int64(100))
  assert spec.threshold == 100 and type(spec.threshold) is int
  for bad in (True, -1, 1.5):
    with pytest.raises(ValueError, match="threshold must be a non-negative integer"):
      CodecSpec("uniform", threshold=bad)


@te.core.tf_style_encoding_stage
class _HalfPrecisionStage(te.core.EncodingStageInterface):
  """The README's example stage: it names its values only in its compressible keys."""

  name = "half_precision"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32)


def test_a_users_stage_can_be_followed_in_a_chain():
  # It was refused ("ends in 'half_precision', whose output no codec can take"): the
  # chain looked for an ENCODED_VALUES_KEY attribute only.
  fedcompress.register_stage("fp16_in_chain", _HalfPrecisionStage)
  try:
    spec = CodecSpec("fp16_in_chain|uniform(bits=8)", threshold=0)
    x = np.linspace(-1, 1, 100).astype(np.float32)
    encoder = spec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))
    encoded, _ = encoder.encode(tf.constant(x), encoder.initial_state())
    # uniform quantized fp16's values: 8-bit words and a float16 min/max.
    kinds = sorted(t.dtype.name for t in tf.nest.flatten(encoded))
    assert kinds == ["float16", "float16", "int32"]
    np.testing.assert_allclose(encoder.decode(encoded).numpy(), x, atol=2 / 255)
  finally:
    unregister("fp16_in_chain")


@te.core.tf_style_encoding_stage
class _ClipStage(te.core.EncodingStageInterface):
  """A decorated stage with options of its own constructor."""

  name = "clip_values"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def __init__(self, clip: float = 1.0, bits: int = 8):
    self._clip, self._bits = clip, bits

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.clip_by_value(x, -self._clip, self._clip)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return encoded_tensors["values"]


def test_a_decorated_stage_s_options_are_its_constructor_s():
  # tensor_encoding's decorator wraps the class in a `(*args, **kwargs)` constructor:
  # `bits=4` was dropped (the binaries warned that the codec takes no width) and the
  # defaults went unrecorded.
  fedcompress.register_stage("clip_in_test", _ClipStage)
  try:
    assert fedcompress.make_codec("clip_in_test", bits=4).options == {"bits": 4}
    assert CodecSpec("clip_in_test").resolved_options() == {"clip": 1.0, "bits": 8}
    with pytest.raises(ValueError, match="has no option 'foo'; its options: clip, bits"):
      CodecSpec("clip_in_test(foo=1)")
  finally:
    unregister("clip_in_test")
