"""Property tests of every registered codec: awkward shapes and values never break it.

For each codec of `fedcompress.codecs.available_codecs()` (threshold 0, so the codec
applies to every tensor) and float32 tensors of any of a set of shapes (a scalar, one
element, small odd sizes, a matrix, and separately 2**20 + 1 elements) holding random
values, constants, signed zeros, denormals and huge magnitudes (up to 1e30):

* encode and decode do not raise, and the decoded tensor has the input's shape and
  dtype and is finite;
* the error is within the codec's bound (`BOUNDS` below says which, and why; relative
  bounds allow an absolute `UNDERFLOW_NORM`, as float32 squares of values under ~1e-19
  underflow);
* the bits of the encoded structure are exactly the codec record's bit formula
  (`Codec.bits`), or for codecs whose size depends on the data, the raw size is
  `uniform`'s at the width used.

Encoders are built once per (codec, shape) and reused across examples: building and
tracing is what costs time, not encoding.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcompress import codecs
from fedcompress.codecs import accounting as bits_lib
from fedcompress.codecs import testing

# Options each codec is tested with (its defaults where it has them).
OPTIONS: dict[str, dict] = {
    "identity": {},
    "uniform": {"bits": 8},
    "huffman": {"bits": 6},
    "uniform_huffman": {"bits": 8},
    "adaptive": {"budget_bits_per_coordinate": 4.0},
    "hadamard": {"bits": 8},
    "kashin": {"bits": 8},
    "drive": {},
    "eden": {"bits": 2},
    "topk": {"fraction": 0.1},
    "randk": {"fraction": 0.1},
    "nonuniform": {"bits": 4},
    "countsketch": {"rows": 3, "columns": 8},
    "rotation": {},
    "fixed_int": {"bits": 8, "clip": 2.0},
}
# Codecs with a bit formula and a worst-case error bound besides the tutorial's two.
RESEARCH = ("hadamard", "kashin", "drive", "eden", "topk", "randk", "nonuniform",
            "countsketch", "rotation")
SHAPES = [(), (1,), (2,), (7,), (3, 5), (257,)]
LARGE = 2**20 + 1
HUGE = float(np.float32(1e30))  # 1e30 as float32 represents it.
# Exactly representable in float32 (hypothesis insists): signed zeros, the smallest
# denormal, other denormals, the largest denormal, ones, huge magnitudes.
SPECIAL = [float(np.float32(v)) for v in (0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39,
                                          1.1754942e-38, 1.0, -1.0, 1e30, -1e30, 3.5e29)]
SMALL = [float(np.float32(v)) for v in (0.0, -0.0, 1e-45, -1e-45, 1e-40, -2e-40, 1e-38)]


# --------------------------------------------------------------------------------------
# Bounds. `x`, `x_hat` are float64 copies; `n` elements.


def _range(x) -> float:
  return float(x.max() - x.min()) if x.size else 0.0


def _uniform_step(x, bits: int) -> float:
  """Per-element bound of min/max uniform quantization with stochastic rounding: one
  step `(max - min) / (2**bits - 1)` (deterministic rounding would be half of it)."""
  return _range(x) / (2**bits - 1)


def _elementwise_bound(x, x_hat, step: float) -> None:
  # Float32 arithmetic on (x - min) / range and back costs a few ulps of the range.
  slack = 1e-5 * _range(x) + 1e-37
  err = np.abs(x_hat - x).max(initial=0.0)
  assert err <= step + slack, (err, step)


def _bound_exact(name, x, x_hat, options):
  """identity: bit for bit, signed zeros included."""
  del name, options
  np.testing.assert_array_equal(x_hat, x)
  np.testing.assert_array_equal(np.signbit(x_hat), np.signbit(x))


def _bound_uniform(name, x, x_hat, options):
  """uniform, huffman, uniform_huffman (lossless coding of uniform symbols): one step."""
  del name
  _elementwise_bound(x, x_hat, _uniform_step(x, options["bits"]))


def _bound_adaptive(name, x, x_hat, options):
  """adaptive: uniform quantization at a width it picks, >= 1 bit: one step at 1 bit,
  i.e. the whole range (the width is what the property tests cannot know)."""
  del name, options
  _elementwise_bound(x, x_hat, _uniform_step(x, 1))


# Below this norm a float32 codec may lose everything to underflow: squares (norms,
# scales) of values under sqrt(smallest normal) ~ 1.1e-19 are denormal or zero. Such
# tensors must still decode to something finite and tiny, not within a relative bound.
UNDERFLOW_NORM = 1e-18


def _bound_relative(name, x, x_hat, options):
  """Codecs with a worst-case bound: `||x - x_hat|| <= B ||x||`, B from the codec's
  record (`Codec.relative_error_bound`, derived in its module); norms in float64."""
  bound = codecs.get_codec(name).relative_error_bound(x.size, options)
  norm = np.linalg.norm(x)
  err = np.linalg.norm(x_hat - x)
  # Relative float32 rounding of the transforms, plus the underflow allowance.
  assert err <= bound * norm * (1 + 1e-3) + 1e-4 * norm + UNDERFLOW_NORM, (err, bound, norm)


def _bound_clipped(name, x, x_hat, options):
  """fixed_int (no rotation): each value is clipped to +-clip and rounded to the grid of
  step clip / (2^(bits-1) - 1), so it decodes within one step of the clipped value."""
  del name
  clip, bits = options["clip"], options["bits"]
  step = clip / (2 ** (bits - 1) - 1)
  assert np.all(np.abs(x_hat - np.clip(x, -clip, clip)) <= step * (1 + 1e-5) + 1e-7 * clip)


BOUNDS = {
    "identity": _bound_exact,
    "fixed_int": _bound_clipped,
    "uniform": _bound_uniform,
    "huffman": _bound_uniform,
    "uniform_huffman": _bound_uniform,
    "adaptive": _bound_adaptive,
    **{name: _bound_relative for name in RESEARCH},
}


# --------------------------------------------------------------------------------------
# Bit formulas: bits of the encoded structure for `n` float32 elements.


def _raw_and_sent(name, encoded) -> tuple[int, int]:
  rules = codecs.get_codec(name).raw_bits_rules
  return (int(bits_lib.raw_structure_bits_tf(encoded, rules)),
          int(bits_lib.structure_bits_tf(encoded)))


def _uniform_bits(n: int, bits: int) -> int:
  return codecs.get_codec("uniform").bits(n, {"bits": bits})


def _bits_identity(name, n, encoded, options):
  del options
  assert _raw_and_sent(name, encoded) == (n * 32, n * 32)


def _bits_uniform(name, n, encoded, options):
  want = _uniform_bits(n, options["bits"])
  assert _raw_and_sent(name, encoded) == (want, want)


def _bits_entropy(name, n, encoded, options):
  """Raw size as `uniform` sends it; the Huffman stream actually sent is counted
  separately, and holds at least its 32-bit element count."""
  raw, sent = _raw_and_sent(name, encoded)
  assert raw == _uniform_bits(n, options["bits"])
  assert sent >= 32 + 64


def _bits_adaptive(name, n, encoded, options):
  """Raw size is `uniform`'s at the width chosen, one of 1..max_bits."""
  raw, _ = _raw_and_sent(name, encoded)
  widths = range(1, options.get("max_bits", 12) + 1)
  assert raw in {_uniform_bits(n, b) for b in widths}, raw


