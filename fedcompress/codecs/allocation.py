"""Rate-distortion bit allocation across a model's tensors at a total bit budget.

Every codec with a width option (`bits`) gives every tensor the same width. Given a
budget in bits per coordinate for the whole model, `AllocatedCodec` instead chooses
each tensor's width, among candidate widths of one codec, to minimize the expected
total squared error. It is classical bit allocation:

* Distortion model. Tensor `i` (`n_i` coordinates) at candidate `k` costs `C_ik` bits,
  exactly (the codec's bit formula, side information included), and is expected to
  err by `D_ik = ||x_i||^2 * c_ik`, where `c_ik` is the candidate's normalized MSE
  `E||x - x_hat||^2 / ||x||^2`, measured once when the plan is made on a seeded
  N(0, 1) vector of `_MEASURE_SIZE` (2^14) coordinates, whatever the tensor's size,
  through the real encoder, so it holds for any codec (EDEN: 0.5708 at 1 bit, 0.1331 at 2, ...;
  uniform: its own curve, about 4**-b). `||x_i||^2` is the statistic of the data,
  taken by whoever encodes on what it encodes, so it costs no bits: the server on the
  weights it broadcasts, each client on its own update (the mean's error is the sum
  of the clients' independent errors, so each client minimizing its own minimizes
  the mean's; see `fedcompress.federated.allocated`). That holds for unbiased widths:
  a width that is not whole (below) is biased toward 0, and clients whose updates
  agree share that bias, which the mean does not average out (`python -m
  tools.allocation_bias` measures it: 10 correlated clients at width 0.5 erred 3.63x
  what the plan counts, 100 at 0.9 2.46x; 1.95 and 1.98 within 4%, and independent
  clients within 1% at every width). `--aggregate_widths` with such widths warns. The
  measured curve, not the
  codec record's `error_bound` (a worst case) nor `4**-b` (a Gaussian source's ideal
  quantizer), is the expected error of the real encoder at each width.
* Exact allocation by dynamic programming over the budget, then a greedy fill. The
  textbook greedy of marginal returns (Fox, "Discrete optimization via marginal
  analysis", Management Science 13(3), 1966; Gersho and Gray, "Vector Quantization
  and Signal Compression", 1992, sec. 8.4: repeatedly give bits to the tensor with the
  largest distortion decrease per bit) is optimal for convex curves and equal step
  costs, but here steps are not equal: on the tutorial CNN one tensor holds 97% of
  the coordinates, and at one bit per coordinate the greedy first spends on the small
  tensors and then cannot afford the big one's step (measured: it left 36% of the
  budget unused). So the policy solves the multiple-choice knapsack exactly instead:
  `min sum_i D_i(k_i) s.t. sum_i C_i(k_i) <= budget` by dynamic programming over the
  budget cut into at most `_GRAINS` grains, each cost rounded up to whole grains (so
  the solution can only be under budget), which is exact when the budget has fewer
  bits than grains (Gersho and Gray sec. 8.4 note the same DP for integer
  allocation). What rounding leaves unspent is then given out greedily, in Fox's
  order of marginal returns, among the moves that still fit.
* It is the discrete form of reverse water-filling (Cover and Thomas, "Elements of
  Information Theory", 2nd ed., sec. 10.3.3): for Gaussian sources with `D(b) =
  sigma^2 4**-b`, `water_filling` gives the continuous optimum, which the greedy
  reaches exactly when it is integral (tests/codecs/test_allocation.py).

The budget is never exceeded: `plan.budget` counts everything a client receives or
sends per round (unencoded tensors, the choice of each tensor, the mean's weight),
and the greedy only takes upgrades that fit. `allocate_tf` is the greedy in
TensorFlow (it runs inside the TFF processes); called eagerly, it is the pure policy.

Widths that are not whole are the codec's `keep` option (the fraction of rotated
coordinates sent, at the next whole width), for codecs that have one (`eden`): below 1
bit they make sub-bit rates, above it steps finer than a bit (`width_options`). The
unsent coordinates decode to 0, so such a width is biased (about `keep * x` in
expectation); its measured error is right for one encode (the broadcast), not for a
mean over clients (above).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from fedcompress.codecs import registry
from fedcompress.codecs.spec import CodecSpec
from fedcompress.codecs.stages import _common

DEFAULT_WIDTHS = (1, 2, 3, 4, 6, 8)
# The choice of candidate per encoded tensor travels as one uint8 each.
CHOICE_DTYPE = tf.uint8
# Normalized MSE is measured on this many coordinates (its spread is ~1%), for every
# tensor: measuring costs seconds of graph building. For eden and drive (a rotation,
# then a scale fitted to the rotated values) it hardly depends on the size, but for
# tensors padded within their block, which err less (1-bit eden 0.31 against 0.57 at
# 1,100 elements); a min/max codec's grows with it, hadamard's too (its rotated values
# quantized between their min and max: 0.040 here, 0.066 at 2^20 coordinates at 4 bits,
# 1.04 and 1.97 at 2 bits; uniform at 4 bits 0.048 here, 0.067 on the CNN's 1.6M-element
# kernel), so for those the plan undervalues the bits of large tensors.
_MEASURE_SIZE = 2**14
_GRAINS = 4096
_MEASURE_SEED = 20260


def _check_widths(widths) -> tuple[float, ...]:
  out = []
  for w in widths:
    if not _common.is_real(w) or not 0 < w <= 32:
      raise ValueError(f"widths must be numbers in (0, 32], got {w!r}")
    out.append(int(w) if float(w).is_integer() else float(w))
  if not out or len(set(out)) != len(out):
    raise ValueError(f"widths must be distinct and not empty, got {list(widths)}")
  return tuple(sorted(out))


def parse_widths(text: str | Sequence[float]) -> tuple[float, ...]:
  """'0.75,1,2,4' (or a sequence of numbers) -> (0.75, 1, 2, 4), checked."""
  if isinstance(text, str):
    try:
      text = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
      raise ValueError(f"widths must be comma-separated numbers, got {text!r}") from None
  return _check_widths(text)


def width_options(base: CodecSpec, width: float) -> dict[str, Any] | None:
  """The codec options of `width` for `base`'s codec, or None if the codec lacks it.

  An integer width is the `bits` option. Any other width `w` is `bits = ceil(w)` on
  the fraction `keep = w / ceil(w)` of the rotated coordinates, where the codec has a
  `keep` option (`eden`): below 1, that fraction at 1 bit; 1.98, 99% at 2 bits. Such
  widths make steps finer than a whole bit for a tensor that holds most of the model
  (on the tutorial CNN, one bit of the dense kernel is 97% of a bit per coordinate).
  """
  # The width sets `keep` too: a given one would make width 1 cost half a bit.
  options = {k: v for k, v in base.options.items() if k != "keep"}
  if float(width).is_integer():
    options["bits"] = int(width)
  else:
    bits = math.ceil(width)
    options.update(bits=bits, keep=float(width) / bits)
  try:
    checked = base.codec.options(options)
    if base.codec.option_names() is None:
      # A stage without a constructor of its own takes any option until it is built:
      # the README's own fp16 codec then failed under a budget with "cannot be built
      # with options {'bits': 1}", not "takes none of the widths".
      base.codec.encoder(options)
  except ValueError:
    return None
  return options if "bits" in checked else None


@functools.cache
def _normalized_mses(name: str, candidates: tuple[tuple, ...], size: int,
                     registry_change: int) -> tuple[float, ...]:
  """E||x - x_hat||^2 / ||x||^2 of each candidate on one seeded N(0, 1) draw of `size`.

  `registry_change` (`registry.registry_change()`) only keys the cache: after a codec is
  registered again under `name`, its errors are measured again.

  In a graph of its own with a graph-level seed, so the codec's own random draws (its
  rotation, its dither) are the same every time: the plan, hence the allocation, is
  reproducible, and the caller's global seed is left alone.
  """
  graph = tf.Graph()
  with graph.as_default():
    tf.random.set_seed(_MEASURE_SEED)
    x = tf.random.stateless_normal([size], [_MEASURE_SEED, 0])
    x64 = tf.cast(x, tf.float64)
    ratios = []
    for options in candidates:
      encoder = CodecSpec(name, dict(options), threshold=0).make_encoder()
      encode_params, decode_params = encoder.get_params(encoder.initial_state())
      encoded, _, shapes = encoder.encode(x, encode_params)
      decoded = tf.cast(encoder.decode(encoded, decode_params, shapes), tf.float64)
      ratios.append(tf.reduce_sum(tf.square(decoded - x64)) / tf.reduce_sum(tf.square(x64)))
    with tf.compat.v1.Session(graph=graph) as session:
      return tuple(float(r) for r in session.run(ratios))


def normalized_mse(codec: CodecSpec) -> float:
  """`E||x - x_hat||^2 / ||x||^2` of `codec` (a chain too) on the seeded N(0, 1) draw of
  `_MEASURE_SIZE` values the allocation measures its widths on (cached per process)."""
  return _normalized_mses(codec.name, (tuple(sorted(codec.options.items())),),
                          _MEASURE_SIZE, registry.registry_change())[0]


@dataclasses.dataclass(frozen=True)
class TensorPlan:
  """The static part of one tensor's allocation."""

  name: str
  num_elements: int
  encoded: bool
  widths: tuple[float, ...] = ()       # candidate widths, ascending
  costs: tuple[int, ...] = ()          # exact bits per candidate
  unit_mse: tuple[float, ...] = ()     # normalized MSE per candidate
  specs: tuple[CodecSpec, ...] = ()    # candidate codecs (threshold 0)
  fixed_bits: int = 0                  # bits when not encoded


