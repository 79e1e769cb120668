"""Chapter 1.3: write the learned optimizer's gradient preprocessing.

This is the book's one checker of Andrychowicz et al.'s preprocessing: chapter 1.4's LSTM
meta-learner uses the same function (``mlbook_utils.gradient_preprocessing``), and its exercise
module re-exports this checker rather than keeping a second one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_preprocess(grad, p: float = 10.0) -> np.ndarray:
    """The reference solution: (log|g| / p, sign g) if |g| >= e^-p, else (-1, e^p g)."""
    g = np.asarray(grad, dtype=np.float64)
    big = np.abs(g) >= np.exp(-p)
    first = np.where(big, np.log(np.maximum(np.abs(g), np.exp(-p))) / p, -1.0)
    second = np.where(big, np.sign(g), np.exp(p) * g)
    return np.stack([first, second], axis=-1)


def check_preprocess(fn: Callable) -> Feedback:
    """Check ``fn(grad, p)`` -> array of shape grad.shape + (2,)."""

    def call(g, p=10.0):
        out = np.asarray(fn(np.asarray(g, dtype=np.float32), p), dtype=np.float64)
        return out

    def shape():
        for g in (np.ones(3), np.ones((2, 5)), np.ones((4, 1, 3))):
            out = call(g)
            if out.shape != g.shape + (2,):
                raise _Fail(
                    f"for a gradient of shape {g.shape} you returned shape {out.shape}; "
                    f"expected {g.shape + (2,)}",
                    "stack the two features on a new last axis: np.stack([a, b], axis=-1)",
                )

    def large():
        g = np.array([1.0, -1.0, np.e, -0.5, 100.0])
        out, want = call(g), reference_preprocess(g)
        if not np.allclose(out[:, 1], want[:, 1], atol=1e-4):
            raise _Fail(
                f"for the large gradients {g.tolist()} the second feature is "
                f"{np.round(out[:, 1], 4).tolist()}; it should be their sign "
                f"{want[:, 1].tolist()}",
                "when |g| >= exp(-p) the second feature is sign(g)",
            )
        if np.allclose(out[:, 0], np.log10(np.abs(g)) / 10.0, atol=1e-4):
            raise _Fail(
                "the first feature uses log10; the paper uses the natural logarithm",
                "use np.log, not np.log10",
            )
        if np.allclose(out[:, 0], np.log(np.abs(g)), atol=1e-4):
            raise _Fail(
                f"for g = {g.tolist()} the first feature is {np.round(out[:, 0], 4).tolist()}: "
                f"log|g| without dividing by p; expected {np.round(want[:, 0], 4).tolist()}",
                "divide log|g| by p so that the feature stays in about [-1, 1]",
            )
        if not np.allclose(out[:, 0], want[:, 0], atol=1e-4):
            raise _Fail(
                f"for g = {g.tolist()} (p = 10) the first feature is "
                f"{np.round(out[:, 0], 4).tolist()}; expected log|g| / p = "
                f"{np.round(want[:, 0], 4).tolist()}",
            )

    def small():
        g = np.array([1e-6, -2e-5, 0.0, 4e-5])
        out, want = call(g), reference_preprocess(g)
        if not np.all(np.isfinite(out)):
            raise _Fail(
                f"for the tiny gradients {g.tolist()} your output contains inf or nan: "
                f"{out.tolist()}",
                "log(0) = -inf: take the log only of max(|g|, exp(-p)), or use np.where on a "
                "safe value",
            )
        if not np.allclose(out[:, 0], -1.0, atol=1e-4):
            raise _Fail(
                f"for tiny gradients {g.tolist()} (|g| < exp(-10) = 4.54e-5) the first feature "
                f"is {np.round(out[:, 0], 4).tolist()}; it should be -1",
                "below the threshold the first feature is the constant -1",
            )
        if not np.allclose(out[:, 1], want[:, 1], atol=1e-3):
            raise _Fail(
                f"for tiny gradients {g.tolist()} the second feature is "
                f"{np.round(out[:, 1], 4).tolist()}; expected exp(p) * g = "
                f"{np.round(want[:, 1], 4).tolist()}",
                "below the threshold the second feature is exp(p) * g, not sign(g)",
            )

    def other_p():
        g = np.array([0.3, 1e-3, -1e-3, 0.01])
        out, want = call(g, 2.0), reference_preprocess(g, 2.0)
        if not np.allclose(out, want, atol=1e-3):
            raise _Fail(
                f"with p = 2 and g = {g.tolist()} you returned {np.round(out, 4).tolist()}; "
                f"expected {np.round(want, 4).tolist()}",
                "use the argument p everywhere (threshold exp(-p), scale 1/p, factor exp(p))",
            )

    return _run_checks("Gradient preprocessing", [
        ("the output has shape grad.shape + (2,)", shape),
        ("large gradients give (log|g| / p, sign g)", large),
        ("tiny gradients give (-1, exp(p) g), without inf or nan", small),
        ("the argument p is used", other_p),
    ])


# --------------------------------------------------------------------------------------------
# The unrolled meta-loss of the learned optimizer (a few steps), in keras.ops
# --------------------------------------------------------------------------------------------


def reference_meta_loss(opt_params, theta, state, problem, data, steps):
    """The reference solution of chapter 1.3's second coding exercise: run ``steps`` steps of
    the LSTM optimizer from ``theta`` (one row per problem) and return the mean over problems
    of sum_{t=1..steps} f(theta_t) / steps, with the optimizee's gradient as a constant."""
    from keras import ops

    from .. import learned_optimizer as lo
    from ..autodiff import stop_gradient, value_and_grad

    losses = []
    for _ in range(steps):
        _, (grad,) = value_and_grad(lambda p: ops.sum(problem.loss(p[0], data)), [theta])
        update, state = lo.lstm_optimizer(opt_params, stop_gradient(grad), state)
        theta = theta + update
        losses.append(problem.loss(theta, data))  # f(theta_t), one per problem
    return ops.mean(ops.sum(ops.stack(losses), axis=0)) / steps


