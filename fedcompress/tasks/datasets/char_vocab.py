"""The character vocabulary of TFF's text-generation tutorial, and its ids.

Ids. The vocabulary is the tutorial's 86 characters in its exact order, so a model
pretrained for the tutorial (or by `experiments/pretrain_char_rnn.py`) sees the same
ids. The tutorial maps characters with
`tf.lookup.StaticHashTable(KeyValueTensorInitializer(vocab, range(86)), default_value=0)`:
an unknown byte becomes id 0 (the character 'd'); there is no out-of-vocabulary bucket,
so the model has exactly 86 classes (Embedding(86, .), Dense(86)). `PAD_ID` = 86 is
outside the model's classes on purpose: it only ever appears in *targets*, where loss
and accuracy mask it out. Input positions that are padding hold id 0, which is harmless
because the GRU is causal: an input pad at position t can only influence predictions at
positions >= t, and every one of those has a pad target (see
`fedcompress.tasks.datasets.shakespeare.preprocess`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# The tutorial's "fixed vocabulary of ASCII chars that occur in the works of Shakespeare
# and Dickens", in its order (the order defines the ids of the pretrained model).
VOCAB = ("dhlptx@DHLPTX $(,048cgkoswCGKOSW[_#'/37;?bfjnrvzBFJNRVZ\"&*.26:\n"
         "aeimquyAEIMQUY]!%)-159\r")
VOCAB_SIZE = len(VOCAB)  # 86: the model's number of classes.
OOV_ID = 0  # The tutorial's `default_value=0`: unknown bytes read as 'd'.
PAD_ID = VOCAB_SIZE  # 86: a target that is padding; never a class of the model.

CHAR2IDX = {c: i for i, c in enumerate(VOCAB)}
IDX2CHAR = np.array(list(VOCAB))

assert VOCAB_SIZE == 86 and len(CHAR2IDX) == 86, "the tutorial's vocabulary has 86 chars"


def build_char_table() -> tf.lookup.StaticHashTable:
  """The tutorial's char -> id table (unknown bytes -> `OOV_ID`).

  Built per call so it lives in whichever graph or eager context the caller is in
  (TFF traces dataset functions in its own graphs).
  """
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          keys=list(VOCAB), values=tf.constant(list(range(VOCAB_SIZE)), dtype=tf.int64)),
      default_value=OOV_ID)


def text_to_ids(text: str, *, oov: str = "map") -> np.ndarray:
  """Ids of `text` (int64), a pure-Python mirror of the table for pretraining/prompts.

  Args:
    text: the characters.
    oov: what to do with characters outside `VOCAB`: "map" to `OOV_ID` as the tutorial's
      table does, "drop" them, or "error" (ValueError naming them).
  """
  if oov == "map":
    ids = [CHAR2IDX.get(c, OOV_ID) for c in text]
  elif oov == "drop":
    ids = [CHAR2IDX[c] for c in text if c in CHAR2IDX]
  elif oov == "error":
    unknown = sorted({c for c in text if c not in CHAR2IDX})
    if unknown:
      raise ValueError(f"characters not in the vocabulary: {unknown!r}")
    ids = [CHAR2IDX[c] for c in text]
  else:
    raise ValueError(f"oov must be one of ['drop', 'error', 'map'], got {oov!r}")
  return np.asarray(ids, dtype=np.int64)


def ids_to_text(ids) -> str:
  """Characters of `ids`; pad ids are skipped."""
  return "".join(IDX2CHAR[i] for i in np.asarray(ids).reshape(-1) if 0 <= i < VOCAB_SIZE)


def random_text(num_chars: int, seed: int | None = 0) -> str:
  """Characters drawn uniformly from `VOCAB` (the tutorial's random-data check)."""
  rng = np.random.default_rng(seed)
  return "".join(IDX2CHAR[rng.integers(0, VOCAB_SIZE, size=num_chars)])

