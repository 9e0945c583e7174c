"""The round loop against a fake process: no TFF involved."""

import dataclasses

import numpy as np
import pytest

from fedcompress import metrics as m
from fedcompress.harness.checkpoints import Checkpointer
from fedcompress.harness.loop import (
    LoopConfig,
    NonFiniteModelError,
    run_loop,
    sample_clients,
    update_dropped,
)


@dataclasses.dataclass
class FakeOutput:
  state: dict
  metrics: dict


class FakeProcess:
  """State is a weight vector; each round adds the mean of the clients' data."""

  def __init__(self, bits_per_client=(100, 130)):
    self.bits = bits_per_client
    self.calls = []

  def initialize(self):
    return {"w": np.zeros(3, np.float32), "step": np.int64(0)}

  def next(self, state, client_data):
    self.calls.append(list(client_data))
    update = np.mean([np.full(3, d, np.float32) for d in client_data], axis=0)
    new_state = {"w": state["w"] + update, "step": state["step"] + 1}
    n = len(client_data)
    metrics = {"client_work": {"train": {"loss": float(1.0 / (1 + state["step"])),
                                         "sparse_categorical_accuracy": 0.5}},
               "broadcast/bits": self.bits[0] * n, "aggregate/bits": self.bits[1] * n}
    return FakeOutput(new_state, metrics)

  def get_model_weights(self, state):
    return state["w"]


CLIENTS = [f"c{i}" for i in range(7)]


def client_dataset(cid, round_num):
  return int(cid[1:]) + 10 * round_num


class ListReporter:
  def __init__(self):
    self.rows, self.started = [], []

  def start(self, first, total):
    self.started.append((first, total))

  def write(self, row):
    self.rows.append(dict(row))

  def close(self):
    pass


def test_sampling_is_uniform_without_replacement_and_seeded():
  a = sample_clients(CLIENTS, 3, seed=1, round_num=5)
  assert len(set(a)) == 3 and set(a) <= set(CLIENTS)
  assert a == sample_clients(CLIENTS, 3, seed=1, round_num=5)
  # Each of seed and round changes the draw on its own: a sampler that ignored the seed
  # would give every --seed the same clients (seen only by the seed-wise checks).
  assert a != sample_clients(CLIENTS, 3, seed=2, round_num=5)
  assert a != sample_clients(CLIENTS, 3, seed=1, round_num=6)
  assert len({tuple(sample_clients(CLIENTS, 3, seed=s, round_num=5)) for s in range(10)}) >= 5
  counts = {c: 0 for c in CLIENTS}
  for r in range(3500):
    for c in sample_clients(CLIENTS, 2, seed=0, round_num=r):
      counts[c] += 1
  # Each client is picked with probability 2/7: 1000 expected, std ~27.
  assert all(abs(v - 1000) < 130 for v in counts.values()), counts
  with pytest.raises(ValueError, match="1..7"):
    sample_clients(CLIENTS, 8, 0, 1)


def test_sampling_depends_on_the_set_of_ids_not_their_order():
  # A run records the sorted ids' digest; sampling by position picked other clients for
  # the same ids listed in another order (a set's order changes with the hash seed), under
  # the same seed and the same record.
  shuffled = list(reversed(CLIENTS))
  for round_num in range(1, 20):
    assert sample_clients(shuffled, 3, 4, round_num) == sample_clients(CLIENTS, 3, 4, round_num)
  with pytest.raises(ValueError):
    sample_clients(CLIENTS, 0, 0, 1)


def test_the_next_seed_does_not_replay_this_seeds_clients_a_round_later():
  # A sampler keyed by seed + round gives seed s + 1 in round r the clients of seed s in
  # round r + 1: the runs of a --seeds sweep would share one client sequence, shifted.
  # 5 of 100 clients: two independent draws are the same set with odds 1 / C(100, 5).
  population = [f"c{i}" for i in range(100)]

  def rounds(seed, first):
    return [set(sample_clients(population, 5, seed=seed, round_num=r))
            for r in range(first, first + 4)]

  for seed in range(3):
    replayed = [r for r, (a, b) in enumerate(
        zip(rounds(seed + 1, first=1), rounds(seed, first=2), strict=True), start=1) if a == b]
    assert replayed == [], f"seed {seed + 1} replays seed {seed} in rounds {replayed}"


