"""harness/codec_modules.py: what a run records of the user's codec modules."""

import sys

import pytest

from fedcompress.harness import codec_modules
from fedcompress.tasks.errors import file_fingerprint

_STAGE = """
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
DTYPE = "float16"
Stage = te.stages.UniformQuantizationEncodingStage
"""


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
  """A package whose __init__ imports its submodule (relatively), and a file importing
  a helper."""
  package = tmp_path / "pkg_of_a_user"
  package.mkdir()
  (package / "__init__.py").write_text("from .stage import Stage\n")
  (package / "stage.py").write_text(_STAGE)
  (tmp_path / "helper_of_a_user.py").write_text(_STAGE + "# The helper's own copy.\n")
  (tmp_path / "single_of_a_user.py").write_text("from helper_of_a_user import Stage\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  before = set(sys.modules)
  yield tmp_path
  for name in set(sys.modules) - before:
    del sys.modules[name]


def test_the_files_an_import_brings_in_are_recorded_and_an_edit_shows(user_modules):
  single = str(user_modules / "single_of_a_user.py")
  entries = ["pkg_of_a_user", single]
  codec_modules.import_codec_modules(entries)
  first = codec_modules.fingerprints(entries)
  # The package's __init__ and submodule, the file and its helper; nothing installed.
  assert sorted(first) == sorted(file_fingerprint(str(user_modules / f), whole=True) for f in (
      "pkg_of_a_user/__init__.py", "pkg_of_a_user/stage.py", "single_of_a_user.py",
      "helper_of_a_user.py"))
  for edited in ("pkg_of_a_user/stage.py", "helper_of_a_user.py"):
    path = user_modules / edited
    path.write_text(path.read_text().replace("float16", "float32"))
    assert codec_modules.fingerprints(entries) != first, edited
    first = codec_modules.fingerprints(entries)


def test_the_record_does_not_depend_on_which_entry_was_imported_first(user_modules):
  # Two entries sharing a helper: recorded by what an import added to sys.modules, the
  # helper went to the first entry imported only, so a sweep's second run recorded
  # without it and its resume in a fresh process was refused; an entry order, too.
  (user_modules / "a_of_a_user.py").write_text("from helper_of_a_user import Stage\n")
  (user_modules / "b_of_a_user.py").write_text("import helper_of_a_user\n")
  codec_modules.import_codec_modules(["a_of_a_user", "b_of_a_user"])
  helper = file_fingerprint(str(user_modules / "helper_of_a_user.py"), whole=True)
  only_b = codec_modules.fingerprints(["b_of_a_user"])
  assert helper in only_b and len(only_b) == 2
  assert codec_modules.fingerprints(["b_of_a_user", "a_of_a_user"]) == \
      codec_modules.fingerprints(["a_of_a_user", "b_of_a_user"])
  # Each file once: the package and its submodule named both.
  codec_modules.import_codec_modules(["pkg_of_a_user", "pkg_of_a_user.stage"])
  both = codec_modules.fingerprints(["pkg_of_a_user.stage", "pkg_of_a_user"])
  assert len(both) == len(set(both)) == 2


_REGISTERS = """
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te
import fedcompress
fedcompress.register_stage("same_name_of_a_user", te.stages.{stage}, overwrite=True)
"""


@pytest.fixture
def same_name_modules(tmp_path):
  """Two files registering one codec name (as the README's overwrite=True allows)."""
  from fedcompress import codecs

  paths = []
  for version, stage in (("v1", "UniformQuantizationEncodingStage"),
                         ("v2", "BitpackingEncodingStage")):
    path = tmp_path / f"{version}_of_a_user.py"
    path.write_text(_REGISTERS.format(stage=stage))
    paths.append(str(path))
  before = set(sys.modules)
  yield paths
  codecs.unregister("same_name_of_a_user")
  codec_modules._REGISTERED_BY.pop("same_name_of_a_user", None)
  for name in set(sys.modules) - before:
    del sys.modules[name]


def test_two_modules_registering_one_name_in_a_process_are_refused(same_name_modules):
  # A sweep imports every run's modules into one process: with overwrite=True the last
  # one replaced the other, and runs of v1 and v2 both sent v2's codec.
  v1, v2 = same_name_modules
  codec_modules.import_codec_modules([v1])
  codec_modules.check_codec_sources(["same_name_of_a_user", "uniform"], [v1])
  with pytest.raises(ValueError, match=r"codec 'same_name_of_a_user' is registered by both "
                     r".*v1_of_a_user.py and .*v2_of_a_user.py: one process"):
    codec_modules.import_codec_modules([v2])


def test_a_run_using_a_codec_of_a_module_it_does_not_list_is_refused(same_name_modules):
  # Its config.json recorded no module: the run could not be resumed on its own.
  v1, _ = same_name_modules
  codec_modules.import_codec_modules([v1])
  with pytest.raises(ValueError, match=r"codec 'same_name_of_a_user' comes from "
                     r"--codec_modules .*v1_of_a_user.py, which this run does not list"):
    codec_modules.check_codec_sources(["same_name_of_a_user"], [])


def test_a_dotted_entry_records_its_packages_and_itself(user_modules):
  # pkg/__init__.py runs when pkg.stage is imported; it was left out.
  codec_modules.import_codec_modules(["pkg_of_a_user.stage"])
  recorded = codec_modules.fingerprints(["pkg_of_a_user.stage"])
  assert file_fingerprint(str(user_modules / "pkg_of_a_user" / "__init__.py"),
                          whole=True) in recorded
  assert file_fingerprint(str(user_modules / "pkg_of_a_user" / "stage.py"),
                          whole=True) in recorded


def test_an_installed_entry_records_its_own_file():
  # A codec package installed with pip sits under sys.prefix, whose files are left out
  # of what an entry imports; its own file was left out with them (nothing recorded).
  import json

  assert codec_modules.fingerprints(["json"]) == [file_fingerprint(json.__file__, whole=True)]


def test_a_codec_file_imports_the_helper_beside_it(tmp_path):
  # As `python file.py` would: it failed with ModuleNotFoundError off PYTHONPATH.
  folder = tmp_path / "codecs_of_a_user"
  folder.mkdir()
  (folder / "helper_beside_of_a_user.py").write_text(_STAGE)
  (folder / "main_of_a_user.py").write_text("from helper_beside_of_a_user import Stage\n")
  before, path_before = set(sys.modules), list(sys.path)
  try:
    codec_modules.import_codec_modules([str(folder / "main_of_a_user.py")])
    recorded = codec_modules.fingerprints([str(folder / "main_of_a_user.py")])
    assert file_fingerprint(str(folder / "helper_beside_of_a_user.py"), whole=True) in recorded
  finally:
    sys.path[:] = path_before
    for name in set(sys.modules) - before:
      del sys.modules[name]


@pytest.mark.parametrize("lazy", [False, True])
def test_a_helper_of_the_same_name_in_another_folder_is_refused(tmp_path, monkeypatch, lazy):
  # v1/ and v2/, each with its helpers.py: one process holds one module 'helpers', so
  # a sweep's v2 run ran v1's (float16 sent for float32), recording v1's helper hash.
  # Imported inside v1's builder (lazy), v1 then built with v2's.
  before = set(sys.modules)
  monkeypatch.setattr(sys, "path", list(sys.path))
  monkeypatch.setattr(codec_modules, "_HELPERS", {})
  for version, dtype in (("v1", "float16"), ("v2", "float32")):
    (tmp_path / version).mkdir()
    (tmp_path / version / "helpers_of_a_user.py").write_text(f"DTYPE = {dtype!r}\n")
    (tmp_path / version / "codec.py").write_text(
        "def build():\n  from helpers_of_a_user import DTYPE\n  return DTYPE\n" if lazy
        else "from helpers_of_a_user import DTYPE\n")
  try:
    codec_modules.import_codec_modules([str(tmp_path / "v1" / "codec.py")])
    with pytest.raises(ValueError, match=r"imports 'helpers_of_a_user' from its folder, but "
                       r"this process already imported another 'helpers_of_a_user' \(.*v1.*, "
                       r"from another --codec_modules entry\)"):
      codec_modules.import_codec_modules([str(tmp_path / "v2" / "codec.py")])
    # A second entry of v1's own folder shares its helper.
    (tmp_path / "v1" / "other.py").write_text("import helpers_of_a_user\n")
    codec_modules.import_codec_modules([str(tmp_path / "v1" / "other.py")])
  finally:
    for name in set(sys.modules) - before:
      del sys.modules[name]


def test_a_helper_named_as_a_standard_module_is_refused_for_that(tmp_path, monkeypatch):
  # A helper `codecs.py` is the standard library's `codecs` in this process: refused, but
  # the message blamed another --codec_modules entry.
  monkeypatch.setattr(sys, "path", list(sys.path))
  monkeypatch.setattr(codec_modules, "_HELPERS", {})
  (tmp_path / "codecs.py").write_text("DTYPE = 'float16'\n")
  (tmp_path / "entry_of_a_user.py").write_text("from codecs import DTYPE\n")
  with pytest.raises(ValueError, match=r"already imported another 'codecs' \(.*codecs.py, "
                     r"installed, or of the standard library\).*rename the helper module"):
    codec_modules.import_codec_modules([str(tmp_path / "entry_of_a_user.py")])


def test_a_module_registering_over_a_built_in_codec_is_refused_and_undone(tmp_path):
  # `overwrite=True` let a module replace `uniform` (or `identity`): runs recorded and
  # labelled the user's codec as the built-in one, and a run of the built-in resumed with
  # the module (or the other way round) switched codecs mid-run without a word.
  from fedcompress import codecs

  builtin = codecs.get_codec("uniform")
  path = tmp_path / "over_uniform_of_a_user.py"
  path.write_text(_REGISTERS.replace("same_name_of_a_user", "uniform").format(
      stage="BitpackingEncodingStage"))
  before = set(sys.modules)
  try:
    with pytest.raises(ValueError, match=r"over_uniform_of_a_user.py registers a codec of "
                       r"its own as 'uniform', a built-in codec's name"):
      codec_modules.import_codec_modules([str(path)])
    assert codecs.get_codec("uniform") == builtin
    assert codecs.replaced_builtin_codecs(["uniform"]) == []
  finally:
    codecs.register(builtin, overwrite=True)
    codec_modules._REGISTERED_BY.pop("uniform", None)
    for name in set(sys.modules) - before:
      del sys.modules[name]


def test_a_module_that_exits_at_import_is_one_line_naming_it(tmp_path, capsys):
  # argparse at import (or sys.exit) ended the binary as if its own flags were wrong,
  # its usage printed once per flag check that imported it.
  path = tmp_path / "exits_of_a_user.py"
  path.write_text("import sys\nsys.exit(2)\n")
  with pytest.raises(ValueError, match=r"cannot import .*exits_of_a_user.py: SystemExit: 2$"):
    codec_modules.import_codec_modules([str(path)])
  parses = tmp_path / "parses_of_a_user.py"
  parses.write_text("import argparse\n"
                    "argparse.ArgumentParser(prog='binary').parse_args(['--rounds=1'])\n")
  with pytest.raises(ValueError, match=r"cannot import .*parses_of_a_user.py: SystemExit: 2 "
                     r"\(it printed: binary: error: unrecognized arguments: --rounds=1\)$"):
    codec_modules.import_codec_modules([str(parses)])
  assert capsys.readouterr().err == ""
  # What a module that imports prints is still said.
  warns = tmp_path / "warns_of_a_user.py"
  warns.write_text("import sys\nprint('note: float16 only', file=sys.stderr)\n")
  codec_modules.import_codec_modules([str(warns)])
  assert capsys.readouterr().err == "note: float16 only\n"
