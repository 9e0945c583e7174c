"""One optimizer, however spelt, is one HParams row and one setting to a sweep (s47 R7).

`--server_optimizer=sgdm`, `sgdm` with `--server_momentum=0.9` and `sgd` with
`--server_momentum=0.9` build one TFF optimizer and wrote identical metrics, yet were
three HParams session groups, and a sweep over them was accepted as distinct runs.
"""

import pytest

from fedcompress.harness.experiment import (
    ExperimentConfig,
    resolved_optimizer,
    tensorboard_hparams,
)


@pytest.mark.parametrize("a,b", [
    (("sgdm", {}), ("sgd", {"momentum": 0.9})),
    (("sgdm", {}), ("sgdm", {"momentum": 0.9})),
    (("sgd", {}), ("sgd", {"momentum": 0.0})),
    (("adam", {}), ("adam", {"epsilon": 1e-7})),
    (("yogi", {}), ("yogi", {"initial_accumulator": 1e-6})),
])
def test_spellings_of_one_optimizer_resolve_alike(a, b):
  assert resolved_optimizer(a[0], 0.1, a[1]) == resolved_optimizer(b[0], 0.1, b[1])


@pytest.mark.parametrize("a,b", [
    (("sgd", {}), ("sgdm", {})),
    (("sgdm", {}), ("sgdm", {"momentum": 0.5})),
    (("adam", {}), ("adam", {"epsilon": 1e-3})),
    (("adagrad", {}), ("adagrad_keras", {})),
    (("adagrad", {}), ("adagrad", {"initial_accumulator": 0.0})),
])
def test_other_optimizers_stay_apart(a, b):
  assert resolved_optimizer(a[0], 0.1, a[1]) != resolved_optimizer(b[0], 0.1, b[1])


def test_hparams_of_one_optimizer_spelt_two_ways_are_equal(tmp_path):
  base = dict(root_output_dir=str(tmp_path), experiment_name="r", clients_per_round=2)
  one = ExperimentConfig(server_optimizer="sgdm", **base)
  other = ExperimentConfig(server_optimizer="sgd", server_optimizer_options={"momentum": 0.9},
                           **base)
  assert tensorboard_hparams(one) == tensorboard_hparams(other)
  assert tensorboard_hparams(one)["server_optimizer"] == "sgd(momentum=0.9)"
  assert "server_momentum" not in tensorboard_hparams(one)


def test_a_sweep_over_spellings_of_one_optimizer_is_refused(tmp_path):
  from fedcompress.harness import sweep

  with pytest.raises(ValueError, match=r"^sweep runs 'server_optimizer-sgdm' and "
                     r"'server_optimizer-sgd' would run the same settings"):
    sweep.run_sweep(sweep.runs_from_grid("server_optimizer=sgdm,sgd"), str(tmp_path / "out"),
                    common_flags="--dataset=digits --rounds=1 --server_momentum=0.9")
  assert not (tmp_path / "out").exists()


def test_generation_flags_are_not_hparams(tmp_path):
  # They change no round: two runs of one training were two HParams rows, and a resume
  # writing the text at another temperature left the HParams saying the first (R7, s47).
  config = ExperimentConfig(root_output_dir=str(tmp_path), experiment_name="r",
                            recorded={"temperature": 0.5, "generate_prompt": "ROMEO: ",
                                      "num_generate": 200, "sanity_client": "HAMLET"})
  hparams = tensorboard_hparams(config)
  assert not {"temperature", "generate_prompt", "num_generate", "sanity_client"} & set(hparams)
  assert "client_learning_rate" in hparams


def test_an_optimizer_is_shown_under_its_flags_name():
  # adagrad_keras was shown as `kerasadagrad(...)`, its class's name (R9 of s47).
  assert resolved_optimizer("adagrad_keras", 0.1).startswith("adagrad_keras(")
  assert resolved_optimizer("sgdm", 0.1) == "sgd(momentum=0.9)"


def test_every_optimizer_option_is_a_spelling():
  # The resolved optimizers hold them: HParams, sweeps and tables leave them out.
  from fedcompress.harness import rundir
  from fedcompress.harness.experiment import OPTIMIZER_OPTIONS

  assert {f"{side}_{option}" for side in ("client", "server")
          for option in OPTIMIZER_OPTIONS} == rundir.OPTIMIZER_SPELLINGS


def _from_flags(*args):
  from absl import flags

  from fedcompress.harness import flags as fc_flags

  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  fv(["binary", *args])
  return fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_a_resume_takes_one_optimizer_spelt_another_way():
  # `sgdm` resumed as `sgd --server_momentum=0.9` was refused as other settings, though
  # it runs the same optimizer the HParams, a sweep and the codec table call one
  # (R9 of s47).
  from fedcompress.harness import rundir

  recorded = _from_flags("--server_optimizer=sgdm").record()
  for spelling in (("--server_optimizer=sgd", "--server_momentum=0.9"),
                   ("--server_optimizer=sgdm", "--server_momentum=0.9")):
    resumed = _from_flags(*spelling)
    assert rundir.differences(recorded, resumed.record_compared_with(recorded)) == []
  # Another optimizer, or another learning rate, is still another setting.
  other = _from_flags("--server_optimizer=sgdm", "--server_momentum=0.5")
  assert rundir.differences(recorded, other.record_compared_with(recorded)) == [
      "--server_momentum=0.5 (recorded None)"]
  faster = _from_flags("--server_optimizer=sgd", "--server_momentum=0.9",
                       "--server_learning_rate=2.0")
  assert rundir.differences(recorded, faster.record_compared_with(recorded)) == [
      "--server_learning_rate=2.0 (recorded 1.0)"]
