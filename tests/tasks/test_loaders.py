"""TFF's dataset loaders through fedcompress: interrupted downloads and `~` cache dirs.

TFF writes a download straight to `<cache_dir>/<name>.sqlite` and from then on takes any
file there for a finished download. The loaders therefore remove a file that a failed
or interrupted call left behind, and expand `~` (TFF would create a folder named `~`
and download again).
"""

from __future__ import annotations

import io
import lzma
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.tasks.datasets import emnist
from fedcompress.tasks.datasets import shakespeare as sh
from fedcompress.tasks.errors import DatasetUnavailableError
from tools import sample_data

LOADERS = {"emnist": (emnist.load_emnist, "emnist_all.sqlite"),
           "shakespeare": (sh.load_shakespeare, "shakespeare.sqlite")}


class _CutShort(io.BytesIO):
  """A download that delivers its first read and then fails with `error`."""

  headers: dict = {}

  def __init__(self, error: BaseException):
    super().__init__(lzma.compress(b"SQLite format 3\x00" + bytes(1 << 20), preset=0))
    self._error, self._reads = error, 0

  def read(self, size=-1):
    self._reads += 1
    if self._reads > 1:
      raise self._error
    return super().read(size)


def _no_download(*_, **__):
  raise AssertionError("a download was attempted")


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset"), KeyboardInterrupt()],
                         ids=["reset", "ctrl-c"])
@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_download_cut_short_leaves_no_file(name, error, tmp_path, monkeypatch):
  load, filename = LOADERS[name]
  monkeypatch.setattr(urllib.request, "urlopen", lambda *_, **__: _CutShort(error))
  expected = DatasetUnavailableError if isinstance(error, Exception) else KeyboardInterrupt
  with pytest.raises(expected):
    load(cache_dir=str(tmp_path))
  assert not (tmp_path / filename).exists()


def _one_client_emnist_in(folder, monkeypatch):
  """A digits EMNIST sqlite of one train client (3 examples) in `folder`; no download."""
  monkeypatch.setattr(urllib.request, "urlopen", _no_download)
  folder.mkdir()
  sample_data.write_random_emnist_sqlite(
      folder / "emnist_all.sqlite",
      {"f0000_train": ("digits_only_train", 3), "f0000_test": ("digits_only_test", 2)},
      num_classes=10)


def test_a_cache_dir_with_a_tilde_is_the_home_folder(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  _one_client_emnist_in(tmp_path / "data", monkeypatch)
  train, _ = emnist.load_emnist(only_digits=True, cache_dir="~/data")
  assert train.client_ids == ["f0000_train"]
  assert not (tmp_path / "~").exists()


def test_a_relative_cache_dir_reads_from_anywhere_once_loaded(tmp_path, monkeypatch):
  # A client's dataset opens the sqlite file where it runs: a TFF worker started in
  # another directory could not open a relative path (every worker ended).
  monkeypatch.chdir(tmp_path)
  _one_client_emnist_in(tmp_path / "data", monkeypatch)
  train, _ = emnist.load_emnist(only_digits=True, cache_dir="data")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  assert len(list(train.create_tf_dataset_for_client("f0000_train"))) == 3


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_database_without_the_clients_asked_for_says_which_it_has(name, tmp_path,
                                                                   monkeypatch):
  # TFF's loader raised a bare StopIteration: a traceback for Shakespeare, and for
  # EMNIST "cannot be read: delete or replace it" of a good digits-only file.
  load, filename = LOADERS[name]
  monkeypatch.setattr(urllib.request, "urlopen", _no_download)
  sample_data.write_random_emnist_sqlite(
      tmp_path / filename,
      {"f0000_train": ("digits_only_train", 3), "f0000_test": ("digits_only_test", 2)},
      num_classes=10)
  kwargs = {"only_digits": False} if name == "emnist" else {}
  with pytest.raises(DatasetUnavailableError, match="holds no client of the split asked "
                     r"for \(it has digits_only_test, digits_only_train\)"):
    load(cache_dir=str(tmp_path), **kwargs)
  assert (tmp_path / filename).exists()  # A good file: not the loaders' to delete.


def test_an_empty_cache_dir_is_named_as_the_folder_it_is(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  error = DatasetUnavailableError("federated EMNIST", "", "emnist_all.sqlite")
  assert f"put emnist_all.sqlite in {tmp_path} or point" in str(error)


def test_emnist_test_clients_are_joined_in_one_order(tmp_path, monkeypatch):
  # Unseeded, TFF joins the test clients in a new random order each time: the eval
  # batches, and eval/loss's last digits, differed between identical runs.
  monkeypatch.setattr(urllib.request, "urlopen", _no_download)
  clients = {f"f{i:04d}_test": ("digits_only_test", 3) for i in range(40)}
  sample_data.write_random_emnist_sqlite(
      tmp_path / "emnist_all.sqlite", {"f0000_train": ("digits_only_train", 3), **clients},
      num_classes=10, seed=0)
  orders = []
  for _ in range(3):
    _, test = emnist.load_emnist(only_digits=True, cache_dir=str(tmp_path))
    orders.append(np.concatenate([y.numpy().ravel() for _, y in emnist.test_dataset(test)]))
  assert len(orders[0]) == 120
  assert all(np.array_equal(orders[0], o) for o in orders[1:])


def test_each_local_epoch_is_one_pass_over_the_client(tmp_path):
  # Shuffled, then repeated (the tutorial's order): every epoch holds every example once.
  n, epochs = 30, 3
  dataset = tf.data.Dataset.from_tensor_slices(_examples(n))
  batches = emnist.preprocess(dataset, epochs=epochs, batch_size=n, seed=7)
  labels = [b["y"].numpy().ravel() for b in batches]
  assert len(labels) == epochs
  for epoch in labels:
    assert sorted(epoch.tolist()) == list(range(n))
  assert not np.array_equal(labels[0], labels[1])  # Each epoch in a fresh order.


def _examples(n: int) -> dict[str, np.ndarray]:
  return {"pixels": np.zeros([n, 28, 28], np.float32), "label": np.arange(n, dtype=np.int32)}
