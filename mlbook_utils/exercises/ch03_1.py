"""Chapter 3.1: refine prototypes with unlabeled examples (one soft k-means step)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_refine_prototypes(z_support, support_labels, z_unlabeled, n_way):
    """One episode: support (S, D), labels (S,), unlabeled (U, D) -> refined prototypes (N, D)."""
    onehot = (support_labels[:, None] == np.arange(n_way)).astype(float)  # (S, N)
    counts = onehot.sum(0)  # (N,)
    prototypes = onehot.T @ z_support / counts[:, None]  # (N, D)
    d = ((z_unlabeled[:, None, :] - prototypes[None]) ** 2).sum(-1)  # (U, N)
    w = np.exp(-d - (-d).max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)  # each unlabeled point's weights over the classes sum to 1
    return (onehot.T @ z_support + w.T @ z_unlabeled) / (counts + w.sum(0))[:, None]


def _case(seed, n_way=3, k_shot=2, n_unlabeled=5, dim=4, shuffle=True):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.2, size=(n_way, dim))
    labels = np.repeat(np.arange(n_way), k_shot)
    if shuffle:
        labels = rng.permutation(labels)
    zs = centres[labels] + rng.normal(scale=0.6, size=(len(labels), dim))
    zu = centres[rng.integers(0, n_way, n_unlabeled)] + rng.normal(scale=0.6,
                                                                   size=(n_unlabeled, dim))
    return zs, labels, zu, n_way


def check_refine_prototypes(fn: Callable) -> Feedback:
    """Check ``fn(z_support, support_labels, z_unlabeled, n_way)`` -> refined prototypes (N, D)."""
    zs, labels, zu, n_way = _case(0)
    out = {}

    def shape():
        got = np.asarray(fn(zs, labels, zu, n_way), dtype=float)
        out["got"] = got
        if got.shape != (n_way, zs.shape[1]):
            raise _Fail(
                f"for 3 classes and 4-d embeddings the result has shape {got.shape}; expected "
                f"(n_way, D) = {(n_way, zs.shape[1])}",
                "one refined prototype per class, one column per embedding dimension",
            )

    def no_unlabeled():
        got = np.asarray(fn(zs, labels, zu[:0], n_way), dtype=float)
        want = np.stack([zs[labels == c].mean(0) for c in range(n_way)])
        if not np.allclose(got, want, atol=1e-6):
            raise _Fail(
                "with no unlabeled points the refined prototypes should be the plain class means "
                f"of the support embeddings; class 0 came out {np.round(got[0], 3).tolist()}, "
                f"expected {np.round(want[0], 3).tolist()}",
                "start from the support means: sum of the class's support embeddings divided by "
                "their number (the support labels come in any order)",
            )

    def values():
        want = reference_refine_prototypes(zs, labels, zu, n_way)
        got = out["got"]
        if np.allclose(got, want, atol=1e-5):
            return
        ref = dict(zs=zs, labels=labels, zu=zu, n_way=n_way)
        for name, mistake, hint in _MISTAKES:
            if np.allclose(got, mistake(**ref), atol=1e-5):
                raise _Fail(f"your prototypes match a common mistake: {name}", hint)
        raise _Fail(
            f"the refined prototype of class 0 is {np.round(got[0], 4).tolist()}, expected "
            f"{np.round(want[0], 4).tolist()}",
            "w[j, c] = softmax over classes c of -||u_j - p_c||^2; refined p_c = (sum of the "
            "class's support embeddings + sum_j w[j, c] u_j) / (k_c + sum_j w[j, c])",
        )

    return _run_checks("refine_prototypes", [
        ("the result has shape (n_way, D)", shape),
        ("without unlabeled points the prototypes are the support means", no_unlabeled),
        ("the refined prototypes match one soft k-means step", values),
    ])


# Typical mistakes, used to name what went wrong ------------------------------------------------


def _plain(zs, labels, n_way):
    onehot = (labels[:, None] == np.arange(n_way)).astype(float)
    return onehot, onehot.sum(0), onehot.T @ zs / onehot.sum(0)[:, None]


def _mistake_hard(zs, labels, zu, n_way):
    onehot, counts, p = _plain(zs, labels, n_way)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = (d == d.min(1, keepdims=True)).astype(float)
    return (onehot.T @ zs + w.T @ zu) / (counts + w.sum(0))[:, None]


def _mistake_axis(zs, labels, zu, n_way):
    onehot, counts, p = _plain(zs, labels, n_way)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = np.exp(-d) / np.exp(-d).sum(0, keepdims=True)
    return (onehot.T @ zs + w.T @ zu) / (counts + w.sum(0))[:, None]


def _mistake_sign(zs, labels, zu, n_way):
    onehot, counts, p = _plain(zs, labels, n_way)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = np.exp(d - d.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return (onehot.T @ zs + w.T @ zu) / (counts + w.sum(0))[:, None]


def _mistake_unlabeled_only(zs, labels, zu, n_way):
    _, _, p = _plain(zs, labels, n_way)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = np.exp(-d - (-d).max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return w.T @ zu / w.sum(0)[:, None]


def _mistake_no_weight_in_denominator(zs, labels, zu, n_way):
    onehot, counts, p = _plain(zs, labels, n_way)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = np.exp(-d - (-d).max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    return (onehot.T @ zs + w.T @ zu) / counts[:, None]


_MISTAKES = [
    ("hard assignments (each unlabeled point goes wholly to its nearest prototype)",
     _mistake_hard, "soft k-means weights every class by a softmax, not an argmax"),
    ("the softmax runs over the unlabeled points instead of over the classes",
     _mistake_axis, "normalise each unlabeled point's weights over the classes (axis of n_way)"),
    ("the softmax is over +distances, so far prototypes get the most weight",
     _mistake_sign, "use minus the squared distance as the logit"),
    ("the support embeddings were left out of the refined mean",
     _mistake_unlabeled_only, "the refined mean keeps the labeled support examples"),
    ("the denominator counts only the support examples",
     _mistake_no_weight_in_denominator, "divide by k_c + sum_j w[j, c]: a weighted mean"),
]
