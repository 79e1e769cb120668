"""Chapter 7.2: one Reptile meta-step, by hand (plain SGD in the inner loop)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def _grad(theta, x, y):
    return 2.0 / len(y) * x.T @ (x @ theta - y)


def reference_reptile_step(theta, tasks, inner_lr, meta_step):
    """The reference solution. ``tasks`` is a list of tasks, each a list of minibatches
    ``(x, y)`` of a linear regression y = theta . x with loss mean((x theta - y)^2). For each
    task, start from ``theta`` and take one SGD step at ``inner_lr`` on each of its minibatches
    in turn, giving ``theta_task``; return ``theta + meta_step * mean(theta_task - theta)``."""
    theta = np.asarray(theta, np.float64)
    moves = []
    for batches in tasks:
        fast = theta.copy()
        for x, y in batches:
            fast = fast - inner_lr * _grad(fast, x, y)
        moves.append(fast - theta)
    return theta + meta_step * np.mean(moves, axis=0)


def _case(dim, n_tasks, n_batches, seed):
    r = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        w = r.normal(size=dim)
        batches = []
        for _ in range(n_batches):
            x = r.normal(size=(4, dim))
            batches.append((x, x @ w))
        tasks.append(batches)
    return r.normal(size=dim), tasks


def _away(theta, tasks, inner_lr, meta_step):
    return 2 * np.asarray(theta) - reference_reptile_step(theta, tasks, inner_lr, meta_step)


def _last_gradient_only(theta, tasks, inner_lr, meta_step):  # first-order MAML's direction
    theta = np.asarray(theta, np.float64)
    grads = []
    for batches in tasks:
        fast = theta.copy()
        for x, y in batches[:-1]:
            fast = fast - inner_lr * _grad(fast, x, y)
        grads.append(_grad(fast, *batches[-1]))
    return theta - meta_step * inner_lr * np.mean(grads, axis=0)


def _gradients_at_theta(theta, tasks, inner_lr, meta_step):  # no inner loop: joint training
    theta = np.asarray(theta, np.float64)
    g = np.mean([sum(_grad(theta, x, y) for x, y in batches) for batches in tasks], axis=0)
    return theta - meta_step * inner_lr * g


_MISTAKES = (
    (_away, "your step moves theta away from the adapted weights",
     "theta + meta_step * (theta_task - theta)"),
    (_last_gradient_only, "your step uses only the last inner gradient of each task (first-order "
                          "MAML's direction); Reptile moves towards the adapted weights, the sum "
                          "of all inner steps", "theta_task - theta, after every inner step"),
    (_gradients_at_theta, "your inner steps all take their gradient at theta; each inner step "
                          "must start where the previous one ended",
     "update fast = fast - inner_lr * grad(fast, x, y) in the loop"),
)


def check_reptile_step(fn: Callable) -> Feedback:
    """Check ``fn(theta, tasks, inner_lr, meta_step)`` -> the new theta (see
    :func:`reference_reptile_step`)."""

    def call(*args):
        out = fn(*args)
        if out is None:
            raise _Fail("your function returned None", "return the new theta")
        return np.asarray(out, dtype=np.float64)

    def shape():
        theta, tasks = _case(3, 2, 2, 0)
        if call(theta, tasks, 0.1, 1.0).shape != theta.shape:
            raise _Fail("the new theta must have theta's shape", None)

    def one_step():
        theta, tasks = _case(3, 1, 1, 1)
        want = theta - 0.1 * _grad(theta, *tasks[0][0])
        if not np.allclose(call(theta, tasks, 0.1, 1.0), want, rtol=1e-6, atol=1e-9):
            raise _Fail("with one task, one minibatch and meta_step 1, Reptile must land on "
                        "theta - inner_lr * gradient (one SGD step)", None)

    def values():
        for seed, (dim, n_tasks, n_batches, lr, eps) in enumerate(
                [(2, 3, 2, 0.1, 1.0), (4, 2, 4, 0.05, 0.5), (3, 5, 3, 0.2, 0.1)]):
            theta, tasks = _case(dim, n_tasks, n_batches, seed + 2)
            out = call(theta, tasks, lr, eps)
            want = reference_reptile_step(theta, tasks, lr, eps)
            if np.allclose(out, want, rtol=1e-6, atol=1e-9):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.allclose(out, wrong(theta, tasks, lr, eps), rtol=1e-6, atol=1e-9):
                    raise _Fail(problem, hint)
            raise _Fail(f"on a case with {n_tasks} tasks of {n_batches} minibatches your theta "
                        f"differs from the expected one by up to {np.abs(out - want).max():.3g}",
                        "theta + meta_step * mean over tasks of (theta_task - theta)")

    return _run_checks("Reptile meta-step", [
        ("it returns a theta of the right shape", shape),
        ("one task, one minibatch, meta step 1: one SGD step", one_step),
        ("it equals theta + meta_step * mean(theta_task - theta) on three cases", values),
    ])
