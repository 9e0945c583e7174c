"""`AggregatorSpec`: which server-side aggregation combines the clients' updates.

`mean` (the default) is the encoded weighted mean of `fedcompress.federated.aggregation`
with the run's aggregate codec. Other aggregators replace that mean with one that keeps
memory on the server across rounds and sees the whole model at once, which a per-tensor,
per-round codec record (`fedcompress.codecs.Codec`) cannot express: `fetchsgd`
(`fedcompress.federated.fetchsgd`). They come with their own bit counts, under the same
`aggregate/bits`. The registry is the dict below: name -> (option check, factory class).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import tensorflow_federated as tff

from fedcompress.federated import fetchsgd

MEAN = "mean"
_AGGREGATORS = {
    "fetchsgd": (fetchsgd.check_options, fetchsgd.FetchSGDFactory),
}
NAMES = (MEAN, *sorted(_AGGREGATORS))


@dataclasses.dataclass(frozen=True)
class AggregatorSpec:
  """An aggregator name and its options (checked when the spec is made).

  Attributes:
    name: `mean` or a name of `NAMES`.
    options: keyword options of that aggregator (`mean` takes none: its codec is the
      run's aggregate codec).
  """

  name: str = MEAN
  options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.name not in NAMES:
      raise ValueError(f"unknown aggregator {self.name!r}; valid: {', '.join(NAMES)}")
    if self.name == MEAN:
      if self.options:
        raise ValueError("aggregator mean takes no options (set the aggregate codec "
                         "instead)")
      return
    check = _AGGREGATORS[self.name][0]
    valid = check.__code__.co_varnames[:check.__code__.co_argcount]
    unknown = sorted(set(self.options) - set(valid))
    if unknown:
      raise ValueError(f"aggregator {self.name!r} has no option {', '.join(unknown)}; its "
                       f"options: {', '.join(valid)}")
    check(**self.options)

  @property
  def is_mean(self) -> bool:
    return self.name == MEAN

  def resolved_options(self) -> dict[str, Any]:
    return {} if self.is_mean else _AGGREGATORS[self.name][0](**self.options)

  def factory(self) -> tff.aggregators.WeightedAggregationFactory | None:
    """The aggregation factory, or None for the encoded mean (built from the codec)."""
    return None if self.is_mean else _AGGREGATORS[self.name][1](**self.options)

  def describe(self) -> str:
    opts = ",".join(f"{k}={v}" for k, v in sorted(self.resolved_options().items()))
    return f"{self.name}({opts})" if opts else self.name
