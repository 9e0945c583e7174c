"""ExperimentConfig refuses what its processes cannot build together, for library callers too.

Each case once silently built something else: error feedback dropped DP, secure
aggregation and the aggregator (its process builds its own mean); DP with fixed clients
divided by --clients_per_round and reported the epsilon of sampled clients; a repeated
fixed client trained twice; `fixed_int` under the example-weighted mean clipped
weight x update.
"""

import hashlib
import inspect
import sys

import pytest
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.allocation import AllocatedCodec
from fedcompress.federated.aggregators import AggregatorSpec
from fedcompress.harness import rundir
from fedcompress.harness.experiment import ExperimentConfig


def _config(**overrides):
  return ExperimentConfig(root_output_dir="/nonexistent", experiment_name="x", **overrides)


BUDGET = AllocatedCodec(CodecSpec("uniform"), 2.0)


@pytest.mark.parametrize("overrides,message", [
    (dict(error_feedback="ef", dp="central", client_weighting="uniform"),
     "--error_feedback keeps its memory on the clients"),
    (dict(error_feedback="ef21", secure_aggregation=True, client_weighting="uniform"),
     "--error_feedback keeps its memory on the clients"),
    (dict(error_feedback="ef", aggregator=AggregatorSpec("fetchsgd")),
     "--error_feedback keeps its memory on the clients"),
    (dict(dp="central", aggregator=AggregatorSpec("fetchsgd")), "they take no --aggregator"),
    (dict(error_feedback="ef", aggregate_codec=BUDGET),
     "takes codecs, not a bit budget: drop --aggregate_bits_per_coordinate"),
    (dict(error_feedback="ef", broadcast_codec=BUDGET),
     "takes codecs, not a bit budget: drop --broadcast_bits_per_coordinate"),
    (dict(dp="central", aggregate_codec=BUDGET, client_weighting="uniform"),
     "take an uplink codec, not a bit budget"),
    (dict(fixed_clients=("a", "b", "a")), "--clients lists a more than once"),
    (dict(error_feedback="ef21"), "ef21 keeps the population mean"),
    (dict(error_feedback="ef", aggregate_codec=CodecSpec("countsketch")),
     "decodes the summed encodings non-linearly"),
    (dict(fixed_clients=("a", "b"), dp="central", client_weighting="uniform"),
     "takes no fixed --clients"),
    # The exact mean it compares with went up in the clear beside the secure sum, and
    # the error, unnoised, outside epsilon (R12).
    (dict(measure_error=True, dp="central", client_weighting="uniform"),
     r"^measure_error sends every client's update in the clear .* it takes neither "
     r"--secure_aggregation nor --dp$"),
    (dict(measure_error=True, secure_aggregation=True, client_weighting="uniform",
          aggregate_codec=CodecSpec("fixed_int")), "^measure_error sends every client's"),
])
def test_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    _config(**overrides).validate()


@pytest.mark.parametrize("overrides", [
    dict(error_feedback="ef", aggregate_codec=CodecSpec("topk")),
    dict(dp="central", client_weighting="uniform"),
    dict(fixed_clients=("a", "b")),
    dict(aggregate_codec=BUDGET),
    # A downlink budget works with the protected mean (it encodes the uplink only).
    dict(broadcast_codec=BUDGET, dp="central", client_weighting="uniform"),
    dict(broadcast_codec=BUDGET, secure_aggregation=True, client_weighting="uniform",
         aggregate_codec=CodecSpec("fixed_int")),
])
def test_accepted(overrides):
  _config(**overrides).validate()


def test_fixed_range_codecs_need_uniform_weighting():
  import tensorflow_federated as tff

  from fedcompress.federated.aggregation import check_weighted_codec

  weighting = tff.learning.ClientWeighting
  weighted, uniform = weighting.NUM_EXAMPLES, weighting.UNIFORM
  for codec in ("fixed_int", "countsketch(rows=1)|fixed_int(bits=4)", "topk|fixed_int"):
    with pytest.raises(ValueError, match="fixed_int clips and scales absolute values"):
      check_weighted_codec(codec, weighted)
    check_weighted_codec(codec, uniform)
  for codec in (None, "uniform", "topk|uniform(bits=4)", "countsketch"):
    check_weighted_codec(codec, weighted)
  with pytest.raises(ValueError, match="fixed_int"):
    check_weighted_codec(AllocatedCodec(CodecSpec("fixed_int"), 4.0), weighted)


