"""What crosses the wire in a FedAvg round beside the counted payload.

  python -m tools.uncounted_bits [--configs=identity,kashin,shared_rotation,
      secure_rotation,secure_dp,dp_adaptive,dp_distributed] [--clients=10]

Builds FedAvg processes of the tutorial CNN (the digits task's model; no round runs)
and walks each `next` computation for every call that moves a value between
placements: `federated_broadcast` and `federated_value_at_clients` from the server to
the clients, and the clients' contributions to sums (`federated_aggregate`,
`federated_sum`, `federated_mean`, `federated_weighted_mean`, the secure sums) the
other way. Each is sized from its TFF type, every tensor at its dtype's width, per
client.

A call is payload, counted in `broadcast/bits` or `aggregate/bits`, when it carries the
encoded model (a broadcast of `encoded_tensors`, or of an allocation's choice) or an
update's encoding (a `federated_aggregate`, a secure sum, FetchSGD's table). The rest is
listed with its size: the README's "What counts as a bit" quotes these totals.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

from fedcompress.harness.cli import ArgumentParser, run_script

DOWN = ("federated_broadcast", "federated_value_at_clients")
UP = ("federated_aggregate", "federated_sum", "federated_mean", "federated_weighted_mean",
      "federated_secure_sum", "federated_secure_sum_bitwidth",
      "federated_secure_modular_sum")
# Sums whose first argument is the clients' value (the rest are the server's).
_VALUE_FIRST = ("federated_aggregate", "federated_secure_sum", "federated_secure_sum_bitwidth",
                "federated_secure_modular_sum")
# Calls that move values between placements but that this tool cannot size yet; none
# of fedcompress's processes uses them. Met, they are refused rather than left out of a
# list that claims to be all of it.
_UNSIZED = ("federated_select", "federated_secure_select", "federated_min", "federated_max")
_PAYLOAD_UP = ("federated_aggregate", "federated_secure_sum", "federated_secure_sum_bitwidth",
               "federated_secure_modular_sum")


@dataclasses.dataclass(frozen=True)
class Crossing:
  """One call that moves a value between placements, sized per client."""
  direction: str  # "down" (server to clients) or "up".
  intrinsic: str
  bits: int | None  # None when a tensor's shape is only known at run time.
  type_text: str

  @property
  def payload(self) -> bool:
    """Whether `broadcast/bits` or `aggregate/bits` counts this call."""
    if self.direction == "down":
      return "encoded_tensors" in self.type_text or "choice=" in self.type_text
    return self.intrinsic in _PAYLOAD_UP or (
        self.intrinsic == "federated_sum" and "table=" in self.type_text)


def type_bits(type_spec) -> int | None:
  """Bits of every tensor of an (unplaced or placed) TFF type, at its dtype's width."""
  import numpy as np
  import tensorflow_federated as tff
  from tensorflow_federated.python.common_libs import structure

  if isinstance(type_spec, tff.types.FederatedType):
    type_spec = type_spec.member
  if isinstance(type_spec, tff.types.StructType):
    sizes = [type_bits(member) for _, member in structure.iter_elements(type_spec)]
    return None if None in sizes else sum(sizes)
  if type_spec.shape is None or None in type_spec.shape:
    return None
  return math.prod(type_spec.shape) * np.dtype(type_spec.dtype).itemsize * 8


def crossings(computation) -> list[Crossing]:
  """Every call of `computation` that moves a value between placements, in graph order."""
  from tensorflow_federated.python.core.impl.compiler import building_blocks, tree_analysis

  found = []

  def visit(block):
    if not (isinstance(block, building_blocks.Call)
            and isinstance(block.function, building_blocks.Intrinsic)):
      return
    uri = block.function.uri
    if uri in _UNSIZED:
      raise NotImplementedError(f"{uri} moves values between placements, and "
                                "tools.uncounted_bits does not size it yet")
    if uri not in DOWN and uri not in UP:
      return
    value_type = block.argument.type_signature
    if uri in _VALUE_FIRST:
      value_type = value_type[0]
    member = getattr(value_type, "member", value_type)
    found.append(Crossing("down" if uri in DOWN else "up", uri, type_bits(value_type),
                          str(member)))

  tree_analysis.visit_postorder(computation.to_building_block(), visit)
  return found


def uncounted(computation) -> list[Crossing]:
  """The crossings of `computation` that are not payload and move at least one bit."""
  return [c for c in crossings(computation) if not c.payload and c.bits != 0]


_CONFIG_NAMES = ("identity", "kashin", "shared_rotation", "secure_rotation", "secure_dp",
                 "dp_adaptive", "dp_distributed")
