"""Reporters: console line, CSV resume semantics, TensorBoard tags read back."""

import io

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from fedcompress import metrics as m
from fedcompress.harness import reporting


def _row(r, **extra):
  row = {m.ROUND: r, m.TRAIN_LOSS: 2.0 / r, m.TRAIN_ACCURACY: 0.1 * r,
         m.BROADCAST_BITS: 532_278_400, m.AGGREGATE_BITS: 532_278_720,
         m.BROADCAST_CUMULATIVE_BITS: 532_278_400 * r,
         m.AGGREGATE_CUMULATIVE_BITS: 532_278_720 * r, m.ROUND_TIME_S: 1.5}
  row.update(extra)
  return row


def test_console_line_uses_tutorial_units():
  out = io.StringIO()
  reporter = reporting.ConsoleReporter(stream=out, progress=False)
  reporter.start(1, 10)
  reporter.write(_row(10, **{m.EVAL_ACCURACY: 0.5}))
  reporter.close()
  line = out.getvalue().strip()
  # DESIGN's canonical names, as in metrics.csv and TensorBoard.
  assert line == ("round  10, train/loss=0.2000, train/accuracy=1.0000, eval/accuracy=0.5000, "
                  "broadcast/bits=507.62Mibit, broadcast/cumulative_bits=4.96Gibit, "
                  "aggregate/bits=507.62Mibit, aggregate/cumulative_bits=4.96Gibit, "
                  "round_time_s=1.50")


def test_console_line_names_coded_bits_and_error_canonically():
  line = reporting.format_round_line(_row(1, **{m.AGGREGATE_CODED_BITS: 1 << 20,
                                                m.BROADCAST_CODED_BITS: 532_278_400,
                                                m.AGGREGATE_RELATIVE_ERROR: 0.125}))
  # Coded bits only where they differ from the raw ones.
  assert ", aggregate/coded_bits=1.00Mibit, aggregate/relative_error=0.1250," in line
  assert "broadcast/coded_bits" not in line


def test_csv_columns_and_resume_drop_later_rows(tmp_path):
  path = str(tmp_path / "metrics.csv")
  reporter = reporting.CsvReporter(path)
  reporter.start(1, 4)
  for r in (1, 2, 3):
    reporter.write(_row(r, **{m.AGGREGATE_CODED_BITS: 1000 * r}))
  reporter.close()
  # Resume from a checkpoint after round 2: round 3 is redone, never duplicated.
  reporter = reporting.CsvReporter(path)
  reporter.start(3, 4)
  reporter.write(_row(3, **{m.EVAL_ACCURACY: 0.9, m.EVAL_LOSS: 0.3}))
  reporter.write(_row(4))
  reporter.close()
  rows = reporting.read_metrics_csv(path)
  assert [r[m.ROUND] for r in rows] == [1, 2, 3, 4]
  assert list(rows[0]) == list(m.CANONICAL) + [m.AGGREGATE_CODED_BITS]
  assert rows[1][m.AGGREGATE_CODED_BITS] == 2000 and rows[3][m.AGGREGATE_CODED_BITS] is None
  assert rows[2][m.EVAL_ACCURACY] == 0.9 and rows[1][m.EVAL_ACCURACY] is None
  assert rows[3][m.BROADCAST_CUMULATIVE_BITS] == 4 * 532_278_400


def _scalars(logdir):
  acc = event_accumulator.EventAccumulator(
      str(logdir), size_guidance={event_accumulator.TENSORS: 0}, purge_orphaned_data=True)
  acc.Reload()
  return acc


@pytest.fixture
def tb_run(tmp_path):
  reporter = reporting.TensorBoardReporter(str(tmp_path), {"codec": "uniform", "bits": 8})
  reporter.start(1, 3)
  for r in (1, 2, 3):
    reporter.write(_row(r, **{m.EVAL_ACCURACY: 0.1 * r}))
  reporter.close()
  return tmp_path


def test_tensorboard_tags_and_values(tb_run):
  acc = _scalars(tb_run)
  tags = set(acc.Tags()["tensors"])
  assert {m.TRAIN_LOSS, m.TRAIN_ACCURACY, m.EVAL_ACCURACY, m.BROADCAST_BITS,
          m.AGGREGATE_CUMULATIVE_BITS, m.ROUND_TIME_S} <= tags
  events = acc.Tensors(m.BROADCAST_CUMULATIVE_BITS)
  assert [e.step for e in events] == [1, 2, 3]
  import tensorflow as tf

  assert float(tf.make_ndarray(events[-1].tensor_proto)) == pytest.approx(3 * 532_278_400)
  # HParams are written as a plugin summary the HParams dashboard reads.
  assert "_hparams_/session_start_info" in tags