def _meta_loss_variant(opt_params, theta, state, problem, data, steps, variant):
    """What typical mistakes compute (values only)."""
    from keras import ops

    from .. import learned_optimizer as lo
    from ..autodiff import value_and_grad

    state0 = state
    losses = [problem.loss(theta, data)]
    for _ in range(steps):
        _, (grad,) = value_and_grad(lambda p: ops.sum(problem.loss(p[0], data)), [theta])
        update, state = lo.lstm_optimizer(opt_params, grad, state)
        if variant == "fresh state":
            state = state0
        theta = theta - update if variant == "minus" else theta + update
        losses.append(problem.loss(theta, data))
    stack = ops.stack(losses)  # (steps + 1, B)
    if variant == "with f(theta_0)":
        return ops.mean(ops.sum(stack[:-1], axis=0)) / steps
    if variant == "final only":
        return ops.mean(stack[-1])
    if variant == "no division":
        return ops.mean(ops.sum(stack[1:], axis=0))
    if variant == "sum over problems":
        return ops.sum(stack[1:]) / steps
    return ops.mean(ops.sum(stack[1:], axis=0)) / steps


_META_LOSS_MISTAKES = {
    "with f(theta_0)": ("your sum starts at f(theta_0), the loss before the first step, and stops "
                        "before the last one; the meta-loss sums f(theta_1) ... f(theta_T), "
                        "the losses the optimizer's steps produced",
                        "compute the loss after each update: theta = theta + update, then f"),
    "final only": ("your meta-loss is the final loss f(theta_T) only; the paper's meta-loss "
                   "sums the loss along the whole trajectory (w_t = 1)",
                   "collect f(theta_t) after every step and sum them"),
    "no division": ("your meta-loss is steps times too large: it sums f(theta_t) over the steps "
                    "without dividing by their number, as learned_optimizer.unroll does",
                    "divide the sum over steps by steps"),
    "sum over problems": ("your meta-loss sums over the batch of problems; it is the *mean* over "
                          "problems (of each problem's sum over steps, divided by steps)",
                          "ops.mean over the problems' axis"),
    "minus": ("your optimizer subtracts the LSTM's output; the update is added: "
              "theta_{t+1} = theta_t + g_t (the LSTM learns the sign of its steps)",
              "theta = theta + update"),
    "fresh state": ("your optimizer forgets its LSTM state between steps; the state that "
                    "lstm_optimizer returns must be passed to the next step",
                    "update, state = lo.lstm_optimizer(opt_params, grad, state)"),
}


def _meta_case(dim, batch, seed, hidden=8):
    from .. import learned_optimizer as lo

    problem = lo.Quadratic(dim=dim)
    theta, data, _ = problem.sample(np.random.default_rng(seed), batch, 1)
    theta = theta + np.random.default_rng(seed + 50).normal(0, 0.5, theta.shape).astype("float32")
    phi = lo.init_lstm_optimizer(hidden=hidden, layers=2, seed=seed)
    phi[-2] = phi[-2] * 5.0  # larger first steps, so that the steps matter
    state = lo.init_lstm_state(theta.size, hidden, 2)
    return phi, theta, state, problem, data