@pytest.mark.parametrize("first", [
    dict(fixed_clients=("0", "1")),
    dict(aggregator=AggregatorSpec("fetchsgd")),
    dict(server_optimizer_options={"momentum": 0.9}),
])
def test_a_setting_dropped_on_resume_is_compared(first):
  # record() left unset values out, and only keys of the new record are compared: going
  # from set to unset (fixed clients to sampled, FetchSGD to the mean, momentum to TFF's
  # default) resumed the run.
  base = dict(root_output_dir="/unused", experiment_name="r", clients_per_round=2)
  recorded = {k: rundir.jsonable(v) for k, v in ExperimentConfig(**first, **base).record().items()}
  resumed = ExperimentConfig(**base)
  assert len(rundir.differences(recorded, resumed.record_compared_with(recorded))) == 1


def test_hparams_are_the_record_without_how_segments_started():
  # A resumed run showed resume=True beside an uninterrupted one's False, and the output
  # root and worker settings as if they were settings of the run; the run's name kept
  # runs of the same settings in groups of their own.
  from fedcompress.harness.experiment import tensorboard_hparams

  how = {"resume": True, "root_output_dir": "/runs", "workers": "", "tf_logs": False,
         "max_concurrent_clients": 2, "worker_timeout_s": 120.0, "rounds_per_checkpoint": 1,
         "cache_dir": "/cache", "experiment_name": "original",
         "pretrained_model": "/models/char_rnn.keras"}
  assert set(how) == rundir.HOW_NOT_WHAT
  assert rundir.HOW_NOT_WHAT <= rundir.MAY_DIFFER_ON_RESUME  # None changes a result.
  config = _config(recorded={**how, "client_learning_rate": 0.1, "dataset": "digits"})
  hparams = tensorboard_hparams(config)
  # The codecs and optimizers as they run (R7 of s47: the optimizers' options went).
  assert hparams == {**{k: v for k, v in config.record().items()
                        if k not in how and k not in rundir.OPTIMIZER_SPELLINGS},
                     "broadcast_codec": "identity", "aggregate_codec": "identity",
                     "client_optimizer": "sgd", "server_optimizer": "sgd"}
  assert {"dataset", "client_learning_rate", "aggregate_codec", "seed"} <= set(hparams)


def test_a_resumes_hparams_are_the_record_of_the_runs_first_start(tmp_path):
  # A resume may spell a setting otherwise and still be the same run; its HParams
  # showed the new spelling beside config.json's.
  import json

  from fedcompress.harness.experiment import tensorboard_hparams

  def _config(**kw):
    return ExperimentConfig(experiment_name="x", **kw)

  first = _config(root_output_dir=str(tmp_path), recorded={"temperature": 1.0})
  (tmp_path / first.experiment_name).mkdir()
  (tmp_path / first.experiment_name / rundir.CONFIG_FILE).write_text(
      json.dumps({k: rundir.jsonable(v) for k, v in first.record().items()}))
  resumed = _config(root_output_dir=str(tmp_path), recorded={"temperature": 0.5})
  # (The text's temperature is no HParam since R7 of s47: the rounds never used it.)
  assert "temperature" not in tensorboard_hparams(resumed)
  assert tensorboard_hparams(resumed) == tensorboard_hparams(first)
  # A run extended to more rounds shows them, as an uninterrupted run of as many does.
  extended = _config(root_output_dir=str(tmp_path), recorded={"temperature": 1.0},
                     rounds=first.rounds + 10)
  assert tensorboard_hparams(extended)["rounds"] == first.rounds + 10


