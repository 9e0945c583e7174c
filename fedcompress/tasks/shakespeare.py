"""The Shakespeare task of TFF tutorial 2: a character RNN + Shakespeare clients.

Builds the `FederatedTask` the round loop runs: the Keras model's architecture (the
pretrained model of the tutorial, or one of `SHAKESPEARE_MODELS` from scratch, as the
FedOpt protocol trains) as the TFF model (masked loss, flattened character accuracy), the
Shakespeare clients preprocessed as the tutorial does, and held-out test snippets
for Keras evaluation after each round. `finish` writes the fine-tuned weights into a
batch-1 model, generates text and saves the final Keras model. `evaluate` and
`sanity_check` are the tutorial's Keras-side checks of a character RNN on this data.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.tasks.datasets import pipeline
from fedcompress.tasks.datasets import shakespeare as sh
from fedcompress.tasks.datasets.char_vocab import PAD_ID, VOCAB_SIZE, random_text
from fedcompress.tasks.errors import (
  PRETRAINED_FINGERPRINT_PREFIX,
  cached_path,
  file_fingerprint,
  weights_fingerprint,
)
from fedcompress.tasks.models import char_rnn
from fedcompress.tasks.models.generation import create_generation_model, generate_text
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes
from fedcompress.tasks.task import FederatedTask

# Order in which the test clients are joined for evaluation; fixed so that runs compare.
_EVAL_CLIENT_ORDER_SEED = 0

# Models trained from scratch, by `--model` name: `(seed=) -> uncompiled Keras model`.
SHAKESPEARE_MODELS: dict[str, Callable[..., tf.keras.Model]] = {
    # Reddi et al., Adaptive Federated Optimization (ICLR 2021).
    "fedopt_lstm": char_rnn.create_fedopt_lstm,
}


def create_model(name: str, seed: int) -> tf.keras.Model:
  """The `SHAKESPEARE_MODELS` model `name`, freshly initialized from `seed`."""
  if name not in SHAKESPEARE_MODELS:
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(sorted(SHAKESPEARE_MODELS))}")
  return SHAKESPEARE_MODELS[name](seed=seed)


def load_pretrained(path: str) -> tf.keras.Model:
  """The pretrained character RNN, or a one-line ValueError when missing or unusable."""
  if not os.path.exists(path):
    raise ValueError(f"--pretrained_model {path} does not exist (make one with "
                     "experiments/pretrain_char_rnn.py)")
  if not os.path.isfile(path):
    # A SavedModel folder loads, but a run records its model by the file's sha256: two
    # folders read as the same model, and a resume from another was accepted.
    raise ValueError(f"--pretrained_model {path} is not a file: give a .keras or .h5 model "
                     "file (model.save('name.keras')), whose content the run records")
  try:
    model = tf.keras.models.load_model(path, compile=False)
    classes = char_rnn.vocab_size(model)
  except Exception as e:  # h5py/zip/Keras errors: all mean "not a usable model".
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "No model config found" in first:  # Keras names a GFile object, not the file.
      first = ("it holds weights only (model.save_weights); give a whole model file, "
               "model.save('name.keras'), as experiments/pretrain_char_rnn.py writes")
    raise ValueError(f"cannot load --pretrained_model {path}: {first}") from None
  # NaN weights printed accuracies of argmax over NaN (the share of character id 0), and
  # round 1 was then blamed for them, with advice to lower the learning rates.
  bad = [w.name for w in model.weights if not tf.reduce_all(tf.math.is_finite(w))]
  if bad:
    raise ValueError(f"--pretrained_model {path} has non-finite weights (NaN or Inf): "
                     f"{', '.join(bad)}")
  if classes != VOCAB_SIZE:
    raise ValueError(f"--pretrained_model {path} predicts {classes} characters; "
                     f"the Shakespeare vocabulary has {VOCAB_SIZE}")
  if model.input_shape[0] is not None or model.input_shape[1] is not None or any(
      getattr(layer, "stateful", False) for layer in model.layers):
    # The TFF tutorial's own files are stateful GRUs of batch 1 or 8. As loaded, batch 1
    # failed on the first batch of 8 windows, and batch 8 carried the GRU's state from one
    # test batch to the next in the evaluations before round 1 (which every round makes
    # statelessly): the same weights, in the model the rounds train. A fixed sequence
    # length (`input_length`) trained, then failed at generation's seed text.
    model = char_rnn.copy_weights(model, char_rnn.rebuild(model.get_config()))
  return model


def pretrained_fingerprint(path: str) -> str:
  """`weights:<arrays>:<sha256>` of the model `load_pretrained(path)` gives: its weights
  and its layers' configurations (names left out), so that the README's pretraining,
  run again, gives the same model. The sha256 of the `.keras` file, recorded before,
  changed with every save (Keras writes Python object ids and the time into it), and a
  run could not be resumed on a model made again (review R4 of s48).

  Raises:
    ValueError: as `load_pretrained`.
  """
  if not os.path.isfile(path):
    load_pretrained(path)  # Raises, naming what is wrong.
  stat = os.stat(path)
  # Once per file and version of it: a binary takes it for its config, and again to run.
  key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
  if key not in _PRETRAINED_FINGERPRINTS:
    model = load_pretrained(path)
    layers = [(type(layer).__name__,
               {k: v for k, v in layer.get_config().items() if k != "name"})
              for layer in model.layers]
    _PRETRAINED_FINGERPRINTS[key] = PRETRAINED_FINGERPRINT_PREFIX + weights_fingerprint(
        model.get_weights(), layers)
  return _PRETRAINED_FINGERPRINTS[key]


_PRETRAINED_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


@dataclasses.dataclass
class ShakespeareSetup:
  task: FederatedTask
  train: tff.simulation.datasets.ClientData
  model_config: dict[str, Any]  # The Keras model's `get_config()`: its architecture.
  initial_weights: tff.learning.models.ModelWeights


def _compiled(model_config: dict[str, Any]) -> tf.keras.Model:
  model = char_rnn.rebuild(model_config)
  model.compile(loss=char_rnn.MaskedSparseCategoricalCrossentropy(),
                metrics=[char_rnn.FlattenedCategoricalAccuracy()])
  return model


def build_shakespeare_task(pretrained: tf.keras.Model, *, cache_dir: str | None,
                           epochs: int = 1, max_batches: int | None = None,
                           pad_short_clients: bool = False, max_eval_batches: int = 60,
                           seed: int = 0, batch_size: int = sh.BATCH_SIZE,
                           seq_length: int = sh.SEQ_LENGTH) -> ShakespeareSetup:
  """Shakespeare clients + the model's architecture and weights, ready for the loop.

  `pretrained` is the starting model: the tutorial's pretrained one, or a freshly
  initialized one (`create_model`). Clients train on batches of `batch_size` windows of
  `seq_length` characters (the tutorial's 8 x 100; the FedOpt protocol's 4 x 80).
  Evaluation uses batches of 8 windows of `seq_length`.
  """
  if epochs < 1:
    raise ValueError(f"--client_epochs must be >= 1, got {epochs}")
  if max_batches is not None and max_batches < 1:
    raise ValueError(f"--max_batches_per_client must be >= 1, got {max_batches}")
  if batch_size < 1 or seq_length < 1:
    raise ValueError(f"--client_batch_size and --seq_length must be >= 1, got {batch_size} "
                     f"and {seq_length}")
  train, test = sh.load_shakespeare(cache_dir)
  model_config = pretrained.get_config()
  # Taken now, as plain arrays: once a TFF process is built, Keras objects created
  # before it need `restore_keras_v2_classes` to work again.
  initial_weights = tff.learning.models.ModelWeights(
      trainable=[w.numpy() for w in pretrained.trainable_weights],
      non_trainable=[w.numpy() for w in pretrained.non_trainable_weights])

  # Traced once (fedcompress/tasks/datasets/pipeline.py): built eagerly, each client's
  # pipeline kept ~0.5 MiB of the driver for good, every round. Repeated after the
  # take: each epoch reshuffles, so with max_batches it takes other windows, of the
  # first shuffle_buffer + batch_size * max_batches - 1 (the buffer fills in order).
  dataset_for = pipeline.traced_client_datasets(
      train, lambda dataset, shuffle_seed: sh.preprocess(
          dataset, batch_size=batch_size, seq_length=seq_length, seed=shuffle_seed,
          pad_short_clients=pad_short_clients, max_batches=max_batches).repeat(epochs))

  def client_dataset(client_id: str, round_num: int) -> tf.data.Dataset:
    return dataset_for(client_id, seed * 100_003 + round_num)

  # Held-out test snippets in a fixed order (no shuffle, and a fixed client order: TFF
  # joins the clients in a random order without a seed), so every round of every run,
  # whatever its --seed, is evaluated on the same windows.
  test_batches = sh.preprocess(
      test.create_tf_dataset_from_all_clients(seed=_EVAL_CLIENT_ORDER_SEED), shuffle_buffer=1,
      seq_length=seq_length, max_batches=max_eval_batches)
  # Evaluation batches drop their remainder: a small test split (a dataset of one's
  # own, or a long --seq_length) has none, and the first evaluation, after round 1 had
  # trained, failed in a traceback.
  if next(iter(test_batches.take(1)), None) is None:
    raise ValueError(f"the test split holds less than one evaluation batch (8 windows of "
                     f"{seq_length + 1} characters): lower --seq_length")
  test_dataset = test_batches.cache()
  model_fn, input_spec = tff_model_fn(model_config, batch_size=batch_size,
                                      seq_length=seq_length)

  task = FederatedTask(name="shakespeare", client_ids=list(train.client_ids),
                       client_dataset=client_dataset, test_dataset=test_dataset,
                       model_fn=model_fn, keras_model_fn=lambda: _compiled(model_config),
                       input_spec=input_spec,
                       settings={"dataset": "shakespeare", "client_epochs": epochs,
                                 "client_batch_size": batch_size, "seq_length": seq_length,
                                 "max_batches_per_client": max_batches,
                                 "pad_short_clients": pad_short_clients,
                                 "max_eval_batches": max_eval_batches, "task_seed": seed,
                                 "data_file_fingerprint": file_fingerprint(
                                     cached_path(cache_dir, sh.SHAKESPEARE_SQLITE))})
  return ShakespeareSetup(task, train, model_config, initial_weights)


def tff_model_fn(model_config: dict[str, Any], *, batch_size: int, seq_length: int
                 ) -> tuple[Callable[[], tff.learning.models.VariableModel], tuple]:
  """The TFF model of the char-RNN `model_config` and its input spec: the clients'
  batches, static [batch_size, seq_length] (remainders dropped or padded). Needs no
  data: a sweep checks a run's tensors with it before any run."""
  window = tf.TensorSpec([batch_size, seq_length], tf.int64)
  input_spec = (window, window)

  def model_fn() -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
        char_rnn.rebuild(model_config), input_spec=input_spec,
        loss=char_rnn.MaskedSparseCategoricalCrossentropy(),
        metrics=[char_rnn.FlattenedCategoricalAccuracy()])

  return model_fn, input_spec


