"""Every research codec through fedcompress's TFF processes, on tiny literal data.

Aggregation: `build_mean_factory(CodecSpec(...))` (GatherEncoder: numerator encoded,
the weight under the threshold). Broadcast: `build_encoded_broadcast_process`
(SimpleEncoder). Inputs are chosen so that each codec's result is known exactly (or
within the stated rounding): spikes for DRIVE/EDEN with one rotation round, at most
four distinct values for the rest, keep-everything fractions for the sparsifiers.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow_federated as tff

from fedcompress.codecs import CodecSpec, available_codecs, get_codec
from fedcompress.federated.aggregation import build_mean_factory
from fedcompress.federated.broadcast import build_encoded_broadcast_process

VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    w=tff.TensorType(np.float32, [5, 8]), b=tff.TensorType(np.float32, [3])))
THRESHOLD = 3  # 'w' (40 elements) is encoded; 'b' and the mean's weight are not.
WEIGHTS = [1.0, 2.0, 3.0]

# name -> (options, input kind, absolute tolerance of the decoded result)
CASES = {
    "hadamard": ({"bits": 16, "deterministic": True}, "levels", 1e-3),
    "kashin": ({"bits": 16, "deterministic": True}, "levels", 1e-3),
    "drive": ({"rounds": 1}, "spikes", 1e-5),
    "eden": ({"bits": 3, "rounds": 1}, "spikes", 1e-5),
    "topk": ({"fraction": 1.0}, "levels", 0.0),
    "randk": ({"fraction": 1.0}, "levels", 1e-6),
    "nonuniform": ({"bits": 2, "method": "quantile"}, "levels", 0.0),
    "rotation": ({}, "levels", 1e-5),
    # Three spikes in 5 rows x 400 buckets: every estimate's median is exact.
    "countsketch": ({"rows": 5, "columns": 400}, "spikes", 1e-5),
    # A step of 100 / 32767 per value (weights up to 3 times values up to 3: no clipping).
    "fixed_int": ({"bits": 16, "clip": 100.0}, "levels", 1e-2),
}


def research_codecs() -> list[str]:
  """The codecs with a bit formula besides the tutorial's two."""
  return [c for c in available_codecs()
          if get_codec(c).bits_formula is not None and c not in ("identity", "uniform")]


def _values(kind):
  rng = np.random.default_rng(0)
  values = []
  for i in range(3):
    if kind == "spikes":
      w = np.zeros(40, np.float32)
      w[7 * i + 1] = (-1.0)**i * (i + 1.5)
    else:
      w = rng.choice(np.array([-1.5, 0.0, 0.25, 3.0], np.float32), size=40)
    values.append(collections.OrderedDict(w=w.reshape(5, 8),
                                          b=np.array([i, -i, 0.5], np.float32)))
  return values


# Codecs whose TFF computations take longest to build run in `make test` only.
_SLOW = {"drive", "eden", "hadamard", "kashin", "nonuniform"}
_PARAMS = [pytest.param(n, marks=pytest.mark.slow) if n in _SLOW else n for n in sorted(CASES)]


def test_every_research_codec_is_covered():
  assert sorted(CASES) == research_codecs()


@pytest.mark.parametrize("name", _PARAMS)
def test_weighted_mean(name):
  options, kind, tolerance = CASES[name]
  factory = build_mean_factory(CodecSpec(name, options, threshold=THRESHOLD))
  process = factory.create(VALUE_TYPE, tff.TensorType(np.float32))
  values = _values(kind)
  output = process.next(process.initialize(), values, WEIGHTS)
  expected = {k: sum(w * v[k] for w, v in zip(WEIGHTS, values, strict=True)) / sum(WEIGHTS)
              for k in "wb"}
  np.testing.assert_allclose(output.result["w"], expected["w"], atol=tolerance)
  np.testing.assert_allclose(output.result["b"], expected["b"], rtol=1e-6)
  # Each client: the encoded 'w' + 'b' (3 float32) + its float32 weight.
  per_client = get_codec(name).bits(40, options, direction="aggregate") + 3 * 32 + 32
  bits = output.measurements["mean_value"]["bits"] + output.measurements["mean_weight"]["bits"]
  assert bits == 3 * per_client


@pytest.mark.parametrize("name", _PARAMS)
def test_broadcast(name):
  options, kind, tolerance = CASES[name]
  process = build_encoded_broadcast_process(VALUE_TYPE,
                                            CodecSpec(name, options, threshold=THRESHOLD))

  @tff.federated_computation(process.initialize.type_signature.result,
                             tff.FederatedType(VALUE_TYPE, tff.SERVER),
                             tff.FederatedType(np.int32, tff.CLIENTS))
  def run(state, value, clients):
    del clients  # Only fixes the number of clients.
    return process.next(state, value)

  value = _values(kind)[2]
  output = run(process.initialize(), value, [0, 0])
  assert len(output.result) == 2
  for received in output.result:
    np.testing.assert_allclose(received["w"], value["w"], atol=tolerance)
    np.testing.assert_array_equal(received["b"], value["b"])
  per_client = get_codec(name).bits(40, options, direction="broadcast") + 3 * 32
  assert output.measurements["bits"] == 2 * per_client
