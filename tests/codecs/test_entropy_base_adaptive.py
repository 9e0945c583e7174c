"""A codec that codes its symbols already cannot be the base of `huffman`, `adaptive` too.

Kept off by name ('huffman', 'uniform_huffman'), adaptive got through: refused, with
coder=, by advice to write a chain that is refused as well, and without it only when
its encoder was built.
"""

import pytest

from fedcompress.codecs import CodecSpec


@pytest.mark.parametrize("spec", ["huffman(base=adaptive)", "huffman(base=adaptive,coder=fixed)",
                                  "huffman(base=uniform_huffman)", "huffman(base=huffman)"])
def test_an_entropy_coded_base_is_refused_when_checked(spec):
  with pytest.raises(ValueError, match=r"base codec '\w+' is already entropy coded"):
    CodecSpec.parse(spec).resolved_options()


def test_a_base_with_symbols_is_taken():
  assert CodecSpec.parse("huffman(base=nonuniform)").resolved_options()["base"] == "nonuniform"
