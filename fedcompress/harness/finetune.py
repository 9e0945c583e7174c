"""Federated fine-tuning of a pretrained character RNN on Shakespeare (TFF tutorial 2).

Builds the `FederatedTask` the round loop runs: the pretrained Keras model's
architecture as the TFF model (masked loss, flattened character accuracy), the
Shakespeare clients preprocessed as the tutorial does, and held-out test snippets
for Keras evaluation after each round. `finish` writes the fine-tuned weights into a
batch-1 model, generates text and saves the final Keras model.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow as tf
import tensorflow_federated as tff

from fedcompress.tasks.datasets import shakespeare as sh
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes
from fedcompress.tasks.task import FederatedTask

# Order in which the test clients are joined for evaluation; fixed so that runs compare.
_EVAL_CLIENT_ORDER_SEED = 0


def load_pretrained(path: str) -> tf.keras.Model:
  """The pretrained character RNN, or a one-line ValueError when missing or unusable."""
  if not os.path.exists(path):
    raise ValueError(f"--pretrained_model {path} does not exist (make one with "
                     "experiments/pretrain_char_rnn.py)")
  try:
    model = tf.keras.models.load_model(path, compile=False)
    sizes = sh.char_rnn_sizes(model)
  except Exception as e:  # h5py/zip/Keras errors: all mean "not a usable model".
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"cannot load --pretrained_model {path}: {first}") from None
  if sizes.vocab_size != sh.VOCAB_SIZE:
    raise ValueError(f"--pretrained_model {path} predicts {sizes.vocab_size} characters; "
                     f"the Shakespeare vocabulary has {sh.VOCAB_SIZE}")
  return model


@dataclasses.dataclass
class ShakespeareSetup:
  task: FederatedTask
  train: tff.simulation.datasets.ClientData
  sizes: sh.CharRnnSizes
  initial_weights: tff.learning.models.ModelWeights


def _compiled(sizes: sh.CharRnnSizes) -> tf.keras.Model:
  model = sh.create_char_rnn(**sizes._asdict())
  model.compile(loss=sh.MaskedSparseCategoricalCrossentropy(),
                metrics=[sh.FlattenedCategoricalAccuracy()])
  return model


def build_shakespeare_task(pretrained: tf.keras.Model, *, cache_dir: str | None,
                           epochs: int = 1, max_batches: int | None = None,
                           pad_short_clients: bool = False, max_eval_batches: int = 60,
                           seed: int = 0) -> ShakespeareSetup:
  """Shakespeare clients + the pretrained model's architecture, ready for the loop."""
  if epochs < 1:
    raise ValueError(f"--client_epochs must be >= 1, got {epochs}")
  if max_batches is not None and max_batches < 1:
    raise ValueError(f"--max_batches_per_client must be >= 1, got {max_batches}")
  train, test = sh.load_shakespeare(cache_dir)
  sizes = sh.char_rnn_sizes(pretrained)
  # Taken now, as plain arrays: once a TFF process is built, Keras objects created
  # before it need `restore_keras_v2_classes` to work again.
  initial_weights = tff.learning.models.ModelWeights(
      trainable=[w.numpy() for w in pretrained.trainable_weights],
      non_trainable=[w.numpy() for w in pretrained.non_trainable_weights])

  def client_dataset(client_id: str, round_num: int) -> tf.data.Dataset:
    data = sh.preprocess(train.create_tf_dataset_for_client(client_id),
                         seed=seed * 100_003 + round_num, pad_short_clients=pad_short_clients,
                         max_batches=max_batches)
    return data.repeat(epochs)

  # Held-out test snippets in a fixed order (no shuffle, and a fixed client order: TFF
  # joins the clients in a random order without a seed), so every round of every run,
  # whatever its --seed, is evaluated on the same windows.
  test_dataset = sh.preprocess(
      test.create_tf_dataset_from_all_clients(seed=_EVAL_CLIENT_ORDER_SEED), shuffle_buffer=1,
      max_batches=max_eval_batches).cache()
  input_spec = test_dataset.element_spec

  def model_fn() -> tff.learning.models.VariableModel:
    return tff.learning.models.from_keras_model(
        sh.create_char_rnn(**sizes._asdict()), input_spec=input_spec,
        loss=sh.MaskedSparseCategoricalCrossentropy(),
        metrics=[sh.FlattenedCategoricalAccuracy()])

  task = FederatedTask(name="shakespeare", client_ids=list(train.client_ids),
                       client_dataset=client_dataset, test_dataset=test_dataset,
                       model_fn=model_fn, keras_model_fn=lambda: _compiled(sizes),
                       input_spec=input_spec)
  return ShakespeareSetup(task, train, sizes, initial_weights)


