"""Tests of the Shakespeare task: vocabulary, preprocessing, padding, loss, model, generation."""

from __future__ import annotations

import collections
import math
import sqlite3
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.datasets import char_vocab
from fedcompress.tasks.datasets import shakespeare as sh
from fedcompress.tasks.errors import DatasetUnavailableError
from fedcompress.tasks.models import char_rnn, generation

TUTORIAL_VOCAB = ("dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\n"
                  "aeimquyAEIMQUY]!%)-159\r")


def client(*snippets: str) -> tf.data.Dataset:
  """One client's raw dataset, in TFF's Shakespeare format."""
  return tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(snippets=tf.constant(list(snippets))))


def numbered_text(n: int) -> str:
  # Distinct-looking, all-vocabulary text whose windows are easy to recognise.
  alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;!?\n0123456789"
  rng = np.random.default_rng(n)
  return "".join(rng.choice(list(alphabet), size=n))


def ids(text: str) -> np.ndarray:
  return np.array([TUTORIAL_VOCAB.index(c) for c in text], dtype=np.int64)


@pytest.fixture(scope="module")
def tiny_model() -> tf.keras.Model:
  return char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, seed=1)


# --------------------------------------------------------------------- vocabulary


def test_vocabulary_is_the_tutorials_in_order():
  assert char_vocab.VOCAB == TUTORIAL_VOCAB
  assert char_vocab.VOCAB_SIZE == 86
  ids = char_vocab.CHAR2IDX
  assert (ids["d"], ids[" "], ids["\n"], ids["\r"]) == (0, 13, 62, 85)
  assert char_vocab.PAD_ID == 86 and char_vocab.OOV_ID == 0


def test_table_maps_unknown_bytes_to_zero_like_the_tutorial():
  table = char_vocab.build_char_table()
  chars = tf.strings.bytes_split(tf.constant(["dx\r~", "é"])).values  # 'é' is 2 bytes.
  np.testing.assert_array_equal(table.lookup(chars).numpy(), [0, 5, 85, 0, 0, 0])


def test_text_to_ids_modes():
  np.testing.assert_array_equal(char_vocab.text_to_ids("h~d"), [1, 0, 0])
  np.testing.assert_array_equal(char_vocab.text_to_ids("h~d", oov="drop"), [1, 0])
  with pytest.raises(ValueError, match="'~'"):
    char_vocab.text_to_ids("h~d", oov="error")
  assert char_vocab.ids_to_text([1, 0, 86, 85]) == "hd\r"


# ------------------------------------------------------------------ preprocessing


def test_preprocess_matches_the_tutorial_pipeline():
  text = numbered_text(2000)  # 19 windows of 101 -> 2 batches of 8 (3 windows dropped).
  ds = sh.preprocess(client(text[:700], text[700:1500], text[1500:]), seed=3)
  assert ds.element_spec == (tf.TensorSpec((8, 100), tf.int64), tf.TensorSpec((8, 100), tf.int64))
  batches = list(ds)
  assert len(batches) == 2
  all_ids = ids(text)
  windows = {tuple(all_ids[i * 101:(i + 1) * 101]) for i in range(19)}
  seen = set()
  for x, y in batches:
    for row_x, row_y in zip(x.numpy(), y.numpy(), strict=True):
      # Snippets are concatenated (unbatch) and cut every 101 characters.
      window = tuple(row_x) + (row_y[-1],)
      assert window in windows
      np.testing.assert_array_equal(row_x[1:], row_y[:-1])
      seen.add(window)
  assert len(seen) == 16
  assert len(list(sh.preprocess(client(text), max_batches=1))) == 1


def test_short_client_has_no_batch_without_padding():
  assert list(sh.preprocess(client(numbered_text(807)))) == []
  assert len(list(sh.preprocess(client(numbered_text(808))))) == 1