def check_meta_loss(fn: Callable) -> Feedback:
    """Check ``fn(opt_params, theta, state, problem, data, steps)`` -> the meta-loss of
    ``steps`` steps of the learned optimizer (what ``learned_optimizer.unroll`` returns first),
    its gradient with respect to the optimizer's weights, and a short meta-training with it."""
    from keras import ops

    from .. import learned_optimizer as lo
    from ..autodiff import value_and_grad

    def as_tensors(phi, theta, state, data):
        t = ops.convert_to_tensor
        return [t(p) for p in phi], t(theta), [t(s) for s in state], tuple(t(d) for d in data)

    def call(phi, theta, state, problem, data, steps):
        out = fn(*as_tensors(phi, theta, state, data)[:3], problem,
                 as_tensors(phi, theta, state, data)[3], steps)
        if out is None:
            raise _Fail("your function returned None", "return the meta-loss, one number")
        value = np.asarray(ops.convert_to_numpy(out), np.float64)
        if value.size != 1:
            raise _Fail(f"your meta-loss has shape {value.shape}; it should be one number",
                        "average over the problems after summing over the steps")
        return float(value.reshape(()))

    def values():
        for dim, batch, steps, seed in [(3, 4, 1, 0), (4, 5, 3, 1), (5, 3, 5, 2)]:
            phi, theta, state, problem, data = _meta_case(dim, batch, seed)
            out = call(phi, theta, state, problem, data, steps)
            want = float(ops.convert_to_numpy(
                lo.unroll(*as_tensors(phi, theta, state, data)[:3], problem,
                          as_tensors(phi, theta, state, data)[3], None, steps)[0]))
            if abs(out - want) <= 1e-4 * max(1.0, abs(want)):
                continue
            where = f" (on {batch} {dim}-D quadratics, {steps} steps)"
            for variant, (problem_text, hint) in _META_LOSS_MISTAKES.items():
                wrong = float(ops.convert_to_numpy(_meta_loss_variant(
                    *as_tensors(phi, theta, state, data)[:3], problem,
                    as_tensors(phi, theta, state, data)[3], steps, variant)))
                if abs(wrong - want) > 1e-4 * max(1.0, abs(want)) and \
                        abs(out - wrong) <= 1e-4 * max(1.0, abs(wrong)):
                    raise _Fail(problem_text + where, hint)
            raise _Fail(f"your meta-loss is {out:.5g}, learned_optimizer.unroll's {want:.5g}"
                        + where, "mean over problems of sum_{t=1..T} f(theta_t) / T")

    def gradient():
        phi, theta, state, problem, data = _meta_case(4, 4, 3)
        phi_t, theta_t, state_t, data_t = as_tensors(phi, theta, state, data)
        try:
            _, grads = value_and_grad(lambda p: fn(p, theta_t, state_t, problem, data_t, 3),
                                      phi_t)
            grads = [np.asarray(ops.convert_to_numpy(g), np.float64) for g in grads]
        except Exception as exc:
            raise _Fail(f"the meta-loss could not be differentiated with respect to the "
                        f"optimizer's weights ({type(exc).__name__}: {exc})"[:400],
                        "write it with keras.ops and mlbook_utils.autodiff, not numpy") from None
        _, want = value_and_grad(
            lambda p: lo.unroll(p, theta_t, state_t, problem, data_t, None, 3)[0], phi_t)
        want = [np.asarray(ops.convert_to_numpy(g), np.float64) for g in want]
        if all(np.abs(g).max() == 0 for g in grads):
            raise _Fail("the gradient of your meta-loss with respect to the optimizer's weights "
                        "is zero: the optimizer's steps do not reach the loss (numpy, or a "
                        "stop_gradient on theta?)",
                        "stop the gradient of the optimizee's *gradient* only")
        worst = max(np.abs(g - w).max() / (np.abs(w).max() + 1e-12) for g, w in zip(grads, want))
        if worst > 1e-4:
            raise _Fail("your meta-loss has the right value, but its gradient with respect to "
                        f"the optimizer's weights differs from unroll's (by up to {100 * worst:.2g}"
                        " % of the largest entry): like the paper, the meta-gradient must not "
                        "flow through the optimizee's gradient",
                        "pass stop_gradient(grad) to lo.lstm_optimizer")

    def trains():
        phi, theta, state, problem, data = _meta_case(5, 8, 4)
        phi_t, theta_t, state_t, data_t = as_tensors(phi, theta, state, data)
        adam = lo.AdamState(phi, lr=3e-2)
        history = []
        for _ in range(12):
            loss, grads = value_and_grad(
                lambda p: fn(p, theta_t, state_t, problem, data_t, 5),
                [ops.convert_to_tensor(p) for p in phi])
            history.append(float(ops.convert_to_numpy(loss)))
            phi = adam.apply(phi, grads)
        if not np.isfinite(history).all() or not history[-1] < 0.8 * history[0]:
            raise _Fail("12 Adam steps on the optimizer's weights with your meta-loss, on a "
                        f"fixed batch of 8 quadratics, took it from {history[0]:.3f} to "
                        f"{history[-1]:.3f}; with unroll's it falls below 80 % of the start")

    return _run_checks("Unrolled meta-loss", [
        ("its value equals learned_optimizer.unroll's on three cases", values),
        ("its gradient equals unroll's (no second derivatives of f)", gradient),
        ("a few meta-training steps with it lower the meta-loss", trains),
    ])