def test_hparams_show_the_codec_that_ran_not_how_its_flags_spelled_it():
  # Three runs of uniform(bits=8) over 10,000 (bits by default, by --aggregate_bits, by
  # --aggregate_encoder_args) were three HParams rows; and the digits' flags, which do
  # nothing on EMNIST, split EMNIST runs too.
  from fedcompress.harness.experiment import tensorboard_hparams

  codecs = [CodecSpec("uniform"), CodecSpec("uniform", {"bits": 8}),
            CodecSpec("uniform", {"bits": 8, "deterministic": False})]
  spellings = [{}, {"aggregate_bits": 8}, {"aggregate_encoder": "uniform(bits=8)",
                                           "aggregate_encoder_args": "deterministic=False"}]
  shown = [tensorboard_hparams(_config(aggregate_codec=codec, recorded={
      "dataset": "emnist", "digits_clients": 20 + i, "dp_clip": 0.5 + i, **spelled}))
      for i, (codec, spelled) in enumerate(zip(codecs, spellings, strict=True))]
  assert shown[0] == shown[1] == shown[2]
  assert shown[0]["aggregate_codec"] == "uniform(bits=8,deterministic=False,word_bits=28)>10000"
  assert not rundir.SPELLINGS & set(shown[0]) and "digits_clients" not in shown[0]
  assert "dp_clip" not in shown[0]  # Without --dp, as the binary says, it does nothing.
  dp = tensorboard_hparams(_config(dp="central", client_weighting="uniform",
                                   recorded={"dp_field_bits": 16}))
  assert dp["dp_clip"] == 0.1 and "dp_field_bits" not in dp
  digits = tensorboard_hparams(_config(recorded={"dataset": "digits", "digits_clients": 20}))
  assert digits["digits_clients"] == 20
  assert rundir.SPELLINGS <= rundir.MAY_DIFFER_ON_RESUME  # Compared resolved, on resume too.


@pytest.mark.parametrize("overrides,direction", [
    (dict(aggregate_codec=CodecSpec("fixed_int", {"bits": 4}), client_weighting="uniform"),
     "aggregate"),
    (dict(aggregate_codec=CodecSpec("countsketch|fixed_int(bits=4)"),
          client_weighting="uniform", dp="central"), "aggregate"),
    (dict(broadcast_codec=CodecSpec("fixed_int", {"bits": 4}), secure_aggregation=True,
          aggregate_codec=CodecSpec("fixed_int", {"bits": 4}), client_weighting="uniform"),
     "broadcast"),
    (dict(aggregate_codec=CodecSpec("fixed_int", {"bits": 4}), secure_aggregation=True,
          client_weighting="uniform"), None),
    (dict(aggregate_codec=CodecSpec("uniform", {"bits": 4})), None),
])
def test_fixed_int_outside_the_secure_sum_is_said_to_send_int32(overrides, direction):
  # Its bits set the scale only; outside the secure sum every coordinate is an int32.
  from fedcompress.harness.experiment import plain_codec_note

  note = plain_codec_note(_config(**overrides))
  if direction is None:
    assert note is None
  else:
    clipped = ("; and it clips the weights of every tensor it encodes to [-0.01, 0.01] (its "
               "clip bounds an update, not the model)") if direction == "broadcast" else ""
    assert note == (f"--{direction}_encoder: fixed_int sends int32 outside "
                    "--secure_aggregation, 32 bits a coordinate: its bits=4 sets its "
                    "precision, not its size on the wire" + clipped)


@pytest.mark.parametrize("overrides,names", [
    (dict(dp="central", aggregate_codec=CodecSpec("randk", {"fraction": 0.01})), "randk"),
    (dict(dp="central_adaptive", aggregate_codec=CodecSpec("countsketch|fixed_int")),
     "countsketch|fixed_int"),
    (dict(dp="central"), None),  # identity: the decoded update is the clipped one
    (dict(dp="distributed", aggregate_codec=CodecSpec("fixed_int")), None),
    (dict(aggregate_codec=CodecSpec("randk")), None),
])
def test_central_dp_with_a_codec_says_its_epsilon_may_be_optimistic(overrides, names):
  # randk(fraction=0.01) took a clipped update of norm 1 to 10, and the run printed
  # "privacy epsilon 2.83" (accounted at --dp_clip) without a word.
  from fedcompress.harness.experiment import dp_codec_note

  note = dp_codec_note(_config(client_weighting="uniform", **overrides))
  if names is None:
    assert note is None
  else:
    assert note.startswith(f"--dp={overrides['dp']} with --aggregate_encoder={names}: ")
    assert "reported privacy epsilon" in note and "optimistic" in note


