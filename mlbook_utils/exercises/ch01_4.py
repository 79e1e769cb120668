"""Chapter 1.4: the LSTM meta-learner's cell update.

The gradient preprocessing, which chapter 1.4 shares with chapter 1.3, has one checker, chapter
1.3's: :func:`mlbook_utils.exercises.ch01_3.check_preprocess` (re-exported here, so that
``ch01_4.check_preprocess`` is that very checker).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks
from .ch01_3 import check_preprocess, reference_preprocess

__all__ = ["check_cell_update", "reference_cell_update", "check_preprocess",
           "reference_preprocess"]


def reference_cell_update(theta_prev, grad, i_t, f_t):
    """The reference solution: c_t = f_t * c_{t-1} + i_t * (-grad)."""
    return f_t * theta_prev - i_t * grad


def check_cell_update(cell_update: Callable) -> Feedback:
    """Check ``cell_update(theta_prev, grad, i_t, f_t)`` -> theta_t (arrays of one shape)."""
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 4))
    grad = rng.normal(size=(3, 4))
    i_t = rng.uniform(0.01, 0.5, size=(3, 4))
    f_t = rng.uniform(0.5, 1.0, size=(3, 4))
    out: dict = {}

    def call(*args):
        return np.asarray(cell_update(*args), dtype=np.float64)

    def shape():
        res = call(theta, grad, i_t, f_t)
        if res.shape != theta.shape:
            raise _Fail(f"for inputs of shape {theta.shape} you returned shape {res.shape}",
                        "the update is element-wise: no sums, no matrix products")
        out["res"] = res

    def sgd_case():
        th, g = np.array([1.0, -2.0]), np.array([0.5, 0.5])
        res = call(th, g, np.full(2, 0.1), np.ones(2))
        want = np.array([0.95, -2.05])
        if not np.allclose(res, want):
            if np.allclose(res, th + 0.1 * g):
                raise _Fail(f"with f_t = 1 and i_t = 0.1 you return {res}, i.e. theta + 0.1 * "
                            f"grad; gradient descent gives {want}",
                            "the candidate cell state is MINUS the gradient")
            raise _Fail(f"with theta={th}, grad={g}, i_t=0.1, f_t=1 (plain SGD with learning "
                        f"rate 0.1) you return {res}; expected {want}")

    def forget_gate():
        th, g = np.array([1.0, -2.0]), np.zeros(2)
        res = call(th, g, np.full(2, 0.1), np.full(2, 0.5))
        want = np.array([0.5, -1.0])
        if not np.allclose(res, want):
            raise _Fail(f"with a zero gradient and f_t = 0.5 you return {res}; the forget gate "
                        f"should shrink theta={th} to {want}",
                        "multiply the previous parameters by f_t")

    def gates_not_swapped():
        want = f_t * theta - i_t * grad
        if np.allclose(out["res"], i_t * theta - f_t * grad):
            raise _Fail("you multiply the parameters by i_t and the gradient by f_t",
                        "i_t (input gate) is the learning rate, f_t (forget gate) the shrinkage")
        if not np.allclose(out["res"], want):
            err = float(np.abs(out["res"] - want).max())
            raise _Fail(f"on random inputs your result differs from f_t * theta - i_t * grad by "
                        f"up to {err:.3g}")

    return _run_checks("Meta-learner cell update", [
        ("it returns the parameters' shape", shape),
        ("with f_t = 1 it is a gradient-descent step", sgd_case),
        ("the forget gate shrinks the parameters", forget_gate),
        ("it matches c_t = f_t * c_(t-1) - i_t * grad on random inputs", gates_not_swapped),
    ])
