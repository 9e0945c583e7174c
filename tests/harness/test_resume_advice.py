"""What a refused resume advises: no flag gives back a codec's earlier revision (s46 R10)."""

import json
import os

import pytest

from fedcompress.codecs import CodecSpec
from fedcompress.harness import rundir
from fedcompress.harness.experiment import ExperimentConfig, check_run_dir


def _config(tmp_path, **overrides):
  return ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="r",
                          clients_per_round=2, resume=True, **overrides)


def _recorded(config, **changes):
  record = {k: rundir.jsonable(v) for k, v in config.record().items()}
  record.update(changes)
  record = {k: v for k, v in record.items() if v is not None}
  run_dir = config.run_dir
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, rundir.CONFIG_FILE), "w") as f:
    json.dump(record, f)


def test_a_codec_revision_is_not_advised_as_a_value_to_resume_with(tmp_path):
  # A run of adaptive's revision 2 was told "Resume with the recorded values", which no
  # flag can give.
  config = _config(tmp_path, aggregate_codec=CodecSpec(
      "adaptive", {"budget_bits_per_coordinate": 2.0}))
  _recorded(config, **{rundir.CODEC_REVISIONS: None})
  with pytest.raises(rundir.RunDirectoryError) as info:
    check_run_dir(config)
  said = str(info.value)
  assert "codec_revisions adaptive=3 (recorded none)" in said
  assert "Resume with the recorded values" not in said
  assert "no flag gives back the recorded one. Start a new run under another" in said


def test_a_flag_mismatch_still_advises_the_recorded_values(tmp_path):
  config = _config(tmp_path, aggregate_codec=CodecSpec("uniform", {"bits": 8}))
  _recorded(config, client_learning_rate=0.5)
  with pytest.raises(rundir.RunDirectoryError) as info:
    check_run_dir(config)
  said = str(info.value)
  assert "(recorded 0.5)" in said
  assert "Resume with the recorded values, or start a new run under another" in said
