"""Chapter 7.1: Meta-SGD's gradient with respect to its learning rates, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def _grad(theta, x, y):
    return 2.0 / len(y) * x.T @ (x @ theta - y)


def reference_alpha_gradient(theta, alpha, support, query):
    """The reference solution. Linear regression y = theta . x with squared-error losses
    L(theta) = mean((X theta - y)^2). One Meta-SGD step theta' = theta - alpha * grad L_S(theta)
    (elementwise); return d L_Q(theta') / d alpha, a vector of alpha's shape.

    By the chain rule, d theta'_i / d alpha_i = -grad L_S(theta)_i, so
    d L_Q(theta') / d alpha = -grad L_S(theta) * grad L_Q(theta') (elementwise)."""
    (xs, ys), (xq, yq) = support, query
    theta, alpha = np.asarray(theta, np.float64), np.asarray(alpha, np.float64)
    g_s = _grad(theta, xs, ys)
    return -g_s * _grad(theta - alpha * g_s, xq, yq)


def _case(dim, n_support, n_query, seed):
    r = np.random.default_rng(seed)
    w = r.normal(size=dim)
    xs, xq = r.normal(size=(n_support, dim)), r.normal(size=(n_query, dim))
    return (r.normal(size=dim), r.uniform(0.01, 0.2, size=dim),
            (xs, xs @ w + 0.1 * r.normal(size=n_support)), (xq, xq @ w))


def _plus_sign(theta, alpha, support, query):
    return -reference_alpha_gradient(theta, alpha, support, query)


def _query_at_theta(theta, alpha, support, query):
    (xs, ys), (xq, yq) = support, query
    return -_grad(theta, xs, ys) * _grad(theta, xq, yq)


def _theta_gradient(theta, alpha, support, query):
    (xs, ys), (xq, yq) = support, query
    return _grad(theta - alpha * _grad(theta, xs, ys), xq, yq)


_MISTAKES = (
    (_plus_sign, "your answer has the opposite sign: theta' = theta - alpha * g_S, so "
                 "d theta' / d alpha = -g_S", "mind the minus sign of the inner step"),
    (_query_at_theta, "you took the query gradient at theta; it must be taken at the adapted "
                      "weights theta'", "first compute theta' = theta - alpha * g_S"),
    (_theta_gradient, "your answer is the query gradient at theta' (the first-order gradient "
                      "with respect to theta), not the gradient with respect to alpha",
     "multiply by d theta' / d alpha = -g_S, elementwise"),
)


def check_alpha_gradient(fn: Callable) -> Feedback:
    """Check ``fn(theta, alpha, support, query)`` -> d L_Q(theta') / d alpha (see
    :func:`reference_alpha_gradient`)."""

    def call(*args):
        out = fn(*args)
        if out is None:
            raise _Fail("your function returned None", "return the gradient, a vector")
        return np.asarray(out, dtype=np.float64)

    def shape():
        theta, alpha, support, query = _case(3, 5, 7, 0)
        out = call(theta, alpha, support, query)
        if out.shape != alpha.shape:
            raise _Fail(f"the gradient must have alpha's shape {alpha.shape}, got {out.shape}",
                        "one number per learning rate")

    def values():
        for seed, (dim, ns, nq) in enumerate([(2, 4, 6), (4, 5, 9), (3, 10, 3)]):
            theta, alpha, support, query = _case(dim, ns, nq, seed + 1)
            out = call(theta, alpha, support, query)
            want = reference_alpha_gradient(theta, alpha, support, query)
            if np.allclose(out, want, rtol=1e-6, atol=1e-9):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(theta, alpha, support, query), rtol=1e-6, atol=1e-9):
                    raise _Fail(problem, hint)
            raise _Fail(f"on a {dim}-parameter case your gradient differs from the expected "
                        f"one by up to {np.abs(out - want).max():.3g}",
                        "-grad L_S(theta) * grad L_Q(theta'), elementwise")

    def finite_difference():
        theta, alpha, support, query = _case(3, 6, 6, 7)
        (xq, yq) = query

        def loss(a):
            fast = theta - a * _grad(theta, *support)
            return np.mean((xq @ fast - yq) ** 2)

        eps = 1e-6
        fd = np.array([(loss(alpha + eps * e) - loss(alpha - eps * e)) / (2 * eps)
                       for e in np.eye(3)])
        if not np.allclose(call(theta, alpha, support, query), fd, rtol=1e-4, atol=1e-7):
            raise _Fail("your gradient disagrees with finite differences of the query loss",
                        None)

    return _run_checks("Meta-SGD gradient with respect to alpha", [
        ("it returns one number per learning rate", shape),
        ("it equals -grad L_S(theta) * grad L_Q(theta') on three cases", values),
        ("it matches finite differences of L_Q(theta - alpha * g_S)", finite_difference),
    ])
