"""A checkpoint folder that is not one is refused before a resume runs or drops a row."""

import os
import time

import pytest
from absl import flags

from fedcompress import metrics as m
from fedcompress.harness import experiment, rundir
from fedcompress.harness import flags as fc_flags


def _config(root, *args):
  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  fv(["run", "--dataset=digits", "--digits_clients=4", "--clients_per_round=2",
      f"--root_output_dir={root}", "--experiment_name=run", *args])
  return fc_flags.image_config_from_flags(fv)


@pytest.mark.parametrize("kind", ["dangling symlink", "symlink to a file", "file"])
def test_a_checkpoint_folder_that_is_not_one_is_refused_in_one_line(tmp_path, kind):
  # Checkpoints kept on scratch space since cleaned: the resume warned "no checkpoint",
  # dropped rows 2-3 from metrics.csv, ran round 1 again, then ended in TensorFlow's
  # NotFoundError; a file there ended it in a traceback from the restore.
  from fedcompress import tasks

  config = _config(tmp_path, "--rounds=3")
  task = tasks.build_image_task("digits", digits_clients=4, seed=0)
  config = experiment.with_task_settings(task, config)
  os.makedirs(config.run_dir)
  record = experiment._RunRecord(config, began=time.perf_counter())
  record.start(1, 3)
  for r in (1, 2, 3):
    record.write({m.ROUND: r})
  record.close()
  checkpoints = os.path.join(config.run_dir, rundir.CHECKPOINT_DIR)
  if kind == "file":
    open(checkpoints, "w").close()
    said = "is not a folder"
  elif kind == "symlink to a file":
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "afile", checkpoints)
    said = f"is a symlink to {tmp_path / 'afile'}, which is not a folder"
  else:
    os.symlink(tmp_path / "scratch" / "run", checkpoints)
    said = f"is a symlink to {tmp_path / 'scratch' / 'run'}, which does not exist"
  resumed = _config(tmp_path, "--rounds=4", "--resume")
  with pytest.raises(rundir.RunDirectoryError, match=rf"^{checkpoints} {said}, so no "
                     r"checkpoint can be read or written there: restore it \(or remove it "
                     r"to start the run over\)$"):
    experiment.run_experiment(task, resumed)
