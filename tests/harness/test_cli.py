"""harness/cli.py's check of a result file, and the tools that take it before their work."""

import pytest

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
