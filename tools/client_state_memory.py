"""Driver peak memory with and without client state, on a generated EMNIST population.

Error feedback keeps one model-sized state per client (`fedcompress.harness.
client_state`): 3,400 EMNIST clients x 1.66M float32 would be 22 GB if the driver held
them. This tool checks that it does not: it writes an `emnist_all.sqlite` of
`--population` clients (TFF's own SQL writer, `tools.benchmark.write_population_sqlite`),
then runs the EMNIST experiment twice, side by side in fresh subprocesses, with the
same uplink codec (top-k 1%), seed and sampled clients: once with `--error_feedback=none`
and once with `ef`. Each run reports the driver's peak RSS (`VmHWM` of its own
process: the TFF worker is a separate process), and the EF run the clients seen and the
bytes and files of its state directory, after every round. The verdict is the RSS
ratio (target <= 1.10) and whether the state files grew only with the clients seen.
The runs' round lines are shown as they come, each after `[none]` or `[ef]`.

    python -m tools.client_state_memory                       # 3,400 clients, 20 rounds
    python -m tools.client_state_memory --population=200 --rounds=5   # quicker
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

from absl import app, flags

from fedcompress.federated import quiet
from fedcompress.harness import rundir
from fedcompress.harness.cli import check_output_file, fail, interruptible, parse_flags

# Bounded so that a bad value is one error line before anything runs, not a probe's
# failure after the dataset is written.
_POPULATION = flags.DEFINE_integer("population", 3400, "Clients in the generated dataset.",
                                   lower_bound=1)
_EXAMPLES = flags.DEFINE_integer("examples_per_client", 100, "Examples per client.",
                                 lower_bound=1)
_ROUNDS = flags.DEFINE_integer("rounds", 20, "Rounds of each run.", lower_bound=1)
_CLIENTS = flags.DEFINE_integer("clients_per_round", 10, "Clients per round.", lower_bound=1)
_CACHE = flags.DEFINE_string("cache_dir", None, "Keep (and reuse) the generated dataset here.")
_OUTPUT = flags.DEFINE_string("output", "runs/client_state_memory.json",
                              "Where to write the JSON result.")
TARGET = 1.10


def probe(cache_dir: str, run_root: str, mode: str, rounds: int, clients_per_round: int
          ) -> dict[str, Any]:
  """One experiment run in this (fresh) process; its peak RSS and state-file growth."""
  import fedcompress
  from fedcompress.harness import experiment, reporting
  from fedcompress.harness.loop import sample_clients
  from fedcompress.tasks.image import emnist_task
  from tools.benchmark import peak_rss_bytes

  task = emnist_task(only_digits=True, cache_dir=cache_dir, batch_size=20, seed=0)
  config = fedcompress.ExperimentConfig(
      root_output_dir=run_root, experiment_name=mode, rounds=rounds,
      clients_per_round=clients_per_round, client_learning_rate=0.1,
      aggregate_codec=fedcompress.CodecSpec("topk", {"fraction": 0.01}),
      error_feedback=mode, rounds_per_eval=rounds, rounds_per_checkpoint=5, progress=False)
  state_dir = os.path.join(config.run_dir, experiment.CLIENT_STATE_DIR)
  growth, seen = [], set()

  class WatchingConsole(reporting.ConsoleReporter):
    """Console lines, plus after each round: clients seen, state files on disk, RSS."""

    def write(self, row):
      super().write(row)
      round_num = int(row["round"])
      seen.update(sample_clients(task.client_ids, clients_per_round, config.seed, round_num))
      names = os.listdir(state_dir) if os.path.isdir(state_dir) else []
      growth.append({
          "round": round_num, "clients_seen": len(seen), "files": len(names),
          "clients_with_files": len({n.rsplit(".r", 1)[0] for n in names}),
          "bytes": sum(os.path.getsize(os.path.join(state_dir, n)) for n in names),
          "peak_rss_bytes": peak_rss_bytes()})

  console = WatchingConsole(progress=False)
  began = time.perf_counter()
  experiment.run_experiment(task, config, console=console)
  return {"mode": mode, "population": len(task.client_ids),
          "peak_rss_bytes": peak_rss_bytes(),
          "seconds": time.perf_counter() - began, "growth": growth}


# Marks the line of a probe's stdout that is its result; the others are progress.
RESULT = "probe result: "
_writing = threading.Lock()


class ProbeFailed(Exception):
  """A probe ended without its result; the message names it and its last stderr line."""


def _relay(mode: str, stream: IO[str], out: IO[str], lines: list[str]) -> None:
  """Shows a probe's lines as they come, each after its mode (the two run side by side,
  and a run of the defaults takes many minutes), and keeps them in `lines`; its result
  line is kept, not shown."""
  for line in stream:
    lines.append(line.rstrip())
    if not line.startswith(RESULT):
      with _writing:  # Whole lines: the other probe's relays write to the same stream.
        out.write(f"[{mode}] {lines[-1]}\n")
        out.flush()


def _run_probes(cache_dir: str, run_root: str) -> dict[str, dict[str, Any]]:
  """Both probes, side by side, their output relayed; each one's result.

  Raises:
    ProbeFailed: a probe exited with an error or without its result.
  """
  probes, relays, outputs = {}, {}, {}
  try:
    for mode in ("none", "ef"):
      args = json.dumps([cache_dir, run_root, mode, _ROUNDS.value, _CLIENTS.value])
      probes[mode] = subprocess.Popen(
          [sys.executable, "-m", "tools.client_state_memory", "--probe", args],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      outputs[mode] = {"stdout": [], "stderr": []}
      relays[mode] = [threading.Thread(target=_relay, daemon=True, args=(
          mode, getattr(probes[mode], name), out, outputs[mode][name]))
          for name, out in (("stdout", sys.stdout), ("stderr", sys.stderr))]
      for relay in relays[mode]:
        relay.start()
    # Polled, not joined: a probe that fails is reported at once (the other one is
    # killed below), not after the other has run all its rounds.
    while True:
      codes = {mode: p.poll() for mode, p in probes.items()}
      failed = [mode for mode, code in codes.items() if code not in (None, 0)]
      if failed or all(code == 0 for code in codes.values()):
        break
      time.sleep(0.2)
    results = {}
    for mode in failed[:1] or list(probes):
      probe_process = probes[mode]
      for relay in relays[mode]:  # It has exited: its pipes end, and all is read.
        relay.join()
      found = [line for line in outputs[mode]["stdout"] if line.startswith(RESULT)]
      if probe_process.wait() != 0 or not found:
        last = next((line for line in reversed(outputs[mode]["stderr"]) if line.strip()),
                    "no error output")
        raise ProbeFailed(f"the {mode} run failed (exit {probe_process.returncode}): {last}")
      results[mode] = json.loads(found[-1][len(RESULT):])
  finally:
    for probe_process in probes.values():
      if probe_process.poll() is None:
        probe_process.kill()
        probe_process.wait()
  return results


def main(argv):
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if _CLIENTS.value > _POPULATION.value:
    return fail(f"--clients_per_round={_CLIENTS.value} is more than the "
                f"--population={_POPULATION.value} clients")
  # Made now, not after the runs: a bad --output would lose their results.
  try:
    check_output_file(_OUTPUT.value)
  except ValueError as e:
    return fail(f"--output: {e}")
  from tools.benchmark import write_population_sqlite

  with tempfile.TemporaryDirectory(prefix="fedcompress_state_mem_") as tmp:
    # Keyed by what the file holds, so another --population never reuses it; the
    # name is the one `tools.benchmark` gives the same data (its writer, seed 0).
    cache_dir = os.path.join(_CACHE.value or os.path.join(tmp, "data"),
                             f"pop{_POPULATION.value}_ex{_EXAMPLES.value}_seed0")
    path = os.path.join(cache_dir, "emnist_all.sqlite")
    if not os.path.exists(path):
      os.makedirs(cache_dir, exist_ok=True)
      print(f"writing {_POPULATION.value} clients to {path}", flush=True)
      write_population_sqlite(path, _POPULATION.value, _EXAMPLES.value)
    try:
      results = _run_probes(cache_dir, os.path.join(tmp, "runs"))
    except ProbeFailed as e:
      return fail(f"{e} (its output is above)")
  none, ef = results["none"], results["ef"]
  ratio = ef["peak_rss_bytes"] / none["peak_rss_bytes"]
  state_size = ef["growth"][-1]["bytes"] / max(1, ef["growth"][-1]["files"])
  # Exactly the clients seen have a state file; extra files are the versions kept for
  # the checkpoints a resume may use.
  grows_with_seen = all(g["clients_with_files"] == g["clients_seen"] for g in ef["growth"])
  summary = {"population": ef["population"], "examples_per_client": _EXAMPLES.value,
             "rounds": _ROUNDS.value, "clients_per_round": _CLIENTS.value,
             # The commit, as run records keep it: the figures change with the code.
             "source": rundir.source(), "runs": results,
             "peak_rss_ratio": ratio, "target_peak_rss_ratio": TARGET,
             "state_file_bytes": state_size, "grows_only_with_clients_seen": grows_with_seen}
  with open(_OUTPUT.value, "w") as f:
    json.dump(summary, f, indent=1)
  last = ef["growth"][-1]
  print(f"{ef['population']} clients, {_ROUNDS.value} rounds of {_CLIENTS.value}: driver peak "
        f"RSS {none['peak_rss_bytes'] / 2**20:.1f} MiB without client state, "
        f"{ef['peak_rss_bytes'] / 2**20:.1f} MiB with (ef); ratio {ratio:.3f} (target <= "
        f"{TARGET}); state on disk: {last['files']} files, {last['bytes'] / 2**20:.1f} MiB for "
        f"{last['clients_seen']} clients seen of {ef['population']}; written to {_OUTPUT.value}")
  return 0


if __name__ == "__main__":
  # First: TensorFlow reads its log level once, when it loads (in a probe's imports and
  # in main's data writer), and each probe would print ~120 lines of it.
  quiet.quiet_tensorflow()
  if sys.argv[1:2] == ["--probe"]:
    print(RESULT + json.dumps(probe(*json.loads(sys.argv[2]))), flush=True)
  else:
    app.run(interruptible(main), flags_parser=parse_flags)
