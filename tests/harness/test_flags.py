"""harness/flags.py: numeric ranges at parse time, and flags reaching the codecs."""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from fedcompress.federated import quiet
from fedcompress.harness import flags as fc_flags
from fedcompress.harness import rundir
from fedcompress.tasks.errors import file_fingerprint


def _parsed(define, *args):
  fv = flags.FlagValues()
  define(fv)
  fv(["binary", *args])
  return fv


@pytest.mark.parametrize("define", [fc_flags.define_image_experiment_flags,
                                    fc_flags.define_shakespeare_experiment_flags])
def test_every_numeric_flag_has_a_range(define):
  fv = flags.FlagValues()
  define(fv)
  numeric = {name for name in fv if isinstance(fv[name].parser,
                                               (flags.IntegerParser, flags.FloatParser))}
  # Checked by the codec records (bits, with the flags named by codec_from_flags), or any
  # value meaningful (<= 0: no limit).
  elsewhere = {"broadcast_bits", "aggregate_bits", "max_concurrent_clients"}
  assert numeric - elsewhere <= set(fc_flags.NUMBER_FLAGS)
  assert numeric - elsewhere == {n for n in fc_flags.NUMBER_FLAGS if n in fv}
  for name in numeric - elsewhere:
    assert fv[name].validators, name


def test_number_rules():
  rule = fc_flags.NUMBER_FLAGS["server_learning_rate"]
  assert rule.accepts(1.0) and rule.accepts(3e38)
  for value in (0.0, -1.0, math.nan, math.inf, 1e39, None, True):
    assert not rule.accepts(value), value
  seed = fc_flags.NUMBER_FLAGS["seed"]
  assert seed.accepts(0) and seed.accepts(2**32 - 1)
  assert not seed.accepts(-1) and not seed.accepts(2**32)
  assert seed.describe() == "must be an integer in 0..4294967295"
  assert fc_flags.NUMBER_FLAGS["max_batches_per_client"].accepts(None)


def test_values_are_checked_whenever_set():
  fv = _parsed(fc_flags.define_image_experiment_flags)
  with pytest.raises(flags.IllegalFlagValueError, match="flag --digits_alpha=nan: must be"):
    fv.digits_alpha = math.nan


@pytest.mark.slow
@pytest.mark.parametrize("codec", ["huffman", "uniform_huffman"])
def test_aggregate_bits_reach_entropy_coded_codecs(codec):
  # Issue 13, item 4 (fixed by the codec records): their builder took `bits` through
  # **kwargs, so config.json said 4 while the run quantized with 8.
  fv = _parsed(fc_flags.define_image_experiment_flags, f"--aggregate_encoder={codec}",
               "--aggregate_bits=4")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.recorded["aggregate_codec"] == f"{codec}(bits=4)>10000"
  assert config.aggregate_codec.resolved_options()["bits"] == 4
  x = tf.constant(np.random.default_rng(0).normal(size=20_000).astype(np.float32))
  encoder = config.aggregate_codec.simple_encoder(tf.TensorSpec(x.shape, tf.float32))
  encoded, _ = encoder.encode(x)
  assert len(np.unique(encoder.decode(encoded).numpy())) == 16  # 4 bits: 16 levels.


def test_chain_flags_and_flagfile(tmp_path):
  # The same chain notation as CodecSpec, on the command line and in a flagfile.
  flagfile = tmp_path / "chain.flags"
  flagfile.write_text("--aggregate_encoder=randk(fraction=0.1)|eden\n"
                      "--compression_threshold=100\n")
  fv = _parsed(fc_flags.define_image_experiment_flags, f"--flagfile={flagfile}",
               "--aggregate_bits=1")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.recorded["aggregate_codec"] == "randk(fraction=0.1)|eden(bits=1)>100"
  assert config.aggregate_codec == fc_flags.codecs.CodecSpec(
      "randk(fraction=0.1)|eden(bits=1)", threshold=100)


def test_codec_flag_refuses_unknown_names_at_parse_time():
  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  with pytest.raises(flags.IllegalFlagValueError,
                     match=r"flag --aggregate_encoder=randk\|nope: unknown codec 'nope'; "
                     "valid codecs: adaptive"):
    fv(["binary", "--aggregate_encoder=randk|nope"])


_MY_CODECS = """
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

import fedcompress

fedcompress.register_stage("uq_of_a_module", te.stages.UniformQuantizationEncodingStage)
"""


