"""The round loop: sample clients, run a round, evaluate, report, checkpoint.

The loop calls no TFF itself (its checkpoints import it): it drives any object with
`initialize()`, `next(state, client_data)` and `get_model_weights(state)`, so it is
tested against a fake process. Client sampling is uniform without replacement from a
generator seeded by (seed, round), which makes round r's clients the same in a resumed
run.

Two kinds of round are not reported as if they were normal ones. A round where the
process left every client out (`aggregate/rejected_clients` equals the clients sampled:
non-finite updates) has no training loss or accuracy: they are left empty and a
warning says so. A round after which the model weights are no longer finite stops the
run with `NonFiniteModelError`, before it is evaluated, reported or checkpointed, so
the last checkpoint is the last finite model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from fedcompress import metrics as m
from fedcompress.harness import cli
from fedcompress.harness.checkpoints import Checkpointer, LoopState
from fedcompress.harness.client_state import ClientStateStore, saved_versions
from fedcompress.harness.reporting import Reporter


class NonFiniteModelError(RuntimeError):
  """The model weights became NaN or infinite, or a round's mean update did and was
  dropped; the run cannot go on meaningfully."""


def update_dropped(metrics: Mapping[str, Any]) -> bool:
  """Whether the round's mean update was dropped as non-finite: TFF 0.87's
  `build_apply_optimizer_finalizer` then keeps the model as it was and says so only in
  its measurement, `finalizer/update_non_finite`."""
  finalizer = metrics.get("finalizer")
  return isinstance(finalizer, Mapping) and bool(finalizer.get("update_non_finite", 0))


def all_finite(value: Any) -> bool:
  """Whether every floating-point number in a (nested) structure of arrays is finite."""
  if isinstance(value, Mapping):
    return all(all_finite(v) for v in value.values())
  if isinstance(value, (list, tuple)):  # Also TFF's ModelWeights, a NamedTuple.
    return all(all_finite(v) for v in value)
  array = np.asarray(value)
  if array.dtype.kind in "fc":
    return bool(np.isfinite(array).all())
  return True


class Process(Protocol):
  def initialize(self) -> Any: ...
  def next(self, state: Any, client_data: list) -> Any: ...
  def get_model_weights(self, state: Any) -> Any: ...


def sample_clients(client_ids: Sequence[str], clients_per_round: int, seed: int,
                   round_num: int) -> list[str]:
  """`clients_per_round` distinct ids, uniformly at random, fixed by (seed, round).

  Drawn from the ids in sorted order: a run records the set of its task's ids
  (`task_client_ids_sha256`, sorted), and positions in the list as given would pick other
  clients for a task whose ids come in another order in another process (a `set` of
  strings, under Python's per-process hash seed), with the same seed and the same record.
  """
  if not 1 <= clients_per_round <= len(client_ids):
    raise ValueError(f"clients_per_round must be in 1..{len(client_ids)} "
                     f"(clients available), got {clients_per_round}")
  ordered = sorted(client_ids)
  rng = np.random.default_rng([seed, round_num])
  chosen = rng.choice(len(ordered), size=clients_per_round, replace=False)
  return [ordered[i] for i in chosen]


@dataclasses.dataclass
class LoopConfig:
  rounds: int
  clients_per_round: int
  seed: int = 0
  rounds_per_eval: int = 1
  rounds_per_checkpoint: int = 1
  fixed_clients: Sequence[str] | None = None


@dataclasses.dataclass
class LoopResult:
  state: Any
  rows: list[dict[str, Any]]
  final_eval: dict[str, float] | None
  start_round: int


def check_states_on_disk(directory: str, checkpoint: int, client_ids: Sequence[str],
                         config: Any) -> None:
  """Refuses a resume from round `checkpoint` whose clients' states are not in `directory`.

  Every client that took part by then wrote a version (a resume reads its newest one
  at or before the checkpoint); one missing would start again from zeros, as a new
  client: a run resumed with its `client_states` folder deleted (to save disk) went on
  with every client's memory reset, and diverged without a word. `config` is the loop's
  (or an `ExperimentConfig`): its fixed clients, or clients per round and seed.
  """
  if not checkpoint:
    return
  took_part = set(config.fixed_clients or ())
  if not took_part:
    for round_num in range(1, checkpoint + 1):
      took_part.update(sample_clients(client_ids, config.clients_per_round, config.seed,
                                      round_num))
  saved = saved_versions(directory)
  missing = sorted(c for c in took_part if not any(r <= checkpoint for r in saved.get(c, ())))
  if missing:
    raise ValueError(f"cannot resume from round {checkpoint}: {len(missing)} of the "
                     f"{len(took_part)} clients that took part by then have no state in "
                     f"{os.path.abspath(directory)} (e.g. {', '.join(missing[:3])}), so "
                     "they would start again from zeros; put the folder back, or start a "
                     "new run (another --experiment_name)")


def run_loop(process: Process, client_ids: Sequence[str],
             client_dataset: Callable[[str, int], Any], config: LoopConfig, *,
             evaluate: Callable[[Any], Mapping[str, float]] | None = None,
             reporters: Sequence[Reporter] = (), checkpointer: Checkpointer | None = None,
             initial_state: Any = None, resume: bool = False,
             warn: Callable[[str], None] = cli.warn,
             client_states: ClientStateStore | None = None,
             round_metrics: Callable[[int], Mapping[str, float]] | None = None) -> LoopResult:
  """Runs rounds `start..config.rounds`, where start follows the last checkpoint.

  Args:
    process: a learning process (TFF `LearningProcess` or anything shaped like it).
    client_ids: ids to sample from.
    client_dataset: `(client_id, round_num) -> dataset`, called for sampled clients only.
    config: rounds, sampling and eval/checkpoint cadence.
    evaluate: `model_weights -> {'eval/loss': .., 'eval/accuracy': ..}`; run every
      `rounds_per_eval` rounds and after the last one.
    reporters: receive one row per round.
    checkpointer: saves every `rounds_per_checkpoint` rounds and after the last one.
    initial_state: state to start from instead of `process.initialize()` (e.g. with
      pretrained weights).
    resume: continue from the newest checkpoint in `checkpointer`.
    warn: receives a line about rounds whose clients were left out.
    client_states: for a process with client state (`next_files(state, data,
      read_paths, write_paths)`, e.g. `ClientStateProcess`): the round gets the sampled
      clients' state files in this store and writes their new versions, which are
      committed before the round's checkpoint; on resume the versions of rounds after
      the checkpoint are dropped (and a resume whose clients have none is refused), and
      after every round the versions neither the next round nor a resume from a kept
      checkpoint reads are deleted.
    round_metrics: `round_num -> {name: value}` added to each round's row (e.g. the
      privacy spent after that round, a function of the round alone, so a resumed run
      reports the same).

  Raises:
    NonFiniteModelError: a round made the model weights non-finite. That round is
      neither reported nor checkpointed; earlier ones are.
  """
  if config.rounds < 1:
    raise ValueError(f"rounds must be >= 1, got {config.rounds}")
  state = process.initialize() if initial_state is None else initial_state
  loop = LoopState(0, 0, 0)
  if resume and checkpointer is not None:
    restored = checkpointer.restore(state, warn=warn)
    if restored is not None:
      state, loop = restored
  start = loop.round_num + 1
  if client_states is not None:
    # Rounds after the checkpoint are redone: they must read what they read before.
    client_states.discard_after(loop.round_num)
    check_states_on_disk(client_states.directory, loop.round_num, client_ids, config)
  last_checkpoint = loop.round_num if resume and loop.round_num else None
  for reporter in reporters:
    reporter.start(start, config.rounds)
  rows: list[dict[str, Any]] = []
  final_eval = None
  try:
    for round_num in range(start, config.rounds + 1):
      if config.fixed_clients:
        sampled = list(config.fixed_clients)
      else:
        sampled = sample_clients(client_ids, config.clients_per_round, config.seed, round_num)
      data = [client_dataset(cid, round_num) for cid in sampled]
      began = time.perf_counter()
      if client_states is None:
        output = process.next(state, data)
      else:
        # The process reads and writes the state files where each client trains.
        output = process.next_files(
            state, data, [client_states.read_path(cid, round_num) for cid in sampled],
            [client_states.write_path(cid, round_num) for cid in sampled])
      elapsed = time.perf_counter() - began
      state = output.state
      row: dict[str, Any] = {m.ROUND: round_num}
      row.update(m.flatten_round_metrics(output.metrics))
      loop.round_num = round_num
      loop.broadcast_cumulative_bits += int(row[m.BROADCAST_BITS])
      loop.aggregate_cumulative_bits += int(row[m.AGGREGATE_BITS])
      row[m.BROADCAST_CUMULATIVE_BITS] = loop.broadcast_cumulative_bits
      row[m.AGGREGATE_CUMULATIVE_BITS] = loop.aggregate_cumulative_bits
      if m.BROADCAST_CODED_BITS in row and m.AGGREGATE_CODED_BITS in row:
        loop.broadcast_cumulative_coded_bits += int(row[m.BROADCAST_CODED_BITS])
        loop.aggregate_cumulative_coded_bits += int(row[m.AGGREGATE_CODED_BITS])
        row[m.BROADCAST_CUMULATIVE_CODED_BITS] = loop.broadcast_cumulative_coded_bits
        row[m.AGGREGATE_CUMULATIVE_CODED_BITS] = loop.aggregate_cumulative_coded_bits
      row[m.ROUND_TIME_S] = elapsed
      if round_metrics is not None:
        row.update(round_metrics(round_num))
      rejected = row.get(m.AGGREGATE_REJECTED_CLIENTS)
      if rejected and rejected >= len(sampled):
        # Nothing was averaged: TFF's client metrics of such a round read 0.0, which
        # would look like perfect training.
        row[m.TRAIN_LOSS] = row[m.TRAIN_ACCURACY] = None
      weights = process.get_model_weights(state)
      kept = (f"checkpoint round_{last_checkpoint} is kept" if last_checkpoint
              else "no checkpoint had been written")
      if not all_finite(weights):
        raise NonFiniteModelError(
            f"round {round_num} made the model weights non-finite (NaN or Inf), so the run "
            f"stops before reporting or checkpointing it; {kept}. Start a new run "
            "(another --experiment_name) with lower learning rates")
      if update_dropped(output.metrics):
        # The clients' updates were finite (a non-finite one is left out of the mean and
        # counted), so the mean's decode made it: reported as a round, the model stood
        # still while its bits were counted, round after round.
        raise NonFiniteModelError(
            f"round {round_num}'s mean update was non-finite (NaN or Inf) although every "
            "averaged client update was finite, so TFF's optimizer left the model as it "
            f"was; the run stops before reporting or checkpointing it; {kept}. The "
            "example-weighted sum of the updates overflowed (start a new run with lower "
            "learning rates), or the uplink codec's decode, a DP or a secure-aggregation "
            "step overflowed or divided by zero (check a codec of yours on the update's "
            "range with fedcompress.codecs.testing.round_trip)")
      last = round_num == config.rounds
      if evaluate is not None and (last or round_num % config.rounds_per_eval == 0):
        final_eval = dict(evaluate(weights))
        row.update(final_eval)
      if client_states is not None:
        # Written before the checkpoint of this round, so a checkpoint never refers to
        # client states that are not on disk.
        for cid in sampled:
          client_states.commit(cid, round_num)
        client_states.sync()
      for reporter in reporters:
        reporter.write(row)
      rows.append(row)
      if not rejected and m.TRAIN_LOSS in row and row[m.TRAIN_LOSS] is None:
        warn(f"round {round_num}: its {len(sampled)} clients held no examples, so nothing "
             "was trained (under uniform weighting each counts as a zero update); train "
             "loss and accuracy are left empty")
      if rejected:
        what = (f"all {len(sampled)} clients were left out (non-finite updates, or no "
                "examples): no update was averaged and train loss and accuracy are left "
                "empty" if rejected >= len(sampled) else
                f"{rejected} of {len(sampled)} clients were left out (non-finite updates, "
                "or no examples); the mean is over the others")
        warn(f"round {round_num}: {what}")
      if checkpointer is not None and (last or round_num % config.rounds_per_checkpoint == 0):
        checkpointer.save(state, loop)
        last_checkpoint = round_num
      if client_states is not None:
        # Every round, not at checkpoints only: a resume may fall back to any kept
        # checkpoint, and reads only each client's newest version at or before it, the
        # next round only its newest. At checkpoints only, 200 digits rounds with a
        # checkpoint every 50 peaked at 560 files (3.4 GiB) for 60 to 90 needed.
        client_states.collect_garbage((checkpointer.versions() if checkpointer else None)
                                      or [round_num])
  finally:
    for reporter in reporters:
      reporter.close()
  return LoopResult(state=state, rows=rows, final_eval=final_eval, start_round=start)