def _bits_research(name, n, encoded, options):
  want = codecs.get_codec(name).bits(n, options, direction="broadcast")
  assert _raw_and_sent(name, encoded) == (want, want)


BITS = {
    "identity": _bits_identity,
    "fixed_int": _bits_research,
    "uniform": _bits_uniform,
    "huffman": _bits_entropy,
    "uniform_huffman": _bits_entropy,
    "adaptive": _bits_adaptive,
    **{name: _bits_research for name in RESEARCH},
}


# --------------------------------------------------------------------------------------


@functools.cache
def _encoder(name: str, shape: tuple[int, ...]):
  return testing.simple_encoder(name, tf.TensorSpec(shape, tf.float32), **OPTIONS[name])


def _check(name: str, x: np.ndarray) -> None:
  x = np.asarray(x, np.float32)
  encoder = _encoder(name, x.shape)
  encoded, decoded, _ = testing.round_trip(encoder, tf.constant(x))
  assert decoded.dtype == tf.float32
  assert tuple(decoded.shape) == x.shape
  x_hat = decoded.numpy().astype(np.float64)
  assert np.all(np.isfinite(x_hat)), x_hat
  BOUNDS[name](name, x.astype(np.float64), x_hat, OPTIONS[name])
  BITS[name](name, x.size, encoded, OPTIONS[name])