def test_a_run_of_an_earlier_codec_revision_is_not_resumed():
  # adaptive at 2.0 bits per coordinate stayed at width 1 before its revision 2, and
  # nothing recorded told such a run from one of the new code: a resume mixed widths 1
  # and 2 in one metrics.csv, and sweeps would reuse the old runs.
  base = dict(root_output_dir="/unused", experiment_name="r", clients_per_round=2)
  budget = {"budget_bits_per_coordinate": 2.0}
  for codec in (CodecSpec("adaptive", budget),
                CodecSpec("randk|adaptive(budget_bits_per_coordinate=2.0)")):
    config = ExperimentConfig(aggregate_codec=codec, **base)
    record = config.record()
    assert record[rundir.CODEC_REVISIONS] == "adaptive=3"
    before = {k: rundir.jsonable(v) for k, v in record.items() if k != rundir.CODEC_REVISIONS}
    assert rundir.differences(before, config.record_compared_with(before)) == [
        "codec_revisions adaptive=3 (recorded none)"]
    recorded = {k: rundir.jsonable(v) for k, v in record.items()}
    assert rundir.differences(recorded, config.record_compared_with(recorded)) == []
  # Codecs of revision 1 record nothing, so runs made before the record resume as before.
  plain = ExperimentConfig(aggregate_codec=CodecSpec("uniform", {"bits": 8}), **base)
  assert rundir.CODEC_REVISIONS not in plain.record()
  old = {k: rundir.jsonable(v) for k, v in plain.record().items()}
  assert rundir.differences(old, plain.record_compared_with(old)) == []



class _CellStageV1(te.stages.IdentityEncodingStage):
  """A notebook cell's stage (the README's fp16 one sends float16)."""

  DTYPE = "float16"


class _CellStageV2(te.stages.IdentityEncodingStage):
  """The same cell edited to float32 and run again."""

  DTYPE = "float32"


@te.core.tf_style_encoding_stage
class _DecoratedCellStageV1(te.core.EncodingStageInterface):
  """The README's kind of stage: decorated, so registered as tensor_encoding's subclass."""

  name = "cell"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def get_params(self):
    return {}, {}

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float16)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32)


@te.core.tf_style_encoding_stage
class _DecoratedCellStageV2(_DecoratedCellStageV1.__bases__[0]):
  """The same cell edited: it sends float32."""

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, tf.float32)}


def test_a_decorated_user_stage_is_recorded_by_its_own_source():
  # tf_style_encoding_stage's wrapper is defined in site-packages: its source was
  # skipped as installed code, and nothing was recorded for the README's own example.
  from fedcompress.codecs import register_stage, unregister

  try:
    register_stage("decorated_of_a_user", _DecoratedCellStageV1, overwrite=True)
    first = _config(aggregate_codec=CodecSpec("decorated_of_a_user")).record()
    from fedcompress.codecs import get_codec

    # The user's class's text, as records made before 6ad6c42 hashed it alone.
    digest = hashlib.sha256(inspect.getsource(
        _DecoratedCellStageV1.__bases__[0]).encode()).hexdigest()[:16]
    codec = get_codec("decorated_of_a_user")
    assert codec.legacy_source_digest == digest != codec.source_digest
    assert first[rundir.CODEC_SOURCES_DIGEST] == f"decorated_of_a_user={codec.source_digest}"
    register_stage("decorated_of_a_user", _DecoratedCellStageV2, overwrite=True)
    changed = rundir.differences(first, _config(
        aggregate_codec=CodecSpec("decorated_of_a_user")).record())
    assert [d.split(" ")[0] for d in changed] == [rundir.CODEC_SOURCES_DIGEST]
  finally:
    unregister("decorated_of_a_user")


_CELL = """
import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

@te.core.tf_style_encoding_stage
class CellStage(te.core.EncodingStageInterface):
  name = "cell"
  compressible_tensors_keys = ["values"]
  commutes_with_sum = False
  decode_needs_input_shape = False

  def get_params(self):
    return {}, {}

  # The edit below changes only this attribute: the methods' text stays the same.
  WIDTH = tf.DTYPE

  def encode(self, x, encode_params):
    return {"values": tf.cast(x, self.WIDTH)}

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    return tf.cast(encoded_tensors["values"], tf.float32)
"""


def _notebook_cell_stage(dtype: str, number: int):
  """`CellStage` as a Jupyter cell defines it: its module has no file (Python finds no
  source for the class), its functions keep the cell's file, which linecache holds."""
  import linecache

  source = _CELL.replace("DTYPE", dtype)
  filename = f"/tmp/ipykernel_of_a_user/{number}.py"
  linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
  namespace = {"__name__": "__main__"}  # The kernel's __main__, which has no file.
  exec(compile(source, filename, "exec"), namespace)  # noqa: S102
  return namespace["CellStage"]


