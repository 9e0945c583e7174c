"""experiments/plot.py and plotting.plot_runs: a real PNG with one line per run."""

import struct
import subprocess
import sys

import pytest
from absl.testing import flagsaver

from fedcompress import metrics as m
from fedcompress.harness import plotting, reporting


def _run(root, name, scale, aggregate_scale=None, rounds=5):
  aggregate = scale if aggregate_scale is None else aggregate_scale
  csv = reporting.CsvReporter(str(root / name / "metrics.csv"))
  (root / name).mkdir()
  csv.start(1, rounds)
  for r in range(1, rounds + 1):
    csv.write({m.ROUND: r, m.TRAIN_LOSS: 2.0 / r, m.TRAIN_ACCURACY: 0.15 * r,
               m.EVAL_LOSS: 2.1 / r, m.EVAL_ACCURACY: 0.14 * r,
               m.BROADCAST_BITS: scale, m.AGGREGATE_BITS: aggregate,
               m.BROADCAST_CUMULATIVE_BITS: scale * r,
               m.AGGREGATE_CUMULATIVE_BITS: aggregate * r, m.ROUND_TIME_S: 1.0})
  csv.close()
  return str(root / name)


def _keep(monkeypatch, figures):
  """Collects the figures the plotting functions write, to inspect."""
  save = plotting._save
  monkeypatch.setattr(plotting, "_save",
                      lambda fig, path: (figures.append(fig), save(fig, path))[1])


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


def test_a_one_round_run_shows_in_every_panel_and_an_empty_one_is_refused(tmp_path,
                                                                          monkeypatch):
  # A one-point line draws nothing: a one-round run (the demo with --rounds=1) left the
  # bits panel empty and the train curves missing.
  figures = []
  _keep(monkeypatch, figures)
  plotting.plot_runs([_run(tmp_path, "one", 100, rounds=1)], str(tmp_path / "one.png"))
  for ax in figures[0].axes[:3]:
    for line in ax.lines:
      assert len(line.get_xdata()) == 1 and line.get_marker() not in ("None", None, ""), (
          line.get_label())
  # A header alone drew empty panels, said as written.
  (tmp_path / "empty").mkdir()
  header = (tmp_path / "one" / "metrics.csv").read_text().splitlines()[0]
  (tmp_path / "empty" / "metrics.csv").write_text(header + "\n")
  with pytest.raises(ValueError, match=r"no finished round to plot in .*empty"):
    plotting.plot_runs([str(tmp_path / "one"), str(tmp_path / "empty")],
                       str(tmp_path / "both.png"))
  assert not (tmp_path / "both.png").exists()


def test_output_paths_name_the_file_written(tmp_path):
  # `plots/` with no such folder was said as plots/.png and written as plots/.png.png;
  # `fig.` was said as `fig.` and written as fig.png; an empty path wrote .png.png.
  assert plotting.output_file(str(tmp_path / "plots") + "/") == str(
      tmp_path / "plots" / "comparison.png")
  assert plotting.output_file(str(tmp_path / "fig.")) == str(tmp_path / "fig.png")
  assert plotting.output_file(str(tmp_path / "fig")) == str(tmp_path / "fig.png")
  assert plotting.output_file(str(tmp_path / "fig.pdf")) == str(tmp_path / "fig.pdf")
  with pytest.raises(ValueError, match="output path is empty"):
    plotting.output_file("")


def test_round_ticks_are_integers_at_round_steps():
  assert plotting.round_ticks(1, 5) == [1, 2, 3, 4, 5]
  assert plotting.round_ticks(1, 20) == [5, 10, 15, 20]
  assert plotting.round_ticks(1, 200) == [50, 100, 150, 200]
  assert plotting.round_ticks(1, 1500) == [250, 500, 750, 1000, 1250, 1500]
  assert plotting.round_ticks(3, 3) == [3]


