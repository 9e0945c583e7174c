"""The answers to the tutorial's three questions: tables and sentences from known numbers.

Accuracies are chosen so that the paired differences have hand-computable intervals:
differences [d - 0.01, d, d + 0.01] over 3 seeds have std 0.01 and a 95% half-width of
t_{0.975,2} * 0.01 / sqrt(3) = 4.302653 * 0.01 / 1.732051 = 0.024841.
"""

import json
import pathlib

import pytest

from fedcompress.harness import summary
from fedcompress.harness.summary import Estimate
from tools import answers_table as at
from tools import codec_table

ACC = {
    "uniform2": {0: 0.50, 1: 0.60, 2: 0.70}, "nonuniform2": {0: 0.52, 1: 0.63, 2: 0.74},
    "uniform3": {0: 0.50, 1: 0.60, 2: 0.70}, "nonuniform3": {0: 0.51, 1: 0.59, 2: 0.70},
    "uniform4": {0: 0.50, 1: 0.60, 2: 0.70}, "nonuniform4": {0: 0.48, 1: 0.57, 2: 0.66},
    "adaptive2": {0: 0.51, 1: 0.60, 2: 0.72},
}
COORDINATES = 1000.0  # rounds x clients x parameters
RAW = {f"{q}{b}": {s: 1000.0 * b for s in range(3)}
       for q in ("uniform", "nonuniform") for b in (2, 3, 4)}
RAW["adaptive2"] = {0: 2286.0, 1: 2286.0, 2: 2286.0}
SENT = dict(RAW, adaptive2={0: 1500.0, 1: 1600.0, 2: 1700.0})


def _sizes(entropy, huffman, packed):
  return {"entropy": entropy, "huffman": huffman, "packed": packed}


# Per seed and width, bits per symbol. Packed / Huffman: 2 bits [2.0, 2.2, 2.4] (std 0.2);
# 3 bits [1.0, 1.5, 0.75] (its interval reaches below 1); 4 bits 2.0 on every seed.
PROBE = {s: {2: _sizes(0.7 + 0.05 * s, 2 / (2.0 + 0.2 * s), 2.0),
             3: _sizes(1.0, 3 / (1.0, 1.5, 0.75)[s], 3.0),
             4: _sizes(1.9, 2.0, 4.0)} for s in range(3)}
HALF = 4.302653 * 0.01 / 3**0.5


def test_configurations_name_the_codecs():
  configs = at.configurations()
  assert configs["uniform3"] == "uniform(bits=3,word_bits=32)"
  assert at.huffman_codec(3) == "uniform(bits=3,word_bits=32)|huffman"
  assert configs["nonuniform2"] == "nonuniform(bits=2)"
  assert configs["adaptive2"] == "adaptive(budget_bits_per_coordinate=2.0)"
  assert len(configs) == 7
  assert list(at.configurations([2])) == ["uniform2", "nonuniform2", "adaptive2"]
  with pytest.raises(ValueError, match="must include 2"):
    at.configurations([3, 4])


def test_by_seed_reads_run_names():
  summaries = [{"run": "uniform2_seed0", "eval/accuracy": 0.5},
               {"run": "uniform2_seed11", "eval/accuracy": 0.25},
               {"run": "a_b_seed1", "eval/accuracy": 0.75}]
  assert at.by_seed(summaries, "eval/accuracy") == {"uniform2": {0: 0.5, 11: 0.25},
                                                    "a_b": {1: 0.75}}
  with pytest.raises(ValueError, match="not named"):
    at.by_seed([{"run": "uniform2", "eval/accuracy": 0.5}], "eval/accuracy")
  with pytest.raises(ValueError, match="has no eval/accuracy"):
    at.by_seed([{"run": "u_seed0", "eval/accuracy": None}], "eval/accuracy")