def finish(model_weights: tff.learning.models.ModelWeights, sizes: sh.CharRnnSizes,
           run_dir: str, *, prompt: str, temperature: float, num_generate: int,
           seed: int | None) -> str:
  """Saves the fine-tuned model and `generated.txt`; returns the generated text."""
  model = sh.create_char_rnn(**sizes._asdict())
  restore_keras_v2_classes(model)
  model_weights.assign_weights_to(model)
  model.save(os.path.join(run_dir, "final_model.keras"))
  generator = sh.create_generation_model(model)
  text = sh.generate_text(generator, prompt, num_generate=num_generate,
                          temperature=temperature, seed=seed)
  with open(os.path.join(run_dir, "generated.txt"), "w") as f:
    f.write(text + "\n")
  return text


@dataclasses.dataclass
class FinetuneResult:
  experiment: object
  sanity: sh.SanityCheck
  pretrained_eval: sh.Evaluation
  generated: str


def run_finetune(config, *, pretrained_path: str, cache_dir: str | None, epochs: int = 1,
                 max_batches: int | None = None, pad_short_clients: bool = False,
                 max_eval_batches: int = 60, sanity_client: str | None = None,
                 prompt: str = "What of TensorFlow Federated, you ask? ",
                 temperature: float = 1.0, num_generate: int = 200,
                 generate_seed: int | None = 0, log=print) -> FinetuneResult:
  """The whole tutorial: load, sanity-check, fine-tune with FedAvg, evaluate, generate.

  Args:
    config: the `fedcompress.experiment.ExperimentConfig` of the federated run.
    pretrained_path: Keras model file of the pretrained character RNN.
    cache_dir: folder with (or to download) shakespeare.sqlite.
    epochs, max_batches, pad_short_clients: client data (see `build_shakespeare_task`).
    max_eval_batches: test windows evaluated after each round.
    sanity_client: client of the initial sanity check (default: the first fixed client,
      else the first client with enough text).
    prompt, temperature, num_generate, generate_seed: text generation at the end.
    log: where progress lines go.
  """
  import json

  from fedcompress.harness.experiment import check_run_dir, run_experiment

  sh.text_to_ids(prompt, oov="error")  # Fails now, not after training, on a bad prompt.
  if num_generate < 0 or temperature <= 0:
    raise ValueError("--num_generate must be >= 0 and --temperature > 0")
  pretrained = load_pretrained(pretrained_path)
  check_run_dir(config)
  setup = build_shakespeare_task(pretrained, cache_dir=cache_dir, epochs=epochs,
                                 max_batches=max_batches, pad_short_clients=pad_short_clients,
                                 max_eval_batches=max_eval_batches, seed=config.seed)
  client = sanity_client or (config.fixed_clients[0] if config.fixed_clients else
                             "THE_TRAGEDY_OF_KING_LEAR_KING")
  if client not in set(setup.task.client_ids):
    raise ValueError(f"unknown client id: {client}")
  sanity = sh.sanity_check(pretrained, setup.train.create_tf_dataset_for_client(client),
                           pad_short_clients=True)
  log(f"sanity check: pretrained accuracy {sanity.client_accuracy:.4f} on {client}, "
      f"{sanity.random_accuracy:.4f} on random text (chance {sanity.expected_random_accuracy:.4f})")
  pretrained_eval = sh.evaluate(pretrained, setup.task.test_dataset)
  log(f"pretrained model on {pretrained_eval.num_batches} test batches: "
      f"loss {pretrained_eval.loss:.4f}, accuracy {pretrained_eval.accuracy:.4f}")
  result = run_experiment(setup.task, config, initial_weights=setup.initial_weights)
  with open(os.path.join(config.run_dir, "pretrained_eval.json"), "w") as f:
    json.dump({"sanity_client": client, "sanity": sanity._asdict(),
               "pretrained_eval": pretrained_eval._asdict()}, f, indent=2)
  weights = result.process.get_model_weights(result.loop.state)
  generated = finish(weights, setup.sizes, config.run_dir, prompt=prompt,
                     temperature=temperature, num_generate=num_generate, seed=generate_seed)
  return FinetuneResult(result, sanity, pretrained_eval, generated)
