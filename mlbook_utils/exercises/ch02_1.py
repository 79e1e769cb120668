"""Chapter 2.1: write the contrastive loss of Hadsell et al. (2006)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_contrastive_loss(distance, same, margin=1.0):
    """The reference solution: mean over pairs of s d^2 / 2 + (1 - s) max(0, margin - d)^2 / 2."""
    distance = np.asarray(distance, dtype=np.float64)
    same = np.asarray(same, dtype=np.float64)
    pull = same * distance**2
    push = (1.0 - same) * np.maximum(margin - distance, 0.0) ** 2
    return float(np.mean(0.5 * (pull + push)))


def _mistakes(d, s, m) -> dict[str, tuple[float, str, str]]:
    """What typical mistakes return on a case, and what to tell the learner."""
    pull, push = s * d**2, (1 - s) * np.maximum(m - d, 0) ** 2
    return {
        "swapped": (
            float(np.mean(0.5 * ((1 - s) * d**2 + s * np.maximum(m - d, 0) ** 2))),
            "the two terms are swapped: your loss pulls *different* pairs together and pushes "
            "*same* pairs apart",
            "same = 1 marks a pair of one class: it gets d**2 / 2; same = 0 gets the margin term",
        ),
        "no clamp": (
            float(np.mean(0.5 * (pull + (1 - s) * (m - d) ** 2))),
            "different pairs that are already farther apart than the margin still cost something "
            "in your loss: (margin - d)**2 grows again once d > margin",
            "clamp at zero before squaring: np.maximum(margin - d, 0) ** 2",
        ),
        "no square": (
            float(np.mean(0.5 * (s * d + (1 - s) * np.maximum(m - d, 0)))),
            "your loss uses d and max(0, margin - d) without squaring them",
            "square both terms: d**2 and np.maximum(margin - d, 0) ** 2",
        ),
        "sum": (
            float(np.sum(0.5 * (pull + push))),
            "your loss is the *sum* over the pairs; it should be the mean, so that it does not "
            "grow with the batch size",
            "use np.mean(...) over the pairs",
        ),
        "no half": (
            float(np.mean(pull + push)),
            "your loss is twice the expected value: Hadsell et al. put a factor 1/2 on both terms",
            "multiply both terms by 0.5",
        ),
        "margin ignored": (
            float(np.mean(0.5 * (pull + (1 - s) * np.maximum(1.0 - d, 0) ** 2))),
            "your loss uses a margin of 1 whatever the margin argument says",
            "use the margin argument in max(0, margin - d)",
        ),
    }


def check_contrastive_loss(loss_fn: Callable) -> Feedback:
    """Check ``loss_fn(distance, same, margin)`` -> a float, on small numpy cases.

    ``distance`` (P,) holds the Euclidean distances of P pairs, ``same`` (P,) is 1.0 for a pair
    of the same class and 0.0 otherwise. The loss is the mean over pairs of
    ``same * d**2 / 2 + (1 - same) * max(0, margin - d)**2 / 2``.
    """
    d = np.array([0.2, 0.5, 1.4, 0.3, 2.5, 0.9])
    s = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])

    def call(dist, same, margin):
        out = loss_fn(np.asarray(dist, dtype=np.float64), np.asarray(same, dtype=np.float64),
                      margin)
        arr = np.asarray(out, dtype=np.float64)
        if arr.shape != ():
            raise _Fail(
                f"for {len(dist)} pairs your function returned an array of shape {arr.shape}; "
                "it should return one number (the mean over the pairs)",
                "reduce with np.mean at the end",
            )
        return float(arr)

    def diagnose(got, dist, same, margin, case):
        want = reference_contrastive_loss(dist, same, margin)
        if np.isclose(got, want, rtol=1e-5, atol=1e-8):
            return
        for value, problem, hint in _mistakes(dist, same, margin).values():
            if np.isclose(got, value, rtol=1e-5, atol=1e-8):
                raise _Fail(f"{case}: {problem} (you returned {got:.4f}, expected {want:.4f})",
                            hint)
        raise _Fail(f"{case}: you returned {got:.4f}, expected {want:.4f}",
                    "loss = mean(same * d**2 / 2 + (1 - same) * max(0, margin - d)**2 / 2)")

    def scalar():
        call(d, s, 1.0)

    def same_pairs():
        dd, ss = np.array([0.0, 0.5, 2.0]), np.ones(3)
        got = call(dd, ss, 1.0)
        diagnose(got, dd, ss, 1.0, "three same pairs at distances 0, 0.5 and 2")

    def different_pairs():
        dd, ss = np.array([0.0, 0.5, 2.0]), np.zeros(3)
        got = call(dd, ss, 1.0)
        diagnose(got, dd, ss, 1.0, "three different pairs at distances 0, 0.5 and 2 (margin 1)")

    def mixed():
        diagnose(call(d, s, 1.0), d, s, 1.0, f"distances {d.tolist()}, same {s.tolist()}")

    def margin():
        diagnose(call(d, s, 2.0), d, s, 2.0, "the same pairs with margin 2.0")

    return _run_checks("Contrastive loss", [
        ("it returns one number", scalar),
        ("same pairs cost d**2 / 2", same_pairs),
        ("different pairs cost max(0, margin - d)**2 / 2", different_pairs),
        ("a mixed batch gives the mean over its pairs", mixed),
        ("the margin argument is used", margin),
    ])