def test_verdict_needs_the_interval_to_exclude_zero():
  assert at.verdict(Estimate(3, 0.03, 0.01, 0.005, 0.055)) == "higher"
  assert at.verdict(Estimate(3, -0.03, 0.01, -0.055, -0.005)) == "lower"
  assert at.verdict(Estimate(3, 0.03, 0.04, -0.07, 0.13)) == "no significant difference"
  # One seed gives no interval, and seeds that all moved by the same amount (one test
  # image each) a zero-width one: no evidence either way, and not "no difference".
  assert at.verdict(Estimate(1, 0.03, None, None, None)) == "undetermined"
  same = summary.estimate([0.0028, 0.0028])
  assert (same.ci_low, same.ci_high) == (0.0028, 0.0028)
  assert at.verdict(same) == "undetermined"


def test_sentence_says_when_there_is_no_interval():
  rows = [{"bits": 2, "verdict": at.verdict(Estimate(1, 0.03, None, None, None)),
           "diff": Estimate(1, 0.03, None, None, None)},
          {"bits": 3, "verdict": "higher", "diff": Estimate(3, 0.03, 0.01, 0.005, 0.055)}]
  assert at.nonuniform_sentence(rows) == (
      "At equal bits per coordinate, non-uniform quantization is more accurate than "
      "uniform at 3 bits (+3.00 pp [+0.50, +5.50]) and undetermined (one seed, or the "
      "same difference on every seed) at 2 bits (+3.00 pp), by the paired 95% intervals "
      "of the accuracy difference.")


def test_nonuniform_answer():
  answer = at.nonuniform_answer(ACC, RAW, COORDINATES)
  by_bits = {r["bits"]: r for r in answer.rows}
  assert by_bits[2]["diff"]["mean"] == pytest.approx(0.03)
  assert by_bits[2]["diff"]["ci_low"] == pytest.approx(0.03 - HALF, abs=1e-6)
  assert [by_bits[b]["verdict"] for b in (2, 3, 4)] == [
      "higher", "no significant difference", "lower"]
  assert by_bits[3]["uniform_bits_per_coord"] == 3.0
  assert ("| 2 | 0.6000 ± 0.2484 | 0.6300 ± 0.2733 | +3.00 pp [+0.52, +5.48] | higher "
          "| 2.00 / 2.00 |") in answer.table
  assert answer.sentence == (
      "At equal bits per coordinate, non-uniform quantization is more accurate than "
      "uniform at 2 bits (+3.00 pp [+0.52, +5.48]), less accurate at 4 bits "
      "(-3.00 pp [-5.48, -0.52]) and not significantly different at 3 bits "
      "(+0.00 pp [-2.48, +2.48]), by the paired 95% intervals of the accuracy difference.")


def test_nonuniform_answer_covers_the_widths_run():
  two_bits = {k: v for k, v in ACC.items() if k.endswith("2")}
  answer = at.nonuniform_answer(two_bits, RAW, COORDINATES)
  assert [r["bits"] for r in answer.rows] == [2]
  assert answer.sentence.startswith("At equal bits per coordinate, non-uniform quantization "
                                    "is more accurate than uniform at 2 bits (")


def test_nonuniform_sentence_without_a_significant_difference():
  rows = [{"bits": b, "verdict": "no significant difference",
           "diff": Estimate(3, 0.001, 0.01, -0.02, 0.022)} for b in (2, 3, 4)]
  assert at.nonuniform_sentence(rows) == (
      "At equal bits per coordinate, non-uniform quantization is not significantly "
      "different from uniform at 2, 3 and 4 bits (+0.10 pp [-2.00, +2.20]; +0.10 pp "
      "[-2.00, +2.20]; +0.10 pp [-2.00, +2.20]), by the paired 95% intervals of the "
      "accuracy difference.")