def test_padding_a_150_character_client():
  # 150 chars = windows of 101 and 49 chars: 100 + 48 targets, one batch of 8 rows,
  # the other 6 rows all padding.
  text = numbered_text(150)
  batches = list(sh.preprocess(client(text[:60], text[60:]), pad_short_clients=True, seed=0))
  assert len(batches) == 1
  x, y = (t.numpy() for t in batches[0])
  assert x.shape == y.shape == (8, 100)
  assert int(np.sum(y != char_vocab.PAD_ID)) == 148
  t = ids(text)
  rows = {int(np.sum(r != char_vocab.PAD_ID)): i for i, r in enumerate(y)}
  assert sorted(rows) == [0, 48, 100]  # Six all-pad rows share the key 0.
  full, short = rows[100], rows[48]
  np.testing.assert_array_equal(x[full], t[:100])
  np.testing.assert_array_equal(y[full], t[1:101])
  np.testing.assert_array_equal(x[short][:49], t[101:150])
  np.testing.assert_array_equal(y[short][:48], t[102:150])
  assert np.all(y[short][48:] == char_vocab.PAD_ID)
  # Input pads are a valid id so the Embedding can look them up.
  assert np.all(x[short][49:] == char_vocab.OOV_ID)
  assert np.all(x[[i for i in range(8) if i not in (full, short)]] == char_vocab.OOV_ID)


def test_padding_drops_a_one_character_last_window():
  # 102 chars: a full window and a lone character with nothing to predict.
  (x, y), = sh.preprocess(client(numbered_text(102)), pad_short_clients=True)
  assert int(np.sum(y.numpy() != char_vocab.PAD_ID)) == 100
  assert int(np.sum(np.any(y.numpy() != char_vocab.PAD_ID, axis=1))) == 1


def test_padding_keeps_full_batches_unchanged():
  text = numbered_text(808 * 2)
  plain = [y.numpy() for _, y in sh.preprocess(client(text), seed=5)]
  padded = [y.numpy() for _, y in sh.preprocess(client(text), seed=5, pad_short_clients=True)]
  assert len(plain) == len(padded) == 2
  assert all(np.all(b != char_vocab.PAD_ID) for b in padded)


# ------------------------------------------------------------------- loss, metric


def test_masked_loss_hand_computed():
  # Two classes; targets [[1, PAD], [0, PAD]]. Position (0, 0): logits [0, ln 3], label 1
  # -> -ln(3/4). Position (1, 0): logits [0, 0], label 0 -> ln 2. Pads carry huge logits
  # that would dominate if counted.
  logits = tf.constant([[[0.0, math.log(3.0)], [50.0, -50.0]],
                        [[0.0, 0.0], [-50.0, 50.0]]])
  y = tf.constant([[1, char_vocab.PAD_ID], [0, char_vocab.PAD_ID]], tf.int64)
  loss = char_rnn.MaskedSparseCategoricalCrossentropy()(y, logits)
  assert float(loss) == pytest.approx((math.log(4.0 / 3.0) + math.log(2.0)) / 2, rel=1e-6)


def test_masked_loss_equals_keras_loss_without_pads(tiny_model):
  x, y = next(iter(sh.preprocess(client(numbered_text(808)))))
  logits = tiny_model(x)
  expected = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits)
  assert float(char_rnn.MaskedSparseCategoricalCrossentropy()(y, logits)) == pytest.approx(
      float(expected), rel=1e-6)


def test_masked_loss_on_a_padded_client_ignores_pads(tiny_model):
  text = numbered_text(150)
  (x, y), = sh.preprocess(client(text), pad_short_clients=True, seed=0)
  logits = tiny_model(x).numpy()
  y = y.numpy()
  log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
  valid = y != char_vocab.PAD_ID
  expected = -np.mean(np.take_along_axis(log_probs, np.where(valid, y, 0)[..., None],
                                         axis=-1)[..., 0][valid])
  assert valid.sum() == 148
  loss = char_rnn.MaskedSparseCategoricalCrossentropy()(tf.constant(y), tf.constant(logits))
  assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_flattened_accuracy_hand_computed_and_masks_pads():
  # 87 logits so that a pad target *could* match an argmax: it must still not count.
  logits = np.zeros((1, 4, 87), np.float32)
  for t, c in enumerate([5, 7, 9, char_vocab.PAD_ID]):
    logits[0, t, c] = 1.0
  y = tf.constant([[5, 8, 9, char_vocab.PAD_ID]], tf.int64)
  metric = char_rnn.FlattenedCategoricalAccuracy()
  metric.update_state(y, tf.constant(logits))
  assert float(metric.result()) == pytest.approx(2 / 3)
  assert float(metric.count) == 3.0
  unmasked = char_rnn.FlattenedCategoricalAccuracy(pad_id=-1)
  unmasked.update_state(y, tf.constant(logits))
  assert float(unmasked.result()) == pytest.approx(3 / 4)


