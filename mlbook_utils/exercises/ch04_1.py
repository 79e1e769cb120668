"""Chapter 4.1: a matching network's classifier, cosine attention over the support set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def _softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_matching_probs(support_embeddings, support_labels, query_embeddings, n_way):
    """The reference solution: p[j, c] = sum over support i of class c of a(query j, support i),
    with a = softmax over the support set of the cosine similarities. One episode, numpy."""
    cos = _unit(query_embeddings) @ _unit(support_embeddings).T  # (Q, S)
    attention = _softmax(cos, axis=1)  # over the support set
    onehot = support_labels[:, None] == np.arange(n_way)[None, :]  # (S, n_way)
    return attention @ onehot  # (Q, n_way)


def _wrong_answers(zs, labels, zq, n_way) -> dict[str, tuple[np.ndarray, str, str]]:
    """Outputs of typical mistakes on a case, with what to tell the learner."""
    onehot = (labels[:, None] == np.arange(n_way)[None, :]).astype(np.float64)
    cos = _unit(zq) @ _unit(zs).T
    return {
        "dot": (
            _softmax(zq @ zs.T, axis=1) @ onehot,
            "your attention is a softmax over dot products, not cosine similarities: a long "
            "support vector then wins whatever its direction",
            "divide each embedding by its norm before taking dot products",
        ),
        "support-only": (
            _softmax(zq @ _unit(zs).T, axis=1) @ onehot,
            "you normalised the support embeddings but not the query: the query's norm then "
            "acts as a temperature, and the similarities are not cosines",
            "normalise the query embeddings too",
        ),
        "query-axis": (
            _softmax(cos, axis=0) @ onehot,
            "your softmax runs over the queries (axis 0), not over the support set: each "
            "query's attention weights must sum to 1 over the support examples",
            "take the softmax of the (Q, S) similarities along axis 1",
        ),
        "no-softmax": (
            cos @ onehot,
            "you summed the raw cosine similarities of each class; the attention weights are "
            "their softmax over the support set",
            "a = exp(cos) / exp(cos).sum(axis=1, keepdims=True), then sum a per class",
        ),
        "max": (
            np.stack([np.where(labels == c, _softmax(cos, 1), -np.inf).max(1)
                      for c in range(n_way)], axis=1),
            "your class score is the largest attention weight among the class's support "
            "examples; a matching network adds them up: p(c) = sum of a(x, x_i) over y_i = c",
            "multiply the attention (Q, S) by the one-hot labels (S, n_way)",
        ),
    }


def check_matching_probs(fn: Callable) -> Feedback:
    """Check ``fn(support_embeddings, support_labels, query_embeddings, n_way)``.

    For one episode, ``support_embeddings`` is (S, D), ``support_labels`` (S,) in 0..n_way-1,
    ``query_embeddings`` (Q, D). The function must return the (Q, n_way) label distribution
    p[j, c] = sum_{i: y_i = c} a(x_j, x_i), a = softmax over i of cos(query j, support i).
    """
    def case(n_way, k_shot, n_queries, dim, shuffle=False, seed=0):
        r = np.random.default_rng(seed)
        labels = np.repeat(np.arange(n_way), k_shot)
        if shuffle:
            labels = r.permutation(labels)
        zs = (r.normal(size=(n_way * k_shot, dim)) * r.uniform(0.3, 3.0, (n_way * k_shot, 1)))
        zq = r.normal(size=(n_queries, dim)) * r.uniform(0.3, 3.0, (n_queries, 1))
        return zs.astype(np.float32), labels, zq.astype(np.float32)

    def call(zs, labels, zq, n_way):
        out = fn(zs.copy(), labels.copy(), zq.copy(), n_way)
        if out is None:
            raise _Fail("your function returned None",
                        "return the (Q, n_way) array of class probabilities")
        return np.asarray(out, dtype=np.float64)

    def diagnose(out, zs, labels, zq, n_way, want, where):
        if np.allclose(out, want, rtol=1e-4, atol=1e-5):
            return
        for _, (wrong, problem, hint) in _wrong_answers(zs, labels, zq, n_way).items():
            if wrong.shape == out.shape and np.allclose(out, wrong, rtol=1e-4, atol=1e-5):
                raise _Fail(problem + f" ({where})", hint)
        raise _Fail(
            f"{where}: your probabilities differ from the expected ones by up to "
            f"{np.abs(out - want).max():.3g}",
            "p[j, c] = sum over the support examples i of class c of softmax_i(cos(q_j, s_i))",
        )

    def shape():
        for n_way, k_shot, n_queries, dim in [(3, 1, 7, 4), (5, 2, 4, 8)]:
            zs, labels, zq = case(n_way, k_shot, n_queries, dim)
            out = call(zs, labels, zq, n_way)
            if out.shape == (n_queries, n_way * k_shot) and k_shot > 1:
                raise _Fail(
                    f"with {n_way * k_shot} support examples and n_way={n_way} your output has "
                    f"shape {out.shape}: that is the attention over the support set; sum it "
                    f"per class to get ({n_queries}, {n_way})",
                    "multiply the attention (Q, S) by the one-hot labels (S, n_way)",
                )
            if out.shape == (n_way, n_queries):
                raise _Fail(
                    f"your output has shape {out.shape}: rows should be queries and columns "
                    f"classes, expected ({n_queries}, {n_way})",
                    "transpose: one row per query",
                )
            if out.shape != (n_queries, n_way):
                raise _Fail(
                    f"with {n_queries} queries and n_way={n_way} your output has shape "
                    f"{out.shape}; expected ({n_queries}, {n_way})",
                    "one probability per query and class",
                )

    def distributions():
        zs, labels, zq = case(4, 2, 6, 5, seed=4)
        out = call(zs, labels, zq, 4)
        sums = out.sum(axis=1)
        if (out < -1e-6).any() or not np.allclose(sums, 1.0, atol=1e-4):
            wrong = _wrong_answers(zs, labels, zq, 4)
            for key in ("query-axis", "no-softmax"):
                w, problem, hint = wrong[key]
                if np.allclose(out, w, rtol=1e-4, atol=1e-5):
                    raise _Fail(problem, hint)
            raise _Fail(
                f"each query's row should be a probability distribution over the classes "
                f"(entries >= 0, summing to 1); your rows sum to {np.round(sums, 3).tolist()}",
                "softmax over the support set, then add the weights of each class",
            )

    def one_shot_values():
        zs = np.array([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]], np.float32)
        zq = np.array([[2.0, 0.0], [1.0, 1.0]], np.float32)
        labels = np.array([0, 1, 2])
        want = reference_matching_probs(zs, labels, zq, 3)
        out = call(zs, labels, zq, 3)
        diagnose(out, zs, labels, zq, 3, want,
                 f"1-shot, support {zs.tolist()}, queries {zq.tolist()}, expected "
                 f"{np.round(want.astype(np.float64), 3).tolist()}")

    def k_shot_values():
        zs, labels, zq = case(3, 4, 5, 6, shuffle=True, seed=2)
        want = reference_matching_probs(zs, labels, zq, 3)
        out = call(zs, labels, zq, 3)
        if np.allclose(out, want, rtol=1e-4, atol=1e-5):
            return
        class_major = reference_matching_probs(zs, np.repeat(np.arange(3), 4), zq, 3)
        if np.allclose(out, class_major, rtol=1e-4, atol=1e-5):
            raise _Fail(
                f"with the support set in a shuffled order (labels {labels.tolist()}) you "
                "assumed it was class-major: do not assume the order of the support set",
                "use support_labels to say which class each support example belongs to",
            )
        diagnose(out, zs, labels, zq, 3, want, "on a 3-way 4-shot case, support shuffled")

    def no_side_effects():
        zs, labels, zq = case(3, 2, 4, 3, seed=3)
        zs0, zq0 = zs.copy(), zq.copy()
        fn(zs, labels, zq, 3)
        if not (np.array_equal(zs, zs0) and np.array_equal(zq, zq0)):
            raise _Fail("your function changed its input arrays in place (normalising them?)",
                        "compute new arrays: zs / norm instead of zs /= norm")

    return _run_checks("Matching-network attention", [
        ("the output has shape (queries, n_way)", shape),
        ("each row is a probability distribution", distributions),
        ("1-shot: softmax of the cosine similarities", one_shot_values),
        ("k-shot: attention summed per class, any support order", k_shot_values),
        ("the inputs are left unchanged", no_side_effects),
    ])
