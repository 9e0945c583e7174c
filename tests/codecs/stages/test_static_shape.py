"""Stages whose layout depends on the element count refuse a tensor of unknown shape.

They size their selections, sketches, blocks and sign draws when traced, so an input
whose shape is only known at run time gets one error naming the stage, not a
TensorFlow traceback from deep inside it.
"""

from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, countsketch, nonuniform, randk, rotation, topk

STAGES = {
    "topk": topk.TopKEncodingStage,
    "randk": randk.RandKEncodingStage,
    "nonuniform": nonuniform.NonUniformQuantizationEncodingStage,
    "the rotation": rotation.RandomizedHadamardEncodingStage,
    "countsketch": countsketch.CountSketchEncodingStage,
}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_unknown_shape_is_refused_by_name(name):
  stage = STAGES[name]()

  with tf.Graph().as_default():
    x = tf.compat.v1.placeholder(tf.float32, [None])
    if isinstance(stage, te.core.AdaptiveEncodingStageInterface):
      params, _ = stage.get_params(stage.initial_state())
    else:
      params, _ = stage.get_params()
    with pytest.raises(ValueError, match=f"^{name} needs a statically known shape, got"):
      stage.encode(x, params)


def test_static_size_counts_elements():
  assert _common.static_size(tf.zeros([3, 4, 5]), "stage") == 60
  assert _common.static_size(tf.zeros([0, 7]), "stage") == 0
