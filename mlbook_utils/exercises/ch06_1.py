"""Chapter 6.1: MAML's meta-gradient through one inner step, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_meta_gradient(theta, support, query, inner_lr):
    """The reference solution. Linear regression y = theta . x with squared-error losses
    L_S(theta) = mean((X_S theta - y_S)^2), L_Q likewise. One inner step
    theta' = theta - inner_lr * grad L_S(theta); return d L_Q(theta') / d theta, a vector.

    grad L(theta) = (2/n) X^T (X theta - y), Hessian H_S = (2/n) X_S^T X_S, and
    d L_Q(theta') / d theta = (I - inner_lr * H_S) grad L_Q(theta')  (H_S is symmetric)."""
    (xs, ys), (xq, yq) = support, query
    theta = np.asarray(theta, dtype=np.float64)
    grad_s = 2.0 / len(ys) * xs.T @ (xs @ theta - ys)
    fast = theta - inner_lr * grad_s
    grad_q = 2.0 / len(yq) * xq.T @ (xq @ fast - yq)
    hessian_s = 2.0 / len(ys) * xs.T @ xs
    return (np.eye(len(theta)) - inner_lr * hessian_s) @ grad_q


def _case(dim, n_support, n_query, seed):
    r = np.random.default_rng(seed)
    w = r.normal(size=dim)
    xs, xq = r.normal(size=(n_support, dim)), r.normal(size=(n_query, dim))
    return r.normal(size=dim), (xs, xs @ w + 0.1 * r.normal(size=n_support)), (xq, xq @ w)


def _first_order(theta, support, query, inner_lr):
    (xs, ys), (xq, yq) = support, query
    fast = theta - inner_lr * 2.0 / len(ys) * xs.T @ (xs @ theta - ys)
    return 2.0 / len(yq) * xq.T @ (xq @ fast - yq)


def _no_adaptation(theta, support, query, inner_lr):
    xq, yq = query
    return 2.0 / len(yq) * xq.T @ (xq @ theta - yq)


def _hessian_of_query(theta, support, query, inner_lr):
    (xs, ys), (xq, yq) = support, query
    fast = theta - inner_lr * 2.0 / len(ys) * xs.T @ (xs @ theta - ys)
    grad_q = 2.0 / len(yq) * xq.T @ (xq @ fast - yq)
    return (np.eye(len(theta)) - inner_lr * 2.0 / len(yq) * xq.T @ xq) @ grad_q


_MISTAKES = (
    (_first_order, "your answer is the query gradient at the adapted weights: that is "
                   "first-order MAML, which drops the (I - inner_lr * H_S) factor",
     "theta' depends on theta through the support gradient; differentiate through it"),
    (_no_adaptation, "your answer is the query gradient at theta itself, with no inner step",
     "first compute theta' = theta - inner_lr * grad L_S(theta)"),
    (_hessian_of_query, "you used the Hessian of the query loss; the inner step uses the "
                        "support loss, so its Hessian H_S = (2/n) X_S^T X_S is the one",
     "H_S = 2 / len(y_S) * X_S.T @ X_S"),
)


def check_meta_gradient(fn: Callable) -> Feedback:
    """Check ``fn(theta, support, query, inner_lr)`` -> d L_Q(theta') / d theta (see
    :func:`reference_meta_gradient`)."""

    def call(*args):
        out = fn(*args)
        if out is None:
            raise _Fail("your function returned None", "return the meta-gradient, a vector")
        return np.asarray(out, dtype=np.float64)

    def shape():
        theta, support, query = _case(3, 5, 7, 0)
        out = call(theta, support, query, 0.1)
        if out.shape != theta.shape:
            raise _Fail(f"the meta-gradient must have theta's shape {theta.shape}, got "
                        f"{out.shape}", "one number per parameter")

    def values():
        for seed, (dim, ns, nq, lr) in enumerate([(2, 4, 6, 0.1), (4, 5, 9, 0.3),
                                                  (3, 10, 3, 0.05)]):
            theta, support, query = _case(dim, ns, nq, seed + 1)
            out = call(theta, support, query, lr)
            want = reference_meta_gradient(theta, support, query, lr)
            if np.allclose(out, want, rtol=1e-6, atol=1e-9):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(theta, support, query, lr), rtol=1e-6, atol=1e-9):
                    raise _Fail(problem, hint)
            raise _Fail(f"on a {dim}-parameter case with inner_lr={lr} your meta-gradient "
                        f"differs from the expected one by up to {np.abs(out - want).max():.3g}",
                        "(I - inner_lr * H_S) @ grad L_Q(theta')")

    def zero_lr():
        theta, support, query = _case(3, 5, 5, 9)
        out = call(theta, support, query, 0.0)
        if not np.allclose(out, _no_adaptation(theta, support, query, 0.0), atol=1e-9):
            raise _Fail("with inner_lr = 0 there is no adaptation, so the meta-gradient must "
                        "be the plain query gradient at theta", None)

    return _run_checks("MAML meta-gradient", [
        ("it returns one number per parameter", shape),
        ("it equals (I - inner_lr * H_S) grad L_Q(theta') on three cases", values),
        ("with inner_lr = 0 it is the plain query gradient", zero_lr),
    ])
