"""fedcompress.tasks.sample_data: the built-in Shakespeare sqlite and pretraining text."""

import pytest

from fedcompress.tasks.datasets import char_vocab
from fedcompress.tasks.datasets import shakespeare as sh
from tools import sample_data


def test_client_snippets_deal_lines_round_robin_and_cycle_to_min_chars():
  text = "aa\nbbb\n\n  \ncccc\nd\n"
  # Non-empty lines: aa, bbb, cccc, d. Client 0 owns aa, cccc (3 + 5 = 8 >= 7 chars);
  # client 1 owns bbb, d (4 + 2 = 6 < 7, so bbb again: 10).
  assert sample_data.client_snippets(text, 2, 7) == [["aa\n", "cccc\n"],
                                                     ["bbb\n", "d\n", "bbb\n"]]


def test_client_snippets_rejects_more_clients_than_lines():
  with pytest.raises(ValueError, match="2 non-empty lines, fewer than the 3 clients"):
    sample_data.client_snippets("a\n\nb\n", 3, 10)


def test_passages_are_inside_the_tutorial_vocabulary():
  # Would raise naming any character the 86-character vocabulary lacks.
  char_vocab.text_to_ids(sample_data.SHAKESPEARE_PASSAGE, oov="error")
  char_vocab.text_to_ids(sample_data.DICKENS_PASSAGE, oov="error")


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("sample")
  path = sample_data.write_sample_shakespeare_sqlite(root / sh.SHAKESPEARE_SQLITE)
  assert path == root / "shakespeare.sqlite"
  return root


def test_sqlite_loads_with_tffs_loader_and_holds_the_dealt_snippets(sample_dir):
  train, test = sh.load_shakespeare(sample_dir)
  assert sorted(train.client_ids) == sorted(sample_data.SAMPLE_TRAIN_CLIENTS)
  assert list(test.client_ids) == list(sample_data.SAMPLE_TEST_CLIENTS)
  expected = sample_data.client_snippets(
      sample_data.SHAKESPEARE_PASSAGE, 6, sample_data.DEFAULT_MIN_CHARS)
  ids = list(sample_data.SAMPLE_TRAIN_CLIENTS) + list(sample_data.SAMPLE_TEST_CLIENTS)
  for client_id, snippets in zip(ids, expected, strict=True):
    data = train if client_id in sample_data.SAMPLE_TRAIN_CLIENTS else test
    got = [x["snippets"].numpy().decode() for x in data.create_tf_dataset_for_client(client_id)]
    assert got == snippets
    assert sum(map(len, got)) >= 1616  # Two batches of 8 x 101 characters.


@pytest.mark.slow
def test_every_client_trains_without_padding(sample_dir):
  train, _ = sh.load_shakespeare(sample_dir)
  for client_id in train.client_ids:
    batches = list(sh.preprocess(train.create_tf_dataset_for_client(client_id), seed=0))
    assert len(batches) >= 2, client_id
    assert batches[0][0].shape == (8, 100)


def test_existing_file_is_kept_unless_overwrite(tmp_path):
  path = tmp_path / sh.SHAKESPEARE_SQLITE
  sample_data.write_sample_shakespeare_sqlite(path, train_clients=["A"], test_clients=["B"],
                                              min_chars_per_client=10)
  with pytest.raises(FileExistsError):
    sample_data.write_sample_shakespeare_sqlite(path)
  sample_data.write_sample_shakespeare_sqlite(path, train_clients=["C", "D"],
                                              test_clients=["E"], overwrite=True,
                                              min_chars_per_client=10)
  train, test = sh.load_shakespeare(tmp_path)
  assert sorted(train.client_ids) == ["C", "D"] and list(test.client_ids) == ["E"]


def test_sample_text_is_repeated_passage(tmp_path):
  path = sample_data.write_sample_text(tmp_path / "t" / "dickens.txt", "Bah! Humbug.\n", 3)
  assert path.read_text() == "Bah! Humbug.\n\n" * 3
