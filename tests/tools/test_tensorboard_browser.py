"""TensorBoard checked in a real browser: both runs and the bits tags are on the page.

Needs Debian's chromium; the check installs it when it can (root with apt-get) and is
skipped, with the reason, when it cannot. The screenshot is kept under
$FEDCOMPRESS_ARTIFACTS when that is set (the README's figure comes from there).
"""

import os
import shutil

import pytest

from fedcompress import metrics as m
from fedcompress.harness import reporting
from tools import browser_check

pytestmark = pytest.mark.browser  # starts TensorBoard and Chromium

RUNS = {"original": 532_278_400, "compressed_u8": 153_575_360}


def _write_runs(root):
  for name, per_round in RUNS.items():
    reporter = reporting.TensorBoardReporter(str(root / name), {"run": name})
    reporter.start(1, 10)
    for r in range(1, 11):
      reporter.write({m.ROUND: r, m.TRAIN_LOSS: 2.3 / r, m.TRAIN_ACCURACY: 1 - 1 / (r + 1),
                      m.EVAL_ACCURACY: 1 - 1 / (r + 2), m.BROADCAST_BITS: per_round,
                      m.AGGREGATE_BITS: per_round + 320,
                      m.BROADCAST_CUMULATIVE_BITS: per_round * r,
                      m.AGGREGATE_CUMULATIVE_BITS: (per_round + 320) * r,
                      m.ROUND_TIME_S: 1.0})
    reporter.close()


def test_scalars_page_shows_both_runs_and_bits(tmp_path):
  try:
    chromium = browser_check.ensure_chromium(install=os.environ.get("CI") == "true" or
                                             os.geteuid() == 0)
  except browser_check.BrowserUnavailableError as e:
    pytest.skip(f"no headless browser: {e}")
  _write_runs(tmp_path / "runs")
  shot = tmp_path / "tensorboard.png"
  page = browser_check.check_tensorboard(str(tmp_path / "runs"), str(shot), chromium=chromium)
  for run in RUNS:
    assert run in page.dom, f"run {run} not on the page"
  for tag in (m.BROADCAST_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_BITS, m.BROADCAST_BITS):
    assert tag in page.dom, f"tag {tag} not on the page"
  assert shot.stat().st_size > 20_000  # A rendered page, not a blank one.
  if os.environ.get("FEDCOMPRESS_ARTIFACTS"):
    shutil.copy(shot, os.path.join(os.environ["FEDCOMPRESS_ARTIFACTS"], "tensorboard.png"))
