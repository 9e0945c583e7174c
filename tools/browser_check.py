"""Look at TensorBoard the way a person would: a real TensorBoard, a real browser.

`check_tensorboard(logdir, screenshot)` starts `tensorboard --logdir` on a free
loopback port, loads its scalars page in headless Chromium (Debian's `chromium`),
lets the page render, saves a screenshot and returns the rendered DOM's text, so a
caller can assert which runs and tags the page shows. TensorBoard and the browser are
stopped afterwards whatever happens.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import portpicker

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic",
                  "--hide-scrollbars", "--mute-audio")


class BrowserUnavailableError(RuntimeError):
  """No Chromium here, and it could not be installed."""


def find_chromium() -> str | None:
  for name in CHROMIUM_NAMES:
    path = shutil.which(name)
    if path:
      return path
  return None


def ensure_chromium(install: bool = True, timeout_s: float = 600) -> str:
  """Path of a Chromium binary, installing Debian's `chromium` when allowed and root."""
  path = find_chromium()
  if path:
    return path
  if not install:
    raise BrowserUnavailableError("chromium is not installed")
  if shutil.which("apt-get") is None or os.geteuid() != 0:
    raise BrowserUnavailableError("chromium is not installed and apt-get as root is not "
                                  "available to install it")
  env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
  for cmd in (["apt-get", "update", "-qq"],
              ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
    try:
      done = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
      raise BrowserUnavailableError(f"{' '.join(cmd)} timed out") from None
    if done.returncode != 0:
      tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
      raise BrowserUnavailableError(f"{' '.join(cmd)} failed: {tail[0]}")
  path = find_chromium()
  if not path:
    raise BrowserUnavailableError("chromium still missing after apt-get install")
  return path


@dataclasses.dataclass
class PageCheck:
  url: str
  dom: str
  screenshot: str


def _wait_http(url: str, process: subprocess.Popen, timeout_s: float) -> None:
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if process.poll() is not None:
      raise RuntimeError(f"tensorboard exited early with code {process.returncode}")
    try:
      with urllib.request.urlopen(url, timeout=2) as response:
        if response.status == 200:
          return
    except OSError:
      time.sleep(0.3)
  raise RuntimeError(f"tensorboard did not answer at {url} within {timeout_s:.0f}s")


def _stop(process: subprocess.Popen) -> None:
  if process.poll() is None:
    process.terminate()
    try:
      process.wait(10)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


def check_tensorboard(logdir: str, screenshot: str, *, chromium: str | None = None,
                      render_ms: int = 25_000, window: str = "1600,1200",
                      page: str = "#timeseries") -> PageCheck:
  """Serves `logdir` with TensorBoard and renders its scalars page in Chromium."""
  chromium = chromium or ensure_chromium()
  port = portpicker.pick_unused_port()
  tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
  server = subprocess.Popen(
      [tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  profile = tempfile.mkdtemp(prefix="fedcompress-chromium-")
  try:
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/data/runs", server, timeout_s=90)
    url = f"{base}/{page}"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
              f"--window-size={window}", f"--virtual-time-budget={render_ms}"]
    # Virtual time lets the page's timers and fetches run to completion before the
    # DOM is dumped or the screenshot taken: the charts are drawn by then.
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, timeout=180,
                         check=True).stdout.decode(errors="replace")
    subprocess.run([*common, f"--screenshot={os.path.abspath(screenshot)}", url],
                   capture_output=True, timeout=180, check=True)
    if not os.path.exists(screenshot):
      raise RuntimeError("chromium wrote no screenshot")
    return PageCheck(url=url, dom=dom, screenshot=screenshot)
  finally:
    _stop(server)
    shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/browser_check.py is the browser test's helper: "
                   "import it; it has no command line")
