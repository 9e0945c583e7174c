"""tasks/errors.py: what an error on the driver's data says."""

import numpy as np
import pytest
import tensorflow as tf

from fedcompress.tasks.errors import DataReadError, error_cause


def _evaluation_error(dataset) -> tf.errors.OpError:
  model = tf.keras.Sequential([tf.keras.layers.Input(shape=(4,)), tf.keras.layers.Dense(10)])
  model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  with pytest.raises(tf.errors.OpError) as raised:
    model.evaluate(dataset, verbose=0)
  return raised.value


def test_a_record_that_does_not_parse_is_said_damaged_with_its_cause():
  features = {"x": tf.io.FixedLenFeature([4], tf.float32),
              "y": tf.io.FixedLenFeature([], tf.int64)}
  damaged = tf.data.Dataset.from_tensor_slices([b"not a tf.Example"]).map(
      lambda s: (lambda d: (d["x"], d["y"]))(tf.io.parse_single_example(s, features)))
  error = _evaluation_error(damaged.batch(1))
  # TensorFlow's message opens with "Graph execution error:" and the node's stack.
  assert str(error.message).startswith("Graph execution error:")
  assert error_cause(error) == "Could not parse example input, value: 'not a tf.Example'"
  message = str(DataReadError("the evaluation on the test split", error))
  assert message == ("the evaluation on the test split could not read its data "
                     "(InvalidArgumentError: Could not parse example input, value: 'not a "
                     "tf.Example'): a damaged dataset file fails this way; replace it, or "
                     "point --cache_dir at a good copy")


def test_labels_the_model_lacks_are_not_called_a_damaged_file():
  labels = tf.data.Dataset.from_tensor_slices((np.zeros([2, 4], np.float32), [40, 1]))
  error = _evaluation_error(labels.batch(2))
  message = str(DataReadError("the evaluation on the test split", error))
  assert message.startswith("the evaluation on the test split failed (InvalidArgumentError: "
                            "Received a label value of 40 which is outside the valid range")
  assert "damaged" not in message


def test_bytes_that_are_not_utf8_and_lost_data_are_damage():
  undecodable = UnicodeDecodeError("utf-8", b"\xbe", 0, 1, "invalid start byte")
  assert "damaged dataset file" in str(DataReadError("the sanity check on X", undecodable))
  lost = tf.errors.DataLossError(None, None, "checksum mismatch")
  assert str(DataReadError("the evaluation", lost)).startswith(
      "the evaluation could not read its data (DataLossError: checksum mismatch)")
