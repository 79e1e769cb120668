"""Chapter 4.2: the cosine classifier of Baseline++, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_cosine_logits(z, w, scale):
    """The reference solution. ``z`` (Q, D) features, ``w`` (n_way, D) one weight vector per
    class: ``scale * cos(z_q, w_c)``, shape (Q, n_way)."""
    z = np.asarray(z, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    w = w / np.linalg.norm(w, axis=1, keepdims=True)
    return scale * z @ w.T


def _no_scale(z, w, scale):
    return reference_cosine_logits(z, w, 1.0)


def _only_z(z, w, scale):
    z = np.asarray(z, dtype=np.float64)
    return scale * (z / np.linalg.norm(z, axis=1, keepdims=True)) @ np.asarray(w).T


def _only_w(z, w, scale):
    w = np.asarray(w, dtype=np.float64)
    return scale * np.asarray(z) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T


def _wrong_axis(z, w, scale):
    z = np.asarray(z, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    return scale * (z / np.linalg.norm(z, axis=0, keepdims=True)) @ (
        w / np.linalg.norm(w, axis=0, keepdims=True)).T


_MISTAKES = (
    (_no_scale, "your logits lie in [-1, 1]: multiply the cosines by the scale factor, or the "
                "softmax can never be confident", "scale * ..."),
    (_only_z, "you normalised the features but not the class weight vectors; a class with a "
              "long weight vector would win every query", "w / np.linalg.norm(w, axis=1, ...)"),
    (_only_w, "you normalised the class weight vectors but not the features",
     "z / np.linalg.norm(z, axis=1, ...)"),
    (_wrong_axis, "you normalised along the wrong axis: each row (one feature vector, one "
                  "class's weights) must have length 1", "np.linalg.norm(..., axis=1)"),
)


def check_cosine_logits(fn: Callable) -> Feedback:
    """Check ``fn(z, w, scale)`` -> (Q, n_way) logits (see :func:`reference_cosine_logits`)."""
    rng = np.random.default_rng(0)

    def call(z, w, scale):
        out = fn(z, w, scale)
        if out is None:
            raise _Fail("your function returned None", "return an array of shape (Q, n_way)")
        return np.asarray(out, dtype=np.float64)

    def shape():
        z, w = rng.normal(size=(7, 4)), rng.normal(size=(3, 4))
        if call(z, w, 5.0).shape != (7, 3):
            raise _Fail(f"expected shape (7, 3) for 7 queries and 3 classes, got "
                        f"{call(z, w, 5.0).shape}", "z @ w.T")

    def invariance():
        z, w = rng.random((5, 6)) + 0.1, rng.normal(size=(4, 6))
        a = call(z, w, 10.0)
        b = call(3.0 * z, w * np.array([[0.5], [2.0], [7.0], [1.0]]), 10.0)
        if not np.allclose(a, b, rtol=1e-5, atol=1e-8):
            raise _Fail("the logits changed when features and class vectors were made longer; "
                        "a cosine depends only on directions", "normalise both to length 1")

    def values():
        for q, n, d, s in ((4, 5, 8, 10.0), (6, 2, 3, 2.0), (3, 20, 64, 30.0)):
            z, w = rng.normal(size=(q, d)), rng.normal(size=(n, d))
            out, want = call(z, w, s), reference_cosine_logits(z, w, s)
            if np.allclose(out, want, rtol=1e-5, atol=1e-8):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(z, w, s), rtol=1e-5, atol=1e-8):
                    raise _Fail(problem, hint)
            raise _Fail(f"your logits differ from scale * cos(z, w) by up to "
                        f"{np.abs(out - want).max():.3g}", "scale * z_hat @ w_hat.T")

    return _run_checks("cosine classifier logits", [
        ("it returns one logit per query and class", shape),
        ("it matches scale * cos(z, w)", values),
        ("it depends only on directions (lengths do not matter)", invariance),
    ])
