"""NumPy scalars as codec and budget options (a sweep over np.linspace or np.arange).

NumPy integers were accepted; NumPy floats and bools were refused with a message quoting
a valid value ("fraction must be a number in (0, 1], got 0.25"), and AllocatedCodec
refused NumPy integers too (review R5).
"""

import numpy as np
import pytest

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec


@pytest.mark.parametrize("name,options,resolved", [
    ("topk", {"fraction": np.float32(0.25)}, {"fraction": 0.25}),
    ("eden", {"keep": np.float32(0.5)}, {"keep": 0.5}),
    ("fixed_int", {"clip": np.float32(0.5)}, {"clip": 0.5}),
    ("kashin", {"eta": np.float32(0.5)}, {"eta": 0.5}),
    ("adaptive", {"budget_bits_per_coordinate": np.float32(4.0)},
     {"budget_bits_per_coordinate": 4.0}),
    ("uniform", {"deterministic": np.bool_(True)}, {"deterministic": True}),
    ("randk", {"unbiased": np.bool_(False), "fraction": np.float64(0.1)},
     {"unbiased": False, "fraction": 0.1}),
])
def test_numpy_scalars_are_options_as_their_python_values(name, options, resolved):
  spec = CodecSpec(name, options, threshold=0)
  got = spec.resolved_options()
  assert {k: got[k] for k in resolved} == resolved
  assert all(type(got[k]) is type(v) for k, v in resolved.items())  # Python, not NumPy
  assert spec.describe() == CodecSpec(name, resolved, threshold=0).describe()


def test_numpy_budgets_and_widths():
  codec = AllocatedCodec(CodecSpec("uniform"), np.int64(2), np.arange(1, 9))
  assert codec.describe() == "uniform>10000@2bpc[1,2,3,4,5,6,7,8]"
  assert AllocatedCodec(CodecSpec("uniform"), np.float32(2.5)).bits_per_coordinate == 2.5


@pytest.mark.parametrize("options,message", [
    ({"deterministic": "no"}, r"deterministic must be true or false \(or 1/0\), got 'no' "
     r"\(str\)"),
    ({"deterministic": np.int64(2)}, "deterministic must be true or false"),
    ({"bits": 4, "word_bits": 32, "deterministic": np.float32(1.0)}, "true or false"),
])
def test_what_is_not_a_bool_is_still_refused(options, message):
  with pytest.raises(ValueError, match=message):
    CodecSpec("uniform", options, threshold=0).resolved_options()
