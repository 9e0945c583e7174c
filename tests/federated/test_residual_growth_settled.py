"""A codec that errs by far less than it encodes is not refused for noisy growth (s47 R4).

On a 10-element tensor one round's residual norm over another's is noise: a 3-bit
`nonuniform`, whose squared error was 0.0025 times what it encoded, "grew" 6.8x from
round 20 to 40 and a digits run with `--compression_threshold=0` could not start.
"""

import pytest
import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec
from fedcompress.federated import residual_growth
from fedcompress.federated.error_feedback import check_error_feedback
from fedcompress.federated.residual_growth import Trend


@pytest.mark.parametrize("trend,compounds", [
    (Trend(6.8, 0.0025), False),  # The review's: far below SETTLED_RATIO.
    (Trend(2.5, 0.49), False),
    (Trend(2.5, 0.5), True),     # Could be gaining an update a round: growth counts.
    (Trend(1.5, 0.99), False),
    (Trend(1.5, 1.0), True),     # Never settles, however little it grew.
    (Trend(float("inf"), float("inf")), True),
])
def test_growth_counts_only_where_the_residual_could_gain_on_the_update(trend, compounds):
  assert trend.compounds is compounds


def test_a_fine_quantizer_on_a_small_bias_is_accepted():
  codec = CodecSpec("nonuniform(bits=3)", threshold=0)
  spec = tf.TensorSpec([10], tf.float32)
  trend = residual_growth.residual_trend(codec, spec)
  # The simulation's single-round growth is what refused it; its error is tiny.
  assert trend.growth > residual_growth.LIMIT and trend.error_ratio < 0.01, trend
  check_error_feedback("ef", codec, tff.learning.ClientWeighting.UNIFORM, [spec])
