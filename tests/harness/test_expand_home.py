"""`~` in the binaries' path flags is the home folder, as the shell would have made it.

The shell expands `~` only at a word's start: `--root_output_dir=~/runs` made a folder
named `~` in the current one, said as `~/runs/x` (read as home), and a tool looked for
`~/m.keras` at the literal path, then pretrained a model over the real one.
"""

from absl import flags

from fedcompress.harness import cli


def test_path_flags_are_expanded_and_others_kept(tmp_path, monkeypatch):
  monkeypatch.setenv("HOME", str(tmp_path))
  fv = flags.FlagValues()
  flags.DEFINE_string("root_output_dir", None, "", flag_values=fv)
  flags.DEFINE_list("text_files", [], "", flag_values=fv)
  flags.DEFINE_string("output", None, "", flag_values=fv)
  flags.DEFINE_string("generate_prompt", "", "", flag_values=fv)
  fv(["binary", "--root_output_dir=~/runs", "--text_files=~/a.txt,b.txt",
      "--generate_prompt=~/x"])
  cli.expand_home(fv)
  assert fv.root_output_dir == str(tmp_path / "runs")
  assert fv.text_files == [str(tmp_path / "a.txt"), "b.txt"]
  assert fv.output is None and fv.generate_prompt == "~/x"