def test_loop_rows_bits_and_eval_cadence():
  process, reporter = FakeProcess(), ListReporter()
  evals = []

  def evaluate(weights):
    evals.append(weights.copy())
    return {m.EVAL_LOSS: 0.25, m.EVAL_ACCURACY: 0.75}

  result = run_loop(process, CLIENTS, client_dataset,
                    LoopConfig(rounds=5, clients_per_round=3, seed=4, rounds_per_eval=2),
                    evaluate=evaluate, reporters=[reporter])
  assert [r[m.ROUND] for r in reporter.rows] == [1, 2, 3, 4, 5]
  assert reporter.started == [(1, 5)]
  assert all(r[m.BROADCAST_BITS] == 300 and r[m.AGGREGATE_BITS] == 390 for r in reporter.rows)
  assert [r[m.BROADCAST_CUMULATIVE_BITS] for r in reporter.rows] == [300, 600, 900, 1200, 1500]
  assert reporter.rows[-1][m.AGGREGATE_CUMULATIVE_BITS] == 5 * 390
  # Evaluated at rounds 2, 4 and the last one (5) only.
  assert [m.EVAL_ACCURACY in r for r in reporter.rows] == [False, True, False, True, True]
  assert len(evals) == 3
  assert reporter.rows[0][m.TRAIN_LOSS] == 1.0 and reporter.rows[0][m.TRAIN_ACCURACY] == 0.5
  # The datasets built were exactly those of the sampled clients of each round.
  for r, data in enumerate(process.calls, start=1):
    sampled = sample_clients(CLIENTS, 3, 4, r)
    assert data == [client_dataset(c, r) for c in sampled]
  assert result.final_eval == {m.EVAL_LOSS: 0.25, m.EVAL_ACCURACY: 0.75}


def test_fixed_clients():
  process = FakeProcess()
  run_loop(process, CLIENTS, client_dataset,
           LoopConfig(rounds=2, clients_per_round=1, fixed_clients=["c1", "c5"]))
  assert process.calls == [[11, 15], [21, 25]]


def test_resume_equals_uninterrupted(tmp_path):
  config = LoopConfig(rounds=6, clients_per_round=2, seed=3, rounds_per_checkpoint=2)
  full = run_loop(FakeProcess(), CLIENTS, client_dataset, config,
                  checkpointer=Checkpointer(str(tmp_path / "a")))
  # A first segment that stops after round 3 (the last round always checkpoints).
  run_loop(FakeProcess(), CLIENTS, client_dataset, dataclasses.replace(config, rounds=3),
           checkpointer=Checkpointer(str(tmp_path / "b")))
  assert Checkpointer(str(tmp_path / "b")).versions() == [2, 3]
  resumed = run_loop(FakeProcess(), CLIENTS, client_dataset, config,
                     checkpointer=Checkpointer(str(tmp_path / "b")), resume=True)
  assert resumed.start_round == 4
  assert [r[m.ROUND] for r in resumed.rows] == [4, 5, 6]
  for a, b in zip(resumed.rows, full.rows[3:], strict=True):
    assert {k: v for k, v in a.items() if k != m.ROUND_TIME_S} == {
        k: v for k, v in b.items() if k != m.ROUND_TIME_S}
  np.testing.assert_array_equal(resumed.state["w"], full.state["w"])
  assert int(resumed.state["step"]) == 6


def test_rounds_must_be_positive():
  with pytest.raises(ValueError, match="rounds must be >= 1"):
    run_loop(FakeProcess(), CLIENTS, client_dataset, LoopConfig(rounds=0, clients_per_round=1))


def test_checkpoints_work_inside_a_running_event_loop(tmp_path):
  # Notebook kernels run an event loop; asyncio.run() alone would refuse to start there.
  import asyncio

  from fedcompress.harness.checkpoints import LoopState

  async def in_loop():
    checkpointer = Checkpointer(str(tmp_path))
    state = FakeProcess().initialize()
    checkpointer.save(state, LoopState(1, 10, 20))
    return checkpointer.restore(state)

  state, loop = asyncio.run(in_loop())
  assert loop == LoopState(1, 10, 20)
  np.testing.assert_array_equal(state["w"], np.zeros(3))


class RejectingProcess(FakeProcess):
  """Rejects every client in the rounds listed, and makes the weights Inf in another."""

  def __init__(self, rejected_rounds=(), inf_round=None):
    super().__init__()
    self.rejected_rounds, self.inf_round = rejected_rounds, inf_round

  def next(self, state, client_data):
    output = super().next(state, client_data)
    step = int(output.state["step"])
    if step in self.rejected_rounds:
      output.state["w"] = state["w"]
      output.metrics["client_work"]["train"] = {"loss": 0.0, "sparse_categorical_accuracy": 0.0}
      output.metrics[m.AGGREGATE_REJECTED_CLIENTS] = len(client_data)
    elif step == self.inf_round:
      output.state["w"] = np.array([1.0, np.inf, 1.0], np.float32)
    return output