def test_codec_modules_register_codecs_the_codec_flags_then_take(tmp_path):
  import sys

  from fedcompress import codecs

  module = tmp_path / "my_codecs.py"
  module.write_text(_MY_CODECS)
  before = set(sys.modules)
  try:
    for _ in range(2):  # A sweep parses every run's flags in one process: imported once.
      fv = _parsed(fc_flags.define_image_experiment_flags, f"--codec_modules={module}",
                   "--aggregate_encoder=randk(fraction=0.1)|uq_of_a_module(bits=4)")
      codec = fc_flags.experiment_config_from_flags(fv, module_names=[]).aggregate_codec
      assert codec.name == "randk(fraction=0.1)|uq_of_a_module(bits=4)"
  finally:
    codecs.unregister("uq_of_a_module")
    for name in set(sys.modules) - before:
      del sys.modules[name]
  fv = flags.FlagValues()
  fc_flags.define_image_experiment_flags(fv)
  with pytest.raises(flags.IllegalFlagValueError, match=r"^flag --codec_modules=.*: cannot "
                     rf"import {tmp_path}/nope.py: FileNotFoundError"):
    fv(["binary", f"--codec_modules={tmp_path}/nope.py", "--aggregate_encoder=fp16"])
  with pytest.raises(flags.IllegalFlagValueError, match="unknown codec 'fp16'; .*; a codec "
                     "of your own: the module that registers it, in --codec_modules"):
    _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=fp16")


def test_a_codec_module_edited_between_segments_is_another_setting(tmp_path):
  # The codec was compared by its name only, and the module lives outside the repository:
  # a module edited from float16 to float32 and resumed made one run of two codecs.
  import sys

  from fedcompress import codecs

  module = tmp_path / "my_codecs.py"
  module.write_text(_MY_CODECS)
  before = set(sys.modules)

  def record():
    fv = _parsed(fc_flags.define_image_experiment_flags, f"--codec_modules={module}",
                 "--aggregate_encoder=uq_of_a_module(bits=4)")
    return fc_flags.experiment_config_from_flags(fv, module_names=[]).record()

  try:
    first = record()
    assert first[rundir.CODEC_MODULES_DIGEST] == [file_fingerprint(str(module), whole=True)]
    assert rundir.differences(first, record()) == []  # The same file, imported once.
    module.write_text(_MY_CODECS + "# edited\n")
    assert [d.split(" ")[0] for d in rundir.differences(first, record())] == [
        rundir.CODEC_MODULES_DIGEST]
  finally:
    codecs.unregister("uq_of_a_module")
    for name in set(sys.modules) - before:
      del sys.modules[name]


def test_chain_options_outside_the_chain_are_refused():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=randk|eden",
               "--aggregate_encoder_args=bits=1")
  with pytest.raises(ValueError, match="options of a chain go inside it"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("false", False),
                                            ("0", False)])
def test_codec_booleans(value, expected):
  # Issue 13, item 5 (fixed by the codec records): only true/false/1/0 are booleans.
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=uniform",
               f"--aggregate_encoder_args=deterministic={value}")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.aggregate_codec.resolved_options()["deterministic"] is expected


@pytest.mark.parametrize("value", ["no", "off", "yes", "on"])
def test_codec_booleans_refused(value):
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=uniform",
               f"--aggregate_encoder_args=deterministic={value}")
  with pytest.raises(ValueError, match="true/false"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_only_harmless_flags_may_differ_on_resume():
  # The list is the one place that says which recorded settings a resume may change;
  # a flag added later is compared unless someone adds it there.
  image, shakespeare = flags.FlagValues(), flags.FlagValues()
  fc_flags.define_image_experiment_flags(image)
  fc_flags.define_shakespeare_experiment_flags(shakespeare)
  compared = (set(image) | set(shakespeare)) - rundir.MAY_DIFFER_ON_RESUME
  assert {"seed", "dataset", "digits_clients", "digits_alpha", "client_learning_rate",
          "server_learning_rate", "client_optimizer", "server_optimizer", "client_epochs",
          "client_batch_size", "clients_per_round", "client_weighting", "only_digits",
          "clients", "max_eval_batches",
          "max_batches_per_client", "pad_short_clients", "model", "seq_length",
          "server_momentum", "server_epsilon", "server_initial_accumulator",
          "client_momentum", "client_epsilon", "client_initial_accumulator"} <= compared
  assert "rounds" in rundir.MAY_DIFFER_ON_RESUME  # Checked on its own: only up.
  # The cache folder may move; the file it holds is compared (data_file_fingerprint).
  assert "cache_dir" in rundir.MAY_DIFFER_ON_RESUME
  # A pretrained model is compared by its content (PRETRAINED_DIGEST), not its path.
  assert "pretrained_model" in rundir.MAY_DIFFER_ON_RESUME
  assert "aggregator" in compared  # Its options are compared resolved, through it.


def test_reordered_aggregator_options_resume_but_other_values_do_not():
  def record(args):
    fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregator=fetchsgd",
                 f"--aggregator_args={args}")
    return fc_flags.experiment_config_from_flags(fv, module_names=[fc_flags.__name__]).record()

  first = record("rows=1,fraction=0.04")
  assert rundir.differences(first, record("fraction=0.04,rows=1")) == []
  assert rundir.differences(first, record("rows=1,fraction=0.05")) != []


