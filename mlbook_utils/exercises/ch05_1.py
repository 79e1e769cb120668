"""Chapter 5.1: the NTM's location addressing (shift, then sharpen), by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks

EPS = 1e-6


def reference_shift_sharpen(w, s, gamma):
    """The reference solution. ``w`` (N,) a weighting, ``s`` (3,) the weights of the shifts
    (-1, 0, +1), ``gamma`` >= 1: the cyclic shift ``w~[i] = sum_j w[i - j] s[j]``, then
    ``w~^gamma / sum w~^gamma``, computed as ``softmax(gamma * log(w~ + eps))``."""
    w = np.asarray(w, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    shifted = s[0] * np.roll(w, -1) + s[1] * w + s[2] * np.roll(w, 1)
    z = gamma * np.log(shifted + EPS)
    z = np.exp(z - z.max())
    return z / z.sum()


def _wrong_direction(w, s, gamma):
    return reference_shift_sharpen(w, np.asarray(s)[::-1], gamma)


def _no_sharpen(w, s, gamma):
    return reference_shift_sharpen(w, s, 1.0)


def _not_cyclic(w, s, gamma):
    w = np.asarray(w, dtype=np.float64)
    right = np.concatenate([[0.0], w[:-1]])
    left = np.concatenate([w[1:], [0.0]])
    shifted = s[0] * left + s[1] * w + s[2] * right
    p = (shifted + EPS) ** gamma
    return p / p.sum()


_MISTAKES = (
    (_wrong_direction, "your weighting moved the wrong way: with s = (0, 0, 1) the focus must "
                       "move from slot i to slot i + 1", "np.roll(w, 1) goes with s[2] (+1)"),
    (_no_sharpen, "you shifted correctly but did not sharpen: raise to the power gamma and "
                  "renormalise", "softmax(gamma * log(w + eps))"),
    (_not_cyclic, "the shift must wrap around: what leaves the last slot enters the first",
     "np.roll"),
)


def check_shift_sharpen(fn: Callable) -> Feedback:
    """Check ``fn(w, s, gamma)`` -> (N,) weighting (see :func:`reference_shift_sharpen`)."""
    rng = np.random.default_rng(0)

    def call(w, s, gamma):
        out = fn(np.array(w, dtype=np.float64), np.array(s, dtype=np.float64), gamma)
        if out is None:
            raise _Fail("your function returned None", "return an array of shape (N,)")
        return np.asarray(out, dtype=np.float64)

    def distribution():
        w = rng.dirichlet(np.ones(8))
        out = call(w, [0.2, 0.5, 0.3], 2.0)
        if out.shape != (8,):
            raise _Fail(f"expected shape (8,) for 8 slots, got {out.shape}", "one weight a slot")
        if not (np.all(out >= 0) and abs(out.sum() - 1) < 1e-6):
            raise _Fail(f"the result must be a distribution: non-negative, summing to 1 (sum "
                        f"{out.sum():.4f})", "divide by the sum after sharpening")

    def forward():
        w = np.eye(6)[5]  # all weight on the last slot
        out = call(w, [0, 0, 1], 1.0)
        if not np.allclose(out, np.eye(6)[0], atol=1e-4):
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(w, [0, 0, 1], 1.0), atol=1e-4):
                    raise _Fail(problem, hint)
            raise _Fail(f"s = (0, 0, 1) on a weighting at the last of 6 slots should give all "
                        f"weight to slot 0; you gave {np.round(out, 3)}", "cyclic shift by +1")

    def values():
        for n, gamma in ((5, 1.0), (10, 3.0), (128, 20.0)):
            w = rng.dirichlet(np.ones(n) * 0.3)
            s = rng.dirichlet(np.ones(3))
            out, want = call(w, s, gamma), reference_shift_sharpen(w, s, gamma)
            if np.allclose(out, want, atol=1e-6):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(w, s, gamma), atol=1e-6):
                    raise _Fail(problem, hint)
            raise _Fail(f"your weighting differs from the reference by up to "
                        f"{np.abs(out - want).max():.3g} (N = {n}, gamma = {gamma})",
                        "shift first, then sharpen")

    def underflow():
        w = np.full(128, 1e-30)
        w[3] = 1.0
        w /= w.sum()
        out = call(w, [0.0, 1.0, 0.0], 50.0)
        if not np.all(np.isfinite(out)):
            raise _Fail("with gamma = 50, w ** gamma underflowed to 0 / 0 = NaN",
                        "sharpen as softmax(gamma * log(w + eps)): subtract the max first")

    return _run_checks("shift and sharpen", [
        ("it returns a distribution over the slots", distribution),
        ("s = (0, 0, 1) moves the focus one slot forward, wrapping around", forward),
        ("it matches the reference on random cases", values),
        ("it stays finite when gamma is large", underflow),
    ])