def test_a_notebook_cells_stage_is_recorded_by_its_class_text(monkeypatch):
  # Python finds no source for a class of a notebook cell: the README's example ended
  # run_experiment in Jupyter (OSError: source code not available) before round 1.
  import types

  from fedcompress.codecs import register_stage, unregister

  monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))

  try:
    register_stage("notebook_of_a_user", _notebook_cell_stage("float16", 1), overwrite=True)
    first = _config(aggregate_codec=CodecSpec("notebook_of_a_user")).record()
    assert first[rundir.CODEC_SOURCES_DIGEST].startswith("notebook_of_a_user=")
    # The same cell run again is the same codec; edited, another.
    register_stage("notebook_of_a_user", _notebook_cell_stage("float16", 2), overwrite=True)
    assert rundir.differences(first, _config(
        aggregate_codec=CodecSpec("notebook_of_a_user")).record()) == []
    register_stage("notebook_of_a_user", _notebook_cell_stage("float32", 3), overwrite=True)
    changed = rundir.differences(first, _config(
        aggregate_codec=CodecSpec("notebook_of_a_user")).record())
    assert [d.split(" ")[0] for d in changed] == [rundir.CODEC_SOURCES_DIGEST]
  finally:
    unregister("notebook_of_a_user")


def test_a_record_made_before_decorated_stages_were_hashed_still_resumes():
  # Before 4cdab92 a decorated stage's source went unrecorded: a run of it and of an
  # undecorated codec recorded the latter alone, and the longer record now was refused
  # as edited code.
  from fedcompress.codecs import register_stage, unregister

  try:
    register_stage("decorated_of_a_user", _DecoratedCellStageV1, overwrite=True)
    register_stage("cell_of_a_user", _CellStageV1, overwrite=True)
    config = _config(broadcast_codec=CodecSpec("cell_of_a_user"),
                     aggregate_codec=CodecSpec("decorated_of_a_user"))
    now = config.record()[rundir.CODEC_SOURCES_DIGEST]
    assert now.startswith("cell_of_a_user=") and ",decorated_of_a_user=" in now
    old = {**config.record(), rundir.CODEC_SOURCES_DIGEST: now.split(",")[0]}
    assert rundir.differences(old, config.record_compared_with(old)) == []
    # What it did record is still compared.
    edited = {**old, rundir.CODEC_SOURCES_DIGEST: "cell_of_a_user=0123456789abcdef"}
    assert [d.split(" ")[0] for d in rundir.differences(
        edited, config.record_compared_with(edited))] == [rundir.CODEC_SOURCES_DIGEST]
  finally:
    unregister("decorated_of_a_user")
    unregister("cell_of_a_user")


def test_a_user_codec_registered_again_with_other_code_is_another_setting():
  # A notebook re-registered its codec under the same name and resumed: the run went on
  # as another codec (its bits doubled from the next round), compared by its name alone.
  from fedcompress.codecs import register_stage, unregister

  assert rundir.CODEC_SOURCES_DIGEST not in _config(aggregate_codec=CodecSpec("eden")).record()
  try:
    register_stage("cell_of_a_user", _CellStageV1, overwrite=True)
    first = _config(aggregate_codec=CodecSpec("cell_of_a_user")).record()
    assert first[rundir.CODEC_SOURCES_DIGEST].startswith("cell_of_a_user=")
    assert rundir.differences(first, _config(
        aggregate_codec=CodecSpec("cell_of_a_user")).record()) == []
    register_stage("cell_of_a_user", _CellStageV2, overwrite=True)
    changed = rundir.differences(first, _config(
        aggregate_codec=CodecSpec("cell_of_a_user")).record())
    assert [d.split(" ")[0] for d in changed] == [rundir.CODEC_SOURCES_DIGEST]
  finally:
    unregister("cell_of_a_user")


def test_a_python_config_with_fixed_clients_records_their_number():
  # 3 listed clients trained and config.json said 2 (the flag layer records the list's
  # length since 19cc276; a config built in Python did not).
  config = _config(fixed_clients=("a", "b", "c"), clients_per_round=2)
  assert config.record()["clients_per_round"] == 3
  assert _config(clients_per_round=2).record()["clients_per_round"] == 2