def test_huffman_answer():
  # The adaptive runs' bit-packed / coded ratio per seed: [2.286 / 1.5, 2.286 / 1.6, ...].
  answer = at.huffman_answer(PROBE, RAW["adaptive2"], SENT["adaptive2"])
  by_bits = {r["bits"]: r for r in answer.rows}
  assert by_bits[2]["saving"]["mean"] == pytest.approx(2.2)
  # Ratios [2.0, 2.2, 2.4]: std 0.2, half-width 4.302653 * 0.2 / sqrt(3) = 0.4968.
  assert by_bits[2]["saving"]["ci_low"] == pytest.approx(2.2 - 20 * HALF, abs=1e-6)
  assert by_bits[4]["gap"]["mean"] == pytest.approx(0.1)
  assert by_bits["adaptive runs"]["saving"]["mean"] == pytest.approx(
      (2286 / 1500 + 2286 / 1600 + 2286 / 1700) / 3)
  assert ("| 2 | 0.750 | 0.914 | 2.000 | 2.20x [1.70, 2.70] | 0.164 [-0.167, 0.496] |"
          in answer.table)
  # Ratios [1.524, 1.429, 1.345]: std 0.0897, half-width 0.2228.
  assert ("| adaptive2 runs (widths it chose, against `uniform`'s 28-bit words; every client "
          "and round) | | | | "
          "1.43x [1.21, 1.66] | |") in answer.table
  assert answer.sentence == (
      # 4 bits: 2.00x from every seed, an interval of zero width, which is no evidence.
      "Huffman coding of uniformly quantized client updates sends 2.20x fewer "
      "bits than bit-packing at 2 bits (95% CI above 1x); no saving the seeds "
      "establish at 3 and 4 bits; its stream is 0.16, 2.00 and 0.10 bits per symbol above the "
      "symbols' empirical entropy (0.75, 1.00 and 1.90 bits); in the adaptive runs coding "
      "saved 1.43x [1.21, 1.66] against the uniform codec's packing (28 bits a word) at "
      "the widths the codec chose.")
  # Every seed's ratio the same: an interval of zero width establishes nothing.
  same = {seed: 2286 for seed in RAW["adaptive2"]}
  stuck = at.huffman_answer(PROBE, same, {seed: 2000 for seed in SENT["adaptive2"]})
  assert stuck.sentence.endswith("1.14x [1.14, 1.14] against the uniform codec's packing "
                                 "(28 bits a word) at the widths the codec chose, which the "
                                 "seeds do not establish.")


def test_adaptive_answer():
  answer = at.adaptive_answer(ACC, RAW, SENT, COORDINATES)
  assert [r["configuration"] for r in answer.rows] == ["adaptive2", "uniform2", "nonuniform2"]
  adaptive, uniform, nonuniform = answer.rows
  assert adaptive["bits_per_coord"] == pytest.approx(1.6)
  assert adaptive["packed_bits_per_coord"] == pytest.approx(2.286)
  assert uniform["adaptive_minus"]["mean"] == pytest.approx(0.01)
  assert nonuniform["adaptive_minus"]["mean"] == pytest.approx(-0.02)
  assert "| adaptive2 | 0.6100 ± 0.2617 |  |  | 2.286 | 1.600 |" in answer.table
  assert answer.sentence == (
      "Within a budget of 2 bits per coordinate the adaptive codec sent 1.60 bits per "
      "coordinate (fixed rates: uniform2 2.00; nonuniform2 2.00) and showed no significant "
      "accuracy difference from uniform2 "
      "(+1.00 pp [-1.48, +3.48]) and nonuniform2 (-2.00 pp [-4.48, +0.48]), by the paired "
      "95% intervals.")


