"""Baselines that need no training: nearest neighbour and nearest class mean in pixel space.

Both take a batch of episodes (a leading batch axis) and return, for every query, a score for
each of the n_way classes (higher is closer), so ``evaluation.evaluate`` can take the arg-max over
the classes.
"""

from __future__ import annotations

import numpy as np

from . import registry


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


# --------------------------------------------------------------------------------------------
# Chapter 1.1's experiment: both baselines on the book's test episodes
# --------------------------------------------------------------------------------------------

CHAPTER = "01_1_few_shot_episodes"

#: Chapter 1.1's settings, by scale: the test settings, test episodes per setting and test
#: queries per class of the reproduction table, and the episodes per point of its
#: accuracy-against-shot curves (``curve_*``, chapter only).
SETTINGS = {
    scale: dict(tests=registry.TEST_SETTINGS, test_episodes=episodes, test_query=15,
                test_seed=registry.TEST_SEED, curve_episodes=curve, curve_query=5, curve_seed=7)
    for scale, episodes, curve in (("quick", 100, 30), ("cpu", 1000, 300), ("full", 5000, 1000))
}

BASELINES = {"pixel nearest neighbour": nearest_neighbour,
             "pixel nearest class mean": nearest_class_mean}


@registry.register("pixel-nn", chapter=CHAPTER, settings=SETTINGS,
                   describe="pixel-space nearest neighbour and nearest class mean (no training)")
def experiment(settings: dict, *, tests=None, data=None, runner=None, progress=True):
    """Both pixel-space baselines on the Omniglot test classes (Vinyals split), every test
    setting, the book's test episodes; one record per baseline and setting. ``data``: a dict
    with the ``"test"`` dataset when the caller has it loaded already."""
    test = registry.omniglot(data, "test")
    out = registry.Outcome(settings=settings)
    for name, fn in BASELINES.items():
        registry.test_and_record(out, name, fn, test, settings, chapter=CHAPTER,
                                 dataset_name="omniglot-vinyals-test", tests=tests,
                                 runner=runner, progress=progress)
    return out
