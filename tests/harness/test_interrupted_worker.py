"""A Ctrl-C that reaches the local TFF worker first is said as an interruption."""

from fedcompress.federated import runtime
from fedcompress.harness import cli, experiment


def _binary_main(error):
  def main(argv):
    del argv
    try:
      raise error
    except Exception as e:  # As the binaries call it.
      code = experiment.run_failure(e, kept="Checkpoint round_2 is kept")
      if code is None:
        raise
      return code
  return cli.interruptible(main, "rerun with --resume to continue from round 3")


def test_an_interrupted_worker_is_an_interruption_not_a_lost_worker(capsys):
  # Ctrl-C signals the whole process group: when the main thread asked for the worker
  # before its own KeyboardInterrupt surfaced, the run ended as a lost worker (exit 1,
  # which a scheduler retries) with a line about the Python API.
  interrupted = runtime.WorkerInterruptedError("the local TFF worker was interrupted")
  assert _binary_main(interrupted)([]) == cli.INTERRUPTED == 130
  assert capsys.readouterr().err == (
      "error: interrupted; rerun with --resume to continue from round 3\n")
  # A worker lost otherwise is still a failure.
  lost = runtime.WorkerUnavailableError("the TFF worker at localhost:1 stopped answering")
  assert _binary_main(lost)([]) == 1
  assert "stopped answering Checkpoint round_2 is kept" in capsys.readouterr().err
