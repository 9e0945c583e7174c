"""Composed codecs: a chain of registered codecs, each encoding what the one before sends.

`randk(fraction=0.1)|eden(bits=1)` encodes a tensor with `randk` and hands its encoded
*values* (the output the codec's last stage names `ENCODED_VALUES_KEY`, or its only
compressible key: the `k` kept values) to `eden`. This is tensor_encoding's own composition
(`te.core.EncoderComposer.add_child(stage, key)`, `te.core.Encoder(stage, children)`):
the next codec's Encoder becomes the child of the previous codec's values leaf.
Everything else each codec sends (seeds, scales, indices, min/max) stays in the encoded
structure beside it, so `accounting.bit_counts_tf` counts the side information of every
link. Decoding runs backwards: the last codec decodes, each earlier one decodes what it
gets back (for `randk`, scattering the values and scaling them by `n / k`).

Entropy coders (records with `code_symbols`) are the exception: they code the symbols of
the quantizer before them in place of its bit-packing, so `uniform(bits=8)|huffman` is
`uniform_huffman`, and they must come after a codec that bit-packs symbols.

Refused when the chain is made, with one ValueError line: an unknown name or option, an
entropy coder first or after a codec that sends no symbols, and any codec after one
whose values cannot be transformed further (bit-packed words, a coded stream: its last
stage does not list the values key in `compressible_tensors_keys`).

Bits: `sum of each link's side bits + the last link's bits on the values it receives`,
where `side(n) = bits_formula(n) - output_size(n) * width` (`Codec.output_size`): an exact
formula when every link but the last has `output_size` and every link a `bits_formula`,
else None (the processes count in-graph either way). In aggregation a link behind one
that does not commute with sum is priced with its broadcast formula: its shared seeds
become each client's decode-before-sum parameters (`_bits_formula`).

Error bound: `e(A|B)(n) = e_A(n) + g_A(n) * e_B(output_size_A(n))` with `g` =
`Codec.error_gain`, because `x - x_hat = (x - dec_A(y)) + (dec_A(y) - dec_A(y_hat))`;
entropy coders are lossless and add nothing; None when a link has no figure. A chain
sums under secure aggregation (`Codec.sum_bound`) when its last link does and every
stage commutes with sum, e.g. `countsketch(rows=1,fraction=0.25)|fixed_int(bits=4)`.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from fedcompress.codecs.registry import Codec, NoSymbolsError, get_codec
from fedcompress.codecs.stages import _common

SEPARATOR = "|"


def link_text(name: str, options: Mapping[str, Any]) -> str:
  """'eden', {'bits': 1} -> 'eden(bits=1)' (options sorted; none: the bare name)."""
  opts = ",".join(f"{k}={v}" for k, v in sorted(options.items()))
  return f"{name}({opts})" if opts else name


@dataclasses.dataclass(frozen=True)
class _Link:
  codec: Codec
  given: Mapping[str, Any]  # As written: what the chain's name shows.
  checked: Mapping[str, Any]  # Complete, defaults filled in.

  @property
  def text(self) -> str:
    return link_text(self.codec.name, self.given)

  @property
  def is_coder(self) -> bool:
    return self.codec.code_symbols is not None


def _coder_options(codec: Codec, options: Mapping[str, Any]) -> dict[str, Any]:
  """The options of an entropy coder in a chain: those of its `code_symbols`."""
  signature = inspect.signature(codec.code_symbols)
  names = list(signature.parameters)[1:]  # The first is the encoder it codes.
  unknown = sorted(set(options) - set(names))
  if unknown:
    raise ValueError(f"in a chain, {codec.name!r} has no option {unknown[0]!r}; its "
                     f"options there: {', '.join(names) or 'none'}")
  bound = signature.bind_partial(None, **options)
  bound.apply_defaults()
  return {k: v for k, v in bound.arguments.items() if k in names}


def _inner(stage):
  # Encoder wraps plain stages in NoneStateAdaptiveEncodingStage; look inside.
  return getattr(stage, "_wrapped_stage", stage)


def _attach(encoder: te.core.Encoder, child: te.core.Encoder, before: str,
            after: str) -> te.core.Encoder:
  """`encoder` with `child` encoding the values at the end of its values path."""
  stage = encoder.stage
  key = getattr(_inner(stage), "ENCODED_VALUES_KEY", None)
  if key is None and len(stage.compressible_tensors_keys) == 1:
    # A stage of the user's names its values only there (the README's fp16 example).
    key = stage.compressible_tensors_keys[0]
  children = dict(encoder.children)
  if key is not None and key in children:
    children[key] = _attach(children[key], child, before, after)
  elif key is not None and key in stage.compressible_tensors_keys:
    children[key] = child
  elif key is None and len(keys := list(stage.compressible_tensors_keys)) > 1:
    # A stage of the user's with several outputs: which one goes on is its to say.
    raise ValueError(f"cannot put {after!r} after {before!r}: {before!r} ends in a stage of "
                     f"several compressible outputs ({', '.join(keys)}); set "
                     "ENCODED_VALUES_KEY on its class to the one the next codec takes")
  else:
    raise ValueError(f"cannot put {after!r} after {before!r}: {before!r} ends in "
                     f"{stage.name!r}, whose output no codec can take (bit-packed words or "
                     "a coded stream); quantizers and entropy coders go last")
  return te.core.Encoder(stage, children)


def _build(links: Sequence[_Link]) -> te.core.Encoder:
  encoder = links[0].codec.build(**links[0].checked)
  for before, link in zip(links, links[1:], strict=False):
    if link.is_coder:
      try:
        encoder = link.codec.code_symbols(encoder, **link.checked)
      except NoSymbolsError:  # The coder's own option errors pass as they are.
        raise ValueError(f"cannot put {link.text!r} after {before.text!r}: an entropy "
                         f"coder needs quantized symbols and {before.text!r} sends none; "
                         "put it after a quantizer (e.g. uniform)") from None
    else:
      encoder = _attach(encoder, link.codec.build(**link.checked), before.text, link.text)
  return encoder


def _fully_commutes(encoder: te.core.Encoder) -> bool:
  """Whether every stage of `encoder` commutes with sum (tensor_encoding's answer)."""
  with tf.Graph().as_default():
    return te.encoders.as_gather_encoder(encoder, _PROBE_SPEC).fully_commutes_with_sum


def _decoded_after_sum(links: Sequence[_Link]) -> list[bool]:
  """Per link, whether tensor_encoding decodes it after the sum: it and every link before
  it commute with sum (an entropy coder never does). Builds no link past the first that
  does not."""
  summed, out = True, []
  for link in links:
    summed = summed and not link.is_coder and _fully_commutes(link.codec.build(**link.checked))
    out.append(summed)
  return out


def _bits_formula(links: Sequence[_Link]):
  """The chain's exact bit formula, or None when a link's size is not known exactly.

  A link's aggregate formula leaves out what stays on the server until after the sum
  (Kashin's, the count sketch's and fixed_int's shared seeds). Behind a link that does
  not commute with sum (randk, topk, ...), tensor_encoding decodes every later link
  before the sum, so their parameters are each client's decode-before-sum parameters,
  sent as in a broadcast: such links are priced with their broadcast formula.
  """
  if any(link.is_coder or link.codec.bits_formula is None for link in links) or any(
      link.codec.output_size is None for link in links[:-1]):
    return None
  # Whether every link before link i commutes with sum.
  all_commute = [True, *_decoded_after_sum(links[:-1])]

  def bits(num_elements: int, *, direction: str = "aggregate", dtype=tf.float32) -> int:
    width = _common.dtype_bits(dtype)
    total, n = 0, num_elements
    for i, link in enumerate(links):
      sent_as = direction if all_commute[i] else "broadcast"
      # Through the record, which checks what a user's formula returns, naming its link.
      total += link.codec.bits_of_checked(n, link.checked, direction=sent_as, dtype=dtype)
      if i + 1 < len(links):
        out = link.codec.output_size(n, **link.checked)
        total -= out * width
        n = out
    return total

  return bits


def _error_bound(links: Sequence[_Link]):
  lossy = [link for link in links if not link.is_coder]
  if any(link.codec.error_bound is None for link in lossy) or any(
      link.codec.error_gain is None or link.codec.output_size is None for link in lossy[:-1]):
    return None

  def bound(num_elements: int) -> float | None:
    total, gain, n = 0.0, 1.0, num_elements
    for link in lossy:
      error = link.codec.error_bound(n, **link.checked)
      if error is None:
        return None
      total += gain * error
      if link is not lossy[-1]:
        gain *= link.codec.error_gain(n, **link.checked)
        n = link.codec.output_size(n, **link.checked)
    return total

  return bound


# Any size: whether a chain's stages commute with sum does not depend on it.
_PROBE_SPEC = tf.TensorSpec([64], tf.float32)


def _sum_bound(links: Sequence[_Link], encoder: te.core.Encoder):
  """The last link's `sum_bound` if the whole chain's encodings add up, else None.

  They add up when the last link's integers do (`Codec.sum_compatible`) and every stage
  before it commutes with sum with randomness shared by the round's clients (a count
  sketch, a rotation or coordinate sampling with a server-drawn seed): tensor_encoding
  says so per stage (`fully_commutes_with_sum`).
  """
  last = links[-1]
  if last.is_coder or not last.codec.sum_compatible:
    return None
  if not _fully_commutes(encoder):
    return None
  checked = dict(last.checked)
  return lambda **_: last.codec.sum_bound(**checked)


def _sum_decode_exact(links: Sequence[_Link]):
  """A chain decodes sums exactly when every link decoded after the sum does (None: all
  links do, as for most).

  tensor_encoding decodes a link after the sum only when it and every link before it
  commute with sum; behind one that does not (randk, a per-client rotation, an entropy
  coder), a count sketch's median over rows runs on each client's encoding, and the sum
  of those decodes is what the server gets.
  """
  if all(link.codec.sum_decode_exact is None for link in links):
    return None
  exact = all(not summed or link.codec.sum_decode_exact is None
              or link.codec.sum_decode_exact(**link.checked)
              for link, summed in zip(links, _decoded_after_sum(links), strict=True))
  return lambda **_: exact


def _state_moves(links: Sequence[_Link]):
  """A chain's encoder state moves when any link's does (None: no link says, and the
  chain's encoder is checked for state as a whole).

  A link without the field is checked as `Codec.moves_state` checks it, by its encoder's
  state: behind `adaptive(coder=fixed)` a user's stage whose state moves passed for
  stateless, and error feedback accepted it.
  """
  if all(link.codec.state_moves is None for link in links):
    return None
  return lambda **_: any(link.codec.moves_state(link.checked) for link in links)


def _no_options() -> dict[str, Any]:
  return {}


def _links(links: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[_Link, ...]:
  parts = []
  for i, (name, options) in enumerate(links):
    codec = get_codec(name)
    if codec.code_symbols is not None:
      if i == 0:
        raise ValueError(f"{name!r} entropy-codes quantized symbols, so it cannot come "
                         f"first: put it after a quantizer (e.g. uniform{SEPARATOR}{name})")
      checked = _coder_options(codec, options)
    else:
      checked = codec.options(options)
    parts.append(_Link(codec, dict(options), checked))
  return tuple(parts)


def resolved_links(links: Sequence[tuple[str, Mapping[str, Any]]]
                   ) -> list[tuple[str, dict[str, Any]]]:
  """`[(name, options), ...]` with every link's options checked and defaults filled in:
  two spellings of one chain (`uniform(bits=2)` and `uniform(bits=2,deterministic=false)`)
  give the same list."""
  return [(part.codec.name, dict(part.checked)) for part in _links(links)]


def compose(links: Sequence[tuple[str, Mapping[str, Any]]]) -> Codec:
  """The record of the chain of registered codecs `[(name, options), ...]`, in order.

  Raises:
    ValueError: fewer than two codecs, an unknown codec or option, or a chain that
      cannot work (see the module docstring); one line naming the links concerned.
  """
  if len(links) < 2:
    raise ValueError("a chain needs at least two codecs")
  parts = _links(links)
  encoder = _build(parts)  # Refuses a chain that cannot work now, not when a process is built.
  rules = {}
  for part in parts:
    rules.update(part.codec.raw_bits_rules)
  name = SEPARATOR.join(part.text for part in parts)
  return Codec(name, build=lambda: _build(parts), check_options=_no_options,
               bits_formula=_bits_formula(parts), error_bound=_error_bound(parts),
               raw_bits_rules=rules, sum_bound=_sum_bound(parts, encoder),
               sum_decode_exact=_sum_decode_exact(parts), state_moves=_state_moves(parts),
               summary=" then ".join(part.codec.name for part in parts))