def test_tensorboard_rounds_bit_counts_to_float32_and_the_csv_does_not(tmp_path):
  # TensorBoard's data server shows float32 scalars only (float64 ones are dropped from
  # its pages): the README's 10-round tutorial totals show as float32 there, exactly
  # in metrics.csv.
  row = _row(1, **{m.BROADCAST_CUMULATIVE_BITS: 5_322_784_000,
                   m.AGGREGATE_CUMULATIVE_BITS: 5_322_787_200})
  board = reporting.TensorBoardReporter(str(tmp_path / "tb"))
  table = reporting.CsvReporter(str(tmp_path / "metrics.csv"))
  for reporter in (board, table):
    reporter.start(1, 1)
    reporter.write(row)
    reporter.close()
  import tensorflow as tf

  acc = _scalars(tmp_path / "tb")
  csv_row = reporting.read_metrics_csv(str(tmp_path / "metrics.csv"))[0]
  for tag in (m.BROADCAST_CUMULATIVE_BITS, m.AGGREGATE_CUMULATIVE_BITS):
    shown = tf.make_ndarray(acc.Tensors(tag)[0].tensor_proto)
    assert shown.dtype == np.float32 and shown == np.float32(row[tag])
    assert csv_row[tag] == row[tag]


def test_tensorboard_resume_purges_redone_rounds(tb_run):
  reporter = reporting.TensorBoardReporter(str(tb_run))
  reporter.start(3, 4)  # Resumed from round 2: rounds 3.. are written again.
  reporter.write(_row(3, **{m.EVAL_ACCURACY: 0.95}))
  reporter.write(_row(4, **{m.EVAL_ACCURACY: 0.96}))
  reporter.close()
  import tensorflow as tf

  events = _scalars(tb_run).Tensors(m.EVAL_ACCURACY)
  assert [e.step for e in events] == [1, 2, 3, 4]
  assert float(tf.make_ndarray(events[2].tensor_proto)) == pytest.approx(0.95)


def _session_start_infos(logdir):
  import tensorflow as tf
  from tensorboard.compat.proto import event_pb2
  from tensorboard.plugins.hparams import plugin_data_pb2

  infos = []
  for path in tf.io.gfile.glob(str(logdir / "events.out.tfevents.*")):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == "_hparams_/session_start_info":
          infos.append(plugin_data_pb2.HParamsPluginData.FromString(
              value.metadata.plugin_data.content).session_start_info)
  return infos


def _hparams_records(logdir):
  return [{k: v.number_value or v.string_value for k, v in info.hparams.items()}
          for info in _session_start_infos(logdir)]


def test_runs_of_other_settings_under_one_name_are_other_hparams_groups(tmp_path):
  # TensorBoard shows the sessions of one group name as one row, with one session's
  # values: the `original` runs of two output roots, at learning rates 0.02 and 0.1,
  # showed as one run when the run's name was the group.
  groups = {}
  for root, learning_rate in (("a", 0.02), ("b", 0.1), ("c", 0.02)):
    logdir = tmp_path / root / "original"
    reporter = reporting.TensorBoardReporter(
        str(logdir), {"experiment_name": "original", "client_learning_rate": learning_rate})
    reporter.start(1, 1)
    reporter.write(_row(1))
    reporter.close()
    [info] = _session_start_infos(logdir)
    groups[root] = info.group_name
  assert groups["a"] != groups["b"]
  assert groups["a"] == groups["c"]  # The same settings: repeats, one group.


def test_tensorboard_resume_keeps_one_hparams_record_the_latest(tb_run):
  # An uninterrupted run has one HParams record; a resume (here with --rounds raised)
  # must not add a second.
  assert _hparams_records(tb_run) == [{"codec": "uniform", "bits": 8}]
  reporter = reporting.TensorBoardReporter(str(tb_run), {"codec": "uniform", "bits": 8,
                                                         "rounds": 4})
  reporter.start(3, 4)
  reporter.write(_row(3))
  reporter.close()
  assert _hparams_records(tb_run) == [{"codec": "uniform", "bits": 8, "rounds": 4}]


def test_a_resume_of_a_finished_run_leaves_its_hparams(tb_run):
  # No round runs: HParams of flags that may change on resume (--temperature) would show
  # values no round ran with.
  reporter = reporting.TensorBoardReporter(str(tb_run), {"codec": "uniform", "bits": 8,
                                                         "temperature": 0.3})
  reporter.start(4, 3)
  reporter.close()
  assert _hparams_records(tb_run) == [{"codec": "uniform", "bits": 8}]
  assert [e.step for e in _scalars(tb_run).Tensors(m.EVAL_ACCURACY)] == [1, 2, 3]


