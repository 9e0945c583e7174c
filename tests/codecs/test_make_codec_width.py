"""`make_codec`'s `bits` against a width the codec's text or options set (R3 of s48).

`make_codec("uniform(bits=8)", bits=2)` built the 8-bit codec without a word: a
notebook's loop over widths ran one codec under as many names. The binaries said so in
a warning; the library now does too.
"""

import re
import warnings

import pytest

from fedcompress.codecs import make_codec


@pytest.mark.parametrize("name,options", [
    ("uniform(bits=8)", ""), ("uniform", "bits=8"), ("uniform", {"bits": 8}),
    ("randk(fraction=0.1)|hadamard(bits=8)", "")])
def test_a_width_the_codec_sets_otherwise_is_said(name, options):
  with pytest.warns(UserWarning, match=rf"^codec {re.escape(repr(name))}: bits=2 has no "
                    r"effect: its options set bits=8$"):
    spec = make_codec(name, bits=2, options=options)
  assert spec == make_codec(name, options=options)


def test_the_same_width_given_twice_is_not_said():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert make_codec("uniform(bits=4)", bits=4) == make_codec("uniform", bits=4)


@pytest.mark.parametrize("name", ["identity", "topk", "randk(fraction=0.1)"])
def test_a_width_no_link_has_is_not_said(name):
  # A notebook's one loop over codecs gives them all its width, as a grid does.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert make_codec(name, bits=2) == make_codec(name)


def test_a_width_some_link_takes_applies_there():
  # Huffman in a chain takes no width: there the 3 bits are eden's, which sets 1.
  with pytest.warns(UserWarning, match="bits=3 has no effect: its options set bits=1"):
    make_codec("eden(bits=1)|huffman", bits=3)
  assert make_codec("randk(fraction=0.1)|uniform", bits=3).name == (
      "randk(fraction=0.1)|uniform(bits=3)")


def test_a_call_that_is_refused_is_not_warned_of_first():
  # The warning came before the refusal of the same call (R8 of s48).
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    with pytest.raises(ValueError, match="options of a chain go inside it"):
      make_codec("randk(fraction=0.1)|eden(bits=1)", bits=3, options="keep=0.5")
    with pytest.raises(ValueError, match="bits must be an integer"):
      make_codec("uniform(bits=99)", bits=2)
