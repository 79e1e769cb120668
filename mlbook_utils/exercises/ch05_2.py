"""Chapter 5.2: the write weighting of least-recently-used access (LRUA), by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # cannot overflow


def reference_lrua_write(alpha, w_read_prev, w_lu_prev):
    """The reference solution. ``alpha`` a number (the write gate's logit), ``w_read_prev``
    (N,) the head's previous read weighting, ``w_lu_prev`` (N,) the previous least-used
    weighting: ``sigmoid(alpha) * w_read_prev + (1 - sigmoid(alpha)) * w_lu_prev``."""
    g = _sigmoid(float(alpha))
    return g * np.asarray(w_read_prev, dtype=np.float64) + (1.0 - g) * np.asarray(
        w_lu_prev, dtype=np.float64)


def _swapped(alpha, w_read_prev, w_lu_prev):
    return reference_lrua_write(alpha, w_lu_prev, w_read_prev)


def _no_sigmoid(alpha, w_read_prev, w_lu_prev):
    return alpha * np.asarray(w_read_prev) + (1.0 - alpha) * np.asarray(w_lu_prev)


def _sigmoid_on_both(alpha, w_read_prev, w_lu_prev):
    g = _sigmoid(alpha)
    return g * np.asarray(w_read_prev) + g * np.asarray(w_lu_prev)


def _only_read(alpha, w_read_prev, w_lu_prev):
    return _sigmoid(alpha) * np.asarray(w_read_prev, dtype=np.float64)


_MISTAKES = (
    (_swapped, "the two weightings are swapped: sigmoid(alpha) must weigh the previous READ "
               "weighting, 1 - sigmoid(alpha) the least-used one",
     "a large alpha writes where the head last read"),
    (_no_sigmoid, "alpha was used as a weight directly: squash it with the sigmoid first, so "
                  "that the two weights lie in [0, 1] and sum to 1",
     "g = 1 / (1 + exp(-alpha))"),
    (_sigmoid_on_both, "both weightings got sigmoid(alpha): the least-used one gets "
                       "1 - sigmoid(alpha)", "the two weights must sum to 1"),
    (_only_read, "the least-used term is missing: add (1 - sigmoid(alpha)) * w_lu_prev",
     "without it the head can never write to a fresh slot"),
)


def check_lrua_write(fn: Callable) -> Feedback:
    """Check ``fn(alpha, w_read_prev, w_lu_prev)`` -> (N,) (see :func:`reference_lrua_write`)."""
    rng = np.random.default_rng(0)

    def call(alpha, w_r, w_lu):
        out = fn(float(alpha), np.array(w_r, dtype=np.float64), np.array(w_lu, dtype=np.float64))
        if out is None:
            raise _Fail("your function returned None", "return an array of shape (N,)")
        return np.asarray(out, dtype=np.float64)

    def diagnose(out, args, problem, hint):
        for wrong, p, h in _MISTAKES:
            if np.allclose(out, wrong(*args), atol=1e-6):
                raise _Fail(p, h)
        raise _Fail(problem, hint)

    def shape():
        out = call(0.0, rng.dirichlet(np.ones(6)), np.eye(6)[2])
        if out.shape != (6,):
            raise _Fail(f"expected shape (6,) for 6 slots, got {out.shape}", "one weight a slot")

    def gate():
        # alpha = ln 3: sigmoid = 0.75; the head read slot 0, slot 2 is the least used
        args = (np.log(3.0), np.eye(4)[0], np.eye(4)[2])
        out = call(*args)
        if not np.allclose(out, [0.75, 0.0, 0.25, 0.0], atol=1e-6):
            diagnose(out, args, f"with sigmoid(alpha) = 0.75, a read on slot 0 and slot 2 least "
                                f"used, the answer is (0.75, 0, 0.25, 0); you gave "
                                f"{np.round(out, 3)}", "sigmoid(alpha) * w_read_prev + ...")

    def values():
        for n in (5, 20, 128):
            for alpha in (-3.0, 0.4, 2.5):
                w_r = rng.dirichlet(np.ones(n) * 0.5)
                w_lu = np.zeros(n)
                w_lu[rng.choice(n, 2, replace=False)] = 1.0
                args = (alpha, w_r, w_lu)
                out, want = call(*args), reference_lrua_write(*args)
                if not np.allclose(out, want, atol=1e-6):
                    diagnose(out, args, f"your weighting differs from the reference by up to "
                                        f"{np.abs(out - want).max():.3g} (N = {n}, alpha = "
                                        f"{alpha})", "interpolate with g = sigmoid(alpha)")

    def extremes():
        w_r, w_lu = np.eye(5)[1], np.eye(5)[4]
        out = call(-60.0, w_r, w_lu)
        if not (np.all(np.isfinite(out)) and np.allclose(out, w_lu, atol=1e-6)):
            diagnose(out, (-60.0, w_r, w_lu), f"with alpha = -60 all the weight must go to the "
                     f"least-used slot 4; you gave {np.round(out, 3)}",
                     "sigmoid(-60) is almost 0")

    return _run_checks("LRUA write weighting", [
        ("it returns one weight a slot", shape),
        ("a worked case: sigmoid(alpha) = 0.75", gate),
        ("it matches the reference on random cases", values),
        ("a very negative alpha writes to the least-used slot", extremes),
    ])
