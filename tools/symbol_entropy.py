"""Huffman-coded size against bit-packing and against the symbols' empirical entropy.

The runs report what an entropy-coded codec sent (`aggregate/coded_bits`) beside its
bit-packed size (`aggregate/bits`), but not the entropy of the symbols it coded: the
bound no symbol-by-symbol code can beat. Here real client updates are encoded eagerly
with the codec's own tensor_encoding encoder (`CodecSpec.simple_encoder`), the Huffman
stream is decoded back into its symbols, and three sizes are compared on the same
symbols: the stream (header, code table and block lengths included), the bit-packed
size it replaced (`huffman.stream_raw_bits`), and `n * H` with H the empirical entropy
of each tensor's symbols (each tensor is coded with its own code, so each gets its own H).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tree

from fedcompress.codecs import CodecSpec
from fedcompress.codecs.stages import huffman


def entropy_bits(counts: Sequence[int]) -> float:
  """n * H(p) in bits for a histogram (p = counts / n): the empirical entropy bound."""
  counts = np.asarray([c for c in counts if c > 0], dtype=np.float64)
  n = counts.sum()
  if n == 0:
    return 0.0
  return float(-(counts * np.log2(counts / n)).sum())


def _streams(encoded) -> list[tuple[tf.Tensor, int]]:
  """(stream, word bits of the packing it replaced) of every Huffman stream."""
  out = []
  for path, t in tree.flatten_with_path(encoded):
    key = str(path[-1]).rsplit("/", 1)[-1] if path else ""
    if key == "huffman_stream":
      out.append((t, 28))
    elif key == "huffman_stream_w32":
      out.append((t, 32))
  return out


def measure(codec: str, tensors: Iterable[np.ndarray], *, threshold: int = 0,
            max_code_length: int = huffman.DEFAULT_MAX_CODE_LENGTH,
            block_size: int = huffman.DEFAULT_BLOCK_SIZE) -> dict[str, float]:
  """Sizes of the Huffman streams `codec` writes for `tensors`, per symbol.

  Args:
    codec: an entropy-coded codec text, e.g. 'uniform(bits=2,word_bits=32)|huffman'
      (its coder must use the default `max_code_length` and `block_size`, or pass them).
    tensors: the values to encode (e.g. client updates), one encode each; tensors of
      at most `threshold` elements are skipped, as the processes send them unencoded.
    threshold: the runs' compression threshold.

  Returns:
    {'symbols': n, 'entropy', 'huffman', 'packed': bits per symbol}.

  Raises:
    ValueError: `codec` writes no Huffman stream.
  """
  spec = CodecSpec.parse(codec, threshold=threshold)
  n = entropy = coded = packed = 0.0
  for value in tensors:
    value = tf.constant(value, tf.float32)
    tensor_spec = tf.TensorSpec(value.shape, tf.float32)
    if not spec.applies_to(tensor_spec):
      continue
    encoder = spec.simple_encoder(tensor_spec)

    # One graph for the encode and the decoding of its streams: eagerly, the coder's
    # sorts and the decoder's while_loop of block_size steps run op by op.
    @tf.function
    def encode_and_decode(x, encoder=encoder):
      encoded, _ = encoder.encode(x, encoder.initial_state())
      return [(stream, word_bits, huffman.huffman_decode(
                  stream, max_code_length=max_code_length, block_size=block_size))
              for stream, word_bits in _streams(encoded)]

    results = encode_and_decode(value)
    if not results:
      raise ValueError(f"{codec!r} writes no Huffman stream")
    for stream, word_bits, symbols in results:
      symbols = symbols.numpy()
      n += symbols.size
      entropy += entropy_bits(np.bincount(symbols))
      coded += 32 * int(tf.size(stream))
      packed += int(huffman.stream_raw_bits(stream, int(word_bits)))
  if not n:
    raise ValueError(f"no tensor over {threshold} elements to encode")
  return {"symbols": n, "entropy": entropy / n, "huffman": coded / n, "packed": packed / n}


def client_updates(task, initial_weights: Sequence[np.ndarray] | None,
                   client_ids: Sequence[str], learning_rate: float, *, round_num: int = 1,
                   seed: int = 0) -> list[list[np.ndarray]]:
  """Each client's model delta after local SGD from `initial_weights` (a round's update).

  The clients train as in the processes: plain SGD at `learning_rate` over
  `task.client_dataset(client_id, round_num)` (local epochs included), loss of the
  task's compiled Keras model. `initial_weights` None starts from the model's
  initializers under `seed`.
  """
  from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes

  tf.keras.utils.set_random_seed(seed)
  model = task.keras_model_fn()
  restore_keras_v2_classes(model)  # Built in eager, but after TFF may have traced one.
  if initial_weights is not None:
    model.set_weights(list(initial_weights))
  start = [w.numpy() for w in model.trainable_weights]
  start_all = model.get_weights()
  updates = []
  for client_id in client_ids:
    model.set_weights(start_all)
    optimizer = tf.keras.optimizers.SGD(learning_rate)
    for batch in task.client_dataset(client_id, round_num):
      x, y = ((batch["x"], batch["y"]) if isinstance(batch, Mapping) else batch)
      with tf.GradientTape() as tape:
        loss = model.loss(y, model(x, training=True))
      grads = tape.gradient(loss, model.trainable_weights)
      optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
    updates.append([w.numpy() - s for w, s in zip(model.trainable_weights, start,
                                                   strict=True)])
  return updates


def measure_updates(codecs: Mapping[int, str], updates: Sequence[Sequence[np.ndarray]],
                    threshold: int) -> dict[int, dict[str, float]]:
  """`measure` of each codec over every tensor of every update: {bits: sizes}."""
  flat = [t for update in updates for t in update]
  return {bits: measure(codec, flat, threshold=threshold) for bits, codec in codecs.items()}

if __name__ == "__main__":  # Ran as a tool, it did nothing and exited 0.
  raise SystemExit("tools/symbol_entropy.py is the entropy probe of `make answers`: run "
                   "python -m tools.answers (--help for its flags)")