def test_flattened_accuracy_config_round_trip():
  # TFF rebuilds metrics from their config when finalizing.
  metric = char_rnn.FlattenedCategoricalAccuracy(pad_id=7)
  clone = char_rnn.FlattenedCategoricalAccuracy.from_config(metric.get_config())
  assert (clone.name, clone.pad_id) == ("accuracy", 7)


@pytest.mark.slow
def test_keras_compile_and_evaluate_agree_with_evaluate(tiny_model):
  model = tf.keras.models.clone_model(tiny_model)
  model.set_weights(tiny_model.get_weights())
  model.compile(loss=char_rnn.MaskedSparseCategoricalCrossentropy(),
                metrics=[char_rnn.FlattenedCategoricalAccuracy()])
  ds = sh.preprocess(client(numbered_text(150)), pad_short_clients=True, seed=0)
  loss, accuracy = model.evaluate(ds, verbose=0)
  ev = sh_task.evaluate(tiny_model, ds)
  assert (ev.num_batches, ev.num_predictions) == (1, 148)
  assert ev.loss == pytest.approx(loss, rel=1e-5)
  assert ev.accuracy == pytest.approx(accuracy, rel=1e-6)


@pytest.mark.slow  # Builds and runs a TFF process.
def test_masked_loss_and_metric_inside_tff_fedavg(tiny_model):
  # Two short padded clients, one batch each, client SGD with learning rate 0: TFF's
  # train metrics are then those of the initial weights, computable with `evaluate`.
  import tensorflow_federated as tff

  import fedcompress

  client_a = sh.preprocess(client(numbered_text(150)), pad_short_clients=True, seed=0)
  client_b = sh.preprocess(client(numbered_text(260)), pad_short_clients=True, seed=0)
  spec = client_a.element_spec

  def model_fn():
    return tff.learning.models.from_keras_model(
        char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16), input_spec=spec,
        loss=char_rnn.MaskedSparseCategoricalCrossentropy(),
        metrics=[char_rnn.FlattenedCategoricalAccuracy()])

  weights = tiny_model.get_weights()
  process = fedcompress.build_fedavg(model_fn, tff.learning.optimizers.build_sgdm(0.0))
  state = process.set_model_weights(
      process.initialize(),
      tff.learning.models.ModelWeights(trainable=weights, non_trainable=[]))
  train = process.next(state, [client_a, client_b]).metrics["client_work"]["train"]
  # `tiny_model` predates the build, which swapped Keras' classes to v1 (see
  # `restore_keras_v2_classes`); evaluate must still work on it.
  ev_a, ev_b = sh_task.evaluate(tiny_model, client_a), sh_task.evaluate(tiny_model, client_b)
  generated = generation.generate_text(generation.create_generation_model(tiny_model), "a",
                                       num_generate=3, seed=0)
  assert len(generated) == 4
  # 150 chars -> 100 + 48 targets; 260 = 101 + 101 + 58 -> 100 + 100 + 57.
  assert (ev_a.num_predictions, ev_b.num_predictions) == (148, 257)
  assert train["accuracy"] == pytest.approx(
      (ev_a.accuracy * 148 + ev_b.accuracy * 257) / (148 + 257), rel=1e-5)
  # TFF averages batch losses weighted by rows: one 8-row batch per client.
  assert train["loss"] == pytest.approx((ev_a.loss + ev_b.loss) / 2, rel=1e-5)
  # TFF counts rows, pad rows included (documented in `preprocess`).
  assert train["num_examples"] == 16


# -------------------------------------------------------------------------- model


def test_full_size_model_has_the_tutorials_parameter_count():
  model = char_rnn.create_char_rnn()
  # Embedding 86x256; GRU (reset_after) 3 x (256x1024 + 1024x1024 + 2x1024); Dense 1024x86+86.
  assert model.count_params() == 86 * 256 + 3 * (256 * 1024 + 1024 * 1024 + 2048) + 1024 * 86 + 86
  assert model.count_params() == 4_048_470  # x4 bytes = the tutorial's 16.19 MB file.
  assert char_rnn.char_rnn_sizes(model) == (86, 256, 1024)