def test_bit_ticks_are_round_binary_values():
  gibit, mibit = 2**30, 2**20
  ticks, labels = plotting.bit_ticks(0, 9.91 * gibit)  # The demo's original, 20 rounds.
  assert labels == ["0", "2 Gibit", "4 Gibit", "6 Gibit", "8 Gibit"]
  assert ticks == [0, 2 * gibit, 4 * gibit, 6 * gibit, 8 * gibit]
  assert plotting.bit_ticks(0, 2.86 * gibit)[1] == [
      "0", "0.5 Gibit", "1 Gibit", "1.5 Gibit", "2 Gibit", "2.5 Gibit"]
  # One round of the tutorial CNN to 10 clients: Mibit steps, not 190.73 Mibit.
  assert plotting.bit_ticks(0, 507.62 * mibit)[1] == [
      "0", "100 Mibit", "200 Mibit", "300 Mibit", "400 Mibit", "500 Mibit"]
  assert plotting.bit_ticks(0, 100)[1] == ["0", "20 bit", "40 bit", "60 bit", "80 bit",
                                           "100 bit"]


def test_log_ticks_label_decades():
  assert plotting.log_ticks(3e8, 2e11) == ([1e9, 1e10, 1e11],
                                           ["$10^{9}$", "$10^{10}$", "$10^{11}$"])
  # Less than two decades: 2 and 5 times a power of ten are labelled too.
  assert plotting.log_ticks(3e8, 2e9) == (
      [5e8, 1e9, 2e9], ["$5\\times10^{8}$", "$10^{9}$", "$2\\times10^{9}$"])
  ticks, _ = plotting.log_ticks(5.5, 17.4)
  assert ticks == [6, 7, 8, 9, 10]
  with pytest.raises(ValueError, match="log axis"):
    plotting.log_ticks(0, 1)


def test_figure_axes_use_the_ticks(tmp_path, monkeypatch):
  runs = [_run(tmp_path, "original", 532_278_400), _run(tmp_path, "compressed", 153_575_360)]
  figures = []
  _keep(monkeypatch, figures)  # Keep the figure to inspect.
  plotting.plot_runs(runs, str(tmp_path / "cmp.png"))
  (ax_acc, _), (ax_bits, ax_frontier) = figures[0].axes[0:2], figures[0].axes[2:4]
  assert list(ax_acc.get_xticks()) == [1, 2, 3, 4, 5]
  # Up to 5 x 532,278,400 bits = 2.48 Gibit.
  labels = [t.get_text() for t in ax_bits.get_yticklabels()]
  assert labels == ["0", "0.5 Gibit", "1 Gibit", "1.5 Gibit", "2 Gibit"]
  # Both ways, 307,150,720 to 5,322,784,000 bits, a quarter decade of margin each side:
  # a single decade inside, so 2 and 5 times powers of ten are labelled too.
  assert ax_frontier.get_xscale() == "log"
  assert [t.get_text() for t in ax_frontier.get_xticklabels()] == [
      "$2\\times10^{8}$", "$5\\times10^{8}$", "$10^{9}$", "$2\\times10^{9}$",
      "$5\\times10^{9}$"]


def test_each_panel_draws_each_runs_columns(tmp_path, monkeypatch):
  # Every column differs from the others, so a line drawn from the wrong one shows.
  runs = [_run(tmp_path, "original", 400, aggregate_scale=300),
          _run(tmp_path, "compressed", 200, aggregate_scale=100)]
  figures = []
  _keep(monkeypatch, figures)
  plotting.plot_runs(runs, str(tmp_path / "cmp.png"))
  ax_acc, ax_loss, ax_bits, ax_frontier = figures[0].axes[:4]
  rounds = [1, 2, 3, 4, 5]
  for ax, expected in (
      (ax_acc, {"eval": [0.14 * r for r in rounds], "train": [0.15 * r for r in rounds]}),
      (ax_loss, {"eval": [2.1 / r for r in rounds], "train": [2.0 / r for r in rounds]})):
    assert len(ax.lines) == 4  # Eval and train of each run.
    for line in ax.lines:
      kind = line.get_label().split()[-1]
      assert list(line.get_xdata()) == rounds
      assert list(line.get_ydata()) == pytest.approx(expected[kind]), line.get_label()
  bits = {line.get_label(): list(line.get_ydata()) for line in ax_bits.lines}
  assert bits == {f"{run} {way}": [scale * r for r in rounds]
                  for run, ways in (("original", (400, 300)), ("compressed", (200, 100)))
                  for way, scale in zip(("broadcast", "aggregate"), ways, strict=True)}
  frontier = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
              for line in ax_frontier.lines}
  assert frontier["original"][0] == [700 * r for r in rounds]
  assert frontier["compressed"][0] == [300 * r for r in rounds]
  assert frontier["compressed"][1] == pytest.approx([0.14 * r for r in rounds])


