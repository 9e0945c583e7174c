"""Centralized pretraining of the Shakespeare tutorial's character RNN on plain text.

The tutorial fine-tunes a model that was pretrained on Dickens (A Tale of Two Cities and
A Christmas Carol) with TensorFlow's "text generation with an RNN" recipe. This module is
that recipe with flags for size and time, so a small model pretrains in minutes on a CPU
and a full-size one reproduces the tutorial's starting point. The saved file is a plain
uncompiled Keras model that `tf.keras.models.load_model(path, compile=False)` loads.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from fedcompress.tasks.datasets import char_vocab, shakespeare
from fedcompress.tasks.datasets.text import (
  TextInputError,
  download_texts,
  fold_to_ascii,
  read_text_file,
)
from fedcompress.tasks.models import char_rnn

DEFAULT_CACHE_DIR = "~/.cache/fedcompress/text"
SAVE_SUFFIXES = (".keras", ".h5")


class PretrainConfigError(ValueError):
  """An argument of `pretrain_char_rnn` is unusable (reported before any training)."""


@dataclasses.dataclass(frozen=True)
class PretrainResult:
  """What a pretraining run did."""
  output: pathlib.Path
  num_chars: int  # Characters trained on (after folding, without the dropped ones).
  num_dropped_chars: int  # Characters outside the vocabulary, left out.
  steps: int  # Optimizer steps taken.
  final_loss: float  # Mean training loss over the last epoch.
  final_accuracy: float  # Mean training character accuracy over the last epoch.
  train_time_s: float  # Wall time of `fit` alone.
  history: dict[str, list[float]]


def make_pretraining_dataset(ids: np.ndarray, *, batch_size: int, seq_length: int,
                             seed: int | None, repeat: bool,
                             shuffle_buffer: int = 10_000) -> tf.data.Dataset:
  """Windows of `seq_length + 1` ids, shuffled, batched, split into (input, target).

  The recipe of TensorFlow's text-generation tutorial (buffer 10,000, drop remainders).
  """
  ds = tf.data.Dataset.from_tensor_slices(ids).batch(seq_length + 1, drop_remainder=True)
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=True).map(shakespeare.split_input_target)
  if repeat:
    ds = ds.repeat()
  return ds.prefetch(tf.data.AUTOTUNE)


class _Progress(tf.keras.callbacks.Callback):
  """One line every `every` steps and at each epoch end (Keras' bar is unusable in logs)."""

  def __init__(self, log: Callable[[str], None], every: int, steps_per_epoch: int,
               epochs: int):
    super().__init__()
    self._log, self._every = log, max(1, every)
    self._steps, self._epochs = steps_per_epoch, epochs
    self._epoch = 0
    self._start = time.monotonic()

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    step = batch + 1
    if step % self._every == 0 and step != self._steps:
      self._line(step, logs)

  def on_epoch_end(self, epoch, logs=None):
    self._line(self._steps, logs)

  def _line(self, step, logs):
    logs = logs or {}
    self._log(f"epoch {self._epoch + 1}/{self._epochs} step {step}/{self._steps} "
              f"loss={logs.get('loss', float('nan')):.4f} "
              f"accuracy={logs.get('accuracy', float('nan')):.4f} "
              f"({time.monotonic() - self._start:.1f}s)")


def _load_ids(paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, int]:
  """Ids of the folded texts, one newline between files, and the count of dropped chars.

  Each file is checked on its own: one whose characters are all outside the vocabulary
  (a wrong file, another script) is an error rather than silently contributing nothing.
  """
  parts, dropped = [], 0
  newline = np.array([char_vocab.CHAR2IDX["\n"]], np.int64)
  for path in paths:
    text = fold_to_ascii(read_text_file(path))
    ids = char_vocab.text_to_ids(text, oov="drop")
    if len(ids) == 0:
      raise TextInputError(f"none of the {len(text):,} characters of {os.fspath(path)} is in "
                           f"the {char_vocab.VOCAB_SIZE}-character vocabulary")
    dropped += len(text) - len(ids)
    if parts and parts[-1][-1] != newline[0]:
      parts.append(newline)
    parts.append(ids)
  return np.concatenate(parts), dropped


def _check_config(output, epochs, steps_per_epoch, batch_size, seq_length, learning_rate,
                  embedding_dim, rnn_units, text_files, text_urls):
  if not text_files and not text_urls:
    raise PretrainConfigError("give at least one of --text_files or --text_urls")
  for name, listed in (("text_files", text_files), ("text_urls", text_urls)):
    # absl splits `a.txt,` into ['a.txt', '']; the empty path was read as the folder '.'.
    if any(not os.fspath(entry).strip() for entry in listed or ()):
      raise PretrainConfigError(f"--{name} lists an empty entry (a trailing or doubled "
                                "comma?)")
  if pathlib.Path(output).suffix not in SAVE_SUFFIXES:
    raise PretrainConfigError(f"--output must end in one of {list(SAVE_SUFFIXES)}, "
                              f"got {os.fspath(output)!r}")
  for name, value in [("epochs", epochs), ("batch_size", batch_size),
                      ("seq_length", seq_length), ("embedding_dim", embedding_dim),
                      ("rnn_units", rnn_units)]:
    if value < 1:
      raise PretrainConfigError(f"--{name} must be >= 1, got {value}")
  if steps_per_epoch is not None and steps_per_epoch < 1:
    raise PretrainConfigError(f"--steps_per_epoch must be >= 1, got {steps_per_epoch}")
  # NaN fails every comparison, so `not > 0` catches it; inf would train to NaN weights.
  if not 0 < learning_rate < float("inf"):
    raise PretrainConfigError(f"--learning_rate must be a finite number > 0, got {learning_rate}")


def _check_writable(output: pathlib.Path) -> None:
  """Creates `output`'s folder and checks a file can be written there."""
  if output.is_dir():
    raise PretrainConfigError(f"--output {output} is a folder; give a file name in it")
  try:
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".write-check-"):
      pass
  except OSError as e:
    raise PretrainConfigError(f"--output {output}: cannot write in {output.parent} "
                              f"({e.strerror or e})") from None


