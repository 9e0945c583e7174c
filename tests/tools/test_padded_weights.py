"""tools.padded_weights: rows TFF weighs against real windows, counted by hand."""

import collections
import json

import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tools import padded_weights


@pytest.fixture
def shakespeare_dir(tmp_path):
  # Snippets joined per client: 50 characters (one padded window: a batch of 1 real row
  # and 3 of padding), and 400 (four 81-character windows and one of 76: a full batch,
  # then 1 real row and 3 of padding).
  clients = {"ONE": ("train", "a" * 50), "FIVE": ("train", "b" * 400),
             "TEST": ("test", "c" * 100)}

  def dataset_fn(client_id):
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        snippets=tf.constant([clients[client_id][1]])))

  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, str(tmp_path / "shakespeare.sqlite"),
      split_names_by_client_id={c: s for c, (s, _) in clients.items()})
  return tmp_path


def test_counts_rows_and_real_windows(shakespeare_dir, tmp_path, capsys):
  output = tmp_path / "out" / "padded.json"
  padded_weights.main([f"--cache_dir={shakespeare_dir}", f"--output={output}"])
  result = json.loads(output.read_text())
  assert result["counts"] == {"ONE": [4, 1], "FIVE": [8, 5]}
  # Which data made them: the folder, its file's fingerprint, how many of its clients.
  sqlite = shakespeare_dir / "shakespeare.sqlite"
  assert result["cache_dir"] == str(shakespeare_dir) and result["max_clients"] == 0
  assert result["data_file_fingerprint"].startswith(f"{sqlite.stat().st_size}:")
  assert result["summary"] == {"clients": 2, "heavier": 2, "at_least_twice": 1,
                               "without_real_windows": 0,
                               "worst": {"client": "ONE", "ratio": 4.0}}
  assert capsys.readouterr().out.startswith(
      "2 clients at batch 4 and length 80: 2 weigh more than their real windows, 1 at least "
      "twice; the worst ONE 4.00x (4 rows for 1 windows)")
