r"""Pretrains the Shakespeare tutorial's character RNN on plain text and saves it.

A small model in minutes on a CPU, on the Dickens texts the tutorial's model saw:

  D=../shared/data/text
  python experiments/pretrain_char_rnn.py \
    --text_files=$D/a_tale_of_two_cities.txt,$D/a_christmas_carol.txt \
    --embedding_dim=64 --rnn_units=256 --epochs=3 --steps_per_epoch=100 \
    --output=/tmp/char_rnn_small.keras

`--text_urls=https://...,https://...` downloads texts into `--cache_dir` instead (once).
"""

from __future__ import annotations

from fedcompress.harness import cli

# Before TensorFlow loads: it reads its log level only then, and a Ctrl-C while it
# does is one line.
cli.start_binary(__name__)

from absl import app, flags

import fedcompress
from fedcompress.harness.cli import fail, interruptible, parse_flags
from fedcompress.harness.flags import NUMBER_FLAGS, add_number_checks
from fedcompress.tasks.datasets.text import TextInputError
from fedcompress.tasks.models import pretrain

# Nothing here runs a federated computation, but TFF is imported (through
# fedcompress.harness.flags) and with it TFF 0.87's own default context, whose worker manager's
# __del__ uses `subprocess` after interpreter teardown has cleared it: an "Exception
# ignored ... AttributeError" under the one error line of a flag error. Our runtime
# replaces that context now, while modules are alive; it starts no worker until a
# computation runs, so here it never does.
fedcompress.install_runtime()

_TEXT_FILES = flags.DEFINE_list("text_files", [], "Text files to train on (comma-separated).")
_TEXT_URLS = flags.DEFINE_list("text_urls", [], "Texts to download and train on.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", pretrain.DEFAULT_CACHE_DIR,
                                 "Where --text_urls downloads are kept.")
_EMBEDDING_DIM = flags.DEFINE_integer("embedding_dim", 256, "Embedding width.")
_RNN_UNITS = flags.DEFINE_integer("rnn_units", 1024, "GRU units.")
_EPOCHS = flags.DEFINE_integer("epochs", 1, "Training epochs.")
_STEPS_PER_EPOCH = flags.DEFINE_integer(
    "steps_per_epoch", None, "Steps per epoch (cycling through the text); default: one pass.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Windows per step.")
_SEQ_LENGTH = flags.DEFINE_integer("seq_length", 100, "Characters per input window.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Initializer and shuffle seed.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 50, "Progress line every this many steps.")
_OUTPUT = flags.DEFINE_string("output", None, "Model file to write (.keras or .h5).")
add_number_checks(flags.FLAGS, [name for name in NUMBER_FLAGS if name in flags.FLAGS])


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    return fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    result = pretrain.pretrain_char_rnn(
        output=_OUTPUT.value, text_files=_TEXT_FILES.value, text_urls=_TEXT_URLS.value,
        cache_dir=_CACHE_DIR.value, embedding_dim=_EMBEDDING_DIM.value,
        rnn_units=_RNN_UNITS.value, epochs=_EPOCHS.value,
        steps_per_epoch=_STEPS_PER_EPOCH.value, batch_size=_BATCH_SIZE.value,
        seq_length=_SEQ_LENGTH.value, learning_rate=_LEARNING_RATE.value, seed=_SEED.value,
        log_every=_LOG_EVERY.value, log=lambda line: print(line, flush=True))
  except (TextInputError, pretrain.PretrainConfigError) as e:
    return fail(str(e))
  print(f"done: {result.steps} steps in {result.train_time_s:.1f}s, final loss "
        f"{result.final_loss:.4f}, accuracy {result.final_accuracy:.4f} -> {result.output}")
  return 0


if __name__ == "__main__":
  flags.mark_flag_as_required("output")
  app.run(interruptible(main), flags_parser=parse_flags)