def test_fetchsgd_flags_reach_the_config():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregator=fetchsgd",
               "--aggregator_args=rows=1,fraction=0.048,topk=0.01")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.aggregator.name == "fetchsgd"
  assert config.aggregator.resolved_options()["fraction"] == 0.048
  assert config.record()["aggregator"] == config.aggregator.describe()
  assert config.recorded["aggregator_args"] == "rows=1,fraction=0.048,topk=0.01"


@pytest.mark.parametrize("args,message", [
    (["--aggregate_encoder=drive"], "replaces the encoded mean"),
    (["--aggregator_args=rowz=2"], "has no option"),
    (["--aggregator_args=momentum=1.5"], "momentum must be < 1"),
])
def test_fetchsgd_flags_refused(args, message):
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregator=fetchsgd", *args)
  with pytest.raises(ValueError, match=message):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_down_32x_flagfile_allocates_at_one_bit_per_coordinate(repo_root):
  # configs/codecs/down_32x.flags: at most one bit per coordinate of the tutorial CNN,
  # everything sent included, i.e. at least 32x fewer broadcast bits than float32.
  from fedcompress.codecs.allocation import AllocatedCodec

  fv = _parsed(fc_flags.define_image_experiment_flags,
               f"--flagfile={repo_root / 'configs/emnist/original.flags'}",
               f"--flagfile={repo_root / 'configs/codecs/down_32x.flags'}")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  codec = config.broadcast_codec
  assert isinstance(codec, AllocatedCodec) and codec.bits_per_coordinate == 1.0
  assert config.recorded["broadcast_codec"] == codec.describe()
  cnn = [tf.TensorSpec(s) for s in [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,),
                                    (3136, 512), (512,), (512, 10), (10,)]]
  plan = codec.plan(cnn, direction="broadcast")
  assert plan.budget == 1_663_370
  choice = plan.allocate([float(t.num_elements) for t in plan.encoded])
  assert 32 * 1_663_370 / plan.total_bits(choice) >= 32


def test_a_tf_logs_read_after_tensorflow_started_is_said(tmp_path, capsys):
  # conftest quieted TensorFlow as the binaries do; a --tf_logs found only now (in a
  # flagfile, here) cannot take effect any more.
  flagfile = tmp_path / "logs.flags"
  flagfile.write_text("--tf_logs\n")
  fv = _parsed(fc_flags.define_image_experiment_flags, f"--flagfile={flagfile}")
  fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert "warning: --tf_logs came too late" in capsys.readouterr().err
  fc_flags.experiment_config_from_flags(_parsed(fc_flags.define_image_experiment_flags),
                                        module_names=[])
  assert "tf_logs" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,requested", [
    (["--tf_logs"], True), (["--tf_logs=t"], True), (["--tf_logs=TRUE"], True),
    (["-tf_logs=1"], True), (["--tf_logs=false"], False), (["--notf_logs"], False),
    (["--tf_logs_other"], False), (["--flagfile=x"], False)])
def test_tf_logs_spellings_seen_before_tensorflow_loads(argv, requested, monkeypatch):
  monkeypatch.delenv("FEDCOMPRESS_TF_LOGS", raising=False)
  assert quiet.tf_logs_requested(["binary", *argv]) == requested


def test_dataset_flags_of_the_other_dataset_are_said(tmp_path, capsys, monkeypatch):
  fv = _parsed(fc_flags.define_image_experiment_flags, "--dataset=digits",
               f"--cache_dir={tmp_path}", "--digits_clients=4")
  fc_flags.image_task_from_flags(fv)
  err = capsys.readouterr().err
  assert "warning: --cache_dir has no effect: --dataset=digits is embedded" in err
  assert "digits_clients" not in err
  # Real EMNIST is not here: the loader is replaced, the flags are what is checked.
  monkeypatch.setattr(fc_flags.tasks, "build_image_task", lambda *a, **k: None)
  fv = _parsed(fc_flags.define_image_experiment_flags, "--dataset=emnist",
               f"--cache_dir={tmp_path}", "--digits_clients=4", "--digits_alpha=0.5")
  fc_flags.image_task_from_flags(fv)
  err = capsys.readouterr().err
  assert err.strip() == ("warning: --digits_clients, --digits_alpha have no effect: they "
                         "split --dataset=digits, not emnist")


