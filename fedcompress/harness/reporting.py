"""Where round metrics go: console lines and progress bar, CSV, TensorBoard.

Every reporter takes the same flat rows of canonical metric names (fedcompress.metrics)
and knows how to resume: rows after the resumed round are dropped, never duplicated.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

from fedcompress import metrics as m
from fedcompress.harness import durable
from fedcompress.units import format_bits


class Reporter(Protocol):
  def start(self, first_round: int, total_rounds: int) -> None: ...
  def write(self, row: Mapping[str, Any]) -> None: ...
  def close(self) -> None: ...


def _fmt(value: Any, spec: str) -> str:
  return "n/a" if value is None else format(value, spec)


def format_round_line(row: Mapping[str, Any]) -> str:
  """One console line per round: the canonical metric names (as in metrics.csv and
  TensorBoard), bits in the tutorial's Mibit/Gibit units."""
  parts = [f"round {row[m.ROUND]:3d}",
           f"{m.TRAIN_LOSS}={_fmt(row.get(m.TRAIN_LOSS), '.4f')}",
           f"{m.TRAIN_ACCURACY}={_fmt(row.get(m.TRAIN_ACCURACY), '.4f')}"]
  if row.get(m.EVAL_ACCURACY) is not None:
    parts.append(f"{m.EVAL_ACCURACY}={row[m.EVAL_ACCURACY]:.4f}")
  for key in (m.BROADCAST_BITS, m.BROADCAST_CUMULATIVE_BITS, m.AGGREGATE_BITS,
              m.AGGREGATE_CUMULATIVE_BITS):
    parts.append(f"{key}={format_bits(row[key])}")
  for coded, raw in ((m.BROADCAST_CODED_BITS, m.BROADCAST_BITS),
                     (m.AGGREGATE_CODED_BITS, m.AGGREGATE_BITS)):
    if row.get(coded) is not None and row[coded] != row[raw]:
      parts.append(f"{coded}={format_bits(row[coded])}")
  if row.get(m.AGGREGATE_RELATIVE_ERROR) is not None:
    parts.append(f"{m.AGGREGATE_RELATIVE_ERROR}={row[m.AGGREGATE_RELATIVE_ERROR]:.4f}")
  parts.append(f"{m.ROUND_TIME_S}={row[m.ROUND_TIME_S]:.2f}")
  return ", ".join(parts)


