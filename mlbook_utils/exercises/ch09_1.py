"""Chapter 9.1: TAML's inequality-minimising meta-objective, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _one_number, _run_checks


def _theil(x):
    x = np.asarray(x, dtype=np.float64)
    r = x / x.mean()
    return float(np.mean(r * np.log(r)))


def reference_taml_objective(adapted_losses, initial_losses, lam):
    """The reference solution: the mean of the tasks' adapted query losses (MAML's
    meta-objective) plus ``lam`` times the Theil index of the tasks' initial losses,
    ``mean_i (l_i / mu) log(l_i / mu)``."""
    return float(np.mean(adapted_losses)) + lam * _theil(initial_losses)


def _over_sum(adapted_losses, initial_losses, lam):
    x = np.asarray(initial_losses, dtype=np.float64)
    r = x / x.sum()
    return float(np.mean(adapted_losses)) + lam * float(np.mean(r * np.log(r)))


def _log_of_loss(adapted_losses, initial_losses, lam):
    x = np.asarray(initial_losses, dtype=np.float64)
    r = x / x.mean()
    return float(np.mean(adapted_losses)) + lam * float(np.mean(r * np.log(x)))


def _on_adapted(adapted_losses, initial_losses, lam):
    return float(np.mean(adapted_losses)) + lam * _theil(adapted_losses)


def _sum_of_losses(adapted_losses, initial_losses, lam):
    return float(np.sum(adapted_losses)) + lam * _theil(initial_losses)


_MISTAKES = (
    (_over_sum, "you divided the losses by their sum; the Theil index divides each loss by "
                "the *mean* loss, so that equal losses give ratios of 1 and an index of 0",
     "r = losses / losses.mean()"),
    (_log_of_loss, "you took the log of the loss itself; the index uses the log of the ratio "
                   "to the mean, so that it does not change when every loss is scaled",
     "mean(r * log(r)) with the same r in both places"),
    (_on_adapted, "you measured the inequality of the adapted losses; TAML measures the "
                  "*initial* model's losses (before adaptation), the model it wants unbiased",
     "theil(initial_losses)"),
    (_sum_of_losses, "you summed the adapted losses; MAML's meta-objective is their mean over "
                     "the meta-batch", "np.mean(adapted_losses)"),
)


def check_taml_objective(fn: Callable) -> Feedback:
    """Check ``fn(adapted_losses, initial_losses, lam)`` -> one number: the mean adapted loss
    plus ``lam`` times the Theil index of the initial losses (each an array over the tasks of
    a meta-batch)."""
    r = np.random.default_rng(0)

    def call(*args):
        return _one_number(fn(*args), "the objective", "average over the tasks")

    def diagnose(args, want, got, what):
        for wrong, problem, hint in _MISTAKES:
            if np.isclose(got, wrong(*args), rtol=1e-6):
                raise _Fail(problem, hint)
        raise _Fail(f"{what}: the objective should be {want:.5f}; yours is {got:.5f}")

    def lam_zero():
        args = (r.uniform(0.2, 2.0, 8), r.uniform(0.5, 3.0, 8), 0.0)
        got, want = call(*args), reference_taml_objective(*args)
        if not np.isclose(got, want, rtol=1e-6):
            diagnose(args, want, got, "with lam = 0 it is MAML's meta-objective")

    def equal_losses():
        args = (r.uniform(0.2, 2.0, 6), np.full(6, 1.3), 2.0)
        got, want = call(*args), reference_taml_objective(*args)
        if not np.isclose(got, want, rtol=1e-6, atol=1e-9):
            diagnose(args, want, got, "when every task has the same initial loss the index is 0")

    def values():
        for n, lam in ((4, 0.5), (8, 3.0), (5, 1.0)):
            args = (r.uniform(0.2, 2.0, n), r.uniform(0.1, 4.0, n), lam)
            got, want = call(*args), reference_taml_objective(*args)
            if not np.isclose(got, want, rtol=1e-6):
                diagnose(args, want, got, f"with {n} tasks and lam = {lam}")

    def scale_free():
        a, b = r.uniform(0.2, 2.0, 5), r.uniform(0.1, 4.0, 5)
        base = call(a, b, 1.0) - float(np.mean(a))
        scaled = call(a, 100 * b, 1.0) - float(np.mean(a))
        if not np.isclose(base, scaled, rtol=1e-6, atol=1e-9):
            raise _Fail("multiplying every initial loss by 100 changed your inequality term "
                        f"({base:.5f} -> {scaled:.5f}); the Theil index is scale-free",
                        "use the ratio of each loss to the mean loss, inside and outside the "
                        "log")

    return _run_checks("TAML's inequality-minimising objective", [
        ("with lam = 0 it is MAML's mean adapted loss", lam_zero),
        ("equal initial losses add nothing", equal_losses),
        ("it adds lam times the Theil index of the initial losses", values),
        ("the inequality term does not change when every loss is scaled", scale_free),
    ])
