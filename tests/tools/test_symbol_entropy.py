"""Entropy, Huffman and bit-packed sizes of a real codec's symbols (tools/symbol_entropy.py)."""

import math

import numpy as np
import pytest

from tools import symbol_entropy


def test_entropy_bits():
  assert symbol_entropy.entropy_bits([2, 0, 2]) == 4.0  # 4 symbols, 1 bit each
  assert symbol_entropy.entropy_bits([1, 3]) == pytest.approx(2 - 3 * math.log2(0.75))
  assert symbol_entropy.entropy_bits([5]) == 0.0
  assert symbol_entropy.entropy_bits([]) == 0.0


@pytest.mark.slow  # traces the codec's encode and Huffman decode (about a minute here)
def test_measure_on_the_codecs_own_stream():
  x = np.random.default_rng(0).normal(size=(100, 200)).astype(np.float32)
  small = np.ones(50, np.float32)  # at most the threshold: sent unencoded, not measured
  sizes = symbol_entropy.measure("uniform(bits=4,word_bits=32)|huffman", [x, small],
                                 threshold=100)
  assert sizes["symbols"] == 20_000
  assert sizes["packed"] == 4.0  # 20,000 x 4 bits in whole 32-bit words
  # Huffman: within [H, H + 1) per symbol, plus the stream's header and tables.
  assert sizes["entropy"] < sizes["huffman"] < sizes["entropy"] + 1
  # Gaussian values on 16 uniform levels: well below 4 bits of entropy.
  assert 2.5 < sizes["entropy"] < 3.5
  with pytest.raises(ValueError, match="writes no Huffman stream"):
    symbol_entropy.measure("uniform(bits=4)", [x])
  with pytest.raises(ValueError, match="no tensor over 100 elements"):
    symbol_entropy.measure("uniform(bits=4)|huffman", [small], threshold=100)
