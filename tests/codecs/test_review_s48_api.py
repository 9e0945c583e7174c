"""Library calls that failed or could not be undone (R3 of s48)."""

import re

import pytest

from fedcompress import codecs
from fedcompress.codecs import CodecSpec, get_codec, make_codec, registry


def test_a_spec_hashes_and_equal_specs_hash_alike():
  # "unhashable type: 'dict'": a spec could not key a notebook's results.
  a, b = CodecSpec("uniform", {"bits": 8}), CodecSpec("uniform(bits=8)")
  assert a == b and hash(a) == hash(b)
  results = {a: 1, make_codec("eden", bits=2): 2}
  assert results[b] == 1 and results[CodecSpec("eden(bits=2)")] == 2
  assert len({a, b, CodecSpec("uniform", {"bits": 4})}) == 2


@pytest.mark.parametrize("call", [
    lambda codec: codec.bits(100, "bits=4"), lambda codec: codec.options("bits=4"),
    lambda codec: codec.encoder("bits=4"),
    lambda codec: codec.relative_error_bound(100, "bits=4")])
def test_options_as_text_to_a_codec_record_are_one_line(call):
  # dict()'s "dictionary update sequence element #0 has length 1; 2 is required".
  with pytest.raises(ValueError, match=r"^codec 'uniform': options must be a mapping such as "
                     r"\{'bits': 4\}, got 'bits=4' \(options as text go to "
                     r"make_codec\(name, options=...\)\)$"):
    call(get_codec("uniform"))


def test_unregistering_a_built_in_name_registered_over_gives_the_built_in_back():
  # It removed the name: `uniform`, and every codec built on it, was unknown until the
  # interpreter restarted.
  builtin = get_codec("uniform")
  codecs.register(registry.Codec("uniform", build=get_codec("identity").build),
                  overwrite=True)
  try:
    assert get_codec("uniform") != builtin
  finally:
    codecs.unregister("uniform")
  assert get_codec("uniform") == builtin
  assert make_codec("uniform_huffman").describe() == "uniform_huffman(bits=8)>10000"
  codecs.unregister("uniform")  # A built-in codec itself stays.
  assert get_codec("uniform") == builtin


@pytest.mark.parametrize("n", [-5, 0, 2.5, "100"])
def test_an_error_bound_of_no_tensor_is_one_line(n):
  # topk gave 0.0 and eden 3.18 for -5; 0, a fraction or text raised ZeroDivisionError,
  # AttributeError or TypeError (R10 of s48).
  for name in ("topk", "eden", "identity"):
    with pytest.raises(ValueError, match=rf"^num_elements must be an integer >= 1, got "
                       rf"{re.escape(repr(n))}$"):
      get_codec(name).relative_error_bound(n)
  assert get_codec("identity").relative_error_bound(1) == 0.0
