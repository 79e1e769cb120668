"""Chapter 1.1: write your own episode sampler."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks

# --------------------------------------------------------------------------------------------


def _toy_by_class(n_classes: int = 12, per_class: int = 8) -> np.ndarray:
    """Items whose value encodes their identity: item [c, i] holds 100 * c + i, shape (1,)."""
    c = np.arange(n_classes)[:, None]
    i = np.arange(per_class)[None, :]
    return (100 * c + i).astype(np.float32)[..., None]


def check_episode_sampler(sample_fn: Callable) -> Feedback:
    """Check ``sample_fn(x_by_class, n_way, k_shot, n_query, rng)``.

    ``x_by_class`` has shape (n_classes, examples_per_class, ...). The function must return
    ``support, support_labels, query, query_labels`` with support of shape
    (n_way * k_shot, ...), query of shape (n_way * n_query, ...) and labels in 0..n_way-1.
    """
    x = _toy_by_class()
    n_classes, per_class = x.shape[:2]
    cases = [(5, 1, 3), (3, 2, 4), (4, 3, 5)]
    out: dict = {}

    def call(n_way, k_shot, n_query, seed):
        res = sample_fn(x, n_way, k_shot, n_query, np.random.default_rng(seed))
        if not isinstance(res, (tuple, list)) or len(res) != 4:
            raise _Fail(
                "your function should return 4 things: support, support_labels, query, "
                f"query_labels; it returned {type(res).__name__}"
                + (f" of length {len(res)}" if isinstance(res, (tuple, list)) else "")
            )
        return [np.asarray(r) for r in res]

    def shapes():
        for n_way, k_shot, n_query in cases:
            s, sl, q, ql = call(n_way, k_shot, n_query, 0)
            out[(n_way, k_shot, n_query)] = (s, sl, q, ql)
            want = {"support": (n_way * k_shot, 1), "support_labels": (n_way * k_shot,),
                    "query": (n_way * n_query, 1), "query_labels": (n_way * n_query,)}
            for name, arr in zip(want, (s, sl, q, ql)):
                if arr.shape != want[name]:
                    raise _Fail(
                        f"for n_way={n_way}, k_shot={k_shot}, n_query={n_query}, {name} has "
                        f"shape {arr.shape}; expected {want[name]}",
                        "stack the examples of all classes along one first axis",
                    )

    def labels():
        for (n_way, k_shot, n_query), (_, sl, _, ql) in out.items():
            for name, lab, per in (("support_labels", sl, k_shot), ("query_labels", ql, n_query)):
                if lab.min() < 0 or lab.max() >= n_way:
                    raise _Fail(
                        f"{name} are {sorted(set(lab.tolist()))}, but labels must be "
                        f"0..{n_way - 1} for a {n_way}-way episode",
                        "relabel the drawn classes 0..n_way-1; do not use their ids in the dataset",
                    )
                counts = np.bincount(lab.astype(int), minlength=n_way)
                if not (counts == per).all():
                    raise _Fail(
                        f"in a {n_way}-way {k_shot}-shot episode with {n_query} queries per "
                        f"class, {name} count {counts.tolist()} items per label; each label "
                        f"should appear {per} times"
                    )

    def consistent():
        for (n_way, _, _), (s, sl, q, ql) in out.items():
            s_cls, q_cls = s[:, 0] // 100, q[:, 0] // 100
            for lab in range(n_way):
                from_cls = set(s_cls[sl == lab].tolist()) | set(q_cls[ql == lab].tolist())
                if len(from_cls) != 1:
                    raise _Fail(
                        f"label {lab} is given to examples of {len(from_cls)} different classes "
                        f"({sorted(int(c) for c in from_cls)}); one label must mean one class, "
                        "in the support set and in the query set",
                    )

    def distinct_classes():
        for (n_way, _, _), (s, sl, _, _) in out.items():
            s_cls = s[:, 0] // 100
            chosen = [int(s_cls[sl == lab][0]) for lab in range(n_way)]
            if len(set(chosen)) != n_way:
                raise _Fail(
                    f"the {n_way} labels map to the classes {chosen}: a class was drawn twice",
                    "draw classes without replacement, e.g. rng.choice(n, size, replace=False)",
                )

    def disjoint():
        for (n_way, k_shot, n_query), (s, _, q, _) in out.items():
            s_ids, q_ids = s[:, 0].tolist(), q[:, 0].tolist()
            both = set(s_ids) & set(q_ids)
            if both:
                raise _Fail(
                    f"for n_way={n_way}, k_shot={k_shot}, n_query={n_query}, the examples "
                    f"{sorted(int(b) for b in both)[:5]} are in the support and the query set; "
                    "a query the model has already seen makes the test too easy",
                    "draw k_shot + n_query distinct examples per class, then split them",
                )
            if len(set(s_ids)) != len(s_ids) or len(set(q_ids)) != len(q_ids):
                raise _Fail("an example appears twice in the support or in the query set",
                            "draw examples within a class without replacement")

    def random_draws():
        n_way, k_shot, n_query = 3, 1, 1
        seen_classes, seen_items = set(), set()
        for seed in range(20):
            s, sl, _, _ = call(n_way, k_shot, n_query, seed)
            seen_classes |= set((s[:, 0] // 100).astype(int).tolist())
            seen_items |= set((s[:, 0] % 100).astype(int).tolist())
        if len(seen_classes) <= n_way:
            raise _Fail(
                f"over 20 episodes with different rng seeds, only the classes "
                f"{sorted(seen_classes)} were ever drawn (of {n_classes}); the classes of an "
                "episode should be random",
                "use the rng argument to choose the classes",
            )
        if len(seen_items) <= k_shot:
            raise _Fail(
                f"over 20 episodes, the support set always used example(s) "
                f"{sorted(seen_items)} of each class (of {per_class}); examples should be random",
                "use the rng argument to choose the examples within each class too",
            )

    def reproducible():
        a = call(5, 1, 3, 123)
        b = call(5, 1, 3, 123)
        if not all(np.array_equal(u, v) for u, v in zip(a, b)):
            raise _Fail(
                "two calls with generators made from the same seed gave different episodes",
                "draw all randomness from the rng argument, not from np.random or random",
            )

    return _run_checks("Episode sampler", [
        ("it returns arrays of the right shapes", shapes),
        ("labels are 0..n_way-1, k_shot / n_query of each", labels),
        ("one label means one class in support and query", consistent),
        ("the n_way classes are distinct", distinct_classes),
        ("support and query sets are disjoint", disjoint),
        ("classes and examples are drawn at random", random_draws),
        ("the same seed gives the same episode", reproducible),
    ])


def reference_episode_sampler(x_by_class, n_way, k_shot, n_query, rng):
    """The reference solution of chapter 1.1's coding exercise."""
    classes = rng.choice(x_by_class.shape[0], size=n_way, replace=False)
    support, query = [], []
    for c in classes:
        items = rng.choice(x_by_class.shape[1], size=k_shot + n_query, replace=False)
        support.append(x_by_class[c, items[:k_shot]])
        query.append(x_by_class[c, items[k_shot:]])
    support_labels = np.repeat(np.arange(n_way), k_shot)
    query_labels = np.repeat(np.arange(n_way), n_query)
    return np.concatenate(support), support_labels, np.concatenate(query), query_labels
