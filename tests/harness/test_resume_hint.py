"""What an interrupted binary says it keeps: the newest checkpoint, or that there is none."""

from fedcompress.harness.cli import INTERRUPTED, interruptible
from fedcompress.harness.experiment import resume_hint


def test_the_hint_names_the_newest_checkpoint_or_says_there_is_none(tmp_path):
  # "The last checkpoint is kept" was said before any was written (a checkpoint every
  # 50 rounds, interrupted at round 5), when --resume starts over.
  run_dir = tmp_path / "run"
  assert resume_hint(str(run_dir)) == ("no checkpoint was written yet, so a rerun with "
                                       "--resume starts from round 1")
  (run_dir / "checkpoints").mkdir(parents=True)
  assert resume_hint(str(run_dir)).startswith("no checkpoint was written yet")
  for r in (2, 10, 4):
    (run_dir / "checkpoints" / f"round_{r}").mkdir()
  assert resume_hint(str(run_dir)) == ("checkpoint round_10 is kept; rerun with --resume to "
                                       "continue from round 11")



def test_a_run_stopped_after_its_last_round_is_not_told_to_continue_past_it(tmp_path):
  # A 3-round fine-tuning interrupted while it wrote its final model was told to
  # "continue from round 4", which it does not have.
  run_dir = tmp_path / "run"
  (run_dir / "checkpoints" / "round_3").mkdir(parents=True)
  (run_dir / "config.json").write_text('{"rounds": 3}')
  assert resume_hint(str(run_dir)) == ("checkpoint round_3 of its last round is kept; rerun "
                                       "with --resume to write what follows the rounds")
  # A resume extending it, interrupted before it recorded its --rounds (a review: 11 of
  # 18 SIGINTs in its start were told the run had ended).
  assert resume_hint(str(run_dir), rounds_asked=5).endswith("continue from round 4")
  (run_dir / "config.json").write_text('{"rounds": 5}')  # Extended: rounds 4-5 to come.
  assert resume_hint(str(run_dir)).endswith("continue from round 4")
  (run_dir / "config.json").write_text("{")  # Unreadable: said on resume, not here.
  assert resume_hint(str(run_dir)).endswith("continue from round 4")

def test_a_hint_function_is_called_when_the_interrupt_comes(capsys):
  kept = ["nothing yet"]

  def main(argv):  # noqa: ARG001
    kept[0] = "round 3"  # What the run did before the interrupt.
    raise KeyboardInterrupt

  assert interruptible(main, lambda: f"kept: {kept[0]}")(["binary"]) == INTERRUPTED
  assert capsys.readouterr().err == "error: interrupted; kept: round 3\n"
