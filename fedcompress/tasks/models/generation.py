"""Text generation with a batch-1 stateful copy of the character RNN (the tutorial's)."""

from __future__ import annotations

import tensorflow as tf

from fedcompress.tasks.datasets.char_vocab import IDX2CHAR, text_to_ids
from fedcompress.tasks.models.char_rnn import copy_weights, rebuild
from fedcompress.tasks.models.keras_compat import restore_keras_v2_classes


def create_generation_model(model: tf.keras.Model) -> tf.keras.Model:
  """A batch-1 stateful copy of a character RNN (GRU or LSTM), for `generate_text`."""
  return copy_weights(model, rebuild(model.get_config(), batch_size=1, stateful=True))


def generate_text(model: tf.keras.Model, start_string: str, *, num_generate: int = 200,
                  temperature: float = 1.0, seed: int | None = None) -> str:
  """The tutorial's `generate_text`: samples `num_generate` characters after a prompt.

  Args:
    model: a batch-1 stateful character RNN (see `create_generation_model`); its state
      is reset first.
    start_string: the prompt; every character must be in `VOCAB`.
    num_generate: characters to sample.
    temperature: logits are divided by it; lower is more predictable.
    seed: makes sampling reproducible (stateless sampling); None samples with TF's
      global random state, as the tutorial does.

  Returns:
    `start_string` followed by the generated characters.
  """
  if not start_string:
    raise ValueError("start_string must not be empty")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  # The batch too, read off the layers' states (a subclassed model has no input_shape):
  # the tutorial's own pretrained files are stateful GRUs of batch 8, which failed on the
  # first character with a multi-line Keras error.
  stateful = [layer for layer in model.layers if getattr(layer, "stateful", False)]
  batches = {int(state.shape[0]) for layer in stateful for state in (layer.states or [])
             if state is not None and state.shape[0] is not None}
  if not stateful or batches - {1}:
    raise ValueError("generate_text needs a stateful batch-1 model: "
                     "use create_generation_model(model)")
  input_eval = tf.constant([text_to_ids(start_string, oov="error")], dtype=tf.int64)
  restore_keras_v2_classes(model)
  generated = []
  model.reset_states()
  for i in range(num_generate):
    predictions = model(input_eval, training=False)
    # Only the last position's logits matter; earlier ones were for prompt characters.
    last = tf.squeeze(predictions, 0)[-1:]
    logits = last / temperature
    if not bool(tf.reduce_all(tf.math.is_finite(logits))):
      if not bool(tf.reduce_all(tf.math.is_finite(last))):
        raise ValueError("the model's logits are not finite (NaN or inf): it cannot "
                         "generate text")
      # So small a temperature (1e-50) overflows float32, and sampling returned an id
      # past the vocabulary: its limit, the most likely character, is taken instead.
      predicted = tf.argmax(last, axis=-1, output_type=tf.int64)[:, None]
    elif seed is None:
      predicted = tf.random.categorical(logits, num_samples=1)
    else:
      predicted = tf.random.stateless_categorical(logits, num_samples=1, seed=[seed, i])
    predicted_id = int(predicted[0, 0])
    input_eval = tf.constant([[predicted_id]], dtype=tf.int64)
    generated.append(IDX2CHAR[predicted_id])
  return start_string + "".join(generated)