def test_frontier_has_one_point_per_configuration_with_error_bars(tmp_path, monkeypatch):
  from fedcompress.harness import summary

  stats = summary.seed_statistics(
      {"base": {0: 0.90, 1: 0.91, 2: 0.92}, "drive": {0: 0.88, 1: 0.90, 2: 0.89},
       "single": {0: 0.85}},
      "base", {"base": {0: 3e10, 1: 3e10, 2: 3e10}, "drive": {0: 1e9, 1: 1e9, 2: 1e9},
               "single": {0: 2e8}})
  figures = []
  _keep(monkeypatch, figures)
  out = plotting.plot_frontier(stats, str(tmp_path / "frontier"))
  assert out == str(tmp_path / "frontier.png")
  _png_size(out)
  ax = figures[0].axes[0]
  assert ax.get_xscale() == "log"
  # 2e8 / 10^0.25 = 1.1e8 to 3e10 * 10^0.25 = 5.3e10: two decades inside.
  assert [t.get_text() for t in ax.get_xticklabels()] == ["$10^{9}$", "$10^{10}$"]
  # One marker per configuration at (uplink bits, mean accuracy); the bars span the CI.
  markers = [c.lines[0] for c in ax.containers]
  assert [(m.get_xdata()[0], m.get_ydata()[0]) for m in markers] == [
      (3e10, pytest.approx(0.91)), (1e9, pytest.approx(0.89)), (2e8, 0.85)]
  base_bar = ax.containers[0].lines[2][0].get_segments()[0]
  assert [y for _, y in base_bar] == pytest.approx(
      [stats[0]["accuracy"].ci_low, stats[0]["accuracy"].ci_high])
  assert ax.containers[2].lines[2] == ()  # A single seed: no interval to draw.


def test_default_labels_tell_equal_folder_names_apart(tmp_path):
  # Two sweeps' baseline runs were two lines labelled "baseline".
  assert plotting.default_labels(["runs/a/baseline", "runs/a/u8/"]) == ["baseline", "u8"]
  assert plotting.default_labels(["runs/a/baseline", "runs/b/baseline", "runs/b/u8"]) == [
      "a/baseline", "b/baseline", "b/u8"]
  assert plotting.default_labels(["x/s/base", "y/s/base"]) == ["x/s/base", "y/s/base"]
  assert plotting.default_labels([str(tmp_path / "r"), str(tmp_path / "r")]) == [
      str(tmp_path / "r")] * 2  # The same folder twice: its whole path.


def test_coded_bits_are_drawn_beside_the_raw_ones(tmp_path, monkeypatch):
  # The bits and frontier panels and the seed frontier drew raw sizes only: an adaptive
  # run sat right of a fixed-width one that sent more.
  from fedcompress.harness import summary

  figures = []
  _keep(monkeypatch, figures)
  coded = _run(tmp_path, "coded", 100, rounds=2)
  rows = reporting.read_metrics_csv(str(tmp_path / "coded" / "metrics.csv"))
  csv = reporting.CsvReporter(str(tmp_path / "coded" / "metrics.csv"))
  csv.start(1, 2)
  for r in rows:
    csv.write({**r, m.BROADCAST_CODED_BITS: 100, m.AGGREGATE_CODED_BITS: 40,
               m.BROADCAST_CUMULATIVE_CODED_BITS: 100 * r[m.ROUND],
               m.AGGREGATE_CUMULATIVE_CODED_BITS: 40 * r[m.ROUND]})
  csv.close()
  plotting.plot_runs([_run(tmp_path, "plain", 100, rounds=2), coded],
                     str(tmp_path / "runs.png"))
  _, _, bits, frontier = figures[0].axes
  lines = {line.get_label(): list(line.get_xydata()) for ax in (bits, frontier)
           for line in ax.lines}
  assert [list(p) for p in lines["coded both ways, coded"]] == [[1, 140], [2, 280]]
  assert [list(p) for p in lines["coded, coded"]] == [[140, 0.14], [280, 0.28]]
  assert "plain both ways, coded" not in lines  # Nothing coded: no second line.
  stats = [{"configuration": "adaptive", "accuracy": summary.estimate([0.5, 0.6]),
            "uplink_bits": 1000.0, "uplink_coded_bits": 400.0},
           {"configuration": "fixed", "accuracy": summary.estimate([0.5, 0.6]),
            "uplink_bits": 600.0, "uplink_coded_bits": 600.0}]
  plotting.plot_frontier(stats, str(tmp_path / "frontier.png"))
  ax = figures[1].axes[0]
  xs = sorted(x for line in ax.lines for x in line.get_xdata())
  assert 400.0 in xs and 1000.0 in xs and 600.0 in xs