def test_section_written_into_the_readme(tmp_path):
  results = {"digits": {
      "title": "digits, 5 rounds", "experiment": "emnist", "common_flags": "--rounds=5",
      "probe": {"clients": 2, "from": "the initializers"},
      "runs": [{"run": "uniform2_seed0", "sources": ["aaaa11112222"]},
               {"run": "uniform2_seed1", "sources": ["aaaa11112222", "bbbb33334444+modified"]},
               {"run": "nonuniform2_seed0", "sources": ["aaaa11112222"]}],
      "answers": {"nonuniform": at.nonuniform_answer(ACC, RAW, COORDINATES),
                  "huffman": at.huffman_answer(PROBE, RAW["adaptive2"], SENT["adaptive2"]),
                  "adaptive": at.adaptive_answer(ACC, RAW, SENT, COORDINATES)}}}
  settings = {"command": "python -m tools.answers --readme=README.md", "commit": "abc1234",
              "date": "2026-12-01", "seeds": [0, 1, 2], "output": "docs/answers.json",
              "configurations": at.configurations()}
  section = at.format_section(results, settings)
  assert section.startswith("Generated by `make answers` (`python -m tools.answers "
                            "--readme=README.md`) on abc1234, 2026-12-01; 3 seeds (0,1,2)")
  assert "**digits, 5 rounds.** Each run: `--rounds=5`" in section
  assert "first-round updates of 2 client(s) from the initializers" in section
  assert "|huffman` (and 3, 4 bits) and decodes" in section
  # The probe measures every --bits width too: the block names them.
  results["digits"]["probe"]["widths"] = [2, 3, 4, 6]
  assert "|huffman` (and 3, 4, 6 bits) and decodes" in at.format_section(results, settings)
  del results["digits"]["probe"]["widths"]
  # Reused runs may come from older code: the block says which made them.
  assert ("Runs made on aaaa11112222 (3 runs) and bbbb33334444+modified (1 run)."
          in section)
  for answer in results["digits"]["answers"].values():
    assert answer.table in section and f"**Answer (digits).** {answer.sentence}" in section
  readme = tmp_path / "README.md"
  readme.write_text("a\n<!-- codec-table:answers -->\nold\n<!-- end codec-table -->\nb\n")
  codec_table.update_readme(str(readme), "answers", section)
  assert readme.read_text() == (
      f"a\n<!-- codec-table:answers -->\n{section}\n<!-- end codec-table -->\nb\n")
  # The rows are plain JSON (the Estimates as dicts).
  json.dumps([a.rows for a in results["digits"]["answers"].values()])


@pytest.mark.parametrize("flag", ["--datasets=", "--seeds="])
def test_answers_refuses_empty_lists_before_touching_the_readme(load_binary, repo_root,
                                                                monkeypatch, capsys, tmp_path,
                                                                flag):
  from absl import flags
  from absl.testing import flagsaver

  readme = tmp_path / "README.md"
  readme.write_text("<!-- codec-table:answers -->\nkept\n<!-- end codec-table -->\n")
  monkeypatch.chdir(repo_root)  # main() moves there; undone after the test.
  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["answers", flag, f"--readme={readme}", f"--output={tmp_path / 'answers.json'}",
                 f"--root_output_dir={tmp_path / 'runs'}"])
    assert module.main(["answers"]) == 2
  err = capsys.readouterr().err
  assert err.strip().splitlines()[-1].startswith("error: --"), err
  assert "kept" in readme.read_text()
  assert not (tmp_path / "answers.json").exists()


@pytest.mark.parametrize("text, message", [("# no block\n", "has no <!-- codec-table:answers"),
                                           (None, "cannot read")])
