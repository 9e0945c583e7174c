"""Client datasets built through one traced function, so the driver does not leak.

Every client dataset built eagerly (its `Dataset.map`s traced anew each time) kept
memory for the life of the process. Where inside TensorFlow was not traced: the eager
context's list of functions does not grow, the process does. A training loop builds a
fresh dataset for every sampled client in every round, so the driver grew with every
client-round: measured on a generated EMNIST sqlite, 170 KiB per
client dataset (TFF's parse `map`, then the tutorial's), 80 KiB per digits client
(the tutorial's `map`), 480 KiB per Shakespeare client (the character table and four
`map`s): 520 MiB over 300 rounds of 10 EMNIST clients, or 85 MiB per round of a
500-client cohort.

`traced_client_datasets` traces the whole pipeline (the client's dataset and its
preprocessing) once, as a `tf.function` of the client id and the shuffle seed, and
every call reuses it: nothing is registered per client. The elements and their order
are the eager pipeline's with no global seed set (the shuffle seed is a tensor
argument), whatever global seed is set: a client's dataset depends on the client, the
run's seed and the round only. A global seed would otherwise pair with the shuffle's
own (TensorFlow's `get_seed`), and with global seed 0 `get_seed` compares the tensor
seed with 0 in Python, which fails while tracing: `tools.symbol_entropy`, which seeds
Keras for its model, could not build a client dataset under seed 0.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf
import tensorflow_federated as tff

Preprocess = Callable[[tf.data.Dataset, tf.Tensor], tf.data.Dataset]


def traced_client_datasets(client_data, preprocess: Preprocess
                           ) -> Callable[[str, int], tf.data.Dataset]:
  """`(client_id, seed) -> preprocess(client's dataset, seed)`, traced once.

  Args:
    client_data: a `tff.simulation.datasets.ClientData`. TFF's in-memory
      `TestClientData` is read with `create_tf_dataset_for_client` (its
      `serializable_dataset_fn` would put every client's data into each client's
      graph) and the dataset passed into the function; any other (TFF's sqlite
      loaders) through its `serializable_dataset_fn`, inside the function.
    preprocess: `(dataset, int64 seed tensor) -> dataset`, traceable.
  """
  in_memory = isinstance(client_data, tff.simulation.datasets.TestClientData)
  known = frozenset(client_data.client_ids)  # Checked per client and round: not a list scan.

  @tf.function
  def traced(client, seed):
    # The function's graph inherits the global seed when traced; no graph seed makes
    # the shuffle's seeds (TensorFlow's default graph seed, `seed`) in every case.
    tf.compat.v1.get_default_graph().seed = None
    dataset = client if in_memory else client_data.serializable_dataset_fn(client)
    return preprocess(dataset, seed)

  def build(client_id: str, seed: int) -> tf.data.Dataset:
    seed = tf.constant(seed, tf.int64)
    if in_memory:
      return traced(client_data.create_tf_dataset_for_client(client_id), seed)
    if client_id not in known:
      # What `create_tf_dataset_for_client` says; the query alone would return no rows.
      raise ValueError(f"ID [{client_id}] is not a client in this ClientData. See "
                       "property `client_ids` for the list of valid ids.")
    return traced(tf.constant(client_id), seed)

  return build
