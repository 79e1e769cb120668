"""Chapter 1.4: the LSTM meta-learner's cell update and its gradient preprocessing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_cell_update(theta_prev, grad, i_t, f_t):
    """The reference solution: c_t = f_t * c_{t-1} + i_t * (-grad)."""
    return f_t * theta_prev - i_t * grad


def reference_preprocess(x, p: float = 10.0):
    """The reference solution of the preprocessing exercise (Andrychowicz et al. 2016)."""
    x = np.asarray(x, dtype=np.float64)
    big = np.abs(x) >= np.exp(-p)
    first = np.where(big, np.log(np.where(big, np.abs(x), 1.0)) / p, -1.0)
    second = np.where(big, np.sign(x), np.exp(p) * x)
    return np.stack([first, second], axis=-1)


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


def check_preprocess(preprocess: Callable) -> Feedback:
    """Check ``preprocess(x, p=10.0)`` -> array of shape ``x.shape + (2,)``."""
    p = 10.0
    x = np.array([-3.0, -1e-3, 0.0, 1e-6, 2e-5, 0.5, 1.0, 50.0])
    out: dict = {}

    def call(v, pp=p):
        return np.asarray(preprocess(v, pp), dtype=np.float64)

    def shape():
        res = call(x)
        if res.shape != x.shape + (2,):
            raise _Fail(f"for x of shape {x.shape} you returned shape {res.shape}; expected "
                        f"{x.shape + (2,)}", "stack the two numbers along a new LAST axis")
        if not np.isfinite(res).all():
            raise _Fail(f"your output has non-finite values {res[~np.isfinite(res)][:3]} "
                        "(e.g. at x = 0)", "take the log only where |x| >= exp(-p)")
        out["res"] = res

    def large():
        res, want = out["res"], reference_preprocess(x, p)
        big = np.abs(x) >= np.exp(-p)
        if not np.allclose(res[big, 1], want[big, 1]):
            raise _Fail(f"for |x| >= exp(-p) the second number should be sign(x): for x = "
                        f"{x[big]} expected {want[big, 1]}, got {res[big, 1]}")
        if not np.allclose(res[big, 0], want[big, 0]):
            if np.allclose(res[big, 0], np.log(np.abs(x[big]))):
                raise _Fail("the first number is log|x| but should be log|x| / p",
                            "divide by p so it lies in about [-1, 1]")
            raise _Fail(f"for x = {x[big]} the first number should be log|x| / p = "
                        f"{np.round(want[big, 0], 4)}, got {np.round(res[big, 0], 4)}")

    def small():
        res, want = out["res"], reference_preprocess(x, p)
        tiny = np.abs(x) < np.exp(-p)
        if not np.allclose(res[tiny], want[tiny]):
            raise _Fail(f"for |x| < exp(-p) = {np.exp(-p):.2e} (x = {x[tiny]}) the output should "
                        f"be (-1, exp(p) * x) = {want[tiny].tolist()}, got {res[tiny].tolist()}",
                        "compare |x| with exp(-p), not with p or with 1")

    def uses_p():
        res, want = call(x, 5.0), reference_preprocess(x, 5.0)
        if not np.allclose(res, want):
            raise _Fail("with p = 5 your output differs from the expected one; p is fixed "
                        "somewhere in your function", "use the argument p everywhere")

    return _run_checks("Gradient preprocessing", [
        ("it returns shape x.shape + (2,), all finite", shape),
        ("large |x| map to (log|x| / p, sign(x))", large),
        ("small |x| map to (-1, exp(p) x)", small),
        ("it uses the argument p", uses_p),
    ])
