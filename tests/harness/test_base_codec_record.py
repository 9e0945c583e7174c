"""An entropy coder's base codec is recorded as a codec the run uses (s47 R3).

`huffman(base=myq)` recorded neither myq's source nor its revision (only the chain's
links were), so a run resumed on an edited myq, its bits halved from the next round,
and `uniform_huffman` would have resumed across a revision of `uniform`.
"""

import dataclasses

import pytest

from fedcompress import codecs
from fedcompress.codecs import CodecSpec, registry
from fedcompress.harness import rundir
from fedcompress.harness.experiment import ExperimentConfig, codec_names

_BASE = "my_base_q"


def _config(codec: str) -> ExperimentConfig:
  return ExperimentConfig(root_output_dir="/tmp/unused", experiment_name="e",
                          aggregate_codec=CodecSpec.parse(codec))


def _register(build, revision=1):
  registry.register(dataclasses.replace(codecs.get_codec("uniform"), name=_BASE, build=build,
                                        revision=revision), overwrite=True)


def _build(**options):  # Code of the user's (the built-ins' own code has no digest).
  return codecs.get_codec("uniform").build(**options)


@pytest.fixture
def user_base():
  _register(_build)
  yield
  registry.unregister(_BASE)


def test_the_base_is_among_the_codecs_a_spec_is_made_of(user_base):
  assert codec_names(CodecSpec.parse(f"huffman(base={_BASE},bits=8)")) == ["huffman", _BASE]
  assert codec_names(CodecSpec.parse("uniform_huffman")) == ["uniform_huffman", "uniform"]
  assert codec_names(CodecSpec.parse("uniform(bits=8)|huffman")) == ["uniform", "huffman"]


def test_an_edited_base_is_not_resumed_as_the_same_codec(user_base):
  spelt = f"huffman(base={_BASE},bits=8)"
  before = {k: rundir.jsonable(v) for k, v in _config(spelt).record().items()}
  assert before["codec_sources_sha256"].startswith(f"{_BASE}=")

  def edited_build(**options):  # Other code under the same name (a cell run again).
    return codecs.get_codec("uniform").build(**options)

  _register(edited_build)
  after = _config(spelt)
  changed = rundir.differences(before, after.record_compared_with(before))
  assert len(changed) == 1 and changed[0].startswith("codec_sources_sha256 my_base_q=")


def test_a_bases_revision_is_recorded(user_base):
  _register(_build, revision=2)
  assert _config(f"huffman(base={_BASE},bits=8)").codec_revisions() == f"{_BASE}=2"
