"""N-way k-shot episodes.

An episode draws ``n_way`` distinct classes, then ``k_shot + n_query`` distinct examples of each
class, without replacement: the first ``k_shot`` form the support set and the other ``n_query``
the query set, so no query example is ever in the support set. Labels are re-numbered 0..n_way-1
in the order the classes were drawn, and both sets are class-major: support example
``i * k_shot + j`` is the j-th shot of class ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import FewShotDataset


@dataclass
class Episode:
    """One episode, or a batch of episodes when every array has a leading batch axis."""

    support: np.ndarray  # (n_way * k_shot, ...)
    support_labels: np.ndarray  # (n_way * k_shot,) in 0..n_way-1
    query: np.ndarray  # (n_way * n_query, ...)
    query_labels: np.ndarray  # (n_way * n_query,)
    classes: np.ndarray  # (n_way,) class ids in the dataset
    n_way: int
    k_shot: int
    n_query: int

    def __repr__(self) -> str:
        return (
            f"Episode({self.n_way}-way {self.k_shot}-shot, {self.n_query} queries per class: "
            f"support {tuple(self.support.shape)}, query {tuple(self.query.shape)})"
        )


def check_int(name: str, value, minimum: int) -> int:
    """``value`` as a Python int, if it is an integer (a Python int or a numpy integer, not a bool)
    of at least ``minimum``; else a TypeError or ValueError that names the argument."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            f"{name} must be an integer (int or numpy integer), got {value!r} "
            f"of type {type(value).__name__}"
        )
    value = int(value)
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_request(
    dataset: FewShotDataset, n_way: int, k_shot: int, n_query: int
) -> tuple[int, int, int]:
    """Raise TypeError or ValueError, saying what is available, if the episode cannot be drawn;
    else return ``(n_way, k_shot, n_query)`` as Python ints."""
    n_way = check_int("n_way", n_way, 1)
    k_shot = check_int("k_shot", k_shot, 1)
    n_query = check_int("n_query", n_query, 0)
    if n_way > dataset.n_classes:
        raise ValueError(
            f"n_way={n_way} but {dataset.name or 'the dataset'} has only "
            f"{dataset.n_classes} classes"
        )
    # Only classes with enough examples can be drawn.
    enough = int((dataset.class_counts >= k_shot + n_query).sum())
    if enough < n_way:
        fewest = int(dataset.class_counts.min())
        raise ValueError(
            f"k_shot + n_query = {k_shot + n_query} examples per class are needed, but only "
            f"{enough} classes have that many (the smallest class has {fewest}; "
            f"at most {int(dataset.class_counts.max())} per class), and n_way={n_way}"
        )
    return n_way, k_shot, n_query


def sample_indices(
    dataset: FewShotDataset,
    n_way: int,
    k_shot: int,
    n_query: int,
    rng: np.random.Generator,
    batch: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised sampling of example indices.

    Returns ``classes`` of shape (B, n_way) and ``index`` of shape (B, n_way, k_shot + n_query),
    indices into ``dataset.x`` (B = 1 when ``batch`` is None). Classes are drawn without
    replacement among those with at least ``k_shot + n_query`` examples, and examples are drawn
    without replacement within each class, by sorting random keys.
    """
    n_way, k_shot, n_query = check_request(dataset, n_way, k_shot, n_query)
    b = 1 if batch is None else check_int("batch", batch, 1)
    need = k_shot + n_query
    counts = dataset.class_counts
    keys = rng.random((b, dataset.n_classes))
    keys[:, counts < need] = np.inf  # classes too small for this request are never drawn
    classes = np.argpartition(keys, n_way - 1, axis=1)[:, :n_way]
    # argpartition leaves the n_way smallest keys in arbitrary order, which is itself random.
    width = dataset.class_index.shape[1]
    item_keys = rng.random((b, n_way, width))
    item_keys[np.arange(width)[None, None, :] >= counts[classes][..., None]] = np.inf
    if need < width:
        picks = np.argpartition(item_keys, need - 1, axis=2)[..., :need]
    else:
        picks = np.argsort(item_keys, axis=2)[..., :need]
    index = dataset.class_index[classes[..., None], picks]
    return classes, index


def sample_episode(
    dataset: FewShotDataset,
    n_way: int,
    k_shot: int,
    n_query: int = 15,
    *,
    seed: int | np.random.Generator | None = None,
    batch: int | None = None,
) -> Episode:
    """Draw one episode (or ``batch`` episodes stacked along a new first axis)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    classes, index = sample_indices(dataset, n_way, k_shot, n_query, rng, batch)
    ep = episode_from_indices(dataset, classes, index, k_shot)
    if batch is None:
        ep.support, ep.support_labels = ep.support[0], ep.support_labels[0]
        ep.query, ep.query_labels, ep.classes = ep.query[0], ep.query_labels[0], ep.classes[0]
    return ep


def episode_from_indices(
    dataset: FewShotDataset, classes: np.ndarray, index: np.ndarray, k_shot: int
) -> Episode:
    """A batch of episodes from ``sample_indices``' output: classes (B, n_way) and index
    (B, n_way, k_shot + n_query)."""
    b, n_way, need = index.shape
    n_query = need - k_shot
    support_idx = index[:, :, :k_shot].reshape(b, n_way * k_shot)
    query_idx = index[:, :, k_shot:].reshape(b, n_way * n_query)
    support_labels = np.repeat(np.arange(n_way), k_shot)
    query_labels = np.repeat(np.arange(n_way), n_query)
    return Episode(
        support=dataset.x[support_idx],
        support_labels=np.broadcast_to(support_labels, (b, n_way * k_shot)).copy(),
        query=dataset.x[query_idx],
        query_labels=np.broadcast_to(query_labels, (b, n_way * n_query)).copy(),
        classes=classes,
        n_way=n_way,
        k_shot=k_shot,
        n_query=n_query,
    )


class EpisodeSampler:
    """Draws episodes of one shape from a dataset, reproducibly from a seed.

    >>> sampler = EpisodeSampler(omniglot, n_way=5, k_shot=1, n_query=15, seed=0)
    >>> episode = sampler.sample()            # one episode
    >>> batch = sampler.sample(batch=16)      # 16 episodes, arrays with a leading axis of 16
    """

    def __init__(
        self,
        dataset: FewShotDataset,
        n_way: int,
        k_shot: int,
        n_query: int = 15,
        seed: int | None = None,
    ) -> None:
        n_way, k_shot, n_query = check_request(dataset, n_way, k_shot, n_query)
        self.dataset = dataset
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int | None = None) -> Episode:
        return sample_episode(
            self.dataset, self.n_way, self.k_shot, self.n_query, seed=self.rng, batch=batch
        )

    def __iter__(self):
        while True:
            yield self.sample()

    def __repr__(self) -> str:
        return (
            f"EpisodeSampler({self.dataset.name}: {self.n_way}-way {self.k_shot}-shot, "
            f"{self.n_query} queries per class)"
        )
