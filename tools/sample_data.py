"""Small built-in samples for running the Shakespeare tutorial with no download.

The notebooks and their tests must run where neither federated Shakespeare nor the
Dickens texts can be fetched. This module holds two short public-domain passages and
writes them in the formats the real pipeline reads, so nothing downstream is special-cased:

* `write_sample_shakespeare_sqlite` writes a `shakespeare.sqlite` with TFF's own writer
  (`tff.simulation.datasets.save_to_sql_client_data`) in the schema of the published
  dataset (`OrderedDict(snippets=<scalar tf.string>)`, splits `train` and `test`), so
  `fedcompress.tasks.datasets.shakespeare.load_shakespeare(cache_dir=<its folder>)` loads it. Its
  training clients are named like the real ones the tutorial uses (its two fixed
  clients and the sanity-check client), so the tutorial's settings work on it unchanged.
* `write_sample_text` writes a Dickens passage for pretraining the character RNN.
* `write_random_emnist_sqlite` writes an `emnist_all.sqlite` of random images in the
  published schema (`label` int64, `pixels` 28x28 float32), for runs of the EMNIST path.

The samples are tiny: they exercise the code paths, they do not train a useful model.
"""

from __future__ import annotations

import collections
import os
import pathlib
from collections.abc import Sequence

# Hamlet, Act III, Scene 1 (Shakespeare, 1603; public domain).
SHAKESPEARE_PASSAGE = """\
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die--to sleep,
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to: 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep, perchance to dream--ay, there's the rub:
For in that sleep of death what dreams may come,
When we have shuffled off this mortal coil,
Must give us pause--there's the respect
That makes calamity of so long life.
For who would bear the whips and scorns of time,
Th'oppressor's wrong, the proud man's contumely,
The pangs of dispriz'd love, the law's delay,
The insolence of office, and the spurns
That patient merit of th'unworthy takes,
When he himself might his quietus make
With a bare bodkin? Who would fardels bear,
To grunt and sweat under a weary life,
But that the dread of something after death,
The undiscover'd country, from whose bourn
No traveller returns, puzzles the will,
And makes us rather bear those ills we have
Than fly to others that we know not of?
Thus conscience does make cowards of us all,
And thus the native hue of resolution
Is sicklied o'er with the pale cast of thought,
And enterprises of great pith and moment
With this regard their currents turn awry
And lose the name of action.
"""

# A Tale of Two Cities, Book I, Chapter I (Dickens, 1859; public domain).
DICKENS_PASSAGE = """\
It was the best of times, it was the worst of times, it was the age of wisdom, it was
the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it
was the season of Light, it was the season of Darkness, it was the spring of hope, it
was the winter of despair, we had everything before us, we had nothing before us, we
were all going direct to Heaven, we were all going direct the other way--in short, the
period was so far like the present period, that some of its noisiest authorities
insisted on its being received, for good or for evil, in the superlative degree of
comparison only.

There were a king with a large jaw and a queen with a plain face, on the throne of
England; there were a king with a large jaw and a queen with a fair face, on the throne
of France. In both countries it was clearer than crystal to the lords of the State
preserves of loaves and fishes, that things in general were settled for ever.
"""

# Training clients: the tutorial's two fixed clients, its sanity-check client, and two
# more so that sampling a few clients per round has a choice.
SAMPLE_TRAIN_CLIENTS = ("ALL_S_WELL_THAT_ENDS_WELL_CELIA", "MUCH_ADO_ABOUT_NOTHING_OTHELLO",
                        "THE_TRAGEDY_OF_KING_LEAR_KING", "HAMLET_PRINCE_OF_DENMARK_HAMLET",
                        "THE_TEMPEST_PROSPERO")
SAMPLE_TEST_CLIENTS = ("HAMLET_PRINCE_OF_DENMARK_HORATIO",)
# Characters one client needs for two unpadded batches of the tutorial's preprocessing
# (8 windows of 100 + 1 characters each), so every client trains without padding.
DEFAULT_MIN_CHARS = 2 * 8 * 101


