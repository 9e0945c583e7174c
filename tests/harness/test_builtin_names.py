"""A built-in codec's name stands for the built-in codec in a run's record."""

import pytest
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs
from fedcompress.harness import experiment, rundir
from fedcompress.tasks.task import FederatedTask


@pytest.fixture
def topk_builtin():
  """The built-in `topk`; the test registers over it, as a notebook may (`overwrite=True`),
  and it is registered again after."""
  builtin = codecs.get_codec("topk")
  yield builtin
  codecs.register(builtin, overwrite=True)


def _replace_topk():
  codecs.register_stage("topk", lambda fraction=0.01: te.stages.IdentityEncodingStage(),
                        overwrite=True)


def _config(**changes):
  return experiment.ExperimentConfig(
      root_output_dir="/tmp/unused", experiment_name="r",
      aggregate_codec=codecs.make_codec("topk"), **changes)


def test_a_run_of_a_replaced_built_in_codec_is_refused(topk_builtin):
  _replace_topk()
  assert codecs.replaced_builtin_codecs(["uniform", "topk"]) == ["topk"]
  task = FederatedTask("tiny", ["a", "b"], None, None, None, None, None, settings={})
  with pytest.raises(ValueError, match="codec 'topk' is registered to a codec of the user's"):
    experiment.check_experiment(task, _config(clients_per_round=2))
  codecs.register(topk_builtin, overwrite=True)
  assert codecs.replaced_builtin_codecs(["topk"]) == []


def test_a_record_of_user_codecs_resumed_without_them_is_refused(topk_builtin):
  # The first segment ran a user codec under a built-in name (recorded by its code's
  # digest); a resume in a fresh process ran the built-in one: the digest's key was
  # left out of the new record, and keys one side lacks were not compared.
  _replace_topk()
  first = _config().record()
  assert first[rundir.CODEC_SOURCES_DIGEST].startswith("topk=")
  codecs.register(topk_builtin, overwrite=True)
  assert rundir.CODEC_SOURCES_DIGEST not in _config().record()
  problems = rundir.differences(first, _config().record_compared_with(first))
  assert problems == [f"codec_sources_sha256 none (recorded "
                      f"{first[rundir.CODEC_SOURCES_DIGEST]})"], problems
