"""A pretrained file of a fixed sequence length is used at any length (s47 R1).

Saved with `Embedding(input_length=100)`, it trained every round, then the run died at
generation ("expected shape=(None, 100), found shape=(1, 39)"), on resume too.
"""

import numpy as np
import tensorflow as tf

from fedcompress.tasks import shakespeare as sh_task
from fedcompress.tasks.models import generation


def test_a_fixed_length_file_loads_for_any_length_and_generates(tmp_path):
  model = tf.keras.Sequential([
      tf.keras.layers.Embedding(86, 4, input_length=100),
      tf.keras.layers.GRU(8, return_sequences=True),
      tf.keras.layers.Dense(86)])
  model.build((None, 100))
  path = str(tmp_path / "fixed_length.keras")
  model.save(path)
  loaded = sh_task.load_pretrained(path)
  assert loaded.input_shape == (None, None)
  for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
    np.testing.assert_array_equal(a, b)
  windows = tf.constant(np.random.default_rng(0).integers(1, 86, (2, 100)), tf.int64)
  np.testing.assert_allclose(loaded(windows), model(windows), rtol=1e-5, atol=1e-6)
  gen = generation.create_generation_model(loaded)
  assert gen.input_shape == (1, None)
  assert gen(windows[:1, :39]).shape == (1, 39, 86)