@pytest.mark.parametrize("field,value,message", [
    ("seed", -1, r"--seed \(seed=\) must be an integer >= 0 and <= 4294967295, got -1"),
    ("seed", None, "--seed"), ("seed", "1", "--seed"),
    ("rounds", 2.5, r"--rounds \(rounds=\) must be an integer >= 1, got 2.5"),
    ("clients_per_round", 2.0, "--clients_per_round"), ("rounds", True, "--rounds"),
    ("resume", "no", "resume must be True or False, got 'no'"),
    ("aggregate_codec", "uniform(bits=8)", "aggregate_codec must be a fedcompress.CodecSpec"),
    ("aggregator", "fetchsgd", "aggregator must be an AggregatorSpec")])
def test_a_python_config_is_held_to_the_flags_rules(field, value, message):
  # Each made the run directory and failed in round 1 with a raw TypeError (or, for
  # resume="no", resumed), where the flags refuse them up front.
  with pytest.raises(ValueError, match=message):
    _config(**{field: value}).validate()
  import numpy as np

  _config(seed=np.int64(3), rounds=np.int32(2)).validate()  # numpy integers are integers.


def test_numpy_values_are_recorded_as_numbers():
  # A notebook's `for seed in np.arange(1, 2)` wrote "seed": "1", and the resume with
  # seed=1 was refused as "--seed=1 (recorded 1)".
  import numpy as np

  record = _config(seed=np.int64(1), secure_aggregation=np.bool_(False),
                   client_learning_rate=np.float32(0.5)).record()
  assert record["seed"] == 1 and type(record["seed"]) is int
  assert record["secure_aggregation"] is False
  assert record["client_learning_rate"] == 0.5 and type(record["client_learning_rate"]) is float
  assert rundir.differences(record, _config(seed=1, client_learning_rate=0.5).record()) == []


def test_numpy_values_become_python_values():
  # A numpy `rounds` passed validate(), then failed writing run_info.json after
  # config.json was written (the corrected cell was then refused); a numpy array of
  # client ids failed with AttributeError; a numpy clients_per_round was refused by the
  # secure sum as "must be an integer >= 1, got 4".
  import json

  import numpy as np

  config = _config(rounds=np.int64(2), clients_per_round=np.int32(4),
                   fixed_clients=np.array(["a", "b"]))
  config.validate()
  assert (type(config.rounds), type(config.clients_per_round)) == (int, int)
  assert config.fixed_clients == ("a", "b") and type(config.fixed_clients[0]) is str
  json.dumps(config.record())
  with pytest.raises(ValueError, match=r"fixed_clients must be a list of client ids "
                     r"\(strings, as in task.client_ids\), got \(1, 2\)"):
    _config(fixed_clients=[1, 2]).validate()


def test_hparams_show_no_width_a_budget_sets_nor_a_threshold_secure_sums_ignore():
  # A 2-bits-per-coordinate run showed uniform(bits=8,...)@2bpc, a width it never used;
  # under secure aggregation the aggregate codec's threshold, which it ignores, split rows.
  from fedcompress.harness.experiment import tensorboard_hparams

  budget = tensorboard_hparams(_config(aggregate_codec=AllocatedCodec(
      CodecSpec("eden", threshold=100), 1.0, widths=(0.9, 1, 2))))
  assert budget["aggregate_codec"] == (
      "eden(block_size=2048,rounds=2,shared_rotation=False)>100@1bpc[0.9,1,2]")
  secure = [tensorboard_hparams(_config(
      secure_aggregation=True, client_weighting="uniform",
      aggregate_codec=CodecSpec("fixed_int", threshold=t))) for t in (100, 10000)]
  assert secure[0] == secure[1]
  assert secure[0]["aggregate_codec"] == "fixed_int(bits=8,clip=0.01,rotation=False)"


def test_a_setting_unset_on_resume_is_said_unset():
  # It read `--server_initial_accumulator=None (recorded 0.0)`: no value the flag takes.
  assert rundir.differences({"server_initial_accumulator": 0.0},
                            {"server_initial_accumulator": None}) == [
      "--server_initial_accumulator unset (recorded 0.0)"]