def test_a_flag_warning_is_said_once_per_process(capsys):
  # A sweep builds each run's config at planning and again when it resumes the run:
  # the same warning for the same flags is said once, not once per build.
  for _ in range(3):
    fc_flags.experiment_config_from_flags(
        _parsed(fc_flags.define_image_experiment_flags, "--aggregate_bits=8"), module_names=[])
  assert capsys.readouterr().err.count("warning: --aggregate_bits=8 has no effect") == 1


@pytest.mark.parametrize("args,warning", [
    # The options' width won, and the warning said EDEN took no width.
    (["--aggregate_encoder=eden", "--aggregate_encoder_args=bits=4", "--aggregate_bits=2"],
     "warning: --aggregate_bits=2 has no effect: --aggregate_encoder_args set the width, or "
     "pick a codec without one (eden(bits=4)>10000 runs)"),
    (["--aggregate_encoder=topk", "--aggregate_bits=2"], "warning: --aggregate_bits=2 has no "
     "effect: --aggregate_encoder=topk takes no width or sets its own (topk>10000 "
     "runs)"),
    # A forgotten --dp: the run would train with no DP, and said nothing.
    (["--dp_noise_multiplier=1.1", "--dp_clip=0.05"], "warning: --dp_noise_multiplier, "
     "--dp_clip have no effect: --dp is none: this run has no differential privacy"),
    (["--dp=central", "--dp_field_bits=8"], "warning: --dp_field_bits has no effect: it "
     "sizes --dp=distributed's field, not --dp=central's"),
    (["--secure_aggregation", "--aggregate_encoder=fixed_int", "--client_weighting=uniform",
      "--compression_threshold=100000"], "warning: --compression_threshold has no effect: "
     "under --secure_aggregation every tensor of the update is encoded"),
    # The broadcast codec keeps the threshold: it was said to do nothing.
    (["--secure_aggregation", "--aggregate_encoder=fixed_int", "--client_weighting=uniform",
      "--broadcast_encoder=uniform", "--compression_threshold=100"], None),
    (["--secure_aggregation", "--aggregate_encoder=fixed_int", "--client_weighting=uniform",
      "--broadcast_encoder=identity()", "--compression_threshold=100"],
     "warning: --compression_threshold has no effect"),
    # Not a flag without effect, but a rerun that will differ: said before it runs.
    (["--dp=distributed", "--secure_aggregation", "--client_weighting=uniform",
      "--dp_field_bits=18"], "warning: --dp=distributed: TFF draws its noise on the clients "
     "unseeded, so a rerun or a resumed run with the same --seed differs from this one"),
    (["--dp=central", "--dp_noise_multiplier=1.1"], None),
])
def test_flags_given_to_no_effect_are_said(args, warning, capsys, monkeypatch):
  from fedcompress.harness import cli

  monkeypatch.setattr(cli, "_warned", set())
  fc_flags.experiment_config_from_flags(
      _parsed(fc_flags.define_image_experiment_flags, *args), module_names=[])
  err = capsys.readouterr().err
  assert (err == "") if warning is None else err.startswith(warning), err


