"""The README's custom-codec example runs and the codec it registers works."""

import re
import runpy

import numpy as np
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
  finally:
    codecs.unregister("fp16")