@dataclasses.dataclass(frozen=True)
class AllocationPlan:
  """What a process needs: per-tensor candidates and the budget left to allocate."""

  tensors: tuple[TensorPlan, ...]
  budget: int           # bits per client for the whole value, as asked
  allocatable: int      # budget minus every fixed cost, for the encoded tensors

  @property
  def encoded(self) -> tuple[TensorPlan, ...]:
    return tuple(t for t in self.tensors if t.encoded)

  def tables(self) -> tuple[np.ndarray, np.ndarray]:
    """(costs int64 [T, K], normalized MSE float64 [T, K]) of the encoded tensors."""
    enc = self.encoded
    return (np.array([t.costs for t in enc], np.int64),
            np.array([t.unit_mse for t in enc], np.float64))

  def allocate(self, squared_norms: Sequence[float]) -> list[int]:
    """Candidate index per encoded tensor for these `||x_i||^2` (eager, pure policy)."""
    costs, mse = self.tables()
    d = mse * np.asarray(squared_norms, np.float64)[:, None]
    return [int(i) for i in allocate_tf(costs, d, self.allocatable).numpy()]

  def total_bits(self, choice: Sequence[int]) -> int:
    """Exact bits per client of a choice (fixed costs included)."""
    enc = self.encoded
    return self.budget - self.allocatable + sum(t.costs[c] for t, c in zip(enc, choice,
                                                                          strict=True))