class ConsoleReporter:
  """Prints a line per round; on a terminal also shows a progress bar with ETA."""

  def __init__(self, stream: TextIO | None = None, progress: bool | None = None,
               prefix: str = ""):
    self._stream = stream or sys.stdout
    self._progress = sys.stderr.isatty() if progress is None else progress
    self._bar = None
    self._prefix = prefix

  def start(self, first_round: int, total_rounds: int) -> None:
    if self._progress and first_round <= total_rounds:
      from tqdm import tqdm

      self._bar = tqdm(total=total_rounds, initial=first_round - 1, unit="round",
                       desc=self._prefix or "training", dynamic_ncols=True, leave=False)

  def write(self, row: Mapping[str, Any]) -> None:
    line = self._prefix + format_round_line(row)
    if self._bar is not None:
      self._bar.write(line, file=self._stream)
      # The round line's names (a bare `accuracy=` held eval accuracy where there was).
      key = m.EVAL_ACCURACY if row.get(m.EVAL_ACCURACY) is not None else m.TRAIN_ACCURACY
      if row.get(key) is not None:
        self._bar.set_postfix({key: f"{row[key]:.3f}"})
      self._bar.update(1)
    else:
      print(line, file=self._stream, flush=True)

  def warn(self, message: str) -> None:
    """One `warning: ...` line among the round lines."""
    line = f"{self._prefix}warning: {message}"
    if self._bar is not None:
      self._bar.write(line, file=self._stream)
    else:
      print(line, file=self._stream, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None


class CsvReporter:
  """`metrics.csv`: one row per round, columns named as the canonical metrics.

  The canonical columns always come first; optional ones (coded bits, relative error,
  rejected clients) are added when the first row written has them, or when the file
  being resumed already had them.
  """

  def __init__(self, path: str):
    self.path = path
    self.columns: list[str] = list(m.CANONICAL)
    self._kept: list[dict[str, str]] = []
    self._file: TextIO | None = None
    self._writer = None

  def start(self, first_round: int, total_rounds: int) -> None:
    del total_rounds
    self._kept = []
    if os.path.exists(self.path):
      columns, self._kept, _ = read_metrics_rows(self.path)
      self.columns += [c for c in columns if c not in self.columns]
      # A last row cut short by a kill was never complete: it goes with the other rows
      # of rounds that will be redone, now, even if no round completes.
      self._kept = [r for r in self._kept if int(r[m.ROUND]) < first_round]
      self._rewrite()

  def _rewrite(self) -> None:
    # Through a temporary file, so a crash here never loses the rows already there.
    tmp = self.path + ".tmp"
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore")
      writer.writeheader()
      writer.writerows(self._kept)
    durable.replace(tmp, self.path)

  def write(self, row: Mapping[str, Any]) -> None:
    if self._writer is None:
      self.columns += [c for c in m.OPTIONAL if c in row and c not in self.columns]
      self.columns += [c for c in row if m.is_width(c) and c not in self.columns]
      self._rewrite()
      self._file = open(self.path, "a", newline="")  # noqa: SIM115 (closed in close())
      self._writer = csv.DictWriter(self._file, fieldnames=self.columns,
                                    extrasaction="ignore")
    self._writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    self._writer = None


class MetricsFileError(ValueError):
  """A `metrics.csv` that is not one fedcompress wrote, or is damaged before its last row."""


def _complete(fields: list[str], columns: list[str]) -> bool:
  if len(fields) != len(columns):
    return False
  try:
    int(fields[0])
    for value in fields[1:]:
      if value != "":
        float(value)
  except ValueError:
    return False
  return True


def read_metrics_rows(path: str) -> tuple[list[str], list[dict[str, str]], bool]:
  """The columns and complete rows of a `metrics.csv`, as text.

  A kill can cut the file's last line short (a row is written in one piece and flushed,
  but the write itself can be interrupted): a last row that is incomplete, or not
  ended by a line break, is left out and reported as the third value.

  Raises:
    MetricsFileError: the file does not start with the canonical columns, or a row
      before the last one is damaged (the message names the file and the line).
  """
  try:
    with open(path, newline="") as f:
      text = f.read()
    lines = [fields for fields in csv.reader(io.StringIO(text)) if fields]
  except (UnicodeDecodeError, csv.Error) as e:
    raise MetricsFileError(f"{path} is not a fedcompress metrics.csv ({e})") from None
  if not lines:
    return list(m.CANONICAL), [], False
  columns = lines[0]
  if columns[:len(m.CANONICAL)] != list(m.CANONICAL):
    first = text.splitlines()[0] if text.splitlines() else ""
    raise MetricsFileError(f"{path} is not a fedcompress metrics.csv: its first line is "
                           f"{first[:80]!r}, not the metric names starting with 'round'")
  rows, partial = [], False
  last = len(lines) - 1
  for i, fields in enumerate(lines[1:], start=1):
    if _complete(fields, columns) and not (i == last and not text.endswith("\n")):
      rows.append(dict(zip(columns, fields, strict=True)))
    elif i == last:
      partial = True
    else:
      raise MetricsFileError(f"{path}: row {i} is damaged ({','.join(fields)[:80]!r})")
  return columns, rows, partial


def read_metrics_csv(path: str) -> list[dict[str, float | None]]:
  """Rows of a `metrics.csv` with numbers parsed (empty cells -> None).

  A last row cut short by a kill is left out (see `read_metrics_rows`).
  """
  _, rows, _ = read_metrics_rows(path)

  def parse(v: str) -> float | None:
    if v == "":
      return None
    number = float(v)
    return int(number) if number.is_integer() and "." not in v and "e" not in v else number

  return [{k: parse(v) for k, v in r.items()} for r in rows]


class TensorBoardReporter:
  """TensorBoard scalars under the canonical tags, plus HParams for the run.

  Args:
    logdir: the run's folder.
    hparams: the run's HParams.
    rows_file: the run's metrics.csv, from which a resume writes again the rounds an
      event file damaged before its end lost (`_purge_after`).
    warn: says such damage (a `warning:` line).
  """

  def __init__(self, logdir: str, hparams: Mapping[str, Any] | None = None, *,
               rows_file: str | None = None, warn=None):
    self.logdir = logdir
    self._hparams = dict(hparams or {})
    self._rows_file = rows_file
    self._warn = warn
    self._writer = None

  def start(self, first_round: int, total_rounds: int) -> None:
    if first_round > total_rounds:
      # A resume of a finished run writes no round; the HParams stay those of the
      # segments that made the rows (a flag that may differ on resume would otherwise
      # show values no round ran with).
      return
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp

    # Whatever the event files hold of rounds >= first_round is redone now, also when a
    # resume finds no checkpoint and starts again from round 1 (as the CSV does). The
    # HParams record is rewritten too: one per run, the latest segment's (a resume may
    # raise --rounds), as an uninterrupted run has one.
    lost_from = _purge_after(self.logdir, first_round, hparams=bool(self._hparams),
                             warn=self._warn)
    rows = (read_metrics_csv(self._rows_file)
            if self._rows_file and os.path.exists(self._rows_file) else [])
    # A round this resume does not redo whose scalars the files lack (a record cut short
    # at their end by a power loss or a full disk, which a kill's cut record is not
    # told from): written again from metrics.csv, as after damage.
    incomplete = _first_incomplete_round(self.logdir, rows, lost_from)
    if incomplete < lost_from:
      if self._warn is not None:
        rounds = (f"rounds {incomplete}-{first_round - 1}" if incomplete < first_round - 1
                  else f"round {incomplete}")
        self._warn(f"the event files in {self.logdir} lack scalars of round {incomplete}, "
                   f"which this resume does not redo: the events of {rounds} are written "
                   "again from metrics.csv")
      lost_from = _purge_after(self.logdir, incomplete)
    self._writer = tf.summary.create_file_writer(self.logdir)
    if self._hparams:
      with self._writer.as_default():
        # No trial id: TensorBoard's default, a hash of the values, groups runs of the
        # same settings as repeats. The run's name grouped different settings that
        # shared it (every `original` of every output root) into one row of one of them.
        hp.hparams(_hparam_values(self._hparams))
      self._writer.flush()
    for row in rows:
      if lost_from <= row[m.ROUND] < first_round:
        self.write(row)

  def write(self, row: Mapping[str, Any]) -> None:
    import tensorflow as tf

    assert self._writer is not None, "start() first"
    step = int(row[m.ROUND])
    with self._writer.as_default():
      for key, value in row.items():
        if key != m.ROUND and value is not None:
          # float32, the only scalar type TensorBoard's data server reads (it skips
          # float64 and int64 ones): bit counts over 2^24 show to ~7 significant
          # digits there; metrics.csv holds them exactly.
          tf.summary.scalar(key, float(value), step=step)
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _hparam_values(hparams: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
  """HParams accept only bool/int/float/str: anything else is shown as its str."""
  return {k: v if isinstance(v, (bool, int, float, str)) else str(v)
          for k, v in hparams.items() if v is not None}


def _is_hparams(event) -> bool:
  return any(v.metadata.plugin_data.plugin_name == "hparams" for v in event.summary.value)


def _read_events(path: str) -> tuple[list[bytes], int | None, bool]:
  """The records of a TFRecord event file, where they end, and whether what follows
  them is more than a record cut short by a kill (a damaged file: the records after the
  damage cannot be read)."""
  import struct

  import tensorflow as tf
  from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

  records, offset = [], 0
  try:
    for record in tf.data.TFRecordDataset(path):
      records.append(record.numpy())
      offset += len(records[-1]) + 16  # length, its CRC, the data, its CRC
  except tf.errors.DataLossError:
    with open(path, "rb") as f:
      f.seek(offset)
      header = f.read(12)
      size = os.fstat(f.fileno()).st_size
    # A kill leaves a prefix of the record it was writing: a whole header whose CRC
    # holds names a length past the file's end.
    damaged = len(header) == 12 and (
        struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8])
        or offset + 16 + struct.unpack("<Q", header[:8])[0] <= size)
    return records, offset, damaged
  return records, None, False


