"""Chapter 8.1: gradient agreement's task weights, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_agreement_weights(grads):
    """The reference solution. ``grads`` (tasks, P): each task's flattened meta-gradient.
    ``w_i = g_i . g_mean / sum_j |g_j . g_mean|``, with ``g_mean`` the mean over tasks."""
    g = np.asarray(grads, dtype=np.float64)
    dots = g @ g.mean(axis=0)
    return dots / np.abs(dots).sum()


def _no_abs(g):
    dots = np.asarray(g) @ np.asarray(g).mean(axis=0)
    return dots / dots.sum()


def _cosine(g):
    g = np.asarray(g, dtype=np.float64)
    m = g.mean(axis=0)
    cos = g @ m / (np.linalg.norm(g, axis=1) * np.linalg.norm(m))
    return cos / np.abs(cos).sum()


def _abs_numerator(g):
    return np.abs(reference_agreement_weights(g))


_MISTAKES = (
    (_no_abs, "you divided by the plain sum of the inner products; divide by the sum of their "
              "absolute values, or a batch with disagreeing tasks can blow up or flip signs",
     "np.abs(dots).sum()"),
    (_cosine, "you used cosine similarities; the weights use plain inner products, so a task "
              "with a larger gradient counts more", "g @ g.mean(axis=0)"),
    (_abs_numerator, "your weights are never negative; a task whose gradient points against "
                     "the mean must get a negative weight", "keep the sign of the numerator"),
)


def _case(tasks, p, seed, against=True):
    r = np.random.default_rng(seed)
    g = r.normal(size=(tasks, p)) + 1.0
    if against:
        g[-1] = -3.0 * g[:-1].mean(axis=0) + 0.1 * r.normal(size=p)
    return g


def check_agreement_weights(fn: Callable) -> Feedback:
    """Check ``fn(grads)`` -> one weight per task (see :func:`reference_agreement_weights`)."""

    def call(g):
        out = fn(g)
        if out is None:
            raise _Fail("your function returned None", "return one weight per task")
        return np.asarray(out, dtype=np.float64)

    def shape():
        g = _case(4, 6, 0)
        if call(g).shape != (4,):
            raise _Fail(f"expected one weight per task, shape (4,), got {call(g).shape}", None)

    def identical():
        g = np.tile(_case(1, 5, 1, against=False), (3, 1))
        if not np.allclose(call(g), 1 / 3, rtol=1e-6):
            raise _Fail("three identical tasks must each get 1/3 (the plain mean)", None)

    def values():
        for seed, (tasks, p) in enumerate([(3, 4), (5, 10), (4, 2)]):
            g = _case(tasks, p, seed + 2)
            out, want = call(g), reference_agreement_weights(g)
            if np.allclose(out, want, rtol=1e-6, atol=1e-9):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(g), rtol=1e-6, atol=1e-9):
                    raise _Fail(problem, hint)
            raise _Fail(f"on {tasks} tasks your weights differ from the expected ones by up to "
                        f"{np.abs(out - want).max():.3g}",
                        "w_i = g_i . g_mean / sum_j |g_j . g_mean|")

    return _run_checks("gradient agreement weights", [
        ("it returns one weight per task", shape),
        ("identical tasks get equal weights that sum to 1", identical),
        ("it matches the formula, including a task that disagrees", values),
    ])
