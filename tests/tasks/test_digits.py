"""The embedded digits' Dirichlet split refuses the concentrations that hang or mislead."""

import math

import numpy as np
import pytest

from fedcompress.tasks.datasets import digits


def test_dirichlet_split_gives_every_client_examples():
  labels = np.repeat(np.arange(10), 30)
  parts = digits.dirichlet_split(labels, 7, 0.1, np.random.default_rng(0))
  assert len(parts) == 7 and all(len(p) for p in parts)
  assert sorted(np.concatenate(parts).tolist()) == list(range(300))


def _mean_label_entropy(labels, parts) -> float:
  """Mean over clients of the entropy (bits) of the client's label histogram."""
  entropies = []
  for part in parts:
    p = np.bincount(labels[part], minlength=10) / len(part)
    entropies.append(-np.sum(p[p > 0] * np.log2(p[p > 0])))
  return float(np.mean(entropies))


def test_dirichlet_alpha_sets_the_label_skew():
  # Small alpha: each class goes mostly to one client, so clients hold few classes.
  # Large alpha: every client gets every class in near-equal shares (log2(10) = 3.32).
  labels = np.repeat(np.arange(10), 100)
  skewed = _mean_label_entropy(labels, digits.dirichlet_split(labels, 10, 0.01,
                                                              np.random.default_rng(0)))
  even = _mean_label_entropy(labels, digits.dirichlet_split(labels, 10, 1000.0,
                                                            np.random.default_rng(0)))
  assert skewed < 1.0 and even > 3.2, (skewed, even)  # alpha 1: 2.89 for both


def test_dirichlet_split_refuses_bad_alpha():
  # Issue 13, item 8: alpha 0 never returned from numpy's sampler (nor reacted to
  # signals), NaN gave a silently broken split, tiny values take hours. NaN comes first:
  # before the fix it returned (a broken split) instead of hanging this test.
  labels = np.repeat(np.arange(10), 30)
  for alpha in (math.nan, -1.0, math.inf, 0.0, 1e-300):
    with pytest.raises(ValueError, match="Dirichlet alpha must be a finite number >= 1e-06"):
      digits.dirichlet_split(labels, 4, alpha, np.random.default_rng(0))


def test_more_clients_than_examples():
  with pytest.raises(ValueError, match="--digits_clients=2000, but the digits have only 1437"):
    digits.digits_client_data(num_clients=2000)


def test_an_alpha_that_overflows_the_sampler_is_refused():
  # Finite, but its gamma draws overflow: zero proportions gave a degenerate split
  # (nearly every client one example) without a word.
  labels = np.repeat(np.arange(3), 20)
  with pytest.raises(ValueError, match="--digits_alpha=1.7e\\+308 overflows numpy's Dirichlet"):
    digits.dirichlet_split(labels, 7, 1.7e308, np.random.default_rng(0))
  parts = digits.dirichlet_split(labels, 6, 1e300, np.random.default_rng(0))
  sizes = [len(p) for p in parts]  # Each class's 20 cut evenly: 3 or 4 per client.
  assert sum(sizes) == 60 and min(sizes) >= 9 and max(sizes) <= 12


def test_too_many_clients_is_known_without_the_split():
  # The flags refuse it before a sweep's first run (or a binary's workers): the count
  # must be the split's own.
  train, _ = digits.digits_client_data(num_clients=digits.training_examples())
  assert len(train.client_ids) == digits.training_examples() == 1437
  with pytest.raises(ValueError, match="--digits_clients=1438, but the digits have only 1437"):
    digits.check_num_clients(1438)
