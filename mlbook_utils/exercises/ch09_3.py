"""Chapter 9.3: one Lloyd iteration of k-means, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_lloyd_step(points, centres):
    """The reference solution: each point's nearest centre (squared Euclidean distance), then
    each centre moved to the mean of its points; an empty cluster keeps its centre."""
    points, centres = np.asarray(points, float), np.asarray(centres, float)
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    labels = d.argmin(1)
    new = centres.copy()
    for j in range(len(centres)):
        if (labels == j).any():
            new[j] = points[labels == j].mean(0)
    return labels, new


def _farthest(points, centres):
    points, centres = np.asarray(points, float), np.asarray(centres, float)
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    labels = d.argmax(1)
    new = centres.copy()
    for j in range(len(centres)):
        if (labels == j).any():
            new[j] = points[labels == j].mean(0)
    return labels, new


def _unpack(out):
    if out is None:
        raise _Fail("your function returned None", "return (labels, new_centres)")
    try:
        labels, new = out
    except (TypeError, ValueError):
        raise _Fail("expected a pair (labels, new_centres)",
                    "return labels, new_centres") from None
    return np.asarray(labels), np.asarray(new, dtype=float)


def check_lloyd_step(fn: Callable) -> Feedback:
    """Check ``fn(points (n, d), centres (k, d))`` -> ``(labels (n,), new_centres (k, d))``."""
    r = np.random.default_rng(0)

    def shapes():
        pts, cen = r.normal(size=(12, 3)), r.normal(size=(4, 3))
        labels, new = _unpack(fn(pts, cen))
        if labels.shape != (12,):
            raise _Fail(f"labels should have shape (12,) for 12 points; got {labels.shape}",
                        "one label per point: the index of its nearest centre")
        if new.shape != (4, 3):
            raise _Fail(f"new centres should have shape (4, 3); got {new.shape}",
                        "one centre per cluster, in the points' dimension")

    def assignment():
        pts = np.array([[0.0, 0.0], [0.2, 0.1], [5.0, 5.0], [5.1, 4.8], [9.0, 0.0]])
        cen = np.array([[0.0, 1.0], [5.0, 4.0], [8.0, 1.0]])
        labels, _ = _unpack(fn(pts, cen))
        want, _ = reference_lloyd_step(pts, cen)
        if np.array_equal(labels, _farthest(pts, cen)[0]):
            raise _Fail("you assigned each point to its farthest centre",
                        "argmin of the distances, not argmax")
        if not np.array_equal(labels, want):
            raise _Fail(f"on five points and three centres the labels should be "
                        f"{want.tolist()}; yours are {labels.tolist()}",
                        "squared Euclidean distance from each point to each centre, then argmin")

    def means():
        pts, cen = r.normal(size=(30, 2)), r.normal(size=(3, 2))
        labels, new = _unpack(fn(pts, cen))
        want_l, want = reference_lloyd_step(pts, cen)
        if not np.all(np.isfinite(new)):
            raise _Fail("a centre is not finite: a cluster with no points got the mean of "
                        "nothing", "leave an empty cluster's centre where it was")
        if np.array_equal(labels, want_l) and not np.allclose(new, want):
            sums = np.stack([pts[labels == j].sum(0) if (labels == j).any() else cen[j]
                             for j in range(3)])
            if np.allclose(new, sums):
                raise _Fail("your new centres are the sums of their points",
                            "divide by the number of points in the cluster (the mean)")
            raise _Fail(f"the new centres should be {np.round(want, 4).tolist()}; yours are "
                        f"{np.round(new, 4).tolist()}", "the mean of each cluster's points")

    def empty():
        pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        cen = np.array([[0.3, 0.3], [50.0, 50.0]])
        labels, new = _unpack(fn(pts, cen))
        if not np.all(np.isfinite(new)):
            raise _Fail("a centre is not finite: a cluster with no points got the mean of "
                        "nothing",
                        "leave an empty cluster's centre where it was")
        if not np.allclose(new[1], cen[1]):
            raise _Fail(f"the empty cluster's centre moved to {new[1].tolist()}",
                        "leave an empty cluster's centre where it was")

    return _run_checks("one Lloyd step of k-means", [
        ("it returns one label per point and one centre per cluster", shapes),
        ("each point goes to its nearest centre", assignment),
        ("each centre moves to the mean of its points", means),
        ("an empty cluster keeps its centre", empty),
    ])
