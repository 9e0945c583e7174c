"""Entropy coding as a tensor_encoding stage, and replacing a codec's bit-packing with it.

`HuffmanEncodingStage` Huffman-codes quantized symbols (`huffman.py` has the stream
format) in place of a bit-packing stage, so its raw size (`bits`) is still what the
replaced packing would have sent and `coded_bits` is the stream itself.
`entropy_coded(encoder)` swaps every bit-packing stage of an Encoder (tensor_encoding's
`BitpackingEncodingStage` or fedcompress's `Bitpack32EncodingStage`) for the coder, and
splits a stage that packs its own symbols (one with `split_packing`, such as
nonuniform's) into its quantizer and the coder; the `huffman` and `uniform_huffman`
codecs are built that way (`fedcompress.codecs.builtin`).
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.stages import _common, huffman

STREAM_KEYS = {28: "huffman_stream", 32: "huffman_stream_w32"}


@te.core.tf_style_encoding_stage
class HuffmanEncodingStage(_common.StatelessStage):
  """Lossless: integer-valued symbols in [0, 2**input_bits) -> Huffman-coded stream.

  A drop-in replacement for a bit-packing stage of `input_bits`. The encoded
  structure is `{key: int32[None]}` (its length depends on the data), with key
  'huffman_stream' when it replaces tensor_encoding's 28-bit-per-word packing and
  'huffman_stream_w32' when it replaces 32-bit-per-word packing, so the raw size is
  counted as what the replaced stage would have sent. Like the bit-packing stages,
  an input of another dtype than float32 adds a zero scalar of that dtype under
  'dtype_marker' (counted) so decoding can restore it.
  """

  ENCODED_VALUES_KEY = STREAM_KEYS[28]
  DUMMY_TYPE_VALUES_KEY = "dtype_marker"

  def __init__(self, input_bits: int, max_code_length: int | None = None,
               block_size: int = huffman.DEFAULT_BLOCK_SIZE, raw_word_bits: int = 28):
    """Initializer.

    Args:
      input_bits: bits per symbol of the quantizer before this stage, 1..16.
      max_code_length: longest Huffman code L; default max(15, input_bits).
      block_size: symbols per independently decodable block.
      raw_word_bits: payload bits per int32 of the bit-packing this stage replaces,
        28 (tensor_encoding) or 32 (fedcompress); only changes how `bits` is counted.
    """
    if tf.is_tensor(input_bits):
      raise TypeError("input_bits cannot be a TensorFlow value")
    self._input_bits = _common.check_int("input_bits", input_bits, 1, huffman.MAX_SYMBOL_BITS)
    if raw_word_bits not in STREAM_KEYS:
      raise ValueError(f"raw_word_bits must be one of {sorted(STREAM_KEYS)}, "
                       f"got {raw_word_bits!r}")
    self._key = STREAM_KEYS[raw_word_bits]
    if max_code_length is None:
      max_code_length = max(huffman.DEFAULT_MAX_CODE_LENGTH, self._input_bits)
    self._max_code_length = huffman.check_max_code_length(max_code_length, input_bits)
    self._block_size = huffman.check_block_size(block_size)

  STAGE_NAME = "huffman"
  # A coded stream admits no further transformation.
  COMPRESSIBLE_KEYS = ()
  # Only to restore the rank; free when static, counted by tensor_encoding if not.
  DECODE_NEEDS_INPUT_SHAPE = True

  def encode(self, x, encode_params):
    del encode_params  # Unused.
    symbols = tf.cast(tf.round(tf.reshape(x, [-1])), tf.int32)
    stream = huffman.huffman_encode(symbols, self._input_bits,
                                    max_code_length=self._max_code_length,
                                    block_size=self._block_size)
    encoded = collections.OrderedDict([(self._key, stream)])
    if x.dtype != tf.float32:
      encoded[self.DUMMY_TYPE_VALUES_KEY] = tf.zeros([], x.dtype)
    return encoded

  def decode(self, encoded_tensors, decode_params, num_summands=None, shape=None):
    del decode_params, num_summands  # Unused.
    symbols = huffman.huffman_decode(encoded_tensors[self._key],
                             max_code_length=self._max_code_length,
                             block_size=self._block_size)
    dummy = encoded_tensors.get(self.DUMMY_TYPE_VALUES_KEY)
    dtype = dummy.dtype if dummy is not None else tf.float32
    return tf.reshape(tf.cast(symbols, dtype), shape)



# What each stream would have cost bit-packed, by its key: the codec record declares
# these as its raw-bits rules (`fedcompress.codecs.accounting`).
RAW_BITS_RULES = {key: functools.partial(huffman.stream_raw_bits, word_bits=word_bits)
                  for word_bits, key in STREAM_KEYS.items()}


def _packing_of(stage) -> tuple[int, int] | None:
  """(symbol bits, payload bits per int32) if `stage` bit-packs symbols, else None."""
  # Encoder wraps plain stages in NoneStateAdaptiveEncodingStage; look inside.
  inner = getattr(stage, "_wrapped_stage", stage)
  name = getattr(inner, "name", None)
  if name == "bitpacking":  # tensor_encoding's BitpackingEncodingStage
    return inner._input_bits, _common.TE_BITPACK_WORD_BITS  # pylint: disable=protected-access
  if name == "bitpack32":  # packing.Bitpack32EncodingStage
    return inner._bits, 32  # pylint: disable=protected-access
  return None


def _replace_packing(encoder: te.core.Encoder, make_stage) -> tuple[te.core.Encoder, int]:
  children = {}
  replaced = 0
  for key, child in encoder.children.items():
    children[key], count = _replace_packing(child, make_stage)
    replaced += count
  stage = encoder.stage
  # A stage that packs its own symbols (nonuniform's) is taken apart: the coder codes
  # the symbols of its quantizer in place of its packing.
  split = getattr(getattr(stage, "_wrapped_stage", stage), "split_packing", None)
  if split is not None:
    quantizer, packer = split()
    coder = te.core.Encoder(make_stage(*_packing_of(packer)), {})
    return te.core.Encoder(quantizer, {quantizer.ENCODED_VALUES_KEY: coder}), replaced + 1
  packing = _packing_of(stage)
  if packing is not None:
    stage = make_stage(*packing)
    replaced += 1
  return te.core.Encoder(stage, children), replaced


ENTROPY_CODERS: dict[str, Callable[..., te.core.EncodingStageInterface]] = {
    "huffman": HuffmanEncodingStage,
}


class NoSymbolsError(ValueError):
  """The encoder sends no quantized symbols (no bit-packing stage) to entropy-code."""


def entropy_coded(encoder: te.core.Encoder, coder: str = "huffman", *,
                  max_code_length: int | None = None,
                  block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> te.core.Encoder:
  """`encoder` with every bit-packing stage replaced by an entropy coder.

  Args:
    encoder: a tensor_encoding Encoder whose quantized symbols end in
      `BitpackingEncodingStage` or `Bitpack32EncodingStage`.
    coder: entropy coder name; see `ENTROPY_CODERS`.
    max_code_length: longest code (default max(15, bits)).
    block_size: symbols per independently decodable block.

  Raises:
    NoSymbolsError: no bit-packing stage to replace.
    ValueError: unknown coder, or a bad option of the coder.
  """
  try:
    stage_class = ENTROPY_CODERS[coder]
  except KeyError:
    raise ValueError(f"unknown entropy coder {coder!r}; valid coders: "
                     f"{', '.join(sorted(ENTROPY_CODERS))}") from None
  new_encoder, replaced = _replace_packing(
      encoder, lambda bits, word_bits: stage_class(
          bits, max_code_length=max_code_length, block_size=block_size,
          raw_word_bits=word_bits))
  if not replaced:
    raise NoSymbolsError("entropy coding needs quantized symbols: the codec has no "
                         "bit-packing stage (BitpackingEncodingStage or Bitpack32EncodingStage) "
                         "to replace")
  return new_encoder