def _dynamic_program(costs: np.ndarray, distortions: tf.Tensor, budget: int) -> tf.Tensor:
  """Exact multiple-choice knapsack on costs rounded up to grains (module docstring)."""
  num, k = costs.shape
  grain = max(1, -(-budget // _GRAINS))
  units = -(-costs // grain)  # ceil: rounded-up costs never exceed the budget.
  size = budget // grain + 1
  if int(units.min(axis=1).sum()) >= size:
    # A budget that just covers the cheapest candidates can be too small for their
    # rounded-up costs: no entry of the table is finite, and backtracking from one
    # would index `back` below zero (from its end), an earlier tensor then taking its
    # widest candidate over the budget. The cheapest fit (`allocate_tf` checked); the
    # greedy fill goes on from them.
    return tf.constant(np.argmin(costs, axis=1), tf.int32)
  inf = tf.constant(np.inf, tf.float64)
  # best[g]: least distortion of the tensors so far within g grains.
  best = tf.zeros([size], tf.float64)
  back = []
  for i in range(num):
    options = []
    for j in range(k):
      u = int(units[i, j])
      shifted = tf.concat([tf.fill([min(u, size)], inf), best[:max(size - u, 0)]], 0)
      options.append(shifted + distortions[i, j])
    stacked = tf.stack(options)
    back.append(tf.argmin(stacked, axis=0, output_type=tf.int32))  # Cheapest of equals.
    best = tf.reduce_min(stacked, axis=0)
  choice = []
  g = tf.constant(size - 1, tf.int32)
  units_tf = tf.constant(units, tf.int32)
  for i in reversed(range(num)):
    j = back[i][g]
    choice.append(j)
    g -= units_tf[i, j]
  return tf.stack(choice[::-1])


def _greedy_fill(costs: tf.Tensor, distortions: tf.Tensor, choice: tf.Tensor,
                 left: tf.Tensor) -> tf.Tensor:
  """Moves that fit, best distortion decrease per extra bit first, until none does."""
  # Static sizes (`costs` is a constant): with a dynamic `num`, `choice` below would
  # broadcast to shape [None] when T = 1, which the loop refuses (its input is [1]).
  num, k = costs.shape

  def body(choice, left, go):
    del go  # The loop condition only.
    cur_cost = tf.gather(costs, choice, batch_dims=1)[:, None]
    cur_dist = tf.gather(distortions, choice, batch_dims=1)[:, None]
    extra, gain = costs - cur_cost, cur_dist - distortions
    valid = (extra > 0) & (gain > 0) & (extra <= left)
    ratio = tf.where(valid, gain / tf.cast(tf.maximum(extra, 1), tf.float64),
                     tf.constant(-1.0, tf.float64))
    # First of equals (row-major): the lowest tensor index, then the cheapest move.
    best = tf.argmax(tf.reshape(ratio, [-1]), output_type=tf.int32)
    row, col = best // k, best % k
    move = ratio[row, col] > 0
    choice = tf.where(tf.equal(tf.range(num), row) & move, col, choice)
    left = tf.where(move, left - extra[row, col], left)
    return choice, left, move

  # Every move makes one tensor strictly costlier: at most T * (K - 1) moves.
  choice, _, _ = tf.while_loop(lambda c, left, go: go, body, (choice, left, tf.constant(True)),
                               maximum_iterations=num * k)
  return choice


def allocate_tf(costs: np.ndarray, distortions, budget: int) -> tf.Tensor:
  """The allocation (see the module docstring), in-graph or eager.

  Args:
    costs: int [T, K] exact bits of each tensor's candidates (static).
    distortions: float64 [T, K] expected squared error of each candidate (a tensor:
      it follows the data).
    budget: bits for the T tensors together (static).

  Returns:
    int32 [T]: candidate index per tensor.

  Raises:
    ValueError: the cheapest candidates alone exceed the budget.
  """
  costs = np.asarray(costs, np.int64)
  if int(costs.min(axis=1).sum()) > budget:
    raise ValueError(f"a budget of {budget} bits does not cover the cheapest candidate of "
                     "every tensor")
  distortions = tf.convert_to_tensor(distortions, tf.float64)
  choice = _dynamic_program(costs, distortions, budget)
  costs_tf = tf.constant(costs)
  left = budget - tf.reduce_sum(tf.gather(costs_tf, choice, batch_dims=1))
  return _greedy_fill(costs_tf, distortions, choice, left)


def water_filling(variances: Sequence[float], sizes: Sequence[int], budget: float
                  ) -> list[float]:
  """Reverse water-filling rates (bits per coordinate) for Gaussian sources.

  Minimizes sum_i n_i sigma_i^2 4**-b_i subject to sum_i n_i b_i = budget, b_i >= 0:
  b_i = max(0, log4(sigma_i^2 / theta)), theta found by bisection (Cover and Thomas,
  Theorem 10.3.3).
  """
  v = np.asarray(variances, np.float64)
  n = np.asarray(sizes, np.float64)

  def rates(theta):
    return np.maximum(0.0, 0.5 * np.log2(v / theta))

  lo, hi = 1e-300, float(v.max())
  for _ in range(4000):
    mid = math.sqrt(lo * hi)
    if float((n * rates(mid)).sum()) > budget:
      lo = mid
    else:
      hi = mid
  return [float(r) for r in rates(hi)]


@dataclasses.dataclass(frozen=True)
class AllocatedCodec:
  """A codec whose width is chosen per tensor, each round, at a total bit budget.

  Attributes:
    base: the codec and its other options, and the threshold: tensors with at most
      `base.threshold` elements (and non-float ones) go unencoded, at full width,
      paid from the budget.
    bits_per_coordinate: the budget, in bits per coordinate of the whole value (all
      tensors), per client, everything sent included.
    widths: candidate widths (`bits`; not whole, a `keep` fraction: `width_options`).
  """

  base: CodecSpec
  bits_per_coordinate: float
  widths: tuple[float, ...] = DEFAULT_WIDTHS

  def __post_init__(self):
    b = self.bits_per_coordinate
    if not _common.is_real(b) or not 0 < b < math.inf:
      raise ValueError(f"bits_per_coordinate must be a positive number, got {b!r}")
    if isinstance(b, np.generic):  # A NumPy scalar is recorded as the Python number.
      object.__setattr__(self, "bits_per_coordinate", b.item())
    if self.base.is_chain:  # Its options, widths included, are fixed in its text.
      raise ValueError(f"bit allocation takes a single codec, not the chain "
                       f"{self.base.name!r}")
    # The widths set both (`width_options`): given ones would be recorded in `describe()`
    # as if they had run (`eden(bits=2,keep=0.5)@1bpc`). The command line refuses them too.
    given = sorted({"bits", "keep"} & set(self.base.options))
    if given:
      raise ValueError(f"bit allocation sets {' and '.join(given)} of codec "
                       f"{self.base.name!r} itself, per tensor: leave them out of its options "
                       "(make_codec writes the default bits in: give the base as "
                       "CodecSpec(name, options, threshold=...))")
    if self.base.options.get("shared_rotation"):
      # Each client allocates and encodes its own tensors (`federated/allocated.py`),
      # under seed keys of its own tensors: the rotation was each client's own, sent and
      # inverted per client, while the run was recorded as shared.
      raise ValueError(f"bit allocation rotates each client's tensors under its own "
                       f"seed: codec {self.base.name!r} cannot share its rotation there; "
                       "leave out shared_rotation")
    widths = _check_widths(self.widths)
    # Once per width: for a stage without a constructor of its own it builds the encoder.
    options = {w: width_options(self.base, w) for w in widths}
    usable = tuple(w for w in widths if options[w] is not None)
    if not usable:
      raise ValueError(f"codec {self.base.name!r} takes none of the widths "
                       f"{list(widths)} (it needs a `bits` option)")
    # `federated/allocated.py` encodes every round from the encoder's initial state: a
    # state that moves (a user's adaptive stage) would be dropped without a word.
    moving = [w for w in usable if self.base.codec.moves_state(options[w])]
    if moving:
      raise ValueError(f"codec {self.base.name!r} keeps encoder state from round to round "
                       f"(at width {moving[0]:g}), which bit allocation does not: each round "
                       "encodes from its initial state; use it at a fixed width")
    object.__setattr__(self, "widths", usable)

  @property
  def name(self) -> str:
    return self.base.name

  def check_widths_cost_apart(self) -> None:
    """Raises ValueError where every width costs the same bits, leaving a budget nothing
    to allocate: `fixed_int` sends an int32 a coordinate whatever its `bits` outside the
    secure sum, and the plan chose among candidates of one cost by the clipping error
    they share (width 6, where 8 cost the same), recorded as a budgeted allocation
    (review R6 of s48). A codec without a bit formula is left to the plan, which names
    it. (Not made in the constructor: prices are also looked at for such codecs.)"""
    if len(self.widths) < 2 or self.base.codec.bits_formula is None:
      return
    costs = {self.base.codec.bits(2**16, width_options(self.base, w), direction="broadcast")
             for w in self.widths}
    if len(costs) == 1:
      raise ValueError(f"codec {self.base.name!r} sends the same bits at every width "
                       f"{list(self.widths)}: a bit budget has nothing to allocate; give it "
                       "a fixed width instead")

  @property
  def raw_bits_rules(self):
    return self.base.raw_bits_rules

  def describe(self) -> str:
    return self._describe(self.base.describe())

  def describe_resolved(self) -> str:
    """`describe` with the base codec's defaults filled in (`CodecSpec.describe_resolved`),
    but for those the widths set per tensor (`bits`, `keep`): shown at their defaults,
    they named a width the run never used (`uniform(bits=8,...)@2bpc`)."""
    resolved = {k: v for k, v in self.base.resolved_options().items()
                if k not in ("bits", "keep")}
    return self._describe(
        CodecSpec(self.base.name, resolved, threshold=self.base.threshold).describe())

  def _describe(self, base: str) -> str:
    widths = ",".join(str(w) for w in self.widths)
    # Runs record this and a resume compares it: the budget is written exactly (`:g`
    # alone would make 7.0000001 and 7.0000049 one setting), and as `:g` where that is.
    short = f"{self.bits_per_coordinate:g}"
    budget = short if float(short) == self.bits_per_coordinate else repr(
        float(self.bits_per_coordinate))
    return f"{base}@{budget}bpc[{widths}]"

  def plan(self, value_specs: Sequence[tf.TensorSpec], names: Sequence[str] | None = None,
           *, direction: str = "aggregate", reserved_bits: int = 0) -> AllocationPlan:
    """The static allocation plan for values of `value_specs` (flat list).

    Args:
      value_specs: the tensors, in order.
      names: their names (for reporting); default `tensor_<i>`.
      direction: 'broadcast' or 'aggregate': the bits of tensors left unencoded.
        Candidates are priced as the allocated processes send them, every
        parameter with them (the broadcast formula), in both directions.
      reserved_bits: bits per client outside the value but inside the budget (the
        mean's weight).

    Raises:
      ValueError: nothing to encode, or the budget does not cover the fixed costs and
        the cheapest width of every encoded tensor.
    """
    _common.check_direction(direction)
    names = list(names) if names is not None else [f"tensor_{i}"
                                                   for i in range(len(value_specs))]
    total_coords = sum(math.prod(s.shape.as_list()) for s in value_specs)
    budget = math.floor(self.bits_per_coordinate * total_coords)
    tensors = []
    for name, spec in zip(names, value_specs, strict=True):
      n = math.prod(spec.shape.as_list())
      if not self.base.applies_to(spec):
        tensors.append(TensorPlan(name, n, False, fixed_bits=self.base.tensor_bits(
            spec, direction)))
        continue
      specs = [CodecSpec(self.base.name, width_options(self.base, w), threshold=0)
               for w in self.widths]
      # `federated/allocated.py` sends each candidate through a SimpleEncoder, with all
      # its parameters, as a broadcast does, whatever the direction: an aggregate
      # formula would leave out the shared seeds (Kashin's) that every client then sends.
      costs = [c.codec.bits(n, c.options, direction="broadcast", dtype=spec.dtype)
               for c in specs]
      mse = _normalized_mses(self.base.name,
                             tuple(tuple(sorted(c.options.items())) for c in specs),
                             _MEASURE_SIZE, registry.registry_change())
      tensors.append(TensorPlan(name, n, True, self.widths, tuple(costs), mse, tuple(specs)))
    encoded = [t for t in tensors if t.encoded]
    if not encoded:
      raise ValueError(f"no tensor has more than {self.base.threshold} elements: nothing "
                       "to allocate")
    fixed = (sum(t.fixed_bits for t in tensors) + reserved_bits
             + len(encoded) * _common.dtype_bits(CHOICE_DTYPE))
    cheapest = sum(t.costs[0] for t in encoded)
    if fixed + cheapest > budget:
      raise ValueError(
          f"a budget of {self.bits_per_coordinate:g} bits per coordinate ({budget} bits) "
          f"does not cover the {fixed} unencoded bits and the {cheapest} bits of the "
          f"narrowest width {self.widths[0]} of every encoded tensor")
    return AllocationPlan(tuple(tensors), budget, budget - fixed)
