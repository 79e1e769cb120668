"""Chapter 1.2: compute the prototypes and the scores (negative squared distances)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_prototype_scores(support_embeddings, support_labels, query_embeddings, n_way):
    """The reference solution of chapter 1.2's coding exercise (one episode, numpy)."""
    prototypes = np.stack(
        [support_embeddings[support_labels == c].mean(axis=0) for c in range(n_way)]
    )  # (n_way, D)
    diff = query_embeddings[:, None, :] - prototypes[None, :, :]  # (Q, n_way, D)
    return -(diff**2).sum(axis=-1)  # (Q, n_way)


def _wrong_answers(zs, labels, zq, n_way) -> dict[str, tuple[np.ndarray, str, str]]:
    """Outputs of typical mistakes on a case, with what to tell the learner."""
    protos = np.stack([zs[labels == c].mean(axis=0) for c in range(n_way)])
    sums = np.stack([zs[labels == c].sum(axis=0) for c in range(n_way)])
    sq = ((zq[:, None] - protos[None]) ** 2).sum(-1)
    return {
        "positive": (
            sq,
            "your scores are the squared distances themselves: the closest class gets the "
            "lowest score, so the arg-max (and the softmax) would pick the farthest class",
            "return minus the squared distance, so that higher means closer",
        ),
        "euclidean": (
            -np.sqrt(sq),
            "your scores are minus the Euclidean distance (with a square root); the prototypical "
            "network uses minus the *squared* distance",
            "drop the square root: -((q - p) ** 2).sum(axis=-1)",
        ),
        "sum": (
            -((zq[:, None] - sums[None]) ** 2).sum(-1),
            "your prototypes are the *sum* of the support embeddings of a class, not their mean "
            "(with k_shot = 3 they are 3 times too far from the origin)",
            "divide by the number of shots of the class, or use .mean(axis=0)",
        ),
        "nearest": (
            -np.stack([((zq[:, None] - zs[labels == c][None]) ** 2).sum(-1).min(1)
                       for c in range(n_way)], axis=1),
            "your score is the distance to the *closest* support example of each class "
            "(nearest neighbour); a prototype is the *mean* of the class's support embeddings",
            "average the support embeddings of each class first, then take distances",
        ),
    }


def check_prototype_scores(fn: Callable) -> Feedback:
    """Check ``fn(support_embeddings, support_labels, query_embeddings, n_way)``.

    For one episode, ``support_embeddings`` is (S, D), ``support_labels`` (S,) in 0..n_way-1 and
    ``query_embeddings`` (Q, D). The function must return a (Q, n_way) array whose entry [j, c]
    is minus the squared Euclidean distance from query j to the mean support embedding of class c.
    """
    def case(n_way, k_shot, n_queries, dim, shuffle=False, seed=0):
        r = np.random.default_rng(seed)
        labels = np.repeat(np.arange(n_way), k_shot)
        if shuffle:
            labels = r.permutation(labels)
        zs = r.normal(size=(n_way * k_shot, dim)).astype(np.float32)
        zq = r.normal(size=(n_queries, dim)).astype(np.float32)
        return zs, labels, zq

    def call(zs, labels, zq, n_way):
        out = fn(zs.copy(), labels.copy(), zq.copy(), n_way)
        if out is None:
            raise _Fail("your function returned None", "return the (Q, n_way) array of scores")
        return np.asarray(out, dtype=np.float64)

    def shape():
        for n_way, k_shot, n_queries, dim in [(3, 1, 7, 4), (5, 2, 4, 8)]:
            zs, labels, zq = case(n_way, k_shot, n_queries, dim)
            out = call(zs, labels, zq, n_way)
            if out.shape == (n_way, n_queries):
                raise _Fail(
                    f"with {n_queries} queries and n_way={n_way} the scores have shape "
                    f"{out.shape}: rows should be queries and columns classes, "
                    f"expected ({n_queries}, {n_way})",
                    "transpose, or compute query[:, None, :] - prototypes[None, :, :]",
                )
            if out.shape != (n_queries, n_way):
                raise _Fail(
                    f"with {n_queries} queries, n_way={n_way} and {dim}-d embeddings the scores "
                    f"have shape {out.shape}; expected ({n_queries}, {n_way})",
                    "one score per query and class: sum the squared differences over the "
                    "embedding axis",
                )

    def one_shot_values():
        # 1-shot: the prototypes are the support embeddings themselves.
        zs = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
        zq = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
        labels = np.array([0, 1])
        want = np.array([[-1.0, -4.0], [-4.0, -13.0]])
        out = call(zs, labels, zq, 2)
        if np.allclose(out, want, atol=1e-4):
            return
        for _, (wrong, problem, hint) in _wrong_answers(zs, labels, zq, 2).items():
            if np.allclose(out, wrong, atol=1e-4):
                raise _Fail(problem + f" (support {zs.tolist()}, queries {zq.tolist()})", hint)
        raise _Fail(
            f"with support {zs.tolist()} (labels 0, 1) and queries {zq.tolist()}, your scores "
            f"are {np.round(out, 3).tolist()}; expected {want.tolist()}",
            "score[j, c] = -sum_d (query[j, d] - prototype[c, d]) ** 2",
        )

    def k_shot_values():
        zs, labels, zq = case(4, 3, 6, 5, seed=1)
        want = reference_prototype_scores(zs, labels, zq, 4)
        out = call(zs, labels, zq, 4)
        if np.allclose(out, want, rtol=1e-4, atol=1e-4):
            return
        for _, (wrong, problem, hint) in _wrong_answers(zs, labels, zq, 4).items():
            if np.allclose(out, wrong, rtol=1e-4, atol=1e-4):
                raise _Fail(problem + " (on a 4-way 3-shot case)", hint)
        raise _Fail(
            "on a 4-way 3-shot case with 6 queries your scores differ from the expected ones by "
            f"up to {np.abs(out - want).max():.3g}",
            "the prototype of class c is support_embeddings[support_labels == c].mean(axis=0)",
        )

    def any_label_order():
        zs, labels, zq = case(3, 4, 5, 6, shuffle=True, seed=2)
        want = reference_prototype_scores(zs, labels, zq, 3)
        out = call(zs, labels, zq, 3)
        if not np.allclose(out, want, rtol=1e-4, atol=1e-4):
            raise _Fail(
                "with the support examples in a shuffled order (labels "
                f"{labels.tolist()}) your scores are wrong, although they were right for "
                "class-major supports: do not assume the order of the support set",
                "select the examples of class c with support_labels == c instead of reshaping",
            )

    def no_side_effects():
        zs, labels, zq = case(3, 2, 4, 3, seed=3)
        zs0, zq0 = zs.copy(), zq.copy()
        fn(zs, labels, zq, 3)
        if not (np.array_equal(zs, zs0) and np.array_equal(zq, zq0)):
            raise _Fail("your function changed its input arrays in place",
                        "compute new arrays instead of writing into the inputs")

    return _run_checks("Prototype scores", [
        ("the scores have shape (queries, n_way)", shape),
        ("1-shot scores are minus the squared distances", one_shot_values),
        ("k-shot prototypes are class means", k_shot_values),
        ("the support set may come in any order", any_label_order),
        ("the inputs are left unchanged", no_side_effects),
    ])