def test_secure_aggregation_on_workers_is_refused_before_anything_runs():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--secure_aggregation",
               "--aggregate_encoder=fixed_int", "--client_weighting=uniform",
               "--workers=localhost:8000")
  with pytest.raises(ValueError, match=r"^--secure_aggregation \(and --dp=distributed\) "
                     "cannot run on --workers"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_bits_and_budget_exclude_each_other():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=eden",
               "--aggregate_bits=2", "--aggregate_bits_per_coordinate=2")
  with pytest.raises(ValueError, match="exclude each other"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_widths=1,2")
  with pytest.raises(ValueError, match="needs --aggregate_bits_per_coordinate"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


@pytest.mark.parametrize("args,message", [
    # A written-out width was dropped without a word (while --aggregate_bits was refused).
    (["--aggregate_encoder=eden(bits=1)"], "allocates the width: drop bits="),
    (["--aggregate_encoder=eden", "--aggregate_encoder_args=bits=1"],
     "allocates the width: drop bits="),
    # keep=0.5 made width 1 cost half a bit, and the width metrics wrong.
    (["--aggregate_encoder=eden(keep=0.5)"], "allocates the width: drop keep="),
    # Said to be EDEN's fault ("it needs a `bits` option"), with a bits=2 nobody wrote.
    (["--aggregate_encoder=randk(fraction=0.1)|eden"],
     r"width of one codec, not of the chain 'randk\(fraction=0.1\)\|eden'$"),
    # Chosen widths a codec cannot take were dropped; uniform has no keep fraction.
    (["--aggregate_encoder=uniform", "--aggregate_widths=0.5,1,2,24"],
     r"^--aggregate_widths: uniform cannot take \[0.5, 24\] \(of those given it takes \[1, 2\]"),
    (["--aggregate_encoder=eden", "--aggregate_widths=1,2,6,8"],
     r"^--aggregate_widths: eden cannot take \[6, 8\]"),
])
def test_a_budget_refuses_settings_it_would_drop(args, message):
  fv = _parsed(fc_flags.define_image_experiment_flags, *args,
               "--aggregate_bits_per_coordinate=2")
  with pytest.raises(ValueError, match=message):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_a_budget_still_picks_from_the_default_widths_those_the_codec_takes():
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=eden",
               "--aggregate_bits_per_coordinate=2")
  codec = fc_flags.experiment_config_from_flags(fv, module_names=[]).aggregate_codec
  assert codec.widths == (1, 2, 3, 4)


def test_fetchsgd_under_another_server_optimizer_is_said():
  # A FedOpt protocol file before the FetchSGD codec file: server momentum on top of
  # FetchSGD's own, which nothing said. Said by the run (Python configs too).
  from fedcompress.harness import experiment

  fv = _parsed(fc_flags.define_image_experiment_flags,
               "--flagfile=configs/fedopt/emnist62_fedavgm.flags",
               "--flagfile=configs/codecs/up_fetchsgd.flags", "--dataset=digits")
  note = experiment.fetchsgd_server_note(
      fc_flags.experiment_config_from_flags(fv, module_names=[]))
  assert note.startswith("--aggregator=fetchsgd applies its own momentum")
  assert "--server_learning_rate=0.316228 --server_momentum=0.9 then steps" in note
  fv = _parsed(fc_flags.define_image_experiment_flags,
               "--flagfile=configs/codecs/up_fetchsgd.flags", "--dataset=digits")
  assert experiment.fetchsgd_server_note(
      fc_flags.experiment_config_from_flags(fv, module_names=[])) is None
  # A config built in Python: the same note.
  config = experiment.ExperimentConfig(
      root_output_dir="/tmp/x", experiment_name="fetch",
      aggregator=fc_flags.aggregators.AggregatorSpec("fetchsgd"), server_optimizer="adam",
      server_learning_rate=0.01)
  assert "--server_optimizer=adam --server_learning_rate=0.01 then" in (
      experiment.fetchsgd_server_note(config))


def test_a_width_left_by_an_earlier_flagfile_is_refused_by_name_under_a_budget():
  # compressed_u8.flags then down_32x.flags: uniform's 8 bits stay, under an EDEN budget.
  # EDEN's own check came first and named neither flag ("bits must be ... in 1..4").
  fv = _parsed(fc_flags.define_image_experiment_flags, "--broadcast_encoder=uniform",
               "--broadcast_bits=8", "--broadcast_encoder=eden",
               "--broadcast_bits_per_coordinate=1.0")
  with pytest.raises(ValueError, match="^--broadcast_bits and "
                     "--broadcast_bits_per_coordinate exclude each other"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


@pytest.mark.parametrize("args,unused", [
    (["--aggregate_bits=8"], True),  # the default encoder, identity
    (["--aggregate_encoder=topk", "--aggregate_bits=8"], True),
    (["--aggregate_encoder=eden(bits=1)", "--aggregate_bits=2"], True),
    (["--aggregate_encoder=eden", "--aggregate_encoder_args=bits=1", "--aggregate_bits=2"],
     True),
    (["--aggregate_encoder=uniform(bits=4)|huffman", "--aggregate_bits=2"], True),
    (["--aggregate_encoder=uniform", "--aggregate_bits=4"], False),
    (["--aggregate_encoder=randk(fraction=0.1)|eden", "--aggregate_bits=1"], False),
    (["--aggregate_encoder=uniform"], False)])
def test_bits_no_codec_takes_are_said(args, unused, capsys):
  fv = _parsed(fc_flags.define_image_experiment_flags, *args)
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  err = capsys.readouterr().err
  without = fc_flags.experiment_config_from_flags(
      _parsed(fc_flags.define_image_experiment_flags,
              *[a for a in args if not a.startswith("--aggregate_bits=")]), module_names=[])
  capsys.readouterr()
  if unused:  # Said exactly when the codec is the one built without the flag.
    assert err.count("warning: --aggregate_bits=") == 1 and "has no effect" in err, err
    assert config.aggregate_codec == without.aggregate_codec
  else:
    assert "warning" not in err, err
    assert "--aggregate_bits=" not in " ".join(args) or (
        config.aggregate_codec != without.aggregate_codec)


@pytest.mark.parametrize("first,then", [
    ("deterministic=false", ""), ("", "deterministic=false"), ("", "deterministic=0")])
def test_resume_compares_codecs_as_resolved(first, then):
  # Issue 13: codecs are recorded as given, so resuming with a default option spelled
  # out (or left out) was refused as another codec.
  def config(args):
    fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregate_encoder=uniform",
                 f"--aggregate_encoder_args={args}")
    return fc_flags.experiment_config_from_flags(fv, module_names=[])

  recorded = config(first).record()
  resumed = config(then)
  assert resumed.record()["aggregate_codec"] != recorded["aggregate_codec"]
  assert rundir.differences(recorded, resumed.record_compared_with(recorded)) == []
  # Another codec is still another codec.
  other = config("deterministic=true")
  assert rundir.differences(recorded, other.record_compared_with(recorded)) == [
      f"aggregate_codec {other.record()['aggregate_codec']} "
      f"(recorded {recorded['aggregate_codec']})"]


def test_resume_compares_chains_link_by_link_as_resolved():
  # A chain's own options are {}: it was compared by its text, so a default spelled out
  # in one link was refused as another codec.
  def config(encoder):
    fv = _parsed(fc_flags.define_image_experiment_flags, f"--aggregate_encoder={encoder}")
    return fc_flags.experiment_config_from_flags(fv, module_names=[])

  recorded = config("randk(fraction=0.1)|uniform(bits=2)").record()
  resumed = config("randk(fraction=0.1)|uniform(bits=2,deterministic=false)")
  assert resumed.record()["aggregate_codec"] != recorded["aggregate_codec"]
  assert rundir.differences(recorded, resumed.record_compared_with(recorded)) == []
  other = config("randk(fraction=0.1)|uniform(bits=3)")
  assert len(rundir.differences(recorded, other.record_compared_with(recorded))) == 1


@pytest.mark.parametrize("name", ["secagg_quantized", "secagg_sketch", "dp_central",
                                  "dp_central_secagg", "dp_distributed"])
def test_secure_flagfiles_are_complete_and_accepted(repo_root, name):
  # What each configs/secure flagfile asks for is accepted by the protected mean,
  # checked as the build does, without building it.
  from fedcompress.federated import privacy
  from fedcompress.harness.experiment import CLIENT_WEIGHTINGS

  fv = _parsed(fc_flags.define_image_experiment_flags,
               f"--flagfile={repo_root / 'configs/emnist/original.flags'}",
               f"--flagfile={repo_root / f'configs/secure/{name}.flags'}")
  config = fc_flags.experiment_config_from_flags(fv, module_names=[])
  assert config.experiment_name == name
  codec = privacy.check_protected_mean(
      config.aggregate_codec, secure_aggregation=config.secure_aggregation,
      clients_per_round=config.clients_per_round, dp=config.dp_config(3383),
      client_weighting=CLIENT_WEIGHTINGS[config.client_weighting])
  if config.secure_aggregation and config.dp != "distributed":
    assert codec.codec.sum_compatible


def test_allocation_flagfiles_compare_at_the_same_bits(repo_root):
  # configs/allocation: the allocated uplink's budget per client is at most what fixed
  # EDEN 2 bits sends, everything counted (the README table's comparison).
  from fedcompress.codecs.allocation import AllocatedCodec

  def config(name):
    fv = _parsed(fc_flags.define_image_experiment_flags,
                 f"--flagfile={repo_root / 'configs/emnist/original.flags'}",
                 f"--flagfile={repo_root / f'configs/allocation/{name}.flags'}")
    return fc_flags.experiment_config_from_flags(fv, module_names=[])

  cnn = [tf.TensorSpec(s) for s in [(5, 5, 1, 32), (32,), (5, 5, 32, 64), (64,),
                                    (3136, 512), (512,), (512, 10), (10,)]]
  fixed = config("up_eden2").aggregate_codec
  sizes = [t.shape.num_elements() for t in cnn]
  fixed_bits = sum(fixed.codec.bits_formula(n, **fixed.resolved_options()) if n > 100
                   else 32 * n for n in sizes) + 32
  assert fixed_bits == 3_358_656  # With the mean's float32 weight.
  allocated = config("up_alloc2").aggregate_codec
  assert isinstance(allocated, AllocatedCodec)
  assert allocated.plan(cnn, direction="aggregate").budget <= fixed_bits
  assert config("down_32x").broadcast_codec.bits_per_coordinate == 1.0


@pytest.mark.parametrize("arg", ["--help", "-?", "--helpshort", "--helpfull", "-helpfull=true"])
def test_help_asked_for_exits_0_after_printing_it(arg, capsys):
  from absl import app
  from absl.testing import flagsaver

  from fedcompress.harness.cli import parse_flags

  app.define_help_flags()  # What app.run does before parsing.
  with flagsaver.flagsaver(), pytest.raises(SystemExit) as exit_info:
    parse_flags(["binary", arg])
  assert exit_info.value.code == 0  # absl's own is 1.
  assert "helpfull" in capsys.readouterr().out  # The help was printed.


def test_help_false_is_no_help():
  from absl import app
  from absl.testing import flagsaver

  from fedcompress.harness.cli import parse_flags

  app.define_help_flags()
  with flagsaver.flagsaver():
    assert parse_flags(["binary", "--help=false", "rest"]) == ["binary", "rest"]


def test_the_config_from_flags_records_the_cached_data_file(tmp_path):
  # A sweep compares the config from flags with a finished run's record before it skips
  # the run; the data file was recorded only by the task, at run time, so a finished run
  # made on another emnist_all.sqlite (with --cache_dir, which may move) was reused.
  from fedcompress.tasks.errors import file_fingerprint

  cache = tmp_path / "cache"
  common = ("--root_output_dir=/tmp/x", f"--cache_dir={cache}")
  image = fc_flags.define_image_experiment_flags
  assert "data_file_fingerprint" not in fc_flags.image_config_from_flags(
      _parsed(image, "--dataset=emnist", *common)).record()  # Not downloaded yet.
  cache.mkdir()
  for name, data in (("emnist_all.sqlite", b"a" * 100), ("shakespeare.sqlite", b"b" * 50)):
    (cache / name).write_bytes(data)
  emnist = fc_flags.image_config_from_flags(_parsed(image, "--dataset=emnist", *common))
  assert emnist.record()["data_file_fingerprint"] == file_fingerprint(
      str(cache / "emnist_all.sqlite"))
  assert "data_file_fingerprint" not in fc_flags.image_config_from_flags(
      _parsed(image, "--dataset=digits", *common)).record()
  shakespeare = fc_flags.shakespeare_config_from_flags(_parsed(
      fc_flags.define_shakespeare_experiment_flags, "--model=fedopt_lstm", *common))
  assert shakespeare.record()["data_file_fingerprint"] == file_fingerprint(
      str(cache / "shakespeare.sqlite"))
  # So another file is another setting.
  (cache / "emnist_all.sqlite").write_bytes(b"c" * 100)
  other = fc_flags.image_config_from_flags(_parsed(image, "--dataset=emnist", *common))
  assert rundir.differences(emnist.record(), other.record()) == [
      f"data_file_fingerprint {other.record()['data_file_fingerprint']} (recorded "
      f"{emnist.record()['data_file_fingerprint']})"]


def test_widths_spelled_otherwise_are_the_same_setting():
  # The widths flags were compared as text: a resume with 4,3,2,1 for 1,2,3,4 (or with
  # 6 and 8, which eden does not take) was refused though the codec is the same.
  def record(*args):
    fv = _parsed(fc_flags.define_image_experiment_flags, "--root_output_dir=/tmp/x",
                 "--dataset=digits", "--aggregate_encoder=eden", *args)
    return fc_flags.image_config_from_flags(fv).record()

  first = record("--aggregate_bits_per_coordinate=2", "--aggregate_widths=1,2,3,4")
  for widths in ("4,3,2,1", "1,2,3,4,6,8"):
    assert rundir.differences(first, record("--aggregate_bits_per_coordinate=2",
                                            f"--aggregate_widths={widths}")) == []
  assert rundir.differences(first, record("--aggregate_bits_per_coordinate=2",
                                          "--aggregate_widths=1,2,3")) == [
      "aggregate_codec eden>10000@2bpc[1,2,3] (recorded eden>10000@2bpc[1,2,3,4])"]
  assert rundir.differences(first, record("--aggregate_bits_per_coordinate=2.0000001",
                                          "--aggregate_widths=1,2,3,4")) == [
      "aggregate_codec eden>10000@2.0000001bpc[1,2,3,4] (recorded eden>10000@2bpc[1,2,3,4])"]


@pytest.mark.parametrize("direction,widths,warned", [
    ("aggregate", "0.5,1,1.95", "--aggregate_widths 0.5, 1.95 send part of"),
    ("aggregate", "1,2,3", None),
    # One encode that every client decodes: no mean over biased clients.
    ("broadcast", "0.5,1,1.95", None),
])
def test_uplink_widths_that_send_part_of_the_coordinates_are_said_biased(
    direction, widths, warned, capsys, monkeypatch):
  from fedcompress.harness import cli

  monkeypatch.setattr(cli, "_warned", set())
  fv = _parsed(fc_flags.define_image_experiment_flags, f"--{direction}_encoder=eden",
               f"--{direction}_bits_per_coordinate=1.5", f"--{direction}_widths={widths}")
  fc_flags.codec_from_flags(fv, direction)
  err = capsys.readouterr().err
  assert (err == "") if warned is None else err.startswith(f"warning: {warned}"), err


def test_an_aggregator_with_a_bit_budget_is_refused_in_one_line():
  # The budget's AllocatedCodec has no `is_identity`: an AttributeError traceback.
  fv = _parsed(fc_flags.define_image_experiment_flags, "--aggregator=fetchsgd",
               "--aggregate_encoder=eden", "--aggregate_bits_per_coordinate=2")
  with pytest.raises(ValueError, match="--aggregator=fetchsgd replaces the encoded mean"):
    fc_flags.experiment_config_from_flags(fv, module_names=[])


def test_on_workers_a_codec_drawing_unseeded_parameters_is_refused():
  # Through workers TFF computes the parameters once to encode and again to decode:
  # tensor_encoding's own Hadamard stage (a stateful draw) gave a mean off by 129%.
  from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

  from fedcompress import codecs

  codecs.register_stage("te_hadamard_of_a_user", te.stages.HadamardEncodingStage)
  try:
    on_workers = ("--workers=127.0.0.1:1",)
    fc_flags.experiment_config_from_flags(_parsed(
        fc_flags.define_image_experiment_flags, "--aggregate_encoder=te_hadamard_of_a_user"),
        module_names=[])
    with pytest.raises(ValueError, match=r"^--aggregate_encoder=te_hadamard_of_a_user draws "
                       r"its parameters from TensorFlow's global generator \(RandomUniformInt\)"):
      fc_flags.experiment_config_from_flags(_parsed(
          fc_flags.define_image_experiment_flags, *on_workers,
          "--aggregate_encoder=te_hadamard_of_a_user"), module_names=[])
    # The broadcast computes its parameters in its one encode and sends them along.
    fc_flags.experiment_config_from_flags(_parsed(
        fc_flags.define_image_experiment_flags, *on_workers,
        "--broadcast_encoder=te_hadamard_of_a_user"), module_names=[])
    # The built-in codecs draw through the seed scopes, budgets and chains included.
    for codec_flags in (["--aggregate_encoder=kashin", "--broadcast_encoder=eden"],
                        ["--aggregate_encoder=randk(fraction=0.1)|hadamard(bits=2)"],
                        ["--broadcast_encoder=eden", "--broadcast_bits_per_coordinate=2"]):
      fc_flags.experiment_config_from_flags(_parsed(
          fc_flags.define_image_experiment_flags, *on_workers, *codec_flags), module_names=[])
  finally:
    codecs.unregister("te_hadamard_of_a_user")


def test_a_clients_list_is_what_the_run_records_as_its_clients_per_round(capsys):
  # The listed clients train every round; --clients_per_round (10 by default, or 7
  # given) was recorded and shown in HParams though 2 clients trained, and a resume
  # without the 7 was refused over it.
  shakespeare = fc_flags.define_shakespeare_experiment_flags
  listed = ("--model=fedopt_lstm", "--clients=A,B")
  config = fc_flags.shakespeare_config_from_flags(_parsed(shakespeare, *listed))
  assert config.clients_per_round == 2 and config.record()["clients_per_round"] == 2
  assert "--clients_per_round" not in capsys.readouterr().err
  given = fc_flags.shakespeare_config_from_flags(
      _parsed(shakespeare, *listed, "--clients_per_round=7"))
  assert given.record()["clients_per_round"] == 2
  assert ("--clients lists 2 clients, who all train every round: --clients_per_round=7 is "
          "not used") in capsys.readouterr().err
  assert rundir.differences(given.record(), config.record_compared_with(given.record())) == []
  # A run recorded before this, with the flag's value, resumes.
  old = {**config.record(), "clients_per_round": 10}
  assert rundir.differences(old, config.record_compared_with(old)) == []
  # Without a list the flag is the run's.
  sampled = fc_flags.shakespeare_config_from_flags(
      _parsed(shakespeare, "--model=fedopt_lstm", "--clients_per_round=7"))
  assert sampled.record()["clients_per_round"] == 7
  assert rundir.differences(old, sampled.record_compared_with(old)) != []