def client_snippets(text: str, num_clients: int, min_chars: int) -> list[list[str]]:
  """Deals the non-empty lines of `text` round-robin to clients, each cycled to `min_chars`.

  Args:
    text: the passage; each non-empty line becomes a snippet (with its newline).
    num_clients: how many clients.
    min_chars: each client's snippets are repeated until they total at least this many
      characters.

  Returns:
    One list of snippets per client.

  Raises:
    ValueError: fewer non-empty lines than clients, or a non-positive count.
  """
  if num_clients < 1 or min_chars < 1:
    raise ValueError(f"num_clients and min_chars must be >= 1, got {num_clients}, {min_chars}")
  lines = [line + "\n" for line in text.splitlines() if line.strip()]
  if len(lines) < num_clients:
    raise ValueError(f"the text has {len(lines)} non-empty lines, fewer than the "
                     f"{num_clients} clients that need one each")
  clients = []
  for c in range(num_clients):
    own = lines[c::num_clients]
    snippets, size = [], 0
    while size < min_chars:
      line = own[len(snippets) % len(own)]
      snippets.append(line)
      size += len(line)
    clients.append(snippets)
  return clients


def write_sample_shakespeare_sqlite(
    path: str | os.PathLike[str], *, text: str = SHAKESPEARE_PASSAGE,
    train_clients: Sequence[str] = SAMPLE_TRAIN_CLIENTS,
    test_clients: Sequence[str] = SAMPLE_TEST_CLIENTS,
    min_chars_per_client: int = DEFAULT_MIN_CHARS, overwrite: bool = False) -> pathlib.Path:
  """Writes a small federated Shakespeare in TFF's format to `path`.

  Pass a path ending in `shakespeare.sqlite` and give its folder as `cache_dir` to
  `fedcompress.tasks.datasets.shakespeare.load_shakespeare` (or TFF's `shakespeare.load_data`).

  Args:
    path: the sqlite file to write; parent folders are created.
    text: the passage dealt to clients (see `client_snippets`).
    train_clients: ids of the clients of the `train` split.
    test_clients: ids of the clients of the `test` split.
    min_chars_per_client: characters each client gets at least.
    overwrite: replace an existing file (otherwise FileExistsError, as TFF's writer).

  Returns:
    `path`, as a `pathlib.Path`.
  """
  import tensorflow as tf
  import tensorflow_federated as tff

  ids = list(train_clients) + list(test_clients)
  if not train_clients or not test_clients:
    raise ValueError("give at least one train and one test client")
  if len(set(ids)) != len(ids):
    raise ValueError(f"client ids must be distinct, got {ids}")
  snippets = dict(zip(ids, client_snippets(text, len(ids), min_chars_per_client),
                      strict=True))

  def dataset_fn(client_id: str) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(
        collections.OrderedDict(snippets=tf.constant(snippets[client_id])))

  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  splits = {c: "train" for c in train_clients} | {c: "test" for c in test_clients}
  tff.simulation.datasets.save_to_sql_client_data(
      ids, dataset_fn, os.fspath(path), allow_overwrite=overwrite,
      split_names_by_client_id=splits)
  return path


def write_random_emnist_sqlite(path: str | os.PathLike[str],
                               clients: dict[str, tuple[str, int]], *, num_classes: int,
                               seed: int = 0) -> pathlib.Path:
  """Writes `clients` ({id: (split, examples)}) of random EMNIST-format data to `path`.

  Splits as in the real file: `digits_only_train`/`_test` (10 classes) or
  `all_train`/`all_test` (62). Random labels and pixels from `seed`: it exercises the
  loader and the model, it does not train anything.
  """
  import numpy as np
  import tensorflow as tf
  import tensorflow_federated as tff

  rng = np.random.default_rng(seed)

  def dataset_fn(client_id: str) -> tf.data.Dataset:
    n = clients[client_id][1]
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        label=rng.integers(0, num_classes, n).astype(np.int64),
        pixels=rng.random((n, 28, 28)).astype(np.float32)))

  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tff.simulation.datasets.save_to_sql_client_data(
      list(clients), dataset_fn, os.fspath(path),
      split_names_by_client_id={c: split for c, (split, _) in clients.items()})
  return path


def write_sample_text(path: str | os.PathLike[str], text: str = DICKENS_PASSAGE,
                      repeat: int = 20) -> pathlib.Path:
  """Writes `text` `repeat` times to `path` (UTF-8), a pretraining corpus for tiny runs.

  Repeated so that one pass holds several batches of 100-character windows.
  """
  if repeat < 1:
    raise ValueError(f"repeat must be >= 1, got {repeat}")
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text((text.rstrip("\n") + "\n\n") * repeat, encoding="utf-8")
  return path


if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/sample_data.py is the notebooks' and tests' sample data: "
                   "import it; it has no command line")
