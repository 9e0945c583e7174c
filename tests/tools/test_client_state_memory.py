"""tools/client_state_memory.py: a quiet probe, and what main() shows and records."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from absl.testing import flagsaver


@pytest.mark.slow  # A probe process: imports TensorFlow, runs a round.
def test_a_probe_is_quiet_from_its_first_import(csm, run_unquieted, tmp_path):
  from tools.benchmark import write_population_sqlite

  data = tmp_path / "data"
  data.mkdir()
  write_population_sqlite(str(data / "emnist_all.sqlite"), 4, 20)
  args = json.dumps([str(data), str(tmp_path / "runs"), "none", 1, 2])
  result, tf_logs = run_unquieted(
      [sys.executable, "-m", "tools.client_state_memory", "--probe", args])
  assert result.returncode == 0, result.stderr[-3000:]
  assert tf_logs == []
  assert result.stdout.splitlines()[-1].startswith(csm.RESULT + '{"mode": "none"')


# Stands in for a probe (`--probe [cache_dir, run_root, mode, rounds, clients]`): a round
# line per round, a line on stderr, and the result line, without TensorFlow.
_FAKE_PROBE = """
import json, sys, time
cache_dir, run_root, mode, rounds, clients = json.loads(sys.argv[-1])
if mode == SLOW:
  time.sleep(60)
growth = []
for r in range(1, rounds + 1):
  print(f"round {r:3d}, loss=2.3000, 0.10s", flush=True)
  growth.append({"round": r, "clients_seen": clients * r, "files": clients * r,
                 "clients_with_files": clients * r, "bytes": 100 * r,
                 "peak_rss_bytes": 1000 + r})
print(f"{mode} stderr line", file=sys.stderr, flush=True)
if mode == FAIL:
  sys.exit("ValueError: the probe failed")
print(RESULT + json.dumps({"mode": mode, "population": 12, "seconds": 0.1,
                           "peak_rss_bytes": 1000 + rounds, "growth": growth}))
"""


@pytest.fixture
def csm(load_binary):
  """The tool's module, its flags defined for the test only (others define --output)."""
  with load_binary("tools/client_state_memory.py") as module:
    yield module


@pytest.fixture
def fake_probes(csm, monkeypatch):
  """Each probe main() starts is `_FAKE_PROBE`, with the probe's arguments; the one of
  the mode set as `["fail"]` in the dict returned exits 1 before its result, the one set
  as `["slow"]` waits a minute first."""
  real_popen = subprocess.Popen
  settings = {"fail": None, "slow": None}

  def popen(cmd, **kwargs):
    if cmd[1:4] != ["-m", "tools.client_state_memory", "--probe"]:  # git, for the commit.
      return real_popen(cmd, **kwargs)
    # (A probe's result line had no mark before main() relayed the rest.)
    script = (f"RESULT = {getattr(csm, 'RESULT', '')!r}\nFAIL = {settings['fail']!r}\n"
              f"SLOW = {settings['slow']!r}\n{_FAKE_PROBE}")
    return real_popen([sys.executable, "-c", script, *cmd[3:]], **kwargs)

  monkeypatch.setattr(subprocess, "Popen", popen)
  return settings


def _run_main(csm, tmp_path, **flag_values):
  """main() with the data file in place (an empty one: the fake probes do not read it)."""
  values = {"population": 12, "examples_per_client": 20, "rounds": 2, "clients_per_round": 3,
            "cache_dir": str(tmp_path / "data"), "output": str(tmp_path / "out.json"),
            **flag_values}
  data = tmp_path / "data" / f"pop{values['population']}_ex{values['examples_per_client']}_seed0"
  data.mkdir(parents=True, exist_ok=True)
  (data / "emnist_all.sqlite").touch()
  with flagsaver.flagsaver(**values):
    return csm.main(["client_state_memory"])


def test_probe_output_is_shown_as_it_comes_with_the_probes_name(csm, fake_probes, tmp_path,
                                                                capsys):
  assert _run_main(csm, tmp_path) in (None, 0)
  out, err = capsys.readouterr()
  for mode in ("none", "ef"):
    assert f"[{mode}] round   1, loss=2.3000, 0.10s\n" in out
    assert f"[{mode}] round   2, loss=2.3000, 0.10s\n" in out
    assert f"[{mode}] {mode} stderr line\n" in err
  assert '"growth"' not in out  # The result line is read, not shown.
  assert "ratio 1.000" in out.splitlines()[-1]
  summary = json.loads((tmp_path / "out.json").read_text())
  assert summary["runs"]["ef"]["growth"][-1]["clients_seen"] == 6


@pytest.mark.parametrize("flags,message", [
    (["--rounds=0", "--population=4", "--clients_per_round=2"],
     "error: flag --rounds=0: 0 is not a positive integer"),
    (["--population=3", "--clients_per_round=5"],
     "error: --clients_per_round=5 is more than the --population=3 clients"),
])
def test_bad_flags_are_one_error_line_before_any_work(repo_root, tmp_path, flags, message):
  result = subprocess.run(
      [sys.executable, "-m", "tools.client_state_memory", *flags, "--examples_per_client=2",
       f"--cache_dir={tmp_path / 'data'}", f"--output={tmp_path / 'out.json'}"],
      capture_output=True, text=True, cwd=repo_root, timeout=120, check=False)
  assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", "")
  assert list(tmp_path.iterdir()) == []  # No dataset written, no probe started.


def test_a_failed_probe_is_one_error_line_after_its_output(csm, fake_probes, tmp_path,
                                                         capsys):
  fake_probes["fail"] = "ef"
  assert _run_main(csm, tmp_path) == 2
  out, err = capsys.readouterr()
  assert "[ef] round   2, loss=2.3000, 0.10s\n" in out  # What it did before failing.
  assert err.splitlines()[-1] == ("error: the ef run failed (exit 1): ValueError: the probe "
                                  "failed (its output is above)")
  assert "Traceback" not in err
  assert not (tmp_path / "out.json").exists()


def test_a_probe_that_fails_early_is_reported_without_waiting_for_the_other(
    csm, fake_probes, tmp_path, capsys):
  # Every relay was joined before any exit code was read: a probe failing at once was
  # reported only when the other had run all its rounds (many minutes by default).
  fake_probes["fail"], fake_probes["slow"] = "none", "ef"
  started = time.monotonic()
  assert _run_main(csm, tmp_path) == 2
  assert time.monotonic() - started < 30
  err = capsys.readouterr().err
  assert err.splitlines()[-1] == ("error: the none run failed (exit 1): ValueError: the "
                                  "probe failed (its output is above)")


def test_the_summary_records_the_examples_per_client_and_the_commit(csm, fake_probes,
                                                                    tmp_path, capsys):
  from fedcompress.harness import rundir

  assert _run_main(csm, tmp_path, examples_per_client=7) == 0
  summary = json.loads((tmp_path / "out.json").read_text())
  assert summary["examples_per_client"] == 7
  assert summary["source"] == rundir.source() and summary["source"]["commit"]
