"""experiments/plot.py and plotting.plot_runs: a real PNG with one line per run."""

import struct

import pytest
from absl.testing import flagsaver

from fedcompress import metrics as m
from fedcompress.harness import plotting, reporting


def _run(root, name, scale):
  csv = reporting.CsvReporter(str(root / name / "metrics.csv"))
  (root / name).mkdir()
  csv.start(1, 5)
  for r in range(1, 6):
    csv.write({m.ROUND: r, m.TRAIN_LOSS: 2.0 / r, m.TRAIN_ACCURACY: 0.15 * r,
               m.EVAL_LOSS: 2.1 / r, m.EVAL_ACCURACY: 0.14 * r,
               m.BROADCAST_BITS: scale, m.AGGREGATE_BITS: scale,
               m.BROADCAST_CUMULATIVE_BITS: scale * r, m.AGGREGATE_CUMULATIVE_BITS: scale * r,
               m.ROUND_TIME_S: 1.0})
  csv.close()
  return str(root / name)


def _png_size(path):
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
  return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_plot_runs_writes_four_panel_png(tmp_path):
  runs = [_run(tmp_path, "original", 532_278_400), _run(tmp_path, "compressed", 153_575_360)]
  out = plotting.plot_runs(runs, str(tmp_path / "fig" / "cmp.png"), title="t")
  width, height = _png_size(out)
  assert (width, height) == (1430, 990)  # 13x9 inches at 110 dpi.
  assert (tmp_path / "fig" / "cmp.png").stat().st_size > 50_000  # Drawn, not blank.


@pytest.mark.slow
def test_plot_binary(load_binary, tmp_path, capsys):
  runs = [_run(tmp_path, "a", 100), _run(tmp_path, "b", 50)]
  with load_binary("experiments/plot.py") as binary:
    with flagsaver.flagsaver(runs=runs, labels=["A", "B"], output=str(tmp_path / "p.png")):
      assert binary.main(["plot"]) == 0
    with flagsaver.flagsaver(runs=runs, labels=["only one"], output=str(tmp_path / "q.png")):
      assert binary.main(["plot"]) == 2
  assert (tmp_path / "p.png").exists() and not (tmp_path / "q.png").exists()
  assert "--labels has 1 entries for 2 runs" in capsys.readouterr().err


def test_no_runs_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="no runs"):
    plotting.plot_runs([], str(tmp_path / "x.png"))


@pytest.mark.slow
def test_output_that_is_a_folder_or_has_no_extension(load_binary, tmp_path, capsys):
  # Issue 13, item 10: --output=DIR wrote DIR.png and printed "wrote DIR".
  runs = [_run(tmp_path, "a", 100)]
  folder = tmp_path / "figures"
  folder.mkdir()
  with load_binary("experiments/plot.py") as binary:
    for output, written in ((folder, folder / "comparison.png"),
                            (tmp_path / "fig", tmp_path / "fig.png")):
      with flagsaver.flagsaver(runs=runs, output=str(output)):
        assert binary.main(["plot"]) == 0
      assert capsys.readouterr().out == f"wrote {written}\n"
      _png_size(written)
  assert sorted(p.name for p in folder.iterdir()) == ["comparison.png"]