# The DP configurations' noise multiplier. `DPConfig` refuses `central_adaptive` noise of
# 0.1 x clients per round or more (TFF gives part of it to the adaptive clip's count of
# clipped updates), so `dp_adaptive` needs more than 5 clients.
NOISE_MULTIPLIER = 0.5


def _configs(clients: int) -> dict[str, Callable[[Callable], object]]:
  """The README's configurations: name -> a function building FedAvg from `model_fn`."""
  import tensorflow_federated as tff

  from fedcompress.codecs import CodecSpec
  from fedcompress.federated.fedavg import build_fedavg
  from fedcompress.federated.privacy import DPConfig

  uniform = tff.learning.ClientWeighting.UNIFORM
  secure = dict(secure_aggregation=True, clients_per_round=clients, client_weighting=uniform)
  return {
      "identity": lambda model_fn: build_fedavg(model_fn),
      "kashin": lambda model_fn: build_fedavg(model_fn,
                                              aggregate_codec=CodecSpec("kashin", {"bits": 2})),
      "shared_rotation": lambda model_fn: build_fedavg(
          model_fn, aggregate_codec=CodecSpec("drive", {"shared_rotation": True})),
      "secure_rotation": lambda model_fn: build_fedavg(
          model_fn, aggregate_codec=CodecSpec(
              "fixed_int", {"bits": 8, "clip": 0.05, "rotation": True}), **secure),
      "secure_dp": lambda model_fn: build_fedavg(
          model_fn, aggregate_codec=CodecSpec("fixed_int", {"bits": 8, "clip": 0.05}),
          dp=DPConfig("central", NOISE_MULTIPLIER, 0.5, clients, 2 * clients), **secure),
      "dp_adaptive": lambda model_fn: build_fedavg(
          model_fn, dp=DPConfig("central_adaptive", NOISE_MULTIPLIER, 0.5, clients, 2 * clients),
          client_weighting=uniform),
      "dp_distributed": lambda model_fn: build_fedavg(
          model_fn, dp=DPConfig("distributed", NOISE_MULTIPLIER, 0.5, clients, 2 * clients),
          **secure),
  }


def main(argv: Sequence[str] | None = None) -> None:
  import fedcompress

  parser = ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default=",".join(_CONFIG_NAMES))
  parser.add_argument("--clients", type=int, default=10,
                      help="clients per round (the secure sum's field; totals are per round; "
                      "dp_adaptive needs more than 5)")
  args = parser.parse_args(argv)
  if args.clients < 1:
    parser.error("--clients must be >= 1")
  names = [n.strip() for n in args.configs.split(",") if n.strip()]
  if not names:  # It printed nothing and exited 0.
    parser.error("--configs lists no configuration")
  unknown = sorted(set(names) - set(_CONFIG_NAMES))
  if unknown:
    parser.error(f"unknown configs {unknown}; valid: {', '.join(_CONFIG_NAMES)}")
  # DPConfig's own check would come after TensorFlow loads and the configs before it print.
  most = 0.1 * args.clients
  if "dp_adaptive" in names and NOISE_MULTIPLIER >= most:
    parser.error(f"--configs=dp_adaptive takes --clients above {NOISE_MULTIPLIER / 0.1:g} (its "
                 f"noise multiplier {NOISE_MULTIPLIER:g} must be below 0.1 x clients, "
                 f"{most:g} at --clients={args.clients}): raise --clients or leave dp_adaptive "
                 "out of --configs")
  fedcompress.quiet_tensorflow()
  fedcompress.install_runtime()
  from fedcompress import tasks

  configs = _configs(args.clients)
  model_fn = tasks.digits_task(num_clients=2, seed=0).model_fn
  for name in names:
    listed = uncounted(configs[name](model_fn).next)
    print(f"== {name}: not counted, per client and round")
    for c in listed:
      size = "?" if c.bits is None else c.bits
      print(f"  {c.direction:4s} {c.intrinsic:27s} {size:>6} bits  {c.type_text[:110]}")
    down = sum(c.bits or 0 for c in listed if c.direction == "down")
    up = sum(c.bits or 0 for c in listed if c.direction == "up")
    unknown = sum(c.bits is None for c in listed)
    print(f"  per client: {down} bits down, {up} up; per round of {args.clients} clients: "
          f"{args.clients * down} down, {args.clients * up} up"
          + (f" (and {unknown} calls of sizes known only at run time, marked ?)"
             if unknown else ""))


if __name__ == "__main__":
  run_script(main)
