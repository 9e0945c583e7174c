"""adaptive: budgets it cannot meet are said, and constant tensors do not move its rate.

Width 1 sends a bit per coordinate before its header, so a budget at or below 1 ran at
width 1 and went over it (3.5x at 0.2, coder=fixed, unsaid); a small tensor's header
can take more than the budget (2.85 bits per coordinate on 101 elements at a budget of
2.0). A constant tensor, such as a client `RejectNonFiniteFactory` replaced by zeros,
codes to one symbol, and its saving, averaged into the rate offset, raised every
client's width round after round.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
import tree

from fedcompress.codecs import CodecSpec, budget
from fedcompress.codecs.stages import adaptive, huffman


@pytest.mark.parametrize("value", [0.2, 1, 1.0])
def test_a_budget_of_at_most_one_bit_is_refused(value):
  with pytest.raises(ValueError, match=r"cannot be met: adaptive sends at least 1 bit per "
                     r"coordinate \(width 1\)"):
    CodecSpec("adaptive", {"budget_bits_per_coordinate": value})
  CodecSpec("adaptive", {"budget_bits_per_coordinate": 1.01})


def test_the_budget_mapping_refuses_what_adaptive_cannot_send():
  specs = [tf.TensorSpec([100_000], tf.float32)]
  assert budget.budget_bits_per_coordinate(10 * (150_000 + 32), 10, specs) == 1.5
  with pytest.raises(ValueError, match="leaves 0.5 bits per encoded coordinate"):
    budget.budget_bits_per_coordinate(10 * (50_000 + 32), 10, specs)


@pytest.mark.parametrize("coder", ["fixed", "huffman"])
@pytest.mark.parametrize("n", [101, 512, 5000])
def test_the_narrowest_rate_is_what_width_one_sends(coder, n):
  stage = adaptive.AdaptiveUniformEncodingStage(1.01, coder=coder)  # Width 1 for any n.
  params, _ = stage.get_params(stage.initial_state())
  x = np.random.default_rng(n).normal(size=n).astype(np.float32)
  encoded, _ = stage.encode(tf.constant(x), params)
  stream = encoded[stage.ENCODED_VALUES_KEY]
  assert int(huffman.stream_header(stream)[1]) == 1
  sent = int(tf.size(stream)) * 32 + adaptive.MIN_MAX_BITS + adaptive.STATE_UPDATE_BITS
  assert adaptive.narrowest_rate(n, coder=coder) == sent / n
  assert adaptive.narrowest_rate(n, coder=coder, direction="broadcast") == (sent - 64) / n


def test_the_note_names_the_tensors_over_the_budget():
  note = adaptive.budget_note([101, 512, 1_000_000], direction="aggregate",
                              budget_bits_per_coordinate=2.0, coder="fixed")
  rate = adaptive.narrowest_rate(101, coder="fixed")
  assert rate > 2.0 > adaptive.narrowest_rate(512, coder="fixed")
  assert note.startswith(f"cannot meet budget_bits_per_coordinate=2 on 1 of its 3 tensors: "
                         f"width 1 sends {rate:.3f} bits per coordinate on the one of 101 "
                         "elements")
  assert "to 101 to send them unencoded" in note
  assert adaptive.budget_note([512, 1_000_000], direction="aggregate",
                              budget_bits_per_coordinate=2.0) is None


def test_a_constant_tensor_does_not_teach_the_rate():
  stage = adaptive.AdaptiveUniformEncodingStage(3.0)
  params, _ = stage.get_params(stage.initial_state())
  for x, counted in ((np.zeros(5000, np.float32), 0.0), (np.full(5000, 0.5, np.float32), 0.0),
                     (np.random.default_rng(0).normal(size=5000).astype(np.float32), 1.0)):
    _, update = stage.encode(tf.constant(x), params)
    assert float(update[stage.COUNT_UPDATE_KEY]) == counted
    if not counted:
      assert float(update[stage.EXCESS_UPDATE_KEY]) == 0.0


def test_a_rejected_client_leaves_the_others_widths_as_they_were():
  # Through TFF: two Gaussian clients, with and without a third whose update is NaN
  # (rejected, then summed as zeros). Before, the rejected client's one-symbol stream
  # taught a saving it could not have, and the real clients' widths rose round after
  # round; now the offset the codec learns is the same with it as without it.
  from fedcompress.federated.aggregation import build_mean_factory
  from fedcompress.federated.robust import RejectNonFiniteFactory

  n = 20_000
  codec = CodecSpec("adaptive", {"budget_bits_per_coordinate": 3.0}, threshold=0)
  process = RejectNonFiniteFactory(build_mean_factory(codec)).create(
      tff.TensorType(np.float32, [n]), tff.TensorType(np.float32))

  def offsets(rejected: int) -> list[list[float]]:
    rng = np.random.default_rng(0)
    state, learned = process.initialize(), []
    for _ in range(4):
      values = [rng.normal(size=n).astype(np.float32) for _ in range(2)]
      state = process.next(state, values + [np.full(n, np.nan, np.float32)] * rejected,
                           [1.0] * (2 + rejected)).state
      # The rate offset, the one float of the state (the rest are round counters).
      learned.append([v for v in tree.flatten(state) if isinstance(v, np.floating)])
    return learned

  alone = offsets(0)
  assert len(alone[0]) == 1 and alone[1] != alone[0]  # It learns.
  assert offsets(1) == alone


@pytest.mark.parametrize("total, clients, specs, message", [
    (float("nan"), 10, None, "aggregate_bits_budget must be a finite number"),
    (float("inf"), 10, None, "aggregate_bits_budget must be a finite number"),
    (1e7, 2.5, None, "clients_per_round must be an integer >= 1, got 2.5"),
    (1e7, True, None, "clients_per_round must be an integer >= 1, got True"),
    (1e7, 10, {"w": tf.TensorSpec([100_000], tf.float32)},
     "value_specs must be tf.TensorSpecs or tensors"),
])
def test_the_budget_mapping_checks_its_arguments(total, clients, specs, message):
  # NaN and inf gave NaN and inf budgets, 2.5 clients a budget, a dict a traceback.
  specs = specs if specs is not None else [tf.TensorSpec([100_000], tf.float32)]
  with pytest.raises(ValueError, match=message):
    budget.budget_bits_per_coordinate(total, clients, specs)


def test_the_budget_mapping_takes_a_models_variables():
  # model.trainable_variables, as it did before its arguments were checked.
  variables = [tf.Variable(tf.zeros([100_000])), tf.Variable(tf.zeros([10]))]
  specs = [tf.TensorSpec([100_000], tf.float32), tf.TensorSpec([10], tf.float32)]
  total = 10 * (100_000 * 2 + 10 * 32 + 32)
  assert budget.budget_bits_per_coordinate(total, 10, variables, threshold=100) == \
      budget.budget_bits_per_coordinate(total, 10, specs, threshold=100) == 2.0
  # One alone ('no tensor has more than 10000 elements'); a shape not fully known.
  assert budget.budget_bits_per_coordinate(10 * (200_000 + 32), 10, variables[0]) == 2.0
  with pytest.raises(ValueError, match="tensors of known shapes"):
    budget.budget_bits_per_coordinate(1e7, 10, [tf.TensorSpec([None, 10], tf.float32)])
  with pytest.raises(ValueError, match=r"\(model.trainable_variables\), got a Sequential"):
    budget.budget_bits_per_coordinate(1e7, 10, tf.keras.Sequential([tf.keras.layers.Dense(2)]))
