"""What `load_pretrained` and the Shakespeare flags refuse, in one line, before a round.

Each of these ran before: NaN weights printed accuracies of argmax over NaN and then
blamed round 1; a GRU with dropout trained differently in two runs of one seed; a
functional model was refused as if its layers were not the ones listed; a weights-only
file was said as a GFile object; `~` in --pretrained_model was "does not exist".
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from fedcompress.harness import cli, experiment, rundir
from fedcompress.harness import flags as fc_flags
from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.errors import file_fingerprint
from fedcompress.tasks.models import char_rnn


def _saved(tmp_path, model, name="model.keras"):
  model.build([None, 5])
  path = str(tmp_path / name)
  model.save(path)
  return path


def _gru(**gru_options):
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(86, 4, embeddings_initializer=tf.keras.initializers.Zeros()),
      tf.keras.layers.GRU(8, return_sequences=True, **gru_options),
      tf.keras.layers.Dense(86)])


def test_nan_weights_are_refused_naming_them(tmp_path):
  model = _gru()
  model.build([None, 5])
  weights = model.get_weights()
  weights[0][3, 1] = np.nan
  model.set_weights(weights)
  with pytest.raises(ValueError, match=r"non-finite weights \(NaN or Inf\): embedding"):
    sh_task.load_pretrained(_saved(tmp_path, model))


@pytest.mark.parametrize("options", [{"dropout": 0.5}, {"recurrent_dropout": 0.25}])
def test_unseeded_dropout_is_refused(tmp_path, options):
  (option, rate), = options.items()
  with pytest.raises(ValueError, match=f"has {option}={rate}: Keras draws its masks without"):
    sh_task.load_pretrained(_saved(tmp_path, _gru(**options)))


@pytest.mark.parametrize("cell", [
    lambda: tf.keras.layers.GRUCell(8, dropout=0.5),
    lambda: tf.keras.layers.StackedRNNCells([tf.keras.layers.GRUCell(8),
                                             tf.keras.layers.GRUCell(8, recurrent_dropout=0.25)])])
def test_unseeded_dropout_of_a_cell_is_refused(tmp_path, cell):
  # The rates of RNN(cell) are on its cells, not the layer: accepted, two passes of one
  # seed differed, and the binary stopped on Keras' '_dropout_mask_cache'.
  model = tf.keras.Sequential([
      tf.keras.layers.Embedding(86, 4), tf.keras.layers.RNN(cell(), return_sequences=True),
      tf.keras.layers.Dense(86)])
  with pytest.raises(ValueError, match="dropout=0.5: Keras|recurrent_dropout=0.25: Keras"):
    sh_task.load_pretrained(_saved(tmp_path, model))


def test_a_functional_model_is_refused_as_one(tmp_path):
  inputs = tf.keras.Input([None], dtype=tf.int64)
  hidden = tf.keras.layers.GRU(8, return_sequences=True)(
      tf.keras.layers.Embedding(86, 4)(inputs))
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(86)(hidden))
  with pytest.raises(ValueError, match="expected a Sequential character RNN, got a Functional"):
    sh_task.load_pretrained(_saved(tmp_path, model))


def test_a_weights_only_file_is_said_as_one(tmp_path):
  model = _gru()
  model.build([None, 5])
  path = str(tmp_path / "w.weights.h5")
  model.save_weights(path)
  with pytest.raises(ValueError, match="holds weights only .*model.save"):
    sh_task.load_pretrained(path)


def test_the_same_model_without_these_loads(tmp_path):
  loaded = sh_task.load_pretrained(_saved(tmp_path, _gru()))
  assert char_rnn.vocab_size(loaded) == 86


def test_a_home_relative_pretrained_model_is_found(tmp_path, monkeypatch):
  # `--pretrained_model=~/m.keras` (the shell leaves ~ after `--flag=`) was "does not
  # exist" though pretrain_char_rnn.py, which wrote it, expands ~ in --output.
  monkeypatch.setenv("HOME", str(tmp_path))
  path = _saved(tmp_path, _gru(), "m.keras")
  fv = flags.FlagValues()
  fc_flags.define_shakespeare_experiment_flags(fv)
  fv(["binary", "--pretrained_model=~/m.keras", "--cache_dir=~/cache",
      f"--root_output_dir={tmp_path / 'runs'}", "--generate_prompt=~/ stays"])
  cli.expand_home(fv)  # What the binaries' parse_flags does after parsing.
  assert (fv.pretrained_model, fv.cache_dir, fv.generate_prompt) == (
      path, str(tmp_path / "cache"), "~/ stays")
  config = fc_flags.shakespeare_config_from_flags(fv)
  assert config.record()[rundir.PRETRAINED_DIGEST] == sh_task.pretrained_fingerprint(path)


def test_an_empty_client_id_is_refused():
  with pytest.raises(ValueError, match="--clients has an empty client id"):
    experiment.ExperimentConfig(root_output_dir="/tmp/x", experiment_name="e",
                                fixed_clients=("A", "")).validate()


def _config(path, tmp_path):
  fv = flags.FlagValues()
  fc_flags.define_shakespeare_experiment_flags(fv)
  fv(["binary", f"--pretrained_model={path}", f"--root_output_dir={tmp_path / 'runs'}"])
  return fc_flags.shakespeare_config_from_flags(fv)


def test_a_model_saved_again_with_the_same_weights_is_the_same_model(tmp_path):
  # The run recorded the .keras file's sha256, which Keras' Python object ids and save
  # time change: the README's pretraining run again, with the same weights, could not
  # resume a run (R4 of s48).
  model = _gru()
  first = _saved(tmp_path, model, "a.keras")
  again = _saved(tmp_path, tf.keras.models.load_model(first), "b.keras")
  assert file_fingerprint(first, whole=True) != file_fingerprint(again, whole=True)
  assert (sh_task.pretrained_fingerprint(first) == sh_task.pretrained_fingerprint(again)
          and sh_task.pretrained_fingerprint(first).startswith("weights:"))
  recorded = _config(first, tmp_path).record()
  assert rundir.differences(recorded, _config(again, tmp_path).record_compared_with(
      recorded)) == []
  # Other weights are another model.
  other = _gru()
  other.build([None, 5])
  other.set_weights([w + 1.0 for w in model.get_weights()])
  changed = _saved(tmp_path, other, "c.keras")
  assert sh_task.pretrained_fingerprint(changed) != sh_task.pretrained_fingerprint(first)
  (difference,) = rundir.differences(
      recorded, _config(changed, tmp_path).record_compared_with(recorded))
  assert difference.startswith("pretrained_model_sha256 weights:")


def test_a_run_recorded_by_the_files_bytes_resumes_on_that_file(tmp_path):
  path = _saved(tmp_path, _gru(), "a.keras")
  config = _config(path, tmp_path)
  legacy = {**config.record(), rundir.PRETRAINED_DIGEST: file_fingerprint(path, whole=True)}
  assert rundir.differences(legacy, config.record_compared_with(legacy)) == []
  # Another file is refused, as before.
  other = _saved(tmp_path, _gru(), "b.keras")
  legacy_other = {**legacy, rundir.PRETRAINED_DIGEST: file_fingerprint(other, whole=True)}
  assert len(rundir.differences(legacy_other, config.record_compared_with(legacy_other))) == 1
