"""fedcompress: communication-efficient federated learning on TFF 0.87.

Encoded broadcast and encoded aggregation for `tff.learning` FedAvg, with every bit
that crosses the wire counted in the process's own metrics.

Importing the package is cheap: it only quiets TensorFlow's logs (which must happen
before TensorFlow loads). The public names below load TFF on first use, and with it
`fedcompress.federated.runtime`, whose execution context owns TFF's worker process.
"""

import importlib

from fedcompress.federated import quiet as _quiet

_quiet.quiet_tensorflow()

_LAZY = {
    "build_fedavg": "fedcompress.federated.fedavg",
    "CodecSpec": "fedcompress.codecs",
    "register_codec": "fedcompress.codecs",
    "register_stage": "fedcompress.codecs",
    "available_codecs": "fedcompress.codecs",
}
__all__ = sorted(_LAZY) + ["runtime"]


def __getattr__(name: str):
  if name in _LAZY:
    importlib.import_module("fedcompress.federated.runtime")
    return getattr(importlib.import_module(_LAZY[name]), name)
  if name == "runtime":
    return importlib.import_module("fedcompress.federated.runtime")
  raise AttributeError(f"module 'fedcompress' has no attribute {name!r}")