def pretrain_char_rnn(*, output: str | os.PathLike[str],
                      text_files: Sequence[str | os.PathLike[str]] = (),
                      text_urls: Sequence[str] = (),
                      cache_dir: str | os.PathLike[str] = DEFAULT_CACHE_DIR,
                      embedding_dim: int = 256, rnn_units: int = 1024, epochs: int = 1,
                      steps_per_epoch: int | None = None, batch_size: int = 64,
                      seq_length: int = shakespeare.SEQ_LENGTH, learning_rate: float = 1e-3,
                      seed: int = 0, log_every: int = 50,
                      log: Callable[[str], None] = print) -> PretrainResult:
  """Trains the character RNN on text files and/or URLs and saves it.

  Text is decoded robustly and folded to ASCII (`fedcompress.tasks.datasets.text`); characters
  still outside the tutorial's vocabulary are dropped (rather than read as 'd' the way
  the tutorial's table reads unknown bytes) and counted. Training is Adam on softmax
  cross-entropy over windows of `seq_length + 1` characters, as in TensorFlow's
  text-generation tutorial.

  Args:
    output: the model file to write, ending in .keras (native) or .h5; parents are created.
    text_files: local text files.
    text_urls: texts to download into `cache_dir` (kept for later runs).
    cache_dir: download cache.
    embedding_dim: embedding width (256 in the tutorial).
    rnn_units: GRU units (1024 in the tutorial).
    epochs: training epochs.
    steps_per_epoch: steps per epoch, cycling through the text as needed; None is one
      pass over the text per epoch.
    batch_size: windows per step.
    seq_length: characters per input window.
    learning_rate: Adam's learning rate.
    seed: initializers and shuffling.
    log_every: a progress line every this many steps.
    log: where progress lines go.

  Returns:
    A `PretrainResult`.

  Raises:
    PretrainConfigError: a bad argument.
    TextInputError: a missing/undownloadable text, or text with too few usable characters.
  """
  _check_config(output, epochs, steps_per_epoch, batch_size, seq_length, learning_rate,
                embedding_dim, rnn_units, text_files, text_urls)
  output = pathlib.Path(output).expanduser()
  _check_writable(output)  # Before training: a bad path must not cost the training.
  paths = list(text_files) + list(download_texts(list(text_urls), cache_dir, log=log))
  ids, dropped = _load_ids(paths)
  names = ", ".join(os.fspath(p) for p in paths)
  windows = len(ids) // (seq_length + 1)
  batches_per_pass = windows // batch_size
  if batches_per_pass == 0:
    raise TextInputError(
        f"{names} has {len(ids):,} usable characters, fewer than one batch needs "
        f"(batch_size * (seq_length + 1) = {batch_size * (seq_length + 1):,})")
  steps = steps_per_epoch or batches_per_pass
  log(f"text: {len(ids):,} characters from {len(paths)} file(s) ({dropped:,} outside the "
      f"vocabulary dropped); {batches_per_pass:,} batches of {batch_size}x{seq_length} per "
      f"pass; training {epochs} epoch(s) x {steps} steps")

  dataset = make_pretraining_dataset(ids, batch_size=batch_size, seq_length=seq_length,
                                     seed=seed, repeat=steps_per_epoch is not None)
  model = char_rnn.create_char_rnn(embedding_dim=embedding_dim, rnn_units=rnn_units,
                                      seed=seed)
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                loss=char_rnn.MaskedSparseCategoricalCrossentropy(),
                metrics=[char_rnn.FlattenedCategoricalAccuracy()])
  start = time.monotonic()
  history = model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0,
                      callbacks=[_Progress(log, log_every, steps, epochs)])
  train_time = time.monotonic() - start

  # Saved without optimizer or compile state, like the tutorial's model
  # (`save_model(include_optimizer=False)`), which the native format does not offer:
  # copy the weights into a fresh uncompiled model instead.
  plain = char_rnn.copy_weights(
      model, char_rnn.create_char_rnn(embedding_dim=embedding_dim, rnn_units=rnn_units))
  output.parent.mkdir(parents=True, exist_ok=True)
  with warnings.catch_warnings():
    # .h5 is asked for explicitly when used; Keras' "legacy format" advice is noise then.
    warnings.filterwarnings("ignore", message=".*HDF5 file.*")
    plain.save(output)
  log(f"saved {output} ({output.stat().st_size:,} bytes)")
  return PretrainResult(
      output=output, num_chars=len(ids), num_dropped_chars=dropped, steps=epochs * steps,
      final_loss=float(history.history["loss"][-1]),
      final_accuracy=float(history.history["accuracy"][-1]),
      train_time_s=train_time,
      history={k: [float(v) for v in vs] for k, vs in history.history.items()})