def test_load_pretrained_takes_either_architecture(tmp_path):
  # A FedOpt LSTM run's final model can be fine-tuned again, as a GRU's can.
  for name, model in [("gru", char_rnn.create_char_rnn(embedding_dim=4, rnn_units=8, seed=0)),
                      ("lstm", char_rnn.create_fedopt_lstm(seed=0))]:
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    loaded = sh_task.load_pretrained(path)
    assert loaded.count_params() == model.count_params()
    assert char_rnn.vocab_size(loaded) == sh_task.VOCAB_SIZE


@pytest.mark.parametrize("batch_size", [1, 8])
def test_a_stateful_pretrained_file_is_used_stateless_at_any_batch_size(tmp_path, batch_size):
  # The TFF tutorial's own files are stateful GRUs of batch 1 or 8.
  model = char_rnn.create_char_rnn(embedding_dim=4, rnn_units=8, batch_size=batch_size,
                                   stateful=True, seed=0)
  path = str(tmp_path / "stateful.keras")
  model.save(path)
  loaded = sh_task.load_pretrained(path)
  assert not any(getattr(layer, "stateful", False) for layer in loaded.layers)
  for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
    np.testing.assert_array_equal(a, b)
  windows = tf.constant(np.random.default_rng(0).integers(1, 86, (8, 20)), tf.int64)
  # Stateless: the same batch gives the same logits twice, at any batch size.
  np.testing.assert_array_equal(loaded(windows), loaded(windows))
  assert loaded(windows[:3]).shape == (3, 20, 86)


def _char_rnn(activation=None, mask_zero=False, return_sequences=True, go_backwards=False):
  return tf.keras.Sequential([
      tf.keras.layers.Embedding(86, 4, mask_zero=mask_zero),
      tf.keras.layers.GRU(8, return_sequences=return_sequences, go_backwards=go_backwards),
      tf.keras.layers.Dense(86, activation=activation)])


@pytest.mark.parametrize("model,message", [
    (lambda: char_rnn.create_char_rnn(vocab_size=50, embedding_dim=4, rnn_units=8),
     "predicts 50 characters"),
    (lambda: tf.keras.Sequential([tf.keras.layers.Embedding(86, 4), tf.keras.layers.Dense(86)]),
     "expected a character RNN"),
    # Each of these loaded, trained and generated before, wrongly (a review's softmax head
    # scored a loss near chance's and generated noise).
    (lambda: _char_rnn(activation="softmax"), "the output layer applies softmax"),
    (lambda: _char_rnn(mask_zero=True), "masks id 0"),
    (lambda: _char_rnn(return_sequences=False), "must return every position in order"),
    (lambda: _char_rnn(go_backwards=True), "must return every position in order"),
])
def test_load_pretrained_refuses_other_models(tmp_path, model, message):
  path = str(tmp_path / "other.keras")
  built = model()
  built.build([None, 5])
  built.save(path)
  with pytest.raises(ValueError, match=message):
    sh_task.load_pretrained(path)


def test_model_takes_any_batch_size(tiny_model):
  assert tiny_model(tf.zeros([8, 100], tf.int64)).shape == (8, 100, 86)
  assert tiny_model(tf.zeros([3, 7], tf.int64)).shape == (3, 7, 86)


@pytest.mark.slow
def test_generation_model_is_stateful_and_matches_the_batch_model(tiny_model):
  gen = generation.create_generation_model(tiny_model)
  assert gen.layers[1].stateful and gen.input_shape == (1, None)
  for a, b in zip(gen.get_weights(), tiny_model.get_weights(), strict=True):
    np.testing.assert_array_equal(a, b)
  seq = tf.constant([char_vocab.text_to_ids("To be, or not")])
  full = tiny_model(seq).numpy()
  gen.reset_states()
  stepped = np.concatenate([gen(seq[:, i:i + 1]).numpy() for i in range(seq.shape[1])], axis=1)
  np.testing.assert_allclose(stepped, full, rtol=1e-5, atol=1e-5)
  # And back: a batch-8 model gets the weights with set_weights too.
  back = char_rnn.copy_weights(
      gen, char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, batch_size=8))
  np.testing.assert_allclose(back(tf.tile(seq, [8, 1])).numpy()[3], full[0], rtol=1e-5,
                             atol=1e-5)


