"""Keras 2.14 next to TFF: undoing the class swap that building a process leaves behind."""

import tensorflow as tf


def restore_keras_v2_classes(*models: tf.keras.Model) -> None:
  """Undoes the Keras class swap that TFF's tracing of a `model_fn` leaves behind.

  Keras 2.14 picks its v1 (graph) or v2 base classes whenever a model or layer is
  created, by rewriting `cls.__bases__` of the class being instantiated
  (keras/src/utils/version_utils.py, `swap_class`). TFF calls `model_fn` inside a
  `tf.Graph`, so building a learning process turns `Sequential`, `GRU`, ... into v1
  classes for every existing instance too: afterwards an eager Keras model created
  earlier fails (`get_weights`: "no attribute '_compile_time_distribution_strategy'";
  calls: "Your Layer or Model is in an invalid state"). Instantiating the same classes
  in eager swaps them back; `cls.__new__` alone does it, without building anything.
  The helpers here that take a Keras model call this first; call it yourself before
  using a Keras model directly after building a TFF process.

  Args:
    *models: the models whose classes (and their layers' and cells') to restore.
  """
  with tf.init_scope():
    classes = {type(obj) for model in models for obj in (model, *model.submodules)
               if isinstance(obj, tf.keras.layers.Layer)}
    for cls in classes:
      cls.__new__(cls)