def _first_incomplete_round(logdir: str, rows: list[Mapping[str, Any]], before: int) -> int:
  """The first round below `before` of `rows` (metrics.csv's) whose scalars, as `write`
  writes them, the event files in `logdir` do not all hold; `before` if none."""
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2

  held: dict[int, set[str]] = {}
  for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")):
    for record in _read_events(path)[0]:
      event = event_pb2.Event.FromString(record)
      if event.HasField("summary") and not _is_hparams(event):
        held.setdefault(event.step, set()).update(v.tag for v in event.summary.value)
  for row in rows:
    step = int(row[m.ROUND])
    if step < before and not {k for k, v in row.items()
                              if k != m.ROUND and v is not None} <= held.get(step, set()):
      return step
  return before


def _purge_after(logdir: str, first_round: int, hparams: bool = False,
                 warn=None) -> int:
  """Drops events of rounds >= `first_round` from the event files already in `logdir`,
  and with `hparams` the HParams records too (the caller writes a new one).

  A resumed run redoes those rounds. TensorBoard's own orphan purge (SessionLog.START)
  depends on the order of event file names, which collide within one second, so the old
  files are rewritten instead (they are TFRecord files of `Event` protos).

  Returns the first round whose events the files no longer hold: `first_round`, or an
  earlier one where a file is damaged before its end. Its records past the damage are
  lost (a resume silently dropped them, rounds it did not redo included): the events
  from the last round read before it on are dropped from every file, for the caller to
  write again, and the damaged file is kept beside them under a name TensorBoard does
  not read, with a warning through `warn`.
  """
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2

  files = {path: _read_events(path)
           for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))}
  events = {path: [event_pb2.Event.FromString(r) for r in records]
            for path, (records, _, _) in files.items()}
  cutoff = first_round
  for path, (_, offset, damaged) in files.items():
    if damaged:
      read = [e.step for e in events[path] if e.HasField("summary") and not _is_hparams(e)]
      lost_from = min(first_round, max(read, default=1))
      cutoff = min(cutoff, lost_from)
      copy = os.path.join(logdir, "damaged." + os.path.basename(path).replace("tfevents", "tfev"))
      shutil.copyfile(path, copy)
      if warn is not None:
        again = (f"the events of rounds {lost_from}-{first_round - 1} are written again "
                 "from metrics.csv" if lost_from < first_round else
                 "they were of rounds this resume redoes")
        warn(f"{path} is damaged at byte {offset} (not a record cut short by a kill), so "
             f"the records after it were lost: {again}; the damaged file is kept as "
             f"{copy}")
  for path, (records, offset, _) in files.items():
    kept = [r for r, e in zip(records, events[path], strict=True)
            if not (e.HasField("summary") and (e.step >= cutoff
                                               or (hparams and _is_hparams(e))))]
    # (A record cut short by a kill, or damage: the file is rewritten without it.)
    if len(kept) == len(records) and offset is None:
      continue
    # TensorBoard reads every file with "tfevents" in its name: a copy a kill left
    # behind must not carry it, or its rounds would show twice.
    tmp = os.path.join(os.path.dirname(path), ".purge.tmp")
    with tf.io.TFRecordWriter(tmp) as writer:
      for record in kept:
        writer.write(record)
    durable.replace(tmp, path)
  return cutoff
