"""The README's table of codecs names every registered codec, its options and defaults."""

import re

from fedcompress.codecs import registry

# What a codec needs to be checked with no other option: its required ones.
_REQUIRED = {"adaptive": {"budget_bits_per_coordinate": 2.0}}


def _rows(repo_root) -> dict[str, str]:
  text = (repo_root / "README.md").read_text()
  table = text[text.index("| name | what | options |"):]
  table = table[:table.index("\n\n")]
  rows = {}
  for line in table.splitlines()[2:]:
    name = re.match(r"\| `(\w+)` \|", line).group(1)
    rows[name] = line.rsplit("|", 2)[-2].strip()  # The last cell: the options.
  return rows


def _defaults(name: str) -> dict:
  """The options `check_options` completes with their defaults."""
  check = registry.get_codec(name).check_options
  return check(**_REQUIRED.get(name, {})) if check else {}  # identity has no options.


def test_every_codec_and_option_is_in_the_table(repo_root):
  rows = _rows(repo_root)
  assert set(rows) == set(registry.available_codecs())
  for name in registry.available_codecs():
    options = set(_defaults(name))
    if name == "huffman":  # Its row says "the base's options" for those.
      options -= set(_defaults(_defaults(name)["base"]))
    if name == "uniform_huffman":  # "`uniform`'s options"; its base is fixed.
      options -= set(_defaults("uniform")) | {"base"}
    missing = {option for option in options if f"`{option}`" not in rows[name]}
    assert not missing, f"README's {name} row lacks {sorted(missing)}"


def test_stated_defaults_are_the_registrys(repo_root):
  stated = 0
  for name, cell in _rows(repo_root).items():
    defaults = _defaults(name)
    for option, value in re.findall(r"`(\w+)`=([\w.]+)", cell):
      assert str(defaults[option]).lower() == value, (name, option, defaults[option], value)
      stated += 1
  assert stated >= 30
