"""tools/compare_codecs.py: what it refuses before running anything."""


def test_a_readme_block_readme_md_lacks_is_refused_before_any_run(load_binary, repo_root,
                                                                   monkeypatch, capsys,
                                                                   tmp_path):
  from absl import flags
  from absl.testing import flagsaver

  readme = (repo_root / "README.md").read_text()
  monkeypatch.chdir(repo_root)  # main() moves there; undone after the test.
  with load_binary("tools/compare_codecs.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["compare_codecs", f"--root_output_dir={tmp_path / 'runs'}",
                 "--configs=configs/codecs/baseline.flags",
                 "--common_flags=--dataset=digits --digits_clients=4 --clients_per_round=2 "
                 "--rounds=1 --rounds_per_eval=1", "--update_readme", "--readme_block=nosuch"])
    assert module.main(["compare_codecs"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --update_readme --readme_block: ")
  assert "README.md has no <!-- codec-table:nosuch -->" in err[0], err
  assert not (tmp_path / "runs").exists()
  assert (repo_root / "README.md").read_text() == readme


def _refused(load_binary, repo_root, monkeypatch, capsys, tmp_path, configs, *flagfiles):
  """The one error line compare_codecs exits 2 with, nothing run."""
  from absl import flags
  from absl.testing import flagsaver

  for name, text in flagfiles:
    (tmp_path / name).write_text(text)
  monkeypatch.chdir(repo_root)
  with load_binary("tools/compare_codecs.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["compare_codecs", f"--root_output_dir={tmp_path / 'runs'}",
                 f"--configs={configs}",
                 "--common_flags=--dataset=digits --digits_clients=4 --clients_per_round=2 "
                 "--rounds_per_eval=1"])
    assert module.main(["compare_codecs"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: "), err
  assert not (tmp_path / "runs").exists()
  return err[0]


def test_a_configs_pattern_matching_nothing_is_refused(load_binary, repo_root, monkeypatch,
                                                       capsys, tmp_path):
  # A typo dropped its row, exit 0 (with --update_readme, from the README's table too).
  line = _refused(load_binary, repo_root, monkeypatch, capsys, tmp_path,
                  "configs/codecs/baseline.flags,configs/codecs/up_edne2.flags")
  assert line == "error: --configs: configs/codecs/up_edne2.flags matches no flagfile"
  # A stray comma is no pattern (absl's list keeps it as ''): the typo is still said.
  line = _refused(load_binary, repo_root, monkeypatch, capsys, tmp_path,
                  ",configs/codecs/up_edne2.flags")
  assert line == "error: --configs: configs/codecs/up_edne2.flags matches no flagfile"


def test_configurations_of_other_rounds_are_refused_before_any_run(load_binary, repo_root,
                                                                  monkeypatch, capsys,
                                                                  tmp_path):
  # A 3-round baseline against a 1-round 8-bit run read as 3.0x fewer broadcast bits for
  # an uncompressed broadcast, and 3.08 uplink bits per coordinate.
  line = _refused(load_binary, repo_root, monkeypatch, capsys, tmp_path,
                  f"{tmp_path / 'baseline.flags'},{tmp_path / 'u8.flags'}",
                  ("baseline.flags", "--rounds=3\n"),
                  ("u8.flags", "--rounds=1\n--aggregate_encoder=uniform\n"))
  assert line.startswith("error: the codec table compares the configurations' final "
                         "accuracy and total bits, so they must run the same number of rounds "
                         "(3 rounds: baseline; 1 rounds: u8): give one --rounds in "
                         "--common_flags (a flagfile's gives way to it)"), line
  assert "--grid" not in line  # compare_codecs has none.