def test_round_with_every_client_rejected_is_reported_empty():
  reporter, warnings = ListReporter(), []
  run_loop(RejectingProcess(rejected_rounds=(2,)), CLIENTS, client_dataset,
           LoopConfig(rounds=3, clients_per_round=3), reporters=[reporter],
           warn=warnings.append)
  row = reporter.rows[1]
  assert row[m.TRAIN_LOSS] is None and row[m.TRAIN_ACCURACY] is None  # Not 0.0.
  assert row[m.AGGREGATE_REJECTED_CLIENTS] == 3
  assert reporter.rows[0][m.TRAIN_LOSS] == 1.0 and reporter.rows[2][m.TRAIN_LOSS] == 1 / 3
  assert warnings == ["round 2: all 3 clients were left out (non-finite updates, or no "
                      "examples): no update was averaged and train loss and accuracy are "
                      "left empty"]


def test_non_finite_model_stops_and_keeps_the_last_finite_checkpoint(tmp_path):
  reporter = ListReporter()
  checkpointer = Checkpointer(str(tmp_path))
  with pytest.raises(NonFiniteModelError, match="round 3 made the model weights non-finite.*"
                     "checkpoint round_2 is kept"):
    run_loop(RejectingProcess(inf_round=3), CLIENTS, client_dataset,
             LoopConfig(rounds=5, clients_per_round=2), reporters=[reporter],
             checkpointer=checkpointer, evaluate=lambda w: {m.EVAL_ACCURACY: 0.5})
  assert [r[m.ROUND] for r in reporter.rows] == [1, 2]  # Round 3 is not reported...
  assert checkpointer.versions() == [1, 2]  # ...nor checkpointed.
  state, loop = checkpointer.restore(FakeProcess().initialize())
  assert loop.round_num == 2 and np.isfinite(state["w"]).all()


class EmptyClientsProcess(FakeProcess):
  """Under uniform weighting: every client of round 2 held no example, none rejected."""

  def next(self, state, client_data):
    output = super().next(state, client_data)
    train = output.metrics["client_work"]["train"]
    train["num_examples"] = 0 if int(output.state["step"]) == 2 else 10 * len(client_data)
    if train["num_examples"] == 0:
      train.update(loss=0.0, sparse_categorical_accuracy=0.0)  # TFF's means of nothing.
    return output


def test_a_round_that_trained_on_no_examples_is_reported_empty():
  # Under uniform weighting TFF gives an empty client weight 1: no client is rejected,
  # and a round of only empty clients recorded train loss 0.0, a perfect loss.
  reporter, warnings = ListReporter(), []
  run_loop(EmptyClientsProcess(), CLIENTS, client_dataset,
           LoopConfig(rounds=3, clients_per_round=3), reporters=[reporter],
           warn=warnings.append)
  row = reporter.rows[1]
  assert row[m.TRAIN_LOSS] is None and row[m.TRAIN_ACCURACY] is None
  assert reporter.rows[0][m.TRAIN_LOSS] == 1.0 and reporter.rows[2][m.TRAIN_LOSS] == 1 / 3
  assert warnings == ["round 2: its 3 clients held no examples, so nothing was trained "
                      "(under uniform weighting each counts as a zero update); train loss "
                      "and accuracy are left empty"]


# A round whose mean update TFF dropped as non-finite stops the run (s47 R5). TFF 0.87's
# optimizer finalizer keeps the model when the aggregated update holds NaN or Inf and says
# so only in `finalizer/update_non_finite`: a codec whose decode gave NaN ran 3 rounds at
# the untrained model's eval loss, reported as normal rounds with their bits counted.


class DroppingProcess(FakeProcess):
  """From round `dropped_round` on, the update is dropped as TFF's finalizer drops it."""

  def __init__(self, dropped_round):
    super().__init__()
    self.dropped_round = dropped_round

  def next(self, state, client_data):
    output = super().next(state, client_data)
    dropped = int(output.state["step"]) >= self.dropped_round
    if dropped:
      output.state["w"] = state["w"]
    output.metrics["finalizer"] = {"update_non_finite": np.int32(dropped)}
    return output


@pytest.mark.parametrize("metrics,dropped", [
    ({"finalizer": {"update_non_finite": np.int32(1)}}, True),
    ({"finalizer": {"update_non_finite": np.int32(0)}}, False),
    ({"finalizer": {}}, False),  # A finalizer of another kind.
    ({}, False),                 # A process without one.
])
def test_update_dropped_reads_the_finalizers_measurement(metrics, dropped):
  assert update_dropped(metrics) is dropped


def test_a_dropped_update_stops_the_run_before_its_round_is_kept(tmp_path):
  reporter = ListReporter()
  checkpointer = Checkpointer(str(tmp_path))
  with pytest.raises(NonFiniteModelError, match=r"round 3's mean update was non-finite .*"
                     "left the model as it was.*checkpoint round_2 is kept"):
    run_loop(DroppingProcess(dropped_round=3), CLIENTS, client_dataset,
             LoopConfig(rounds=5, clients_per_round=2), reporters=[reporter],
             checkpointer=checkpointer)
  assert [r[m.ROUND] for r in reporter.rows] == [1, 2]
  assert checkpointer.versions() == [1, 2]
