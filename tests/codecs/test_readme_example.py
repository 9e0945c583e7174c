"""The README's custom-codec example runs and the codec it registers works."""

import re
import runpy
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fedcompress import codecs
from fedcompress.codecs import accounting as bits


def _readme_example(repo_root) -> str:
  text = (repo_root / "README.md").read_text()
  match = re.search(r"<!-- example: custom-codec -->\s*```python\n(.*?)```", text, re.S)
  assert match, "README lost its custom-codec example"
  return match.group(1)


def test_readme_custom_codec(repo_root, tmp_path):
  # Run from a real file: autograph reads the source of the stage's methods.
  script = tmp_path / "readme_example.py"
  script.write_text(_readme_example(repo_root))
  try:
    namespace = runpy.run_path(str(script))
    codec = namespace["codec"]
    x = np.linspace(-3, 3, 2000).astype(np.float32)
    encoder = codec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))
    encoded, _ = encoder.encode(tf.constant(x), encoder.initial_state())
    decoded = encoder.decode(encoded).numpy()
    assert int(bits.structure_bits_tf(encoded)) == 2000 * 16
    np.testing.assert_allclose(decoded, x, rtol=1e-3, atol=1e-3)
    assert not np.array_equal(decoded, x)  # float16 really was on the wire
    # The stage takes no options: one is refused in one line naming the codec (it was
    # the stage constructor's TypeError).
    with pytest.raises(ValueError, match="codec 'fp16' cannot be built with options"):
      codecs.CodecSpec("fp16(foo=1)").make_encoder()
  finally:
    codecs.unregister("fp16")


@pytest.mark.slow  # builds a TFF process
def test_readme_build_fedavg_example(repo_root, tmp_path):
  # The Codecs section's example runs as written: one round of 2 digits clients at 8
  # bits each way, printing the round's broadcast and aggregate bits.
  text = (repo_root / "README.md").read_text()
  match = re.search(r"<!-- example: build-fedavg -->\s*```python\n(.*?)```", text, re.S)
  assert match, "README lost its build_fedavg example"
  script = tmp_path / "build_fedavg_example.py"
  script.write_text(match.group(1))
  result = subprocess.run([sys.executable, str(script)], cwd=repo_root, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split() == ["30715072", "30715136"], result.stdout
  assert "tensorflow/core" not in result.stderr  # quiet_tensorflow() came first.
