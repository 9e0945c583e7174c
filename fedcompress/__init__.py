"""fedcompress: communication-efficient federated learning on TFF 0.87.

Encoded broadcast and encoded aggregation for `tff.learning` FedAvg, with every bit
that crosses the wire counted in the process's own metrics.
"""

from fedcompress import _quiet

_quiet.quiet_tensorflow()

# Imported after the environment is set, on purpose.
from fedcompress import runtime  # noqa: E402
from fedcompress.codecs import CodecSpec, register_codec, register_stage  # noqa: E402
from fedcompress.fedavg import build_fedavg  # noqa: E402

_quiet.quiet_python_loggers()

__all__ = ["CodecSpec", "build_fedavg", "register_codec", "register_stage", "runtime"]