def test_answers_refuses_a_readme_without_its_block_before_any_run(load_binary, repo_root,
                                                                   monkeypatch, capsys,
                                                                   tmp_path, text, message):
  from absl import flags
  from absl.testing import flagsaver

  readme = tmp_path / "README.md"
  if text is not None:
    readme.write_text(text)
  monkeypatch.chdir(repo_root)  # main() moves there; undone after the test.
  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["answers", "--datasets=digits", "--seeds=0", "--bits=2", f"--readme={readme}",
                 f"--output={tmp_path / 'answers.json'}",
                 f"--root_output_dir={tmp_path / 'runs'}"])
    assert module.main(["answers"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: --readme: ") and message in err[0], err
  assert not (tmp_path / "runs").exists() and not (tmp_path / "answers.json").exists()


def test_answers_refuses_a_folder_as_output_before_any_run(load_binary, repo_root,
                                                          monkeypatch, capsys, tmp_path):
  # It ended the whole sweep with an IsADirectoryError traceback.
  from absl import flags
  from absl.testing import flagsaver

  monkeypatch.chdir(repo_root)  # main() moves there; undone after the test.
  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["answers", "--datasets=digits", "--seeds=0", "--bits=2",
                 f"--output={tmp_path}", f"--root_output_dir={tmp_path / 'runs'}"])
    assert module.main(["answers"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"error: --output: {tmp_path} is a directory; name the file to write"]
  assert not (tmp_path / "runs").exists()


def test_entropy_probe_is_measured_again_for_other_code_or_another_model(load_binary,
                                                                         tmp_path):
  from absl import flags
  from absl.testing import flagsaver

  model = tmp_path / "model.keras"
  model.write_bytes(b"a pretrained model")
  path = tmp_path / "shakespeare" / "entropy_probe.json"
  measured = {0: {2: {"entropy": 0.9, "huffman": 1.3, "packed": 2.0}}}

  def cache(settings):
    path.write_text(json.dumps({"settings": settings, "result": measured}))

  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["answers", f"--root_output_dir={tmp_path}", f"--pretrained_model={model}"])
    # Without seeds there is nothing to measure: what comes back is the cache's or nothing.
    assert module.entropy_probe("shakespeare", []) == {}
    settings = json.loads(path.read_text())["settings"]
    assert settings["code"] == module._code()
    cache(settings)
    assert module.entropy_probe("shakespeare", []) == measured
    cache({**settings, "code": "0123456"})  # Measured by other code.
    assert module.entropy_probe("shakespeare", []) == {}
    cache(settings)
    model.write_bytes(b"the model retrained")  # Same path, other weights.
    assert module.entropy_probe("shakespeare", []) == {}


@pytest.mark.parametrize("damaged", ['{"settings": {"probe": ', "[]", '{"result": {}}'])
def test_a_damaged_entropy_probe_is_measured_again(load_binary, tmp_path, capsys, damaged):
  # A truncated cache ended `make answers` in "error: Unterminated string starting at:
  # line 12 column 9 (char 270)", naming no file, on every rerun.
  from absl import flags
  from absl.testing import flagsaver

  path = tmp_path / "digits" / "entropy_probe.json"
  path.parent.mkdir()
  path.write_text(damaged)
  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    flags.FLAGS(["answers", f"--root_output_dir={tmp_path}"])
    assert module.entropy_probe("digits", []) == {}
  assert f"{path} cannot be read" in capsys.readouterr().out
  assert json.loads(path.read_text())["result"] == {}  # Written anew, whole.
  assert not path.with_name(path.name + ".tmp").exists()


def test_the_probes_code_ignores_the_tools_outputs_and_follows_the_source(load_binary,
                                                                           tmp_path):
  # Keyed on the commit stamp, the probe was measured again after `make answers` wrote
  # README.md (the stamp turned "(with modified files)"), and then reused across any
  # further uncommitted change to the code, whose stamp stayed the same.
  import subprocess

  def git(*args):
    subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

  for name in ("README.md", "fedcompress/a.py", "tools/b.py"):
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text("0\n")
  git("init", "-q")
  git("add", ".")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "0")
  with load_binary("tools/answers.py") as module:
    clean = module._code(str(tmp_path))
    (tmp_path / "README.md").write_text("the answers block, rewritten\n")
    assert module._code(str(tmp_path)) == clean
    codes = {clean}
    for edit in ("1\n", "2\n"):
      (tmp_path / "fedcompress" / "a.py").write_text(edit)
      codes.add(module._code(str(tmp_path)))
    assert len(codes) == 3 and all(c.startswith(clean) for c in codes)
    assert module._code(str(tmp_path / "no_repo_here")) == "unknown"