def test_tensorboard_resume_without_checkpoint_redoes_every_round(tb_run):
  # Killed before the first checkpoint: the resumed run starts again at round 1, and
  # the events of the first attempt's rounds go, as the CSV's rows do.
  reporter = reporting.TensorBoardReporter(str(tb_run))
  reporter.start(1, 2)
  reporter.write(_row(1, **{m.EVAL_ACCURACY: 0.5}))
  reporter.write(_row(2, **{m.EVAL_ACCURACY: 0.6}))
  reporter.close()
  import tensorflow as tf

  events = _scalars(tb_run).Tensors(m.EVAL_ACCURACY)
  assert [e.step for e in events] == [1, 2]
  assert float(tf.make_ndarray(events[0].tensor_proto)) == pytest.approx(0.5)


def test_a_purge_cut_short_leaves_no_extra_event_file(tb_run, monkeypatch):
  # A kill between writing the purged copy and renaming it over the original leaves
  # the copy behind. TensorBoard reads every file with "tfevents" in its name, so the
  # copy must not have it, or the kept rounds would show twice.
  def killed(*_):
    raise OSError("killed")

  monkeypatch.setattr(reporting.os, "replace", killed)
  with pytest.raises(OSError, match="killed"):
    reporting.TensorBoardReporter(str(tb_run)).start(2, 3)
  leftovers = [p.name for p in tb_run.iterdir() if p.name.endswith(".tmp")]
  assert leftovers and not [name for name in leftovers if "tfevents" in name]
  monkeypatch.undo()
  assert [e.step for e in _scalars(tb_run).Tensors(m.EVAL_ACCURACY)] == [1, 2, 3]


def test_per_tensor_widths_reach_the_csv(tmp_path):
  # Bit allocation reports one width per tensor; flattening keeps them and the CSV
  # gets a column for each, after the canonical ones.
  metrics = {m.BROADCAST_BITS: 10, m.AGGREGATE_BITS: 20,
             m.BROADCAST_WIDTH_PREFIX + "dense/kernel": 0.98,
             m.AGGREGATE_WIDTH_PREFIX + "dense/kernel": 2.0, "distributor": {}}
  flat = m.flatten_round_metrics(metrics)
  assert flat[m.BROADCAST_WIDTH_PREFIX + "dense/kernel"] == pytest.approx(0.98)
  assert flat[m.AGGREGATE_WIDTH_PREFIX + "dense/kernel"] == 2.0
  path = str(tmp_path / "metrics.csv")
  csv_reporter = reporting.CsvReporter(path)
  csv_reporter.start(1, 1)
  csv_reporter.write({m.ROUND: 1, **flat})
  csv_reporter.close()
  columns, rows, _ = reporting.read_metrics_rows(path)
  assert columns[:len(m.CANONICAL)] == list(m.CANONICAL)
  assert columns[len(m.CANONICAL):] == ["broadcast/width/dense/kernel",
                                        "aggregate/width/dense/kernel"]
  assert float(rows[0]["broadcast/width/dense/kernel"]) == pytest.approx(0.98)


def test_widths_reach_the_csv_as_the_widths_given(tmp_path):
  # TFF's float32 width 0.9 was written 0.8999999761581421: no filter on 0.9 found it.
  metrics = {m.AGGREGATE_WIDTH_PREFIX + "a": np.float32(0.9),
             m.AGGREGATE_WIDTH_PREFIX + "b": np.float32(0.9 + 1.0) / np.float32(2)}
  path = str(tmp_path / "metrics.csv")
  csv_reporter = reporting.CsvReporter(path)
  csv_reporter.start(1, 1)
  csv_reporter.write({m.ROUND: 1, **m.flatten_round_metrics(metrics)})
  csv_reporter.close()
  text = open(path).read()
  assert text.splitlines()[1].endswith(",0.9,0.95"), text


def test_the_progress_bar_names_the_accuracy_it_shows(capsys):
  # Its postfix said `accuracy=` for eval accuracy, beside round lines naming both.
  reporter = reporting.ConsoleReporter(stream=io.StringIO(), progress=True)
  reporter.start(1, 2)
  reporter.write(_row(1))
  assert reporter._bar.postfix == "train/accuracy=0.100"
  reporter.write(_row(2, **{m.EVAL_ACCURACY: 0.5}))
  assert reporter._bar.postfix == "eval/accuracy=0.500"
  reporter.close()
  assert "eval/accuracy=0.500" in capsys.readouterr().err  # As drawn.
