"""Chapter 9.2: the behaviour-cloning loss in units of the top speed, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _one_number, _run_checks


def reference_bc_loss(predicted, actions, max_speed):
    """The reference solution: the squared error between the predicted and the demonstrated
    actions (each (T, 2)), measured in units of the top speed ``max_speed``, summed over the two
    action dimensions and averaged over the T time steps."""
    err = (np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64))
    return float(np.mean(np.sum(np.square(err / max_speed), axis=-1)))


def _raw_units(predicted, actions, max_speed):
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64)
    return float(np.mean(np.sum(np.square(err), axis=-1)))


def _divided_once(predicted, actions, max_speed):
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64)
    return float(np.mean(np.sum(np.square(err), axis=-1))) / max_speed


def _mean_over_dims(predicted, actions, max_speed):
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64)
    return float(np.mean(np.square(err / max_speed)))


def _sum_over_time(predicted, actions, max_speed):
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64)
    return float(np.sum(np.square(err / max_speed)))


def _abs_error(predicted, actions, max_speed):
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actions, dtype=np.float64)
    return float(np.mean(np.sum(np.abs(err / max_speed), axis=-1)))


_MISTAKES = (
    (_raw_units, "your loss is in raw units: with actions at most 0.08 long it is "
                 "1 / 0.08^2 = 156 times too small, and so is every inner gradient step",
     "divide the error by max_speed before squaring"),
    (_divided_once, "you divided the squared error by max_speed once; the error is measured "
                    "in units of max_speed, so the squared error is divided by max_speed^2",
     "np.square((predicted - actions) / max_speed)"),
    (_mean_over_dims, "you averaged over the two action dimensions; the squared length of the "
                      "error vector is their sum", "np.sum(..., axis=-1), then the mean over time"),
    (_sum_over_time, "you summed over the time steps; the loss is the mean over the T steps, "
                     "so that it does not grow with the horizon", "np.mean over the time axis"),
    (_abs_error, "you used the absolute error; behaviour cloning here is the *squared* error",
     "np.square"),
)


def check_bc_loss(fn: Callable) -> Feedback:
    """Check ``fn(predicted, actions, max_speed)`` -> one number: the mean over the time steps
    of the squared length of ``(predicted_t - actions_t) / max_speed`` (arrays (T, 2))."""
    r = np.random.default_rng(0)

    def call(*args):
        return _one_number(fn(*args), "the loss",
                           "average over the time steps, and sum over the two dimensions")

    def actions(t, m):
        a = r.normal(size=(t, 2))
        n = np.linalg.norm(a, axis=-1, keepdims=True)
        return a * m * r.uniform(0.1, 1.0, (t, 1)) / n

    def diagnose(args, want, got, what):
        for wrong, problem, hint in _MISTAKES:
            if np.isclose(got, wrong(*args), rtol=1e-6):
                raise _Fail(problem, hint)
        raise _Fail(f"{what}: the loss should be {want:.5f}; yours is {got:.5f}")

    def zero():
        a = actions(20, 0.08)
        got = call(a, a.copy(), 0.08)
        if not np.isclose(got, 0.0, atol=1e-12):
            raise _Fail(f"copying the expert's actions exactly should cost 0; yours is {got}")

    def one_unit():
        a = actions(20, 0.08)
        off = a + np.array([0.08, 0.0])
        got = call(off, a, 0.08)
        if not np.isclose(got, 1.0, rtol=1e-6):
            diagnose((off, a, 0.08), 1.0, got,
                     "an error of exactly the top speed at every step should cost 1")

    def values():
        for t, m in ((20, 0.08), (7, 0.5), (3, 1.0)):
            p, a = actions(t, m), actions(t, m)
            got, want = call(p, a, m), reference_bc_loss(p, a, m)
            if not np.isclose(got, want, rtol=1e-6):
                diagnose((p, a, m), want, got, f"with T = {t} and max_speed = {m}")

    def scale_free():
        p, a = actions(10, 0.08), actions(10, 0.08)
        base, scaled = call(p, a, 0.08), call(10 * p, 10 * a, 0.8)
        if not np.isclose(base, scaled, rtol=1e-6):
            raise _Fail("scaling the actions and the top speed together changed your loss "
                        f"({base:.5f} -> {scaled:.5f}); in units of the top speed it should "
                        "not change", "divide the error by max_speed, then square")

    return _run_checks("behaviour cloning in units of the top speed", [
        ("the expert's own actions cost 0", zero),
        ("an error of one top speed at every step costs 1", one_unit),
        ("the loss matches on random demonstrations", values),
        ("the loss does not change when actions and top speed are scaled together",
         scale_free),
    ])
