"""Checks the README's plain-pip install route end to end, in a fresh virtual environment.

    python3.11 tools/check_install.py [--wheel dist/fedcompress-*.whl] [--python python3.11]

Creates a temporary `python -m venv` (pip only, no uv), installs exactly as the README's
Install section says (`pip install --no-deps -r requirements.txt`, then the wheel with
`--no-deps`), runs `pip check`, then, from a temporary directory outside the checkout,
imports fedcompress and runs a one-round digits experiment through the library API.
Without --wheel, the wheel is built with that venv's pip. Prints one line per step and a
final verdict; exits 1 on failure; removes its temporary directories.

It downloads TensorFlow and the rest from PyPI (several minutes; pip's cache makes reruns
faster), so it is `make check-install`, not part of `make test`. Standard library only:
it runs before any project environment exists.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# What a user runs once the package is installed: the place to change when modules move.
# The README shows the same text as its plain-pip example, and tests/test_check_install.py
# fails when the two differ or when a name imported here does not exist.
SMOKE_TEST = """\
import fedcompress

fedcompress.quiet_tensorflow()  # Before TensorFlow loads: no C++ log lines.

from fedcompress.harness.experiment import describe_result
from fedcompress.tasks import digits_task

task = digits_task(num_clients=4, seed=0)  # scikit-learn's digits: no download
config = fedcompress.ExperimentConfig(root_output_dir="runs", experiment_name="smoke",
                                      rounds=1, clients_per_round=2,
                                      client_learning_rate=0.1, progress=False)
result = fedcompress.run_experiment(task, config)  # installs the owned TFF runtime
print(describe_result(result))
# Uncompressed: each of the 2 clients received every float32 parameter once.
assert result.totals["broadcast/cumulative_bits"] == 2 * 32 * task.keras_model_fn().count_params()
"""

# TFF 0.87.0's metadata pins jax/jaxlib 0.4.14, which PyPI no longer has; requirements.txt
# installs the lock's 0.4.13 instead. Any other complaint of `pip check` means the file is
# not the complete closure that installing it with --no-deps relies on.
EXPECTED_PIP_CHECK = re.compile(
    r"tensorflow-federated \S+ has requirement (jax|jaxlib)==0\.4\.14, "
    r"but you have \1 0\.4\.13\.")

PIP_TIMEOUT_S = 3600  # TensorFlow alone is about 500 MB.
RUN_TIMEOUT_S = 900
LOG_TAIL_LINES = 30


class CheckFailed(Exception):
  pass


def install_commands(pip: list[str], requirements: str, wheel: str) -> list[list[str]]:
  """The README's two install commands, with `pip` as the command that runs pip."""
  return [pip + ["install", "--no-deps", "-r", requirements],
          pip + ["install", "--no-deps", wheel]]


def _child_env() -> dict[str, str]:
  # Nothing from the caller's environment may put the checkout (or another install) on
  # the venv's path: the point is to import the installed wheel.
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
  env["PYTHONNOUSERSITE"] = "1"
  return env


def _step(label: str, cmd: list[str], log: pathlib.Path, *, timeout: float,
          cwd: pathlib.Path | None = None, show_output: bool = False) -> str:
  """Runs `cmd`, output to `log`; returns the output, or raises CheckFailed with its tail."""
  print(f"check-install: {label} ...", flush=True)
  began = time.monotonic()
  # Output goes to a file, not a pipe: a TFF worker process that outlived its parent
  # would keep a pipe open and block the read forever.
  with open(log, "w") as out:
    try:
      code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                            env=_child_env(), timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
      code = f"timeout after {timeout:.0f}s"
    except OSError as e:  # No such interpreter, or not executable.
      raise CheckFailed(f"{label}: cannot run {cmd[0]}: {e.strerror or e}") from None
  text = log.read_text(errors="replace")
  if show_output or code != 0:
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    print("\n".join("    " + line for line in lines), flush=True)
  if code != 0:
    raise CheckFailed(f"{label}: exit status {code} (output above; command: "
                      f"{' '.join(cmd)})")
  print(f"check-install: {label}: ok in {time.monotonic() - began:.0f}s", flush=True)
  return text