def constant_model(char: str, batch_size: int | None = None, stateful: bool = False,
                   strength: float = 30.0) -> tf.keras.Model:
  """A character RNN whose logits always favour `char` (Dense kernel zero)."""
  model = char_rnn.create_char_rnn(embedding_dim=2, rnn_units=2, batch_size=batch_size,
                             stateful=stateful, seed=0)
  dense = model.layers[-1]
  bias = np.zeros(86, np.float32)
  bias[char_vocab.CHAR2IDX[char]] = strength
  dense.set_weights([np.zeros_like(dense.kernel.numpy()), bias])
  return model


@pytest.mark.slow
def test_generate_text_is_seeded_and_follows_the_model(tiny_model):
  gen = generation.create_generation_model(tiny_model)
  a = generation.generate_text(gen, "ROMEO: ", num_generate=25, seed=4)
  b = generation.generate_text(gen, "ROMEO: ", num_generate=25, seed=4)
  c = generation.generate_text(gen, "ROMEO: ", num_generate=25, seed=5)
  assert a == b != c
  assert a.startswith("ROMEO: ") and len(a) == 7 + 25
  assert set(a) <= set(char_vocab.VOCAB)
  certain = constant_model("e", batch_size=1, stateful=True)
  assert generation.generate_text(certain, "x", num_generate=12, seed=0) == "x" + "e" * 12


def test_a_temperature_that_overflows_float32_takes_the_most_likely_character():
  # 1e-50 is 0 in float32: the logits became inf and NaN, sampling returned id 86 (past
  # the vocabulary), and a finished run ended in an IndexError traceback.
  model = constant_model("e", batch_size=1, stateful=True, strength=5.0)
  assert generation.generate_text(model, "x", num_generate=4, temperature=1e-50,
                                  seed=0) == "x" + "e" * 4
  nan = constant_model("e", batch_size=1, stateful=True, strength=float("nan"))
  with pytest.raises(ValueError, match="logits are not finite"):
    generation.generate_text(nan, "x", num_generate=2, seed=0)


def test_generate_text_rejects_bad_inputs(tiny_model):
  with pytest.raises(ValueError, match="stateful"):
    generation.generate_text(tiny_model, "abc")
  gen = generation.create_generation_model(tiny_model)
  with pytest.raises(ValueError, match="vocabulary"):
    generation.generate_text(gen, "caf\u00e9")
  # Stateful of batch 8, as the tutorial's own pretrained files: a multi-line Keras
  # error at the first character.
  batch8 = char_rnn.create_char_rnn(embedding_dim=8, rnn_units=16, batch_size=8,
                                    stateful=True, seed=0)
  with pytest.raises(ValueError, match="needs a stateful batch-1 model"):
    generation.generate_text(batch8, "abc")


def test_a_subclassed_batch1_model_generates():
  # It has no input_shape: the batch check read it and raised AttributeError (R14).
  class CharRnn(tf.keras.Model):
    def __init__(self):
      super().__init__()
      self.embedding = tf.keras.layers.Embedding(char_vocab.VOCAB_SIZE, 8)
      self.gru = tf.keras.layers.GRU(16, return_sequences=True, stateful=True)
      self.dense = tf.keras.layers.Dense(char_vocab.VOCAB_SIZE)

    def call(self, x, training=False):
      return self.dense(self.gru(self.embedding(x)))

  model = CharRnn()
  model(tf.constant([[1, 2]], tf.int64))  # Built at batch 1.
  generated = generation.generate_text(model, "ab", num_generate=5, seed=0)
  assert generated.startswith("ab") and len(generated) == 7


# ---------------------------------------------------------------- sanity check


