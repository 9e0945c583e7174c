"""experiments/emnist_compression.py: main() end to end on tiny data."""

import json
import urllib.error

import pytest
from absl.testing import flagsaver
from tensorboard.backend.event_processing import event_accumulator

from fedcompress import metrics as m
from fedcompress.harness import reporting
from tools import sample_data

pytestmark = pytest.mark.slow  # runs the binary for several rounds

# The tutorial CNN through `uniform` 8 bits above 10,000 elements, per client.
U8_CLIENT_BITS = 15_357_536


@pytest.fixture(scope="module")
def binary(load_binary):
  with load_binary("experiments/emnist_compression.py") as module:
    yield module


def _run(binary, **flag_values):
  defaults = dict(dataset="digits", digits_clients=16, clients_per_round=2, rounds=2,
                  client_learning_rate=0.05, experiment_name="run", rounds_per_eval=1)
  defaults.update(flag_values)
  with flagsaver.flagsaver(**defaults):
    return binary.main(["emnist_compression"])


def test_smoke_outputs(binary, tmp_path, capsys):
  rc = _run(binary, root_output_dir=str(tmp_path), broadcast_encoder="uniform",
            aggregate_encoder="uniform")
  out, err = capsys.readouterr()
  assert rc == 0, err
  run_dir = tmp_path / "run"
  rows = reporting.read_metrics_csv(str(run_dir / "metrics.csv"))
  assert list(rows[0])[:len(m.CANONICAL)] == list(m.CANONICAL)
  assert [r[m.ROUND] for r in rows] == [1, 2]
  # No entropy coder: what was sent is the raw size.
  assert all(r[m.BROADCAST_CODED_BITS] == r[m.BROADCAST_BITS] for r in rows)
  assert rows[1][m.AGGREGATE_CUMULATIVE_CODED_BITS] == rows[1][m.AGGREGATE_CUMULATIVE_BITS]
  assert all(r[m.BROADCAST_BITS] == 2 * U8_CLIENT_BITS for r in rows)
  assert all(r[m.AGGREGATE_BITS] == 2 * (U8_CLIENT_BITS + 32) for r in rows)
  assert rows[1][m.BROADCAST_CUMULATIVE_BITS] == 4 * U8_CLIENT_BITS
  assert all(0.0 <= r[m.EVAL_ACCURACY] <= 1.0 for r in rows)
  assert "round   1, train/loss=" in out and "29.29Mibit" in out
  assert out.strip().splitlines()[-1].startswith("done: 2 rounds, eval accuracy")

  acc = event_accumulator.EventAccumulator(str(run_dir),
                                           size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = set(acc.Tags()["tensors"])
  assert set(m.CANONICAL) - {m.ROUND} <= tags
  assert [e.step for e in acc.Tensors(m.AGGREGATE_CUMULATIVE_BITS)] == [1, 2]

  config = json.loads((run_dir / "config.json").read_text())
  assert config["dataset"] == "digits" and config["rounds"] == 2
  assert config["broadcast_codec"] == "uniform(bits=8)>10000"
  assert (run_dir / "checkpoints" / "round_2").is_dir()


def test_refuses_to_overwrite(binary, tmp_path, capsys):
  run_dir = tmp_path / "run"
  run_dir.mkdir()
  (run_dir / "metrics.csv").write_text("precious\n")
  assert _run(binary, root_output_dir=str(tmp_path)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  # Rounds without a record: --resume would be refused too, so it is not suggested.
  assert len(err) == 1 and "holds rounds but no config.json" in err[0]
  assert "--resume" not in err[0]
  assert (run_dir / "metrics.csv").read_text() == "precious\n"
  assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.csv"]


def _write_emnist_sqlite(cache_dir, train_clients=3, examples=12):
  """A tiny emnist_all.sqlite in TFF's own format, written by TFF's own writer."""
  clients = {f"f{i:04d}_train": ("digits_only_train", examples) for i in range(train_clients)}
  clients["f9999_test"] = ("digits_only_test", 20)
  sample_data.write_random_emnist_sqlite(cache_dir / "emnist_all.sqlite", clients,
                                         num_classes=10)


def test_emnist_path_on_generated_sqlite(binary, tmp_path):
  cache = tmp_path / "cache"
  cache.mkdir()
  _write_emnist_sqlite(cache)
  rc = _run(binary, dataset="emnist", cache_dir=str(cache), rounds=1,
            root_output_dir=str(tmp_path / "runs"))
  assert rc == 0
  rows = reporting.read_metrics_csv(str(tmp_path / "runs" / "run" / "metrics.csv"))
  assert len(rows) == 1 and rows[0][m.BROADCAST_BITS] == 2 * 1_663_370 * 32
  assert rows[0][m.EVAL_ACCURACY] is not None


def test_a_resume_on_another_data_file_is_refused(binary, tmp_path, capsys):
  # --cache_dir may move between resumes, the file it holds may not: a resume with
  # another emnist_all.sqlite (same client ids, other examples) trained on other data.
  caches = {name: tmp_path / name for name in ("a", "moved", "other")}
  for cache in caches.values():
    cache.mkdir()
  _write_emnist_sqlite(caches["a"])
  (caches["moved"] / "emnist_all.sqlite").write_bytes(
      (caches["a"] / "emnist_all.sqlite").read_bytes())
  _write_emnist_sqlite(caches["other"], examples=14)
  common = dict(dataset="emnist", root_output_dir=str(tmp_path / "runs"))
  assert _run(binary, cache_dir=str(caches["a"]), rounds=1, **common) == 0
  capsys.readouterr()
  assert _run(binary, cache_dir=str(caches["other"]), resume=True, **common) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "data_file_fingerprint" in err[0], err
  assert _run(binary, cache_dir=str(caches["moved"]), resume=True, **common) == 0
  rows = reporting.read_metrics_csv(str(tmp_path / "runs" / "run" / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == [1, 2]


def test_emnist_unavailable_is_one_line(binary, tmp_path, capsys, monkeypatch):
  from tensorflow_federated.python.simulation.datasets import download

  def offline(*args, **kwargs):  # The network is what cannot run here.
    raise urllib.error.URLError("offline")

  monkeypatch.setattr(download, "get_compressed_file", offline)
  rc = _run(binary, dataset="emnist", cache_dir=str(tmp_path / "empty"),
            root_output_dir=str(tmp_path / "runs"))
  err = capsys.readouterr().err.strip().splitlines()
  assert rc != 0 and len(err) == 1
  assert "--cache_dir" in err[0] and "--dataset=digits" in err[0]
  assert "Traceback" not in err[0]
  assert not (tmp_path / "runs").exists()


def test_a_bad_combination_is_refused_before_the_dataset_loads(binary, tmp_path, capsys,
                                                                monkeypatch):
  from tensorflow_federated.python.simulation.datasets import download

  def no_download(*args, **kwargs):
    raise AssertionError("the dataset was fetched before the flags were checked")

  monkeypatch.setattr(download, "get_compressed_file", no_download)
  rc = _run(binary, dataset="emnist", cache_dir=str(tmp_path / "empty"),
            root_output_dir=str(tmp_path / "runs"), error_feedback="ef", dp="central",
            client_weighting="uniform")
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1 and "--error_feedback keeps its memory" in err[0], err
  assert not (tmp_path / "runs").exists()


def test_cache_file_that_is_not_sqlite(binary, tmp_path, capsys):
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / "emnist_all.sqlite").write_text("not a database")
  rc = _run(binary, dataset="emnist", cache_dir=str(cache),
            root_output_dir=str(tmp_path / "runs"))
  err = capsys.readouterr().err.strip().splitlines()
  assert rc != 0 and len(err) == 1 and "not an SQLite database" in err[0]
