"""Baselines that need no training: nearest neighbour and nearest class mean in pixel space.

Both take a batch of episodes (a leading batch axis) and return, for every query, a score for
each of the n_way classes (higher is closer), so ``evaluation.evaluate`` can take the arg-max over
the classes.
"""

from __future__ import annotations

import numpy as np


def pairwise_sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between (B, M, D) and (B, N, D): shape (B, M, N)."""
    a2 = np.einsum("bmd,bmd->bm", a, a)[:, :, None]
    b2 = np.einsum("bnd,bnd->bn", b, b)[:, None, :]
    return np.maximum(a2 - 2.0 * np.einsum("bmd,bnd->bmn", a, b) + b2, 0.0)


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], x.shape[1], -1).astype(np.float32, copy=False)


def nearest_neighbour(support, support_labels, query, n_way: int) -> np.ndarray:
    """Score of class c = minus the distance from the query to the closest support item of c."""
    d = pairwise_sq_distances(_flat(query), _flat(support))  # (B, Q, S)
    onehot = support_labels[:, None, :, None] == np.arange(n_way)  # (B, 1, S, n_way)
    return -np.where(onehot, d[..., None], np.inf).min(axis=2)  # (B, Q, n_way)


def nearest_class_mean(support, support_labels, query, n_way: int) -> np.ndarray:
    """Score of class c = minus the distance from the query to the mean support image of c."""
    s = _flat(support)
    onehot = (support_labels[..., None] == np.arange(n_way)).astype(np.float32)  # (B, S, n_way)
    means = np.einsum("bsc,bsd->bcd", onehot, s) / onehot.sum(axis=1)[..., None]
    return -pairwise_sq_distances(_flat(query), means)
