"""harness/cli.py's check of a result file, and the tools that take it before their work."""

import pathlib

import pytest

from fedcompress.harness import cli
from fedcompress.harness.cli import check_output_file


def test_a_result_file_is_checked_and_its_folder_made(tmp_path):
  check_output_file(str(tmp_path / "new" / "deeper" / "result.json"))
  assert (tmp_path / "new" / "deeper").is_dir()
  for path, message in ((str(tmp_path), "is a directory; name the file to write"),
                        ("", "the path is empty"),
                        # A folder to be made: the work ran, then IsADirectoryError.
                        (str(tmp_path / "results") + "/", "is a directory"),
                        (str(tmp_path / "file.txt" / "result.json"), "cannot make")):
    (tmp_path / "file.txt").write_text("")
    with pytest.raises(ValueError, match=message):
      check_output_file(path)


@pytest.mark.parametrize("tool", ["mean_error", "codec_error", "allocation_bias", "op_profile",
                                  "padded_weights"])
def test_the_tools_refuse_a_folder_as_their_output_before_their_work(tool, tmp_path, capsys):
  # They made the parent folder only, and lost their figures to IsADirectoryError at
  # the end (a review's `--output=<folder>`).
  import importlib

  module = importlib.import_module(f"tools.{tool}")
  argv = [f"--output={tmp_path}"] + (["--codec=drive"] if tool == "op_profile" else [])
  with pytest.raises(SystemExit) as exit_info:
    module.main(argv)
  assert exit_info.value.code == 2
  assert f"--output: {tmp_path} is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("tool", ["ab_functions", "allocation_bias", "codec_cost",
                                  "codec_error", "codec_speed", "mean_error", "op_profile",
                                  "padded_weights", "uncounted_bits"])
def test_the_tools_usage_errors_are_one_error_line(tool, capsys):
  # argparse printed its usage block, then `prog: error: ...`: 3-4 lines where the
  # binaries print one.
  import importlib

  module = importlib.import_module(f"tools.{tool}")
  with pytest.raises(SystemExit) as exit_info:
    module.main(["--no_such_option"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith("error: "), err
  assert err.endswith(" (--help lists the options)\n"), err
  # ab_functions says first what it lacks, the others the unknown option.
  assert "--no_such_option" in err or "are required" in err, err


def test_run_script_says_an_interrupt_in_one_line(capsys):
  def main(argv=None):
    assert argv is None  # argparse reads sys.argv itself.
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as exit_info:
    cli.run_script(main)
  assert exit_info.value.code == cli.INTERRUPTED
  assert capsys.readouterr().err == "error: interrupted\n"


def test_every_argparse_tool_runs_through_run_script():
  # Ctrl-C in codec_error, mean_error, ... printed a TensorFlow traceback ending in
  # KeyboardInterrupt (a review), where the absl tools said it in one line.
  tools = pathlib.Path(__file__).resolve().parents[2] / "tools"
  argparse_tools = [path for path in sorted(tools.glob("*.py"))
                    if "ArgumentParser(" in path.read_text()
                    and 'if __name__ == "__main__":' in path.read_text()]
  assert len(argparse_tools) >= 9
  for path in argparse_tools:
    main_block = path.read_text().split('if __name__ == "__main__":')[1]
    said = ("run_script(main)", "interruptible(")
    if path.name == "check_install.py":  # Stdlib only: its main says it itself.
      said = ("except KeyboardInterrupt:",)
      main_block = path.read_text()
    assert any(s in main_block for s in said), path.name
