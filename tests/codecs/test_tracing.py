"""SimpleEncoders are traced without autograph converting fedcompress or tensor_encoding."""

import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config
from tensorflow.python.autograph.pyct import transpiler

from fedcompress.codecs import CodecSpec, tracing

_SPEC = tf.TensorSpec([3000], tf.float32)


def _record_conversions(monkeypatch) -> list[str]:
  """Modules of the functions autograph converts from now on (cache misses included)."""
  converted = []
  original = transpiler.PyToPy.transform_function

  def recording(self, fn, user_context):
    converted.append(getattr(fn, "__module__", "") or "")
    return original(self, fn, user_context)

  monkeypatch.setattr(transpiler.PyToPy, "transform_function", recording)
  return converted


def test_building_converts_no_graph_code_and_restores_the_rules(monkeypatch):
  rules = autograph_config.CONVERSION_RULES
  converted = _record_conversions(monkeypatch)
  # A codec whose stages are in fedcompress and in tensor_encoding.
  encoder = CodecSpec("drive", {}, threshold=100).simple_encoder(_SPEC)
  # Only SimpleEncoder's own tf.functions are converted (autograph converts the function
  # a tf.function wraps whatever its package); nothing they call in either package.
  own = "tensorflow_model_optimization.python.core.internal.tensor_encoding.core.simple_encoder"
  assert own in converted
  assert not [m for m in converted
              if m.startswith(tracing.GRAPH_CODE_PACKAGES) and m != own], converted
  assert autograph_config.CONVERSION_RULES is rules
  # And the encoder is the codec: DRIVE keeps the direction (cosine near 1 at 1 bit).
  x = tf.constant(np.random.default_rng(0).normal(size=3000).astype(np.float32))
  encoded, state = encoder.encode(x, encoder.initial_state())
  decoded = encoder.decode(encoded).numpy()
  cosine = float(np.dot(decoded, x) / np.linalg.norm(decoded) / np.linalg.norm(x))
  assert 0.7 < cosine < 1.0


def _action(module_name: str) -> autograph_config.Action:
  """What autograph's rules say of a module, first matching rule first (as autograph reads)."""
  module = types.SimpleNamespace(__name__=module_name)
  for rule in autograph_config.CONVERSION_RULES:
    action = rule.get_action(module)
    if action != autograph_config.Action.NONE:
      return action
  return autograph_config.Action.NONE


def test_nested_use_restores_the_rules_only_at_the_outermost_exit():
  rules = autograph_config.CONVERSION_RULES
  assert _action("fedcompress.codecs.stages.drive") == autograph_config.Action.NONE
  with tracing.graph_code_unconverted():
    inner = autograph_config.CONVERSION_RULES
    for name in ("fedcompress.codecs.stages.drive", "tensorflow_model_optimization.python"):
      assert _action(name) == autograph_config.Action.DO_NOT_CONVERT
    assert _action("tensorflow_federated.python.learning") == autograph_config.Action.NONE
    with tracing.graph_code_unconverted():
      assert autograph_config.CONVERSION_RULES is inner
    assert autograph_config.CONVERSION_RULES is inner
  assert autograph_config.CONVERSION_RULES is rules


def test_scopes_of_different_packages_nest():
  rules = autograph_config.CONVERSION_RULES
  helper = "tensorflow_federated.python.common_libs.structure"
  with tracing.graph_code_unconverted():
    with tracing.unconverted(tracing.TFF_HELPER_PACKAGES):
      assert _action(helper) == autograph_config.Action.DO_NOT_CONVERT
      assert _action("fedcompress.codecs.stages.drive") == autograph_config.Action.DO_NOT_CONVERT
    # The inner scope's packages are converted again; the outer one's are not.
    assert _action(helper) == autograph_config.Action.NONE
    assert _action("fedcompress.codecs.stages.drive") == autograph_config.Action.DO_NOT_CONVERT
  assert autograph_config.CONVERSION_RULES is rules


class _Stop(Exception):
  pass


@pytest.mark.parametrize("builder", ["build_fedavg", "build_fedavg_with_error_feedback"])
def test_fedavg_builders_trace_with_tffs_helpers_unconverted(monkeypatch, builder):
  import tensorflow_federated as tff

  from fedcompress.federated import error_feedback, fedavg
  rules = autograph_config.CONVERSION_RULES
  seen = []

  def first_tff_call(*args, **kwargs):
    # The builders' first TFF call, before any tracing: what autograph would do now.
    seen.extend(_action(p + ".module") for p in tracing.TFF_HELPER_PACKAGES)
    seen.append(_action("tensorflow_federated.python.learning.templates.module"))
    raise _Stop

  monkeypatch.setattr(tff.learning.optimizers, "build_sgdm", first_tff_call)
  build = {"build_fedavg": fedavg.build_fedavg,
           "build_fedavg_with_error_feedback": error_feedback.build_fedavg_with_error_feedback}
  with pytest.raises(_Stop):
    build[builder](lambda: None, aggregate_codec=CodecSpec("topk", {"fraction": 0.1}))
  dnc, none = autograph_config.Action.DO_NOT_CONVERT, autograph_config.Action.NONE
  # TFF's training loop itself (its templates) is still converted.
  assert seen == [dnc] * len(tracing.TFF_HELPER_PACKAGES) + [none]
  assert autograph_config.CONVERSION_RULES is rules
