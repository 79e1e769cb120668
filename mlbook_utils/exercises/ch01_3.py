"""Chapter 1.3: write the learned optimizer's gradient preprocessing.

This is the book's one checker of Andrychowicz et al.'s preprocessing: chapter 1.4's LSTM
meta-learner uses the same function (``mlbook_utils.gradient_preprocessing``), and its exercise
module re-exports this checker rather than keeping a second one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_preprocess(grad, p: float = 10.0) -> np.ndarray:
    """The reference solution: (log|g| / p, sign g) if |g| >= e^-p, else (-1, e^p g)."""
    g = np.asarray(grad, dtype=np.float64)
    big = np.abs(g) >= np.exp(-p)
    first = np.where(big, np.log(np.maximum(np.abs(g), np.exp(-p))) / p, -1.0)
    second = np.where(big, np.sign(g), np.exp(p) * g)
    return np.stack([first, second], axis=-1)


def check_preprocess(fn: Callable) -> Feedback:
    """Check ``fn(grad, p)`` -> array of shape grad.shape + (2,)."""

    def call(g, p=10.0):
        out = np.asarray(fn(np.asarray(g, dtype=np.float32), p), dtype=np.float64)
        return out

    def shape():
        for g in (np.ones(3), np.ones((2, 5)), np.ones((4, 1, 3))):
            out = call(g)
            if out.shape != g.shape + (2,):
                raise _Fail(
                    f"for a gradient of shape {g.shape} you returned shape {out.shape}; "
                    f"expected {g.shape + (2,)}",
                    "stack the two features on a new last axis: np.stack([a, b], axis=-1)",
                )

    def large():
        g = np.array([1.0, -1.0, np.e, -0.5, 100.0])
        out, want = call(g), reference_preprocess(g)
        if not np.allclose(out[:, 1], want[:, 1], atol=1e-4):
            raise _Fail(
                f"for the large gradients {g.tolist()} the second feature is "
                f"{np.round(out[:, 1], 4).tolist()}; it should be their sign "
                f"{want[:, 1].tolist()}",
                "when |g| >= exp(-p) the second feature is sign(g)",
            )
        if np.allclose(out[:, 0], np.log10(np.abs(g)) / 10.0, atol=1e-4):
            raise _Fail(
                "the first feature uses log10; the paper uses the natural logarithm",
                "use np.log, not np.log10",
            )
        if np.allclose(out[:, 0], np.log(np.abs(g)), atol=1e-4):
            raise _Fail(
                f"for g = {g.tolist()} the first feature is {np.round(out[:, 0], 4).tolist()}: "
                f"log|g| without dividing by p; expected {np.round(want[:, 0], 4).tolist()}",
                "divide log|g| by p so that the feature stays in about [-1, 1]",
            )
        if not np.allclose(out[:, 0], want[:, 0], atol=1e-4):
            raise _Fail(
                f"for g = {g.tolist()} (p = 10) the first feature is "
                f"{np.round(out[:, 0], 4).tolist()}; expected log|g| / p = "
                f"{np.round(want[:, 0], 4).tolist()}",
            )

    def small():
        g = np.array([1e-6, -2e-5, 0.0, 4e-5])
        out, want = call(g), reference_preprocess(g)
        if not np.all(np.isfinite(out)):
            raise _Fail(
                f"for the tiny gradients {g.tolist()} your output contains inf or nan: "
                f"{out.tolist()}",
                "log(0) = -inf: take the log only of max(|g|, exp(-p)), or use np.where on a "
                "safe value",
            )
        if not np.allclose(out[:, 0], -1.0, atol=1e-4):
            raise _Fail(
                f"for tiny gradients {g.tolist()} (|g| < exp(-10) = 4.54e-5) the first feature "
                f"is {np.round(out[:, 0], 4).tolist()}; it should be -1",
                "below the threshold the first feature is the constant -1",
            )
        if not np.allclose(out[:, 1], want[:, 1], atol=1e-3):
            raise _Fail(
                f"for tiny gradients {g.tolist()} the second feature is "
                f"{np.round(out[:, 1], 4).tolist()}; expected exp(p) * g = "
                f"{np.round(want[:, 1], 4).tolist()}",
                "below the threshold the second feature is exp(p) * g, not sign(g)",
            )

    def other_p():
        g = np.array([0.3, 1e-3, -1e-3, 0.01])
        out, want = call(g, 2.0), reference_preprocess(g, 2.0)
        if not np.allclose(out, want, atol=1e-3):
            raise _Fail(
                f"with p = 2 and g = {g.tolist()} you returned {np.round(out, 4).tolist()}; "
                f"expected {np.round(want, 4).tolist()}",
                "use the argument p everywhere (threshold exp(-p), scale 1/p, factor exp(p))",
            )

    return _run_checks("Gradient preprocessing", [
        ("the output has shape grad.shape + (2,)", shape),
        ("large gradients give (log|g| / p, sign g)", large),
        ("tiny gradients give (-1, exp(p) g), without inf or nan", small),
        ("the argument p is used", other_p),
    ])