def check(python: str, wheel: pathlib.Path | None, requirements: pathlib.Path,
          tmp: pathlib.Path) -> str:
  """Runs every step in `tmp`; returns a summary or raises CheckFailed."""
  if tmp.resolve().is_relative_to(REPO_ROOT):
    raise CheckFailed(f"the temporary directory {tmp} is inside the checkout; set TMPDIR")
  venv, work, logs = tmp / "venv", tmp / "work", tmp / "logs"
  work.mkdir()
  logs.mkdir()
  vpython = str(venv / "bin" / "python")
  pip = [vpython, "-m", "pip"]
  _step(f"{python} -m venv", [python, "-m", "venv", str(venv)], logs / "venv.log",
        timeout=300)
  version = _step("venv Python and pip versions",
                  [vpython, "-c", "import sys, pip; print(sys.version.split()[0], "
                   "pip.__version__)"], logs / "version.log", timeout=60).split()
  if not version[0].startswith("3.11."):
    raise CheckFailed(f"{python} is Python {version[0]}; fedcompress needs 3.11 "
                      "(give --python)")
  if wheel is None:
    # --no-deps: building must not resolve the dependencies (TFF's jaxlib pin fails).
    _step("build the wheel with pip", pip + ["wheel", "--no-deps", "--wheel-dir",
          str(tmp / "wheel"), str(REPO_ROOT)], logs / "wheel.log", timeout=PIP_TIMEOUT_S)
    (wheel,) = (tmp / "wheel").glob("fedcompress-*.whl")
  for i, cmd in enumerate(install_commands(pip, str(requirements), str(wheel))):
    shown = " ".join(["pip"] + cmd[len(pip):]).replace(str(REPO_ROOT) + os.sep, "")
    _step(shown, cmd, logs / f"pip-install-{i}.log", timeout=PIP_TIMEOUT_S)
  complaints = _pip_check(pip, logs / "check.log")
  where = _step('python -c "import fedcompress" (from a directory outside the checkout)',
                [vpython, "-c", "import fedcompress; print(fedcompress.__file__)"],
                logs / "import.log", cwd=work, timeout=RUN_TIMEOUT_S).strip().splitlines()[-1]
  if not pathlib.Path(where).resolve().is_relative_to(venv.resolve()):
    raise CheckFailed(f"fedcompress was imported from {where}, not from the venv")
  _step("one-round digits experiment through the library API",
        [vpython, "-c", SMOKE_TEST], logs / "smoke.log", cwd=work, timeout=RUN_TIMEOUT_S,
        show_output=True)
  return (f"{wheel.name} installed with pip {version[1]} into a fresh Python {version[0]} "
          f"venv imports from site-packages and runs a digits round ({complaints})")


def _pip_check(pip: list[str], log: pathlib.Path) -> str:
  print("check-install: pip check ...", flush=True)
  # Exits 1 because of TFF's jax pins; what counts is which lines it prints.
  with open(log, "w") as out:
    subprocess.run(pip + ["check"], stdout=out, stderr=subprocess.STDOUT, env=_child_env(),
                   timeout=300, check=False)
  lines = [line for line in log.read_text().splitlines() if line.strip()]
  unexpected = [line for line in lines if not EXPECTED_PIP_CHECK.fullmatch(line)]
  if unexpected or len(lines) != 2:
    raise CheckFailed("pip check reports more than TFF's two jax pins (is requirements.txt "
                      "the lock's whole closure? run `make requirements`):\n    "
                      + "\n    ".join(lines))
  summary = "pip check: only TFF's jax/jaxlib==0.4.14 pins"
  print(f"check-install: {summary}", flush=True)
  return summary


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--wheel", type=pathlib.Path,
                      help="the wheel to install (default: build one from this checkout)")
  parser.add_argument("--python", default=shutil.which("python3.11"),
                      help="interpreter that creates the venv (default: python3.11 on PATH)")
  parser.add_argument("--requirements", type=pathlib.Path,
                      default=REPO_ROOT / "requirements.txt")
  args = parser.parse_args(argv)
  began = time.monotonic()
  try:
    if not args.python:
      raise CheckFailed("no python3.11 on PATH (give --python)")
    if shutil.which(args.python) is None:
      raise CheckFailed(f"--python {args.python} is not an executable interpreter")
    if args.wheel is not None and not args.wheel.is_file():
      raise CheckFailed(f"no wheel at {args.wheel} (run `make dist`)")
    with tempfile.TemporaryDirectory(prefix="fedcompress-check-install-",
                                     ignore_cleanup_errors=True) as tmp:
      summary = check(args.python, args.wheel and args.wheel.resolve(),
                      args.requirements.resolve(), pathlib.Path(tmp))
  except CheckFailed as e:
    print(f"check-install: FAILED after {time.monotonic() - began:.0f}s: {e}", flush=True)
    return 1
  except KeyboardInterrupt:  # Ctrl-C during minutes of pip: one line, not a traceback.
    print(f"check-install: interrupted after {time.monotonic() - began:.0f}s", flush=True)
    return 130
  print(f"check-install: OK in {time.monotonic() - began:.0f}s: {summary}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