def test_no_two_of_eleven_runs_are_drawn_alike(tmp_path, monkeypatch):
  # Run i took colour C{i % 10} and the same line styles: runs 0 and 10 were identical
  # lines, told apart by the legend alone (a 4-configuration sweep of 3 seeds has 12).
  runs = [_run(tmp_path, f"r{i}", 100 * (i + 1), rounds=2) for i in range(11)]
  figures = []
  _keep(monkeypatch, figures)
  plotting.plot_runs(runs, str(tmp_path / "cmp.png"))
  for ax in figures[0].axes[:4]:
    looks = {}
    for line in ax.lines:
      run, kind = line.get_label().split(" ", 1) if " " in line.get_label() else (
          line.get_label(), "frontier")
      looks.setdefault(kind, []).append(
          (line.get_color(), line.get_linestyle(), line.get_marker()))
    for kind, styles in looks.items():
      assert len(styles) == 11 and len(set(styles)) == 11, (ax.get_title(), kind, styles)
  assert plotting._run_style(0) == ("C0", "o")  # The first ten as before.


def test_plotting_leaves_the_processes_matplotlib_alone(tmp_path):
  # matplotlib.use("Agg") at import stopped a notebook's inline figures from showing.
  run = _run(tmp_path, "a", 100, rounds=2)
  script = (
      "import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt\n"
      "from fedcompress.harness import plotting\n"
      f"print(plotting.plot_runs([{run!r}], {str(tmp_path / 'a.png')!r}))\n"
      "print(matplotlib.get_backend(), plt.get_fignums())\n")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       check=True).stdout.splitlines()
  assert out[-1] == "svg []"
  _png_size(out[-2])


@pytest.mark.parametrize("second", ["{run}", "{run}/", "{root}/./a"])
def test_one_run_given_twice_is_refused(tmp_path, second):
  # Both lines were labelled with the run's full path (R7, s47).
  run = _run(tmp_path, "a", 100)
  with pytest.raises(ValueError, match="are one run: give each run once"):
    plotting.plot_runs([run, second.format(run=run, root=tmp_path)], str(tmp_path / "p.png"))
  assert not (tmp_path / "p.png").exists()


def test_a_run_named_with_a_leading_underscore_is_in_the_legends(tmp_path, monkeypatch):
  # matplotlib leaves `_`-labelled artists out of every legend: `_baseline` was drawn
  # but in no legend (R5 of s48), in the frontier of a seed sweep too.
  from fedcompress.harness import summary

  runs = [_run(tmp_path, "_baseline", 400), _run(tmp_path, "drive", 100)]
  figures = []
  _keep(monkeypatch, figures)
  plotting.plot_runs(runs, str(tmp_path / "cmp.png"))
  for ax in figures[0].axes[:4]:
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("_baseline" in t for t in shown) and any("drive" in t for t in shown), shown
  stats = summary.seed_statistics({"_base": {0: 0.9, 1: 0.91}, "d": {0: 0.8, 1: 0.82}},
                                  "_base", {"_base": {0: 3e9, 1: 3e9}, "d": {0: 1e9, 1: 1e9}})
  plotting.plot_frontier(stats, str(tmp_path / "frontier.png"))
  shown = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()]
  assert shown == [" _base (n=2)", "d (n=2)"]