def test_every_codec_has_options_a_bound_and_a_bit_formula():
  names = set(codecs.available_codecs())
  assert names <= set(OPTIONS), names - set(OPTIONS)
  assert names <= set(BOUNDS) and names <= set(BITS)


@pytest.mark.parametrize("n", [1, 7, 1000, 1025])
def test_fixed_int_rotation_bits_include_the_broadcast_seed(n):
  # Rotated, a tensor is padded to a power of two and the rotation's int64[2] seed is
  # sent too (SimpleEncoder sends every parameter, as a broadcast does).
  options = {"bits": 8, "clip": 2.0, "rotation": True}
  encoder = testing.simple_encoder("fixed_int", tf.TensorSpec([n], tf.float32), **options)
  encoded, _, _ = testing.round_trip(encoder, tf.ones([n]))
  want = codecs.get_codec("fixed_int").bits(n, options, direction="broadcast")
  assert want == 32 * int(2 ** math.ceil(math.log2(n))) + 128
  assert _raw_and_sent("fixed_int", encoded) == (want, want)


finite32 = st.floats(-HUGE, HUGE, width=32, allow_nan=False, allow_infinity=False,
                     allow_subnormal=True)


@st.composite
def tensors(draw):
  shape = draw(st.sampled_from(SHAPES))
  kind = draw(st.sampled_from(["any", "special", "constant", "small"]))
  if kind == "constant":
    return np.full(shape, draw(st.one_of(st.sampled_from(SPECIAL), finite32)), np.float32)
  if kind == "small":  # Denormals and signed zeros only.
    elements = st.sampled_from(SMALL)
  elif kind == "special":
    elements = st.sampled_from(SPECIAL)
  else:
    elements = st.one_of(finite32, st.sampled_from(SPECIAL))
  return draw(hnp.arrays(np.float32, shape, elements=elements))


def _f32(*values):
  return np.array(values, np.float32)


@pytest.mark.slow  # 25 hypothesis examples per codec, each a fresh encode.
@pytest.mark.parametrize("name", sorted(OPTIONS))
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(x=tensors())
# Always tried, whatever hypothesis draws:
@example(x=np.float32(-0.0))  # A scalar negative zero.
@example(x=_f32(2.5))  # One element.
@example(x=np.full(257, 1e30, np.float32))  # Constant and huge.
@example(x=np.resize(_f32(1e30, -1e30), 257))  # Alternating huge.
@example(x=np.resize(_f32(0.0, -0.0), (3, 5)))  # Signed zeros only.
@example(x=np.resize(_f32(1e-45, -1e-40, 0.0, 3e-39), 7))  # Denormals.
@example(x=np.resize(_f32(1e30, 1e-40, -1.0, -0.0), 257))  # Every scale at once.
def test_round_trip_properties(name, x):
  _check(name, x)


@pytest.mark.slow  # 2^20 + 1 elements through every codec.
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_more_than_a_million_elements(name):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(LARGE).astype(np.float32)
  x[::1000] = rng.choice(SPECIAL, size=math.ceil(LARGE / 1000))
  _check(name, x)
