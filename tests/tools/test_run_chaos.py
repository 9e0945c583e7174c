"""tools/run_chaos.py and what `run_chaos` records, with a stand-in for the experiment."""

from __future__ import annotations

import dataclasses
import json
import sys


def test_reading_tensorboard_files_prints_no_tensorflow_logs(run_unquieted, tmp_path):
  # What run_chaos does after each interruption: its first TensorFlow import.
  result, tf_logs = run_unquieted(
      [sys.executable, "-c", "import tools.run_chaos\nfrom tools import chaos\n"
       f"print(chaos.tensorboard_scalars({str(tmp_path)!r}))"])
  assert (result.returncode, result.stdout) == (0, "{}\n"), result.stderr[-3000:]
  assert tf_logs == []


# Stands in for experiments/emnist_compression.py: a round line per round, an empty
# metrics.csv; the interrupted run's first start then waits for its SIGKILL. Its marker
# is written before the round lines: the SIGKILL follows the last line at once, and a
# marker written after it was sometimes not written, so the resumed start slept too.
_FAKE_EXPERIMENT = """
import os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if "=" in a)
run_dir = os.path.join(args["root_output_dir"], args["experiment_name"])
os.makedirs(run_dir, exist_ok=True)
open(os.path.join(run_dir, "metrics.csv"), "a").close()
started = os.path.join(run_dir, "started")
first_start = args["experiment_name"] == "interrupted" and not os.path.exists(started)
open(started, "w").close()
for r in range(1, int(args["rounds"]) + 1):
  print(f"round {r:3d}, train/loss=1.0, round_time_s=0.01", flush=True)
if first_start:
  time.sleep(120)
"""


def test_chaos_json_records_the_config_and_the_commit(tmp_path):
  from fedcompress.harness import rundir
  from tools import chaos

  binary = tmp_path / "fake_experiment.py"
  binary.write_text(_FAKE_EXPERIMENT)
  config = chaos.ChaosConfig(root_dir=str(tmp_path / "chaos"), rounds=2, seed=3,
                             signals=("SIGKILL",), at_rounds=(2,), rtol=0.25,
                             experiment_flags=("--seed=5",), binary=str(binary))
  report = chaos.run_chaos(config, log=lambda line: None)
  assert report.ok, "\n".join(report.summary_lines())
  written = json.loads((tmp_path / "chaos" / "chaos.json").read_text())
  assert written["config"] == json.loads(json.dumps(dataclasses.asdict(config)))
  assert set(written["config"]) == {f.name for f in dataclasses.fields(chaos.ChaosConfig)}
  assert written["source"] == rundir.source() and written["source"]["commit"]
  assert written["ok"] is True
