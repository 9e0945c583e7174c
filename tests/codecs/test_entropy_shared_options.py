"""An entropy-coded codec whose base shares an option with the coder (review R2)."""

import pytest

from fedcompress.codecs import CodecSpec


@pytest.mark.parametrize("text,name", [
    ("huffman(base=eden,bits=2,block_size=256)", "block_size"),
    ("huffman(base=drive,block_size=512)", "block_size"),
    ("huffman(base=hadamard,bits=2,block_size=256)", "block_size"),
])
def test_an_option_of_both_the_coder_and_its_base_is_refused(text, name):
  # The base's default won: block_size=256 reached neither the rotation nor the coder
  # (both ran 2048), while the run was recorded as block_size=256.
  with pytest.raises(ValueError, match=f"{name} is an option of both the coder and its base"):
    CodecSpec.parse(text).resolved_options()


def test_the_chain_sets_each_and_a_base_without_the_option_takes_the_coders():
  chain = CodecSpec.parse("eden(bits=2,block_size=256)|huffman(block_size=512)")
  assert [options["block_size"] for _, options in chain.resolved_links()] == [256, 512]
  # Unchanged where nothing was ambiguous: the coder's option, or the base's default.
  assert CodecSpec.parse("huffman(base=uniform,bits=4,block_size=256)").resolved_options()[
      "block_size"] == 256
  assert CodecSpec.parse("huffman(base=eden,bits=2)").resolved_options()["block_size"] == 2048
