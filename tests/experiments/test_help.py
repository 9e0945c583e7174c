"""`--helpshort` of the experiment binaries lists their flags, and exits 0.

They define them through `fedcompress.harness.flags`, and absl's short help shows only
the main module's key flags: it listed none, while an unknown flag's error points there.
"""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # starts each binary (TensorFlow's import)


@pytest.mark.parametrize("binary,own", [
    ("emnist_compression.py", "--dataset"),
    ("shakespeare_finetune.py", "--pretrained_model"),
])
def test_helpshort_lists_the_binarys_flags(repo_root, binary, own):
  result = subprocess.run([sys.executable, f"experiments/{binary}", "--helpshort"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
  listed = {line.split(":")[0].strip().replace("[no]", "") for line in result.stdout.splitlines()
            if line.startswith("  --")}
  assert {own, "--rounds", "--aggregate_encoder", "--resume", "--seed"} <= listed, result.stdout
  # Help asked for is not an error (absl's own exit code is 1).
  assert result.returncode == 0, result.stderr
