"""Embedded offline stand-in for federated EMNIST: scikit-learn's handwritten digits.

scikit-learn ships 1,797 real 8x8 digits (UCI optdigits, 0..16 = ink intensity). They
are upscaled to 20x20 and centred in 28x28 like MNIST, inverted to EMNIST's convention
(1.0 = background), held out 20% for test (stratified, seeded) and split over clients
non-IID: each class is divided among clients with Dirichlet(alpha) proportions, so
clients see skewed label mixes, as EMNIST writers do.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split


def digits_images() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 digits as (N, 28, 28) float32 in [0, 1] with 1.0 = background, labels."""
  digits = sk_datasets.load_digits()
  ink = digits.images.astype(np.float32)[..., None] / 16.0
  ink = tf.image.resize(ink, [20, 20], method="bilinear").numpy()
  ink = np.clip(np.pad(ink[..., 0], ((0, 0), (4, 4), (4, 4))), 0.0, 1.0)
  return (1.0 - ink).astype(np.float32), digits.target.astype(np.int32)


# numpy's Dirichlet sampler takes time growing like 1/alpha below about 1e-6 and never
# returns at 0, without reacting to signals; NaN gives garbage.
MIN_DIRICHLET_ALPHA = 1e-6
# The digits held out for the test split.
TEST_FRACTION = 0.2


def dirichlet_split(labels: np.ndarray, num_clients: int, alpha: float,
                    rng: np.random.Generator) -> list[np.ndarray]:
  """Indices per client: each class spread over clients with Dirichlet proportions.

  Raises:
    ValueError: `alpha` is not a finite number >= `MIN_DIRICHLET_ALPHA`, or there are
      fewer examples than clients (every client gets at least one).
  """
  if not (isinstance(alpha, (int, float, np.floating)) and math.isfinite(alpha)
          and alpha >= MIN_DIRICHLET_ALPHA):
    raise ValueError(f"Dirichlet alpha must be a finite number >= {MIN_DIRICHLET_ALPHA:g}, "
                     f"got {alpha}")
  if num_clients > len(labels):
    raise ValueError(f"cannot split {len(labels)} examples over {num_clients} clients "
                     "(each needs at least one)")
  per_client: list[list[int]] = [[] for _ in range(num_clients)]
  for label in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == label))
    proportions = rng.dirichlet([alpha] * num_clients)
    # Its gamma draws overflowed: zeros (or NaN), every client then handed one example.
    if not (np.all(np.isfinite(proportions)) and abs(proportions.sum() - 1) < 1e-6):
      raise ValueError(f"--digits_alpha={alpha:g} overflows numpy's Dirichlet sampler over "
                       f"{num_clients} clients; an alpha of 1e6 already splits near evenly")
    cuts = (np.cumsum(proportions) * len(idx)).astype(int)[:-1]
    for client, part in enumerate(np.split(idx, cuts)):
      per_client[client].extend(part.tolist())
  # Every client needs at least one example: hand empty ones one from the largest.
  for client in range(num_clients):
    if not per_client[client]:
      donor = max(range(num_clients), key=lambda c: len(per_client[c]))
      per_client[client].append(per_client[donor].pop())
  return [np.array(sorted(ix), dtype=np.int64) for ix in per_client]


def training_examples(test_fraction: float = TEST_FRACTION) -> int:
  """Digits in the training split: `train_test_split` keeps ceil(fraction * n) for test."""
  n = len(sk_datasets.load_digits().target)
  return n - math.ceil(test_fraction * n)


def check_num_clients(num_clients: int, test_fraction: float = TEST_FRACTION) -> None:
  """Refuses more clients than training digits (each client needs one), without the
  split itself: the flags check it before a sweep's first run."""
  if num_clients > (train := training_examples(test_fraction)):
    raise ValueError(f"--digits_clients={num_clients}, but the digits have only {train} "
                     "training examples (each client needs one)")


def digits_client_data(num_clients: int = 20, alpha: float = 1.0, seed: int = 0,
                       test_fraction: float = TEST_FRACTION):
  """(train, test) `ClientData` in the `emnist_all.sqlite` element format."""
  if num_clients < 1:
    raise ValueError(f"num_clients must be >= 1, got {num_clients}")
  pixels, labels = digits_images()
  train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                         stratify=labels, random_state=seed)
  rng = np.random.default_rng(seed)
  check_num_clients(num_clients, test_fraction)
  parts = dirichlet_split(labels[train_idx], num_clients, alpha, rng)
  width = len(str(num_clients - 1))

  def element(ix):
    return collections.OrderedDict(label=labels[ix], pixels=pixels[ix])

  train = tff.simulation.datasets.TestClientData(
      {f"digits_{c:0{width}d}": element(train_idx[p]) for c, p in enumerate(parts)})
  test = tff.simulation.datasets.TestClientData({"digits_test": element(test_idx)})
  return train, test