@pytest.mark.slow
def test_sanity_check_hand_computed():
  # A model that always predicts ' ': its accuracy is the share of targets that are ' '.
  model = constant_model(" ")
  text = ("to be or not to be " * 130)[:3 * 808]  # 24 windows -> 3 batches, all evaluated.
  check = sh_task.sanity_check(model, client(text), num_batches=5, num_random_batches=2, seed=1)
  windows = [text[i * 101:(i + 1) * 101] for i in range(24)]
  expected_client = sum(w[1:].count(" ") for w in windows) / (24 * 100)
  rand = char_vocab.random_text(2 * 8 * 101, seed=1)
  expected_random = sum(rand[i * 101 + 1:(i + 1) * 101].count(" ") for i in range(16)) / 1600
  assert check.client_accuracy == pytest.approx(expected_client, rel=1e-6)
  assert check.random_accuracy == pytest.approx(expected_random, rel=1e-6)
  assert check.expected_random_accuracy == pytest.approx(1 / 86)
  assert check.client_accuracy > 0.2 > check.random_accuracy


@pytest.mark.slow
def test_sanity_check_short_client_needs_padding(tiny_model):
  with pytest.raises(ValueError, match="no .*target"):
    sh_task.sanity_check(tiny_model, client(numbered_text(300)))
  check = sh_task.sanity_check(tiny_model, client(numbered_text(300)), pad_short_clients=True)
  assert 0.0 <= check.client_accuracy <= 1.0


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def real_shakespeare(shared_data):
  return sh.load_shakespeare(shared_data / "tff")


def train_chars(shared_data, client_id: str) -> int:
  # Independent count: the serialized tf.Example protos straight from the sqlite file.
  from tensorflow.core.example import example_pb2
  with sqlite3.connect(shared_data / "tff" / "shakespeare.sqlite") as con:
    rows = con.execute("SELECT serialized_example_proto FROM examples "
                       "WHERE split_name='train' AND client_id=?", (client_id,)).fetchall()
  return sum(len(example_pb2.Example.FromString(r[0]).features.feature["snippets"]
                 .bytes_list.value[0]) for r in rows)


def test_real_shakespeare_loads_and_preprocesses(real_shakespeare):
  train, test = real_shakespeare
  assert len(train.client_ids) == 715
  assert "MUCH_ADO_ABOUT_NOTHING_OTHELLO" in test.client_ids
  ds = sh.preprocess(train.create_tf_dataset_for_client("ALL_S_WELL_THAT_ENDS_WELL_CELIA"),
                     max_batches=5, seed=0)
  batches = list(ds)
  assert len(batches) == 5
  assert batches[0][0].shape == (8, 100)


def test_real_short_client_contributes_only_with_padding(real_shakespeare, shared_data):
  train, _ = real_shakespeare
  name = "ALL_S_WELL_THAT_ENDS_WELL_BROTHERS"
  n = train_chars(shared_data, name)
  assert 2 <= n < 808
  raw = train.create_tf_dataset_for_client(name)
  assert list(sh.preprocess(raw)) == []
  padded = list(sh.preprocess(raw, pad_short_clients=True))
  # Full windows have 100 targets; a last window of k >= 2 characters has k - 1.
  rest = n % 101
  expected_targets = (n // 101) * 100 + (rest - 1 if rest >= 2 else 0)
  assert sum(int(np.sum(y.numpy() != char_vocab.PAD_ID)) for _, y in padded) == expected_targets


def test_unavailable_dataset_raises_a_clear_error(tmp_path):
  # A proxy on a closed local port makes TFF's real download fail deterministically.
  dead = urllib.request.build_opener(urllib.request.ProxyHandler(
      {"https": "http://127.0.0.1:9", "http": "http://127.0.0.1:9"}))
  urllib.request.install_opener(dead)
  try:
    with pytest.raises(DatasetUnavailableError, match="--cache_dir") as info:
      sh.load_shakespeare(tmp_path / "cache")
  finally:
    urllib.request.install_opener(None)
  assert "shakespeare.sqlite" in str(info.value)
  assert not (tmp_path / "cache" / "shakespeare.sqlite").exists()


def test_a_model_folder_is_refused_for_the_file_a_run_records(tmp_path):
  # A SavedModel folder loads, but a run records its model by the file's sha256: two
  # folders read alike, and a resume from another folder was accepted.
  folder = tmp_path / "savedmodel"
  model = char_rnn.create_char_rnn(embedding_dim=4, rnn_units=8, seed=0)
  model.save(str(folder), save_format="tf")
  assert folder.is_dir()
  with pytest.raises(ValueError, match="savedmodel is not a file: give a .keras or .h5"):
    sh_task.load_pretrained(str(folder))
