"""configs/fedopt: every flagfile runs through its binary, a codec flagfile on top.

One round of two clients on generated data in TFF's own formats (EMNIST-62 and
Shakespeare sqlite files written by TFF's writer): the protocol's models, optimizers and
options reach a real TFF process, and the run records them.
"""

import collections
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from absl import flags
from absl.testing import flagsaver

from fedcompress import metrics as m
from fedcompress.harness import reporting
from tools import sample_data

pytestmark = pytest.mark.slow  # builds a TFF process per flagfile

FEDCNN_PARAMS = 1_206_590  # create_fedopt_cnn(62)
FEDLSTM_PARAMS = 819_462  # create_fedopt_lstm() at 86 classes
QUICK = ["--rounds=1", "--clients_per_round=2", "--rounds_per_eval=1",
         "--rounds_per_checkpoint=1"]


@pytest.fixture(scope="module")
def emnist62_dir(tmp_path_factory):
  """An emnist_all.sqlite with the 62-class splits (all_train, all_test)."""
  root = tmp_path_factory.mktemp("emnist62")
  clients = {"f0000_00": ("all_train", 12), "f0001_00": ("all_train", 9),
             "f0002_00": ("all_train", 7), "f9999_00": ("all_test", 30)}
  sample_data.write_random_emnist_sqlite(root / "emnist_all.sqlite", clients, num_classes=62)
  return root


@pytest.fixture(scope="module")
def shakespeare_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("shakespeare")
  lines = ["To be, or not to be, that is the question: ",
           "Whether 'tis nobler in the mind to suffer ",
           "The slings and arrows of outrageous fortune, "]
  clients = {"HAMLET": ("train", 20), "OPHELIA": ("train", 12), "SHORT": ("train", 1),
             "HORATIO": ("test", 20)}

  def dataset_fn(client_id):
    split, n = clients[client_id]
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        snippets=tf.constant([lines[i % 3] for i in range(n)])))

  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, str(root / "shakespeare.sqlite"),
      split_names_by_client_id={c: s for c, (s, _) in clients.items()})
  return root


def _eden1_aggregate_bits(model, clients: int = 2) -> int:
  """Bits of `clients` updates through `up_eden1.flags`, counted by hand from the shapes.

  A tensor over the 10,000-element threshold goes in rows of 2,048 coordinates (the
  last padded): a sign bit per coordinate, a float32 scale per row and the 32-bit
  rotation seed; the others as float32; and the mean's weight, a float32.
  """
  per_client = 32
  for weight in model.trainable_weights:
    n = int(np.prod(weight.shape))
    rows = -(-n // 2048)
    per_client += rows * 2048 + rows * 32 + 32 if n > 10_000 else 32 * n
  return clients * per_client


def _run(load_binary, binary, *args):
  with load_binary(binary) as module, flagsaver.flagsaver():
    flags.FLAGS(["binary", *args])
    return module.main(["binary"])


@pytest.mark.parametrize("name,codec,server", [
    ("emnist62_fedadam", "up_eden1", {"server_optimizer": "adam", "server_epsilon": 1e-4}),
    ("emnist62_fedavgm", None, {"server_optimizer": "sgd", "server_momentum": 0.9}),
    ("emnist62_fedavg", None, {"server_optimizer": "sgd", "server_learning_rate": 1.0}),
])
def test_emnist62_flagfile_runs(load_binary, repo_root, monkeypatch, emnist62_dir, tmp_path,
                                capsys, name, codec, server):
  monkeypatch.chdir(repo_root)
  args = [f"--flagfile=configs/fedopt/{name}.flags",
          *([f"--flagfile=configs/codecs/{codec}.flags"] if codec else []),
          *QUICK, f"--cache_dir={emnist62_dir}", f"--root_output_dir={tmp_path}"]
  rc = _run(load_binary, "experiments/emnist_compression.py", *args)
  assert rc == 0, capsys.readouterr().err
  run = tmp_path / name
  rows = reporting.read_metrics_csv(str(run / "metrics.csv"))
  assert len(rows) == 1 and rows[0][m.EVAL_ACCURACY] is not None
  assert np.isfinite(rows[0][m.TRAIN_LOSS])
  # The paper's CNN over 62 classes, every float32 to each of the 2 clients.
  assert rows[0][m.BROADCAST_BITS] == 2 * 32 * FEDCNN_PARAMS
  if codec:  # 1-bit EDEN on the two kernels over 10,000 elements: 2,978,432 bits.
    from fedcompress.tasks.models import cnn

    assert rows[0][m.AGGREGATE_BITS] == _eden1_aggregate_bits(cnn.create_fedopt_cnn(62))
  else:
    assert rows[0][m.AGGREGATE_BITS] == 2 * (32 * FEDCNN_PARAMS + 32)
  config = json.loads((run / "config.json").read_text())
  assert (config["model"], config["only_digits"], config["rounds"]) == ("fedopt_cnn", False, 1)
  for key, value in server.items():
    assert config[key] == value, key
  if name == "emnist62_fedadam":
    # A resume with another epsilon is another run: refused, one line.
    rc = _run(load_binary, "experiments/emnist_compression.py", *args, "--resume",
              "--server_epsilon=0.001")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--server_epsilon=0.001 (recorded 0.0001)" in err[0]


@pytest.mark.parametrize("name,codec,server", [
    ("shakespeare_fedadagrad", "up_eden1",
     {"server_optimizer": "adagrad_keras", "server_epsilon": 0.1,
      "server_initial_accumulator": 0.0}),
    ("shakespeare_fedyogi", None,
     {"server_optimizer": "yogi", "server_epsilon": 1e-3, "server_learning_rate": 0.01}),
])
def test_shakespeare_flagfile_runs(load_binary, repo_root, monkeypatch, shakespeare_dir,
                                   tmp_path, capsys, name, codec, server):
  monkeypatch.chdir(repo_root)
  args = [f"--flagfile=configs/fedopt/{name}.flags",
          *([f"--flagfile=configs/codecs/{codec}.flags"] if codec else []),
          *QUICK, "--max_eval_batches=2", "--num_generate=5",
          f"--cache_dir={shakespeare_dir}", f"--root_output_dir={tmp_path}"]
  rc = _run(load_binary, "experiments/shakespeare_finetune.py", *args)
  out, err = capsys.readouterr()
  assert rc == 0, err
  assert "sanity check" not in out  # From scratch: no pretrained model to check.
  run = tmp_path / name
  rows = reporting.read_metrics_csv(str(run / "metrics.csv"))
  assert len(rows) == 1 and np.isfinite(rows[0][m.TRAIN_LOSS])
  assert rows[0][m.EVAL_ACCURACY] is not None
  assert rows[0][m.BROADCAST_BITS] == 2 * 32 * FEDLSTM_PARAMS
  if codec:  # 2,348,416 bits: a bound < 1/20 of the broadcast let an 11% overcount pass.
    from fedcompress.tasks.models import char_rnn

    assert rows[0][m.AGGREGATE_BITS] == _eden1_aggregate_bits(char_rnn.create_fedopt_lstm())
  config = json.loads((run / "config.json").read_text())
  assert (config["model"], config["seq_length"], config["client_batch_size"]) == (
      "fedopt_lstm", 80, 4)
  for key, value in server.items():
    assert config[key] == value, key
  assert not (run / "pretrained_eval.json").exists()
  final = tf.keras.models.load_model(str(run / "final_model.keras"), compile=False)
  assert final.count_params() == FEDLSTM_PARAMS
  assert len((run / "generated.txt").read_text().rstrip("\n")) == len(
      "What of TensorFlow Federated, you ask? ") + 5
