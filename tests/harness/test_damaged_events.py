"""A resume over an event file damaged before its end: its lost rounds written again."""

import glob
import os

import tensorflow as tf
from tensorboard.compat.proto import event_pb2

from fedcompress import metrics as m
from fedcompress.harness import reporting


def _row(r):
  return {m.ROUND: r, m.TRAIN_LOSS: 2.0 / r, m.TRAIN_ACCURACY: 0.1 * r,
          m.AGGREGATE_BITS: 1000 * r, m.AGGREGATE_CUMULATIVE_BITS: 1000 * r * (r + 1) // 2}


def _segment(run_dir, first, last, warnings=None):
  csv = reporting.CsvReporter(os.path.join(run_dir, "metrics.csv"))
  tb = reporting.TensorBoardReporter(run_dir, {"seed": 0}, warn=warnings.append if
                                     warnings is not None else None,
                                     rows_file=os.path.join(run_dir, "metrics.csv"))
  for reporter in (csv, tb):
    reporter.start(first, last)
  for r in range(first, last + 1):
    for reporter in (csv, tb):
      reporter.write(_row(r))
  for reporter in (csv, tb):
    reporter.close()


def _steps_per_tag(run_dir):
  seen = {}
  for path in glob.glob(os.path.join(run_dir, "*tfevents*")):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag != "_hparams_/session_start_info":
          seen.setdefault(value.tag, []).append(event.step)
  return {tag: sorted(steps) for tag, steps in seen.items()}


def _event_file(run_dir):
  (path,) = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
  return path


def test_rounds_lost_past_the_damage_are_written_again_once(tmp_path):
  # A byte flipped a third into the file: the resume kept the records before it and
  # dropped every one after it, rounds it did not redo included, without a word.
  run_dir = str(tmp_path)
  _segment(run_dir, 1, 4)
  path = _event_file(run_dir)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 3] ^= 0xFF
  open(path, "wb").write(bytes(data))
  warnings = []
  _segment(run_dir, 5, 5, warnings)
  assert len(warnings) == 1 and "is damaged at byte" in warnings[0], warnings
  steps = _steps_per_tag(run_dir)
  for tag in (m.TRAIN_LOSS, m.AGGREGATE_BITS, m.AGGREGATE_CUMULATIVE_BITS):
    assert steps[tag] == [1, 2, 3, 4, 5], (tag, steps)
  # The damaged file is kept, under a name TensorBoard does not read.
  (kept,) = [n for n in os.listdir(run_dir) if n.startswith("damaged.")]
  assert "tfevents" not in kept


def test_a_record_cut_short_by_a_kill_is_not_damage(tmp_path):
  run_dir = str(tmp_path)
  _segment(run_dir, 1, 3)
  path = _event_file(run_dir)
  data = open(path, "rb").read()
  open(path, "wb").write(data[:-7])  # The last record's tail never written.
  warnings = []
  _segment(run_dir, 3, 4, warnings)
  assert warnings == []
  assert _steps_per_tag(run_dir)[m.TRAIN_LOSS] == [1, 2, 3, 4]
  assert not [n for n in os.listdir(run_dir) if n.startswith("damaged.")]


def test_damage_in_rounds_the_resume_redoes_says_so(tmp_path):
  # It said "the events of rounds 4-3 are written again".
  run_dir = str(tmp_path)
  _segment(run_dir, 1, 4)
  path = _event_file(run_dir)
  data = bytearray(open(path, "rb").read())
  data[-60] ^= 0xFF  # In round 4's records, not in the last one's tail.
  open(path, "wb").write(bytes(data))
  warnings = []
  _segment(run_dir, 2, 4, warnings)  # Resumed from the checkpoint of round 1.
  assert len(warnings) == 1 and "they were of rounds this resume redoes" in warnings[0]
  assert _steps_per_tag(run_dir)[m.TRAIN_LOSS] == [1, 2, 3, 4]


def test_a_cut_record_of_a_round_not_redone_is_written_again(tmp_path):
  # A power loss or a full disk cut round 3's last scalar; the resume from round 3's
  # checkpoint redid only round 4, and that scalar was gone from TensorBoard for good.
  run_dir = str(tmp_path)
  _segment(run_dir, 1, 3)
  path = _event_file(run_dir)
  data = open(path, "rb").read()
  open(path, "wb").write(data[:-7])
  warnings = []
  _segment(run_dir, 4, 4, warnings)
  assert warnings == [f"the event files in {run_dir} lack scalars of round 3, which this "
                      "resume does not redo: the events of round 3 are written again "
                      "from metrics.csv"], warnings
  steps = _steps_per_tag(run_dir)
  for tag in (m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.AGGREGATE_BITS, m.AGGREGATE_CUMULATIVE_BITS):
    assert steps[tag] == [1, 2, 3, 4], (tag, steps)
  # A resume over whole files writes nothing again and says nothing.
  warnings = []
  _segment(run_dir, 5, 5, warnings)
  assert warnings == [] and _steps_per_tag(run_dir)[m.TRAIN_LOSS] == [1, 2, 3, 4, 5]
