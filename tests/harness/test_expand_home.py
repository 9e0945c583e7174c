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


def test_the_tools_argparse_parser_expands_them_too(tmp_path, monkeypatch):
  # tools.op_profile --output=~/op.json wrote ./~/op.json and said `wrote ~/op.json`.
  monkeypatch.setenv("HOME", str(tmp_path))
  parser = cli.ArgumentParser()
  parser.add_argument("--output")
  parser.add_argument("--benchmark_json")
  parser.add_argument("--label")
  args = parser.parse_args(["--output=~/op.json", "--benchmark_json=~/b.json", "--label=~x"])
  assert (args.output, args.benchmark_json, args.label) == (
      str(tmp_path / "op.json"), str(tmp_path / "b.json"), "~x")


def test_a_codec_module_under_home_is_imported(tmp_path, monkeypatch):
  # Its flag's validator imports the modules while absl parses, before parse_flags.
  from fedcompress import codecs
  from fedcompress.harness import codec_modules

  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "home_codecs.py").write_text(
      "import fedcompress\n"
      "from tensorflow_model_optimization.python.core.internal import tensor_encoding as te\n"
      "fedcompress.codecs.register_stage('home_identity', te.stages.IdentityEncodingStage)\n")
  try:
    codec_modules.import_codec_modules(["~/home_codecs.py"])
    assert "home_identity" in codecs.available_codecs()
    assert "unreadable" not in " ".join(codec_modules.fingerprints(["~/home_codecs.py"]))
  finally:
    codecs.unregister("home_identity")