def finish(model_weights: tff.learning.models.ModelWeights, model_config: dict[str, Any],
           run_dir: str, *, prompt: str, temperature: float, num_generate: int,
           seed: int | None) -> str:
  """Saves the trained model, `generated.txt` and its settings; returns the text.

  The settings go to `generated.json` beside it: a resume of a finished run may change
  them (they do not change results) and writes the text again, while `config.json`
  keeps the first start's values.
  """
  model = char_rnn.rebuild(model_config)
  restore_keras_v2_classes(model)
  model_weights.assign_weights_to(model)
  model.save(os.path.join(run_dir, "final_model.keras"))
  generator = create_generation_model(model)
  text = generate_text(generator, prompt, num_generate=num_generate,
                          temperature=temperature, seed=seed)
  with open(os.path.join(run_dir, "generated.txt"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(run_dir, "generated.json"), "w") as f:
    json.dump({"prompt": prompt, "temperature": temperature, "num_generate": num_generate,
               "seed": seed}, f, indent=2)
  return text


class NoTargetError(ValueError):
  """`evaluate` was given no (unpadded) target: its caller knows which data that was."""


class Evaluation(NamedTuple):
  loss: float
  accuracy: float
  num_batches: int
  num_predictions: int  # Target positions that counted (pads excluded).


def evaluate(model: tf.keras.Model, dataset: tf.data.Dataset) -> Evaluation:
  """Masked loss and flattened accuracy of a Keras model over (input, target) batches.

  Does not compile or otherwise change `model` (its RNN state is reset first). The loss
  is averaged over counted positions, so batches with pads weigh by their real content.
  """
  restore_keras_v2_classes(model)
  loss_fn = char_rnn.MaskedSparseCategoricalCrossentropy()
  accuracy = char_rnn.FlattenedCategoricalAccuracy()
  total_loss = 0.0
  count = 0
  batches = 0
  model.reset_states()
  for x, y in dataset:
    logits = model(x, training=False)
    valid = int(tf.reduce_sum(tf.cast(tf.not_equal(y, PAD_ID), tf.int64)))
    total_loss += float(loss_fn(y, logits)) * valid
    count += valid
    batches += 1
    accuracy.update_state(y, logits)
  if count == 0:
    raise NoTargetError("the dataset has no (unpadded) target to evaluate on")
  return Evaluation(total_loss / count, float(accuracy.result()), batches, count)


class SanityCheck(NamedTuple):
  client_accuracy: float
  random_accuracy: float
  expected_random_accuracy: float  # 1 / VOCAB_SIZE, about 0.012.
  client_loss: float
  random_loss: float


def sanity_check(model: tf.keras.Model, client_dataset: tf.data.Dataset, *,
                 batch_size: int = sh.BATCH_SIZE, seq_length: int = sh.SEQ_LENGTH,
                 num_batches: int = 5, num_random_batches: int = 10, seed: int = 0,
                 pad_short_clients: bool = False) -> SanityCheck:
  """The tutorial's check: accuracy on one client's text versus on random characters.

  A model that learned English should be far above chance on Shakespeare and at chance
  (about 1/86) on uniformly random characters.

  Args:
    model: a character RNN accepting [batch_size, time] inputs (not the batch-1 model).
    client_dataset: one client's raw dataset (`OrderedDict(snippets=...)`).
    batch_size: rows per batch (8 in the tutorial).
    seq_length: input length (100).
    num_batches: client batches evaluated (the tutorial's `.take(5)`).
    num_random_batches: batches of random text evaluated.
    seed: shuffle seed and random-text seed.
    pad_short_clients: see `fedcompress.tasks.datasets.shakespeare.preprocess`; lets a
      short client be checked.

  Returns:
    Both accuracies (and losses), plus the chance level.
  """
  client = evaluate(model, sh.preprocess(client_dataset, batch_size=batch_size,
                                         seq_length=seq_length, seed=seed,
                                         pad_short_clients=pad_short_clients,
                                         max_batches=num_batches))
  text = random_text(num_random_batches * batch_size * (seq_length + 1), seed=seed)
  random_ds = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(snippets=tf.constant([text])))
  rand = evaluate(model, sh.preprocess(random_ds, batch_size=batch_size,
                                       seq_length=seq_length, seed=seed))
  return SanityCheck(client.accuracy, rand.accuracy, 1.0 / VOCAB_SIZE, client.loss, rand.loss)
