"""quiet_tensorflow() drops tensor_encoding's own root-logger warnings, and only those.

Its first filter matched 'tensor_encoding' anywhere in a file's path: a user's script in
a folder named tensor_encoding_study lost its own logging.warning.
"""

import subprocess
import sys


def test_a_users_warning_in_a_like_named_folder_is_kept(tmp_path):
  folder = tmp_path / "tensor_encoding_study"
  folder.mkdir()
  script = folder / "study.py"
  script.write_text(
      "import logging, fedcompress\n"
      "fedcompress.quiet_tensorflow()\n"
      "fedcompress.quiet_tensorflow()  # Twice: still one filter.\n"
      "logging.warning('the user warns')\n"
      "print(len(logging.getLogger().filters))\n")
  result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert "the user warns" in result.stderr and result.stdout.strip() == "1"
