"""fedcompress: communication-efficient federated learning on TFF 0.87.

Encoded broadcast and encoded aggregation for `tff.learning` FedAvg, with every bit
that crosses the wire counted in the process's own metrics.

Importing the package does nothing to the process: no TensorFlow, no warning filters,
no TFF context. The public names below load their modules on first use.
`install_runtime()` makes TFF run on a worker process that this process owns (the
binaries and `run_experiment` call it for you); `quiet_tensorflow()` quiets TensorFlow's
logs if called before TensorFlow is imported.

The package's layers, each importing only the ones before it:
`codecs/` (records, `CodecSpec`, bit accounting, stages; no TFF), `federated/` (TFF
wiring: broadcast, mean, FedAvg, runtime), `tasks/` (datasets and models) and
`harness/` (experiment, loop, reporters, flags, sweeps, plots).
"""

import importlib

_LAZY = {
    "build_fedavg": "fedcompress.federated.fedavg",
    "Codec": "fedcompress.codecs",
    "CodecSpec": "fedcompress.codecs",
    "available_codecs": "fedcompress.codecs",
    "get_codec": "fedcompress.codecs",
    "make_codec": "fedcompress.codecs",
    "register": "fedcompress.codecs",
    "register_codec": "fedcompress.codecs",
    "register_stage": "fedcompress.codecs",
    "ExperimentConfig": "fedcompress.harness.experiment",
    "run_experiment": "fedcompress.harness.experiment",
    "quiet_tensorflow": "fedcompress.federated.quiet",
}
# Names whose module differs from the public name.
_RENAMED = {"install_runtime": ("fedcompress.federated.runtime", "install")}
__all__ = sorted([*_LAZY, *_RENAMED])


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  if name in _RENAMED:
    module, attribute = _RENAMED[name]
    return getattr(importlib.import_module(module), attribute)
  raise AttributeError(f"module 'fedcompress' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted([*globals(), *__all__])
