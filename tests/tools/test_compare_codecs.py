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
