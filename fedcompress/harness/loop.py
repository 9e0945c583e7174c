"""The round loop: sample clients, run a round, evaluate, report, checkpoint.

Nothing here imports TFF: the loop drives any object with `initialize()`,
`next(state, client_data)` and `get_model_weights(state)`, so it is tested against a
fake process. Client sampling is uniform without replacement from a generator seeded
by (seed, round), which makes round r's clients the same in a resumed run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from fedcompress import metrics as m
from fedcompress.harness.checkpoints import Checkpointer, LoopState
from fedcompress.harness.reporting import Reporter


class Process(Protocol):
  def initialize(self) -> Any: ...
  def next(self, state: Any, client_data: list) -> Any: ...
  def get_model_weights(self, state: Any) -> Any: ...


def sample_clients(client_ids: Sequence[str], clients_per_round: int, seed: int,
                   round_num: int) -> list[str]:
  """`clients_per_round` distinct ids, uniformly at random, fixed by (seed, round)."""
  if not 1 <= clients_per_round <= len(client_ids):
    raise ValueError(f"clients_per_round must be in 1..{len(client_ids)} "
                     f"(clients available), got {clients_per_round}")
  rng = np.random.default_rng([seed, round_num])
  chosen = rng.choice(len(client_ids), size=clients_per_round, replace=False)
  return [client_ids[i] for i in chosen]


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


def run_loop(process: Process, client_ids: Sequence[str],
             client_dataset: Callable[[str, int], Any], config: LoopConfig, *,
             evaluate: Callable[[Any], Mapping[str, float]] | None = None,
             reporters: Sequence[Reporter] = (), checkpointer: Checkpointer | None = None,
             initial_state: Any = None, resume: bool = False) -> LoopResult:
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
  """
  if config.rounds < 1:
    raise ValueError(f"rounds must be >= 1, got {config.rounds}")
  state = process.initialize() if initial_state is None else initial_state
  loop = LoopState(0, 0, 0)
  if resume and checkpointer is not None:
    restored = checkpointer.restore(state)
    if restored is not None:
      state, loop = restored
  start = loop.round_num + 1
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
      output = process.next(state, data)
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
      last = round_num == config.rounds
      if evaluate is not None and (last or round_num % config.rounds_per_eval == 0):
        final_eval = dict(evaluate(process.get_model_weights(state)))
        row.update(final_eval)
      for reporter in reporters:
        reporter.write(row)
      rows.append(row)
      if checkpointer is not None and (last or round_num % config.rounds_per_checkpoint == 0):
        checkpointer.save(state, loop)
  finally:
    for reporter in reporters:
      reporter.close()
  return LoopResult(state=state, rows=rows, final_eval=final_eval, start_round=start)
