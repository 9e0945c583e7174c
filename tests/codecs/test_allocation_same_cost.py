"""A run's bit budget over a codec whose widths all cost the same is refused (R6 of s48).

`fixed_int` sends an int32 a coordinate whatever its `bits` outside the secure sum:
the plan chose among candidates of one cost by the clipping error they share (width 6,
where 8 cost the same), and the run was recorded as a budgeted allocation.
"""

import pytest

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.harness.experiment import ExperimentConfig

REFUSAL = (r"^codec 'fixed_int' sends the same bits at every width \[2, 3, 4, 6, 8\]: a bit "
           r"budget has nothing to allocate; give it a fixed width instead$")


@pytest.mark.parametrize("direction", ["broadcast", "aggregate"])
def test_a_run_of_fixed_int_under_a_budget_is_refused(tmp_path, direction):
  budget = AllocatedCodec(CodecSpec("fixed_int", threshold=100), 33.0)
  with pytest.raises(ValueError, match=REFUSAL):
    ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="r", client_weighting="uniform",
                     **{f"{direction}_codec": budget}).validate()


def test_codecs_whose_widths_cost_differently_are_still_taken(tmp_path):
  for budget in (AllocatedCodec(CodecSpec("uniform", threshold=100), 2.0),
                 AllocatedCodec(CodecSpec("eden", threshold=100), 1.0, (1, 2, 3))):
    budget.check_widths_cost_apart()
    ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="r",
                     aggregate_codec=budget).validate()
