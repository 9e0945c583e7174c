"""`register_stage`'s own arguments are part of the codec a run records."""

from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress import codecs

NAME = "flatten_of_a_user"


class _RowStage(te.stages.IdentityEncodingStage):
  """A stage of the user's (its text is what a run records)."""


def test_flatten_changes_the_recorded_digest():
  # flatten decides whether the stage sees the kernel's rows or one vector (a per-row
  # scale against one scale: other bits and errors), yet a resume with the other took
  # the run as the same codec.
  try:
    flat = codecs.register_stage(NAME, _RowStage, overwrite=True).source_digest
    again = codecs.register_stage(NAME, _RowStage, overwrite=True).source_digest
    rows = codecs.register_stage(NAME, _RowStage, flatten=False, overwrite=True).source_digest
  finally:
    codecs.unregister(NAME)
  assert flat is not None and flat == again
  assert rows is not None and rows != flat
