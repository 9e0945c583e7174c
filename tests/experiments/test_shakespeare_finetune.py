"""experiments/shakespeare_finetune.py: main() on a generated sqlite and a tiny model."""

import collections
import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff
from absl.testing import flagsaver

from fedcompress import metrics as m
from fedcompress.harness import reporting
from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.datasets import char_vocab
from fedcompress.tasks.models import char_rnn

pytestmark = pytest.mark.slow  # fine-tunes end to end

LINES = ["To be, or not to be, that is the question: ",
         "Whether 'tis nobler in the mind to suffer ",
         "The slings and arrows of outrageous fortune, "]


@pytest.fixture(scope="module")
def binary(load_binary):
  with load_binary("experiments/shakespeare_finetune.py") as module:
    yield module


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A shakespeare.sqlite in TFF's format, written by TFF's own writer."""
  root = tmp_path_factory.mktemp("shakespeare")
  clients = {"HAMLET": ("train", 40), "OPHELIA": ("train", 30), "SHORT": ("train", 1),
             "HORATIO": ("test", 30)}

  def dataset_fn(client_id):
    split, n = clients[client_id]
    snippets = [LINES[i % 3] * (1 if client_id == "SHORT" else 2) for i in range(n)]
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        snippets=tf.constant(snippets)))

  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, str(root / "shakespeare.sqlite"),
      split_names_by_client_id={c: s for c, (s, _) in clients.items()})
  return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
  path = tmp_path_factory.mktemp("model") / "tiny.keras"
  char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, seed=0).save(str(path))
  return str(path)


def _run(binary, **flag_values):
  with flagsaver.flagsaver(**flag_values):
    return binary.main(["shakespeare_finetune"])


def test_finetune_end_to_end(binary, data_dir, tiny_model, tmp_path, capsys):
  rc = _run(binary, pretrained_model=tiny_model, cache_dir=str(data_dir),
            clients=["HAMLET", "OPHELIA"], max_batches_per_client=2, rounds=2,
            max_eval_batches=3, num_generate=30, root_output_dir=str(tmp_path),
            experiment_name="ft", aggregate_encoder="uniform", compression_threshold=100)
  out, err = capsys.readouterr()
  assert rc == 0, err
  assert "sanity check: pretrained accuracy" in out and "on random text" in out
  run = tmp_path / "ft"
  rows = reporting.read_metrics_csv(str(run / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == [1, 2]
  assert all(r[m.EVAL_ACCURACY] is not None for r in rows)  # Evaluated every round.
  # Broadcast is uncompressed: every float32 of the tiny model to 2 clients.
  params = char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16).count_params()
  assert rows[0][m.BROADCAST_BITS] == 2 * params * 32
  assert rows[0][m.AGGREGATE_BITS] < rows[0][m.BROADCAST_BITS]
  text = (run / "generated.txt").read_text().rstrip("\n")
  assert text.startswith("What of TensorFlow Federated, you ask? ")
  assert len(text) == len("What of TensorFlow Federated, you ask? ") + 30
  assert set(text) <= set(char_vocab.VOCAB)
  # The settings that made the text, which a resume of the finished run may change.
  assert json.loads((run / "generated.json").read_text()) == {
      "prompt": "What of TensorFlow Federated, you ask? ", "temperature": 1.0,
      "num_generate": 30, "seed": 0}
  final = tf.keras.models.load_model(str(run / "final_model.keras"), compile=False)
  assert final.count_params() == params
  saved = json.loads((run / "pretrained_eval.json").read_text())
  assert saved["sanity_client"] == "HAMLET"


def test_sampled_clients_with_padding(binary, data_dir, tiny_model, tmp_path, capsys):
  rc = _run(binary, pretrained_model=tiny_model, cache_dir=str(data_dir), clients=[],
            clients_per_round=3, pad_short_clients=True, rounds=1, max_eval_batches=2,
            num_generate=5, root_output_dir=str(tmp_path), experiment_name="sampled",
            sanity_client="HAMLET", client_epochs=2, seq_length=20)
  assert rc == 0, capsys.readouterr().err
  # The sanity check reads windows of --seq_length, as training does.
  hamlet = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
      snippets=tf.constant([LINES[i % 3] * 2 for i in range(40)])))
  expected = sh_task.sanity_check(tf.keras.models.load_model(tiny_model, compile=False), hamlet,
                                  seq_length=20, pad_short_clients=True)
  saved = json.loads((tmp_path / "sampled" / "pretrained_eval.json").read_text())
  assert saved["sanity"]["client_loss"] == pytest.approx(expected.client_loss, rel=1e-6)
  assert saved["sanity"]["random_loss"] == pytest.approx(expected.random_loss, rel=1e-6)
  rows = reporting.read_metrics_csv(str(tmp_path / "sampled" / "metrics.csv"))
  assert rows[0][m.BROADCAST_BITS] == 3 * 32 * char_rnn.create_char_rnn(
      embedding_dim=8, rnn_units=16).count_params()
  assert np.isfinite(rows[0][m.TRAIN_LOSS])
  # The round samples all three training clients, SHORT with less text than one window:
  # padded, it trains. A --pad_short_clients that did not reach the task left SHORT with
  # an empty dataset, rejected from the mean, and every check above still passed.
  assert rows[0][m.AGGREGATE_REJECTED_CLIENTS] == 0


def test_a_run_is_tied_to_its_pretrained_model_not_its_path(binary, data_dir, tmp_path, capsys):
  # The path was compared: a model retrained at the same path resumed the run (and
  # rewrote pretrained_eval.json for a model that never trained it).
  models = {}
  for seed in (0, 1):
    models[seed] = tmp_path / f"seed{seed}.keras"
    char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, seed=seed).save(str(models[seed]))
  path = tmp_path / "char_rnn.keras"
  common = dict(cache_dir=str(data_dir), clients=["HAMLET"], max_batches_per_client=1,
                max_eval_batches=1, num_generate=5, root_output_dir=str(tmp_path / "runs"),
                experiment_name="tied")
  path.write_bytes(models[0].read_bytes())
  assert _run(binary, pretrained_model=str(path), rounds=1, **common) == 0
  path.write_bytes(models[1].read_bytes())
  capsys.readouterr()
  assert _run(binary, pretrained_model=str(path), rounds=2, resume=True, **common) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "cannot resume" in err[0] and "pretrained_model_sha256" in err[0]
  # The same model elsewhere is the same start.
  assert _run(binary, pretrained_model=str(models[0]), rounds=2, resume=True, **common) == 0
  rows = reporting.read_metrics_csv(str(tmp_path / "runs" / "tied" / "metrics.csv"))
  assert [r[m.ROUND] for r in rows] == [1, 2]


@pytest.mark.parametrize("overrides,message", [
    ({"pretrained_model": "/nonexistent/model.keras"}, "does not exist"),
    ({"clients": ["NOBODY"]}, "unknown client id: NOBODY"),
    ({"generate_prompt": "caf\u00e9 \u2603"}, "--generate_prompt: characters not in the "
     "vocabulary"),
    # Refused before the rounds, not after them.
    ({"generate_prompt": ""}, "--generate_prompt must not be empty"),
    ({"clients": ["HAMLET", "HAMLET"]}, "--clients lists HAMLET more than once"),
    ({"dp": "central", "client_weighting": "uniform"}, "takes no fixed --clients"),
    # Sampled clients shorter than a batch: zero updates, each weighing 1 under uniform
    # weights (eval loss 4.3043 where the one real client alone gave 4.1543).
    ({"clients": [], "client_weighting": "uniform"}, "pass --pad_short_clients"),
    # The same with a listed client shorter than a batch (it passed while --clients was
    # given at all).
    ({"clients": ["HAMLET", "SHORT"], "client_weighting": "uniform", "clients_per_round": 2},
     "--clients SHORT: shorter than one batch of windows"),
])
def test_bad_input_is_one_line(binary, data_dir, tiny_model, tmp_path, capsys, overrides,
                               message):
  values = dict(pretrained_model=tiny_model, cache_dir=str(data_dir), clients=["HAMLET"],
                rounds=1, root_output_dir=str(tmp_path / "runs"), experiment_name="bad")
  values.update(overrides)
  assert _run(binary, **values) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
  assert not (tmp_path / "runs" / "bad").exists()


def _write_one_character_client(folder):
  """A shakespeare.sqlite whose client ONE holds one character: no window even padded."""
  clients = {"HAMLET": ("train", [LINES[0] * 2] * 20), "ONE": ("train", ["a"]),
             "HORATIO": ("test", [LINES[1] * 2] * 20)}
  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), lambda c: tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
          snippets=tf.constant(clients[c][1]))), str(folder / "shakespeare.sqlite"),
      split_names_by_client_id={c: s for c, (s, _) in clients.items()})


def test_a_listed_client_with_no_window_even_padded_is_refused(binary, tiny_model, tmp_path,
                                                               capsys):
  # One character: padding drops a last window of one character, so the client had no
  # batch, and under uniform weights its zero update weighed 1 (eval loss 4.3987 against
  # 4.3553 for the real client alone), unsaid.
  _write_one_character_client(tmp_path)
  assert _run(binary, pretrained_model=tiny_model, cache_dir=str(tmp_path),
              clients=["HAMLET", "ONE"], clients_per_round=2, client_weighting="uniform",
              pad_short_clients=True, rounds=1, root_output_dir=str(tmp_path / "runs"),
              experiment_name="one") == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == ["error: --clients ONE: no window of text even padded, so under "
                 "--client_weighting=uniform each would add a zero update to the mean: list "
                 "other clients"], err


@pytest.mark.parametrize("flag_value, subject", [
    ("ONE", "--sanity_client ONE"),
    # Not named: the first listed client is checked (example weights let it be listed).
    (None, "the sanity check on client ONE")])
def test_a_sanity_client_with_no_window_is_named(binary, tiny_model, tmp_path, capsys,
                                                 flag_value, subject):
  _write_one_character_client(tmp_path)
  listed = ["HAMLET"] if flag_value else ["ONE", "HAMLET"]
  assert _run(binary, pretrained_model=tiny_model, cache_dir=str(tmp_path),
              clients=listed, clients_per_round=len(listed), sanity_client=flag_value,
              rounds=1, root_output_dir=str(tmp_path / "runs"), experiment_name="s") == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: {subject}: no window of text even padded to check the pretrained "
                 "model on: name another client with --sanity_client"], err


def test_corrupt_pretrained_model(binary, data_dir, tmp_path, capsys):
  bad = tmp_path / "broken.keras"
  bad.write_bytes(b"not a keras zip")
  assert _run(binary, pretrained_model=str(bad), cache_dir=str(data_dir),
              root_output_dir=str(tmp_path / "runs")) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "cannot load --pretrained_model" in err[0]


def test_results_block_is_built_from_the_runs(binary, data_dir, tiny_model, tmp_path, capsys):
  from tools import shakespeare_results

  common = dict(pretrained_model=tiny_model, cache_dir=str(data_dir),
                clients=["HAMLET", "OPHELIA"], max_batches_per_client=1, rounds=1,
                max_eval_batches=2, num_generate=5, root_output_dir=str(tmp_path))
  assert _run(binary, experiment_name="plain", **common) == 0
  assert _run(binary, experiment_name="u8", broadcast_encoder="uniform",
              aggregate_encoder="uniform", compression_threshold=100, **common) == 0
  capsys.readouterr()
  runs = [shakespeare_results.read_run(str(tmp_path / n)) for n in ("plain", "u8")]
  block = shakespeare_results.format_block(runs)
  lines = block.splitlines()
  pretrained = json.loads((tmp_path / "plain" / "pretrained_eval.json").read_text())
  assert lines[2] == ("| pretrained model, before any round | | "
                      f"{pretrained['pretrained_eval']['accuracy']:.4f} | | | |")
  finals = {n: reporting.read_metrics_csv(str(tmp_path / n / "metrics.csv"))[-1]
            for n in ("plain", "u8")}
  assert lines[3].startswith(f"| plain, 1 round | none | {finals['plain'][m.EVAL_ACCURACY]:.4f} |")
  assert lines[4].startswith("| u8, 1 round | broa: uniform(bits=8)>100; "
                             "aggr: uniform(bits=8)>100 "
                             f"| {finals['u8'][m.EVAL_ACCURACY]:.4f} |")
  # Each row its own run's: both runs' accuracies are equal here (0.19375), their bits not.
  from fedcompress.units import format_bits

  for line, name in ((lines[3], "plain"), (lines[4], "u8")):
    assert (f"| {format_bits(finals[name][m.BROADCAST_CUMULATIVE_BITS])} "
            f"| {format_bits(finals[name][m.AGGREGATE_CUMULATIVE_BITS])} |") in line, line
  down = finals["plain"][m.BROADCAST_CUMULATIVE_BITS] / finals["u8"][m.BROADCAST_CUMULATIVE_BITS]
  assert f"u8 sent {down:.2f}x fewer broadcast bits" in block and down > 2
  assert f"on HAMLET against {pretrained['sanity']['random_accuracy']:.4f}" in block
  assert "Runs made on " in block and "(plain, u8)" in block
  # A run from another pretrained model is refused, not tabled under the wrong first row.
  accuracy = runs[1]["pretrained"]["pretrained_eval"]["accuracy"]
  runs[1]["pretrained"]["pretrained_eval"]["accuracy"] += 0.01
  with pytest.raises(ValueError, match="u8 started from another pretrained model"):
    shakespeare_results.format_block(runs)
  runs[1]["pretrained"]["pretrained_eval"]["accuracy"] = accuracy
  # So are runs of other settings, or that finished other rounds: the bit ratios would
  # count 2 rounds against 1 as the codec's savings. The rounds are those each run
  # finished: config.json's are its first start's (a resume may raise them).
  assert "rounds" not in runs[1]["settings"] and "client_learning_rate" in runs[1]["settings"]
  changed = [runs[0], {**runs[1], "settings": {**runs[1]["settings"],
                                               "client_learning_rate": 0.123}}]
  with pytest.raises(ValueError, match="other settings than plain, not only other codecs: "
                     "client_learning_rate"):
    shakespeare_results.format_block(changed)
  with pytest.raises(ValueError, match="u8 finished 2 rounds and plain 1"):
    shakespeare_results.format_block([runs[0], {**runs[1], "rounds": 2}])
  assert shakespeare_results.format_block(runs) == block


def test_a_notebooks_run_with_other_epochs_than_its_flags_resumes(data_dir, tiny_model,
                                                                    tmp_path):
  # A config from the flags (1 epoch) run with epochs=2: config.json holds the task's 2
  # (b004f58), and the early run-directory check compared the flags' 1 with it, so the
  # same call resumed was refused ('--client_epochs=1 (recorded 2)').
  from absl import flags

  from fedcompress.harness import flags as fc_flags
  from fedcompress.harness.finetune import run_finetune

  def run(*args):
    fv = flags.FlagValues()
    fc_flags.define_shakespeare_experiment_flags(fv)
    fv(["nb", f"--root_output_dir={tmp_path}", "--experiment_name=nb", "--clients=HAMLET",
        f"--pretrained_model={tiny_model}", "--rounds_per_eval=1", *args])
    return run_finetune(fc_flags.shakespeare_config_from_flags(fv),
                        pretrained_path=tiny_model, cache_dir=str(data_dir), epochs=2,
                        max_batches=1, max_eval_batches=1, num_generate=5)

  run("--rounds=1")
  assert json.loads((tmp_path / "nb" / "config.json").read_text())["client_epochs"] == 2
  run("--rounds=2", "--resume")
  rows = reporting.read_metrics_csv(str(tmp_path / "nb" / "metrics.csv"))
  assert [int(r[m.ROUND]) for r in rows] == [1, 2]


def test_a_library_run_recorded_by_its_files_bytes_resumes_on_that_file(data_dir, tiny_model,
                                                                         tmp_path):
  # Runs recorded their model by the .keras file's sha256 before it was taken by its
  # weights; a notebook's run (a config of its own, no --pretrained_model flag) was
  # refused on the very same file: the record's path was the flag's only (R9 of s48).
  from fedcompress.harness import rundir
  from fedcompress.harness.experiment import ExperimentConfig
  from fedcompress.harness.finetune import run_finetune
  from fedcompress.tasks.errors import file_fingerprint

  def run(rounds, resume=False):
    config = ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="lib",
                              rounds=rounds, rounds_per_eval=1, fixed_clients=("HAMLET",),
                              clients_per_round=1, resume=resume)
    return run_finetune(config, pretrained_path=tiny_model, cache_dir=str(data_dir),
                        max_batches=1, max_eval_batches=1, num_generate=5)

  run(1)
  path = tmp_path / "lib" / rundir.CONFIG_FILE
  record = json.loads(path.read_text())
  assert record[rundir.PRETRAINED_DIGEST].startswith("weights:")
  # As the code before wrote it: the file's bytes, and no path.
  record[rundir.PRETRAINED_DIGEST] = file_fingerprint(tiny_model, whole=True)
  del record["pretrained_model"]
  path.write_text(json.dumps(record))
  run(2, resume=True)
  rows = reporting.read_metrics_csv(str(tmp_path / "lib" / "metrics.csv"))
  assert [int(r[m.ROUND]) for r in rows] == [1, 2]


def test_a_shakespeare_sweep_checks_budgets_before_any_run(data_dir, tiny_model, tmp_path):
  # Its kind built no model before the runs: the first run of a grid trained, then a
  # budget its plan could not meet stopped the second (R9 of s48).
  from fedcompress.harness import sweep

  common = ["--clients=HAMLET", f"--pretrained_model={tiny_model}",
            f"--cache_dir={data_dir}", "--rounds=1", "--aggregate_encoder=uniform",
            "--aggregate_bits_per_coordinate=8", "--compression_threshold=100"]
  kind = sweep.get_experiment("shakespeare")
  ok, refused = sweep.runs_from_grid("aggregate_widths=1,16")
  assert sweep._plan(kind, ok, str(tmp_path / "out"), common).action == "start"  # noqa: SLF001
  with pytest.raises(ValueError, match=r"^sweep run 'aggregate_widths-16': a budget of 8 "
                     r"bits per coordinate \(\d+ bits\) does not cover"):
    sweep._plan(kind, refused, str(tmp_path / "out"), common)  # noqa: SLF001
  # From scratch too (--model=fedopt_lstm), and without the data.
  scratch = ["--model=fedopt_lstm", f"--cache_dir={tmp_path / 'none'}", *common[3:]]
  with pytest.raises(ValueError, match=r"^sweep run 'aggregate_widths-16': a budget of 8"):
    sweep._plan(kind, refused, str(tmp_path / "out"), scratch)  # noqa: SLF001
  assert not (tmp_path / "out").exists()
