"""The README's Python examples print nothing of TensorFlow's or tensor_encoding's.

The custom-codec example called quiet_tensorflow() after importing TensorFlow (nine
start-up lines), and tensor_encoding's root-logger warning ("This code path can
temporarily allocate extra memory") printed 18 times in a script at 2 bits.
"""

import re
import subprocess
import sys

import pytest


@pytest.mark.slow  # A fresh interpreter that imports TensorFlow.
def test_the_custom_codec_example_and_a_2_bit_packing_print_no_log_lines(repo_root,
                                                                           tmp_path):
  text = (repo_root / "README.md").read_text()
  example = re.search(r"<!-- example: custom-codec -->\s*```python\n(.*?)```", text,
                      re.S).group(1)
  script = tmp_path / "example.py"
  script.write_text(example + (
      "from tensorflow_model_optimization.python.core.internal.tensor_encoding.utils "
      "import tf_utils\n"
      "tf_utils.pack_into_int(tf.constant([1, 2, 3]), 2, 28)  # Its warning's path.\n"
      "print('done')\n"))
  result = subprocess.run([sys.executable, str(script)], cwd=repo_root, capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
  assert result.stderr == "", result.stderr