def test_bits_per_coordinate_count_the_rounds_the_runs_ran(tmp_path, load_binary):
  # config.json keeps the first start's --rounds; a sweep raising --rounds resumes the
  # runs, and the answers then divided 3 rounds' bits by 2 rounds' coordinates.
  for run in ("a", "b"):
    (tmp_path / run).mkdir()
    (tmp_path / run / "config.json").write_text('{"rounds": 2, "clients_per_round": 4}')
  summaries = [{"run": "a", "rounds": 3}, {"run": "b", "rounds": 3}]
  with load_binary("tools/answers.py") as module:
    parameters = module._parameters("digits")
    assert module._coordinates("digits", str(tmp_path), summaries) == 3 * 4 * parameters
    with pytest.raises(ValueError, match="ran different numbers of rounds"):
      module._coordinates("digits", str(tmp_path), [summaries[0], {"run": "b", "rounds": 2}])


def test_answers_json_names_pretrain_settings_only_for_a_model_it_trained(load_binary,
                                                                          tmp_path,
                                                                          monkeypatch):
  # It said the built-in pretraining settings for any file it was given (the README's
  # larger model, or one made by older code), and for digits-only sweeps too; then a
  # rerun (after Ctrl-C, or a --configs split) found its own model made and lost them.
  import hashlib

  from fedcompress.tasks.models import pretrain

  given = tmp_path / "given.keras"
  given.write_bytes(b"a model made elsewhere")
  digest = hashlib.sha256(b"a model made elsewhere").hexdigest()
  made = tmp_path / "made.keras"
  # Training itself is `pretrain`'s (tests/experiments/test_pretrain_char_rnn.py): here,
  # what the tool records of the file it made.
  monkeypatch.setattr(pretrain, "pretrain_char_rnn",
                      lambda output, **_: pathlib.Path(output).write_bytes(b"trained here"))
  with load_binary("tools/answers.py") as module:
    assert module.pretrained_record(str(given)) == {
        "path": str(given), "file_fingerprint": f"22:{digest}", "given": True}
    module._pretrain(str(made))
    for _ in range(2):  # The run that made it, and every rerun.
      record = module.pretrained_record(str(made))
      assert record["pretrained_here"] == {**module.PRETRAIN,
                                           "text_files": list(module.DICKENS)}
    made.write_bytes(b"retrained by other code at the same path")
    assert module.pretrained_record(str(made))["given"] is True


def test_a_home_relative_pretrained_model_is_used_not_pretrained_over(load_binary, repo_root,
                                                                      monkeypatch, tmp_path):
  # `--pretrained_model=~/m.keras` was missing at the literal path, so the tool pretrained
  # one, and the pretraining (which expands ~) wrote over the user's model.
  from absl.testing import flagsaver

  if not (repo_root / ".." / "shared" / "data" / "tff" / "shakespeare.sqlite").exists():
    pytest.skip("needs ../shared/data/tff/shakespeare.sqlite")

  class Reached(Exception):
    pass

  def stop(*_):  # The runs: not needed to see what happened to the model.
    raise Reached

  model = tmp_path / "m.keras"
  model.write_bytes(b"the user's model")
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.chdir(repo_root)  # main() moves there; undone after the test.
  with load_binary("tools/answers.py") as module, flagsaver.flagsaver():
    pretrained = []
    monkeypatch.setattr(module, "_pretrain", pretrained.append)
    monkeypatch.setattr(module, "run_dataset", stop)
    module.parse_flags(["answers", "--datasets=shakespeare", "--seeds=0", "--bits=2",
                        "--pretrained_model=~/m.keras", f"--output={tmp_path / 'answers.json'}",
                        f"--root_output_dir={tmp_path / 'runs'}", "--readme="])
    with pytest.raises(Reached):
      module.main(["answers"])
  assert pretrained == [] and model.read_bytes() == b"the user's model"
