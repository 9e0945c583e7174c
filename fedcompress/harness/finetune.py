"""Federated fine-tuning of a pretrained character RNN on Shakespeare (TFF tutorial 2).

`run_finetune` loads the pretrained model, builds the task
(`fedcompress.tasks.shakespeare`), runs the tutorial's sanity check, the federated
rounds (`run_experiment`) and finally text generation with the fine-tuned weights.
With `model=` instead of a pretrained file it trains that model from scratch (the FedOpt
protocol), without the sanity check of a pretrained model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence

import tensorflow as tf

from fedcompress.harness import rundir
from fedcompress.harness.experiment import (
  ExperimentConfig,
  check_experiment,
  check_run_dir,
  run_experiment,
)
from fedcompress.tasks.datasets.char_vocab import text_to_ids
from fedcompress.tasks.errors import DataReadError
from fedcompress.tasks.shakespeare import (
  Evaluation,
  NoTargetError,
  SanityCheck,
  build_shakespeare_task,
  create_model,
  evaluate,
  finish,
  load_pretrained,
  pretrained_fingerprint,
  sanity_check,
)


@dataclasses.dataclass
class FinetuneResult:
  experiment: object
  sanity: SanityCheck | None  # None when trained from scratch.
  pretrained_eval: Evaluation | None
  generated: str


def _refuse_short_clients(task, clients, padded: bool = False) -> None:
  """Refuses listed clients shorter than one batch of windows, under uniform weights.

  Such a client trains on nothing (335 of the 715 at the tutorial's settings). Under
  example weights it weighs 0 and is counted as rejected; under uniform weights TFF
  gave its zero update a weight of 1, pulling the mean toward no step without a word
  (eval loss 4.3043 with one such client beside a real one, against 4.1543 for the real
  one alone). Sampled clients are refused before this (any may be short); a listed
  client is read here, its first batch only.
  """
  short = []
  for client in clients:
    try:
      if next(iter(task.client_dataset(client, 1).take(1)), None) is None:
        short.append(client)
    except (tf.errors.OpError, UnicodeDecodeError) as e:  # Read here, on the driver.
      raise DataReadError(f"the length check of {client}", e) from e
  if short and padded:
    raise ValueError(f"--clients {', '.join(short)}: no window of text even padded, so "
                     "under --client_weighting=uniform each would add a zero update to the "
                     "mean: list other clients")
  if short:
    raise ValueError(f"--clients {', '.join(short)}: shorter than one batch of windows, so "
                     "under --client_weighting=uniform each would add a zero update to the "
                     "mean: pass --pad_short_clients, or list other clients")


def check_uniform_weighting(client_weighting: str, pad_short_clients: bool,
                            fixed_clients: Sequence[str] | None) -> None:
  """Refuses uniform client weights over sampled Shakespeare clients without padding."""
  if client_weighting == "uniform" and not pad_short_clients and not fixed_clients:
    raise ValueError("--client_weighting=uniform counts every sampled client once, and a "
                     "client shorter than one batch of windows would add a zero update to "
                     "the mean: pass --pad_short_clients")


def run_finetune(config: ExperimentConfig, *, pretrained_path: str | None,
                 cache_dir: str | None, model: str | None = None, epochs: int = 1,
                 batch_size: int = 8, seq_length: int = 100,
                 max_batches: int | None = None, pad_short_clients: bool = False,
                 max_eval_batches: int = 60, sanity_client: str | None = None,
                 prompt: str = "What of TensorFlow Federated, you ask? ",
                 temperature: float = 1.0, num_generate: int = 200,
                 generate_seed: int | None = 0, log=print) -> FinetuneResult:
  """The whole tutorial: load, sanity-check, fine-tune with FedAvg, evaluate, generate.

  Args:
    config: the `ExperimentConfig` of the federated run.
    pretrained_path: Keras model file of the pretrained character RNN; or None, with
      `model`.
    cache_dir: folder with (or to download) shakespeare.sqlite.
    model: a `SHAKESPEARE_MODELS` name to train from scratch (seeded by `config.seed`)
      instead of a pretrained file.
    epochs, max_batches, pad_short_clients, batch_size, seq_length: client data (see
      `build_shakespeare_task`).
    max_eval_batches: test windows evaluated after each round.
    sanity_client: client of the initial sanity check (default: the first fixed client,
      else THE_TRAGEDY_OF_KING_LEAR_KING, the tutorial's).
    prompt, temperature, num_generate, generate_seed: text generation at the end.
    log: where progress lines go.
  """
  # Fails now, not after training, on a bad prompt.
  if not prompt:
    raise ValueError("--generate_prompt must not be empty: the text generated after the "
                     "rounds starts from it")
  try:
    text_to_ids(prompt, oov="error")
  except ValueError as e:
    raise ValueError(f"--generate_prompt: {e}") from None
  if num_generate < 0 or not (temperature > 0 and math.isfinite(temperature)):
    raise ValueError(f"--num_generate must be >= 0 and --temperature a finite number > 0, "
                     f"got {num_generate} and {temperature}")
  if (pretrained_path is None) == (model is None):
    raise ValueError("give either --pretrained_model or a --model to train from scratch")
  check_uniform_weighting(config.client_weighting, pad_short_clients, config.fixed_clients)
  if pretrained_path is not None and rundir.PRETRAINED_DIGEST not in config.recorded:
    # A library caller's config: the run is tied to the model's content as the
    # binary's is (shakespeare_config_from_flags).
    # With the path, as the binary's record has it: a run recorded by the file's bytes
    # (before the model was taken by its weights) is compared through it, and was
    # refused on the very same file without it (review R9 of s48).
    digest = pretrained_fingerprint(pretrained_path)
    config = dataclasses.replace(config, recorded={
        "pretrained_model": pretrained_path, **config.recorded,
        rundir.PRETRAINED_DIGEST: digest})
  start = (load_pretrained(pretrained_path) if pretrained_path is not None
           else create_model(model, seed=config.seed))
  if not config.resume:
    # A taken folder is refused before the task is built. A resume is compared once the
    # task is (check_experiment below): the record holds the task's settings, which win
    # over the flags' (a config from flags given other epochs here was refused).
    check_run_dir(config)
  setup = build_shakespeare_task(start, cache_dir=cache_dir, epochs=epochs,
                                 max_batches=max_batches, pad_short_clients=pad_short_clients,
                                 max_eval_batches=max_eval_batches, seed=config.seed,
                                 batch_size=batch_size, seq_length=seq_length)
  client = sanity_client or (config.fixed_clients[0] if config.fixed_clients else
                             "THE_TRAGEDY_OF_KING_LEAR_KING")
  if pretrained_path is not None and client not in set(setup.task.client_ids):
    # The flag that named it: --sanity_client, or by default the first of --clients, or
    # without those, --sanity_client's own default (the tutorial's).
    named_by = ("--sanity_client" if sanity_client or not config.fixed_clients
                else "--clients")
    default = "" if sanity_client or config.fixed_clients else " (its default)"
    raise ValueError(f"{named_by}: unknown client id: {client}{default}")
  check_experiment(setup.task, config)
  if config.client_weighting == "uniform" and config.fixed_clients:
    # Padded too: a client with no window even padded (one character, or empty
    # snippets: a last window of one character is dropped) trains on nothing.
    _refuse_short_clients(setup.task, config.fixed_clients, padded=pad_short_clients)
  sanity = pretrained_eval = None
  if pretrained_path is not None:  # A model from scratch would only show chance here.
    try:
      sanity = sanity_check(start, setup.train.create_tf_dataset_for_client(client),
                            seq_length=seq_length, pad_short_clients=True)
    except (tf.errors.OpError, UnicodeDecodeError) as e:  # Read here, on the driver.
      raise DataReadError(f"the sanity check on {client}", e) from e
    except NoTargetError:
      raise ValueError(
          f"{'--sanity_client ' if sanity_client else 'the sanity check on client '}{client}: "
          "no window of text even padded to check the pretrained model on: name another "
          "client with --sanity_client") from None
    log(f"sanity check: pretrained accuracy {sanity.client_accuracy:.4f} on {client}, "
        f"{sanity.random_accuracy:.4f} on random text (chance "
        f"{sanity.expected_random_accuracy:.4f})")
    try:
      pretrained_eval = evaluate(start, setup.task.test_dataset)
    except (tf.errors.OpError, UnicodeDecodeError) as e:
      raise DataReadError("the pretrained model's evaluation on the test split", e) from e
    log(f"pretrained model on {pretrained_eval.num_batches} test batches: "
        f"loss {pretrained_eval.loss:.4f}, accuracy {pretrained_eval.accuracy:.4f}")
  # One lock from the first round to the generated text (run_experiment takes it too).
  with rundir.lock_run_dir(config.run_dir):
    result = run_experiment(setup.task, config, initial_weights=setup.initial_weights)
    if sanity is not None:
      with open(os.path.join(config.run_dir, "pretrained_eval.json"), "w") as f:
        json.dump({"sanity_client": client, "sanity": sanity._asdict(),
                   "pretrained_eval": pretrained_eval._asdict()}, f, indent=2)
    weights = result.process.get_model_weights(result.loop.state)
    generated = finish(weights, setup.model_config, config.run_dir, prompt=prompt,
                       temperature=temperature, num_generate=num_generate,
                       seed=generate_seed)
  return FinetuneResult(result, sanity, pretrained_eval, generated)
