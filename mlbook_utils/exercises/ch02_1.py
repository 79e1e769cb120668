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


# --------------------------------------------------------------------------------------------
# One Siamese training step: twin embeddings, the contrastive loss, a gradient step
# --------------------------------------------------------------------------------------------


def reference_siamese_step(params, embed, x1, x2, same, lr, margin=1.0):
    """The reference solution of chapter 2.1's second coding exercise: embed both items of every
    pair with the *same* weights, take the contrastive loss of their distances, and return the
    weights after one step of gradient descent, with the loss before the step."""
    from .. import siamese
    from ..autodiff import value_and_grad

    def loss_fn(p):
        d = siamese.euclidean_distance(embed(p, x1), embed(p, x2))  # one network, twice
        return siamese.contrastive_loss(same, d, margin)

    loss, grads = value_and_grad(loss_fn, params)
    return [p - lr * g for p, g in zip(params, grads)], loss


def toy_embed(params, x):
    """The checker's embedding: a linear map and a bias, scaled to unit length."""
    from keras import ops

    z = ops.matmul(x, params[0]) + params[1]
    return z / ops.sqrt(ops.sum(z * z, axis=-1, keepdims=True) + 1e-9)


def _step_variant(params, embed, x1, x2, same, lr, margin, variant):
    """What typical mistakes compute: (new params, loss)."""
    from keras import ops

    from .. import siamese
    from ..autodiff import value_and_grad

    def loss_fn(p):
        z1, z2 = embed(p, x1), embed(p, x2)
        d = siamese.euclidean_distance(z1, z2)
        if variant == "squared":
            d = ops.sum(ops.square(z1 - z2), axis=-1)
        if variant == "swapped":
            return siamese.contrastive_loss(1.0 - same, d, margin)
        return siamese.contrastive_loss(same, d, margin)

    loss, grads = value_and_grad(loss_fn, params)
    sign = 1.0 if variant == "ascent" else -1.0
    scale = 1.0 if variant == "no lr" else lr
    return [p + sign * scale * g for p, g in zip(params, grads)], loss


_STEP_MISTAKES = {
    "ascent": ("your step moves the weights *up* the gradient (p + lr * g): the loss rises",
               "gradient descent: p - lr * g"),
    "no lr": ("your step subtracts the whole gradient; it should be scaled by the learning rate",
              "p - lr * g"),
    "squared": ("your loss uses the *squared* distance where the contrastive loss takes the "
                "Euclidean distance d (it squares d itself)",
                "siamese.euclidean_distance(z1, z2), or ops.sqrt of the summed squares"),
    "swapped": ("your loss treats same pairs as different and different pairs as same",
                "pass `same` as it is: 1 for a pair of one class"),
}


def _pairs(rng, means, n_pairs, noise=0.8, nuisance=0):
    """Balanced pairs of noisy class means; the last ``nuisance`` inputs are pure noise (std 2),
    which a random embedding mixes in and a trained one learns to ignore."""
    n, dim = means.shape
    c1 = rng.integers(0, n, n_pairs)
    same = (np.arange(n_pairs) % 2 == 0)
    c2 = np.where(same, c1, (c1 + 1 + rng.integers(0, n - 1, n_pairs)) % n)
    std = np.where(np.arange(dim) < dim - nuisance, noise, 2.0)
    x1 = means[c1] + std * rng.normal(size=(n_pairs, dim))
    x2 = means[c2] + std * rng.normal(size=(n_pairs, dim))
    return x1.astype(np.float32), x2.astype(np.float32), same.astype(np.float32)


def check_siamese_step(fn: Callable) -> Feedback:
    """Check ``fn(params, embed, x1, x2, same, lr, margin) -> (new_params, loss)``: one step of
    gradient descent on the contrastive loss of a batch of pairs, with both items of every pair
    embedded by ``embed(params, x)`` (shared weights); ``loss`` is the loss before the step.
    Then 60 steps train a small embedding, which must separate pairs of new classes better."""
    from keras import ops

    t = ops.convert_to_tensor

    def case(seed, d_in=6, d_out=3, n=8):
        r = np.random.default_rng(seed)
        params = [t(r.normal(0, 0.5, (d_in, d_out)).astype(np.float32)),
                  t(r.normal(0, 0.1, (d_out,)).astype(np.float32))]
        x1, x2, same = _pairs(r, r.normal(size=(4, d_in)), n)
        return params, t(x1), t(x2), t(same)

    def numpy(v):
        return np.asarray(ops.convert_to_numpy(v), np.float64)

    def call(params, x1, x2, same, lr, margin=1.0):
        out = fn(list(params), toy_embed, x1, x2, same, lr, margin)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise _Fail("your function should return two things: the list of new weights and "
                        "the loss (before the step)")
        new, loss = out
        if len(new) != len(params):
            raise _Fail(f"you returned {len(new)} weight arrays for {len(params)}",
                        "one new array per parameter: [p - lr * g for p, g in zip(params, grads)]")
        new = [numpy(p) for p in new]
        for p, q in zip(params, new):
            if p.shape != q.shape:
                raise _Fail(f"a new weight array has shape {q.shape}; the old one {p.shape}")
        loss = numpy(loss)
        if loss.size != 1:
            raise _Fail(f"your loss has shape {loss.shape}: it should be one number, the mean "
                        "over the pairs")
        return new, float(loss.reshape(()))

    def compare(params, x1, x2, same, lr, margin, what):
        new, loss = call(params, x1, x2, same, lr, margin)
        want_new, want_loss = reference_siamese_step(params, toy_embed, x1, x2, same, lr, margin)
        want_new, want_loss = [numpy(p) for p in want_new], float(numpy(want_loss))
        ok_loss = abs(loss - want_loss) <= 1e-4 * max(1.0, abs(want_loss))
        ok_new = all(np.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(new, want_new))
        if ok_loss and ok_new:
            return
        for variant, (problem, hint) in _STEP_MISTAKES.items():
            v_new, v_loss = _step_variant(params, toy_embed, x1, x2, same, lr, margin, variant)
            same_loss = abs(loss - float(numpy(v_loss))) <= 1e-4 * max(1.0, abs(loss))
            same_new = all(np.allclose(a, numpy(b), rtol=1e-4, atol=1e-6)
                           for a, b in zip(new, v_new))
            if same_loss and same_new:
                raise _Fail(problem + f" ({what})", hint)
        if ok_new and not ok_loss:
            _, later = reference_siamese_step([t(w.astype(np.float32)) for w in want_new],
                                              toy_embed, x1, x2, same, 0.0, margin)
            if abs(loss - float(numpy(later))) <= 1e-4 * max(1.0, abs(loss)):
                raise _Fail("your loss is the one *after* the step; return the loss at the "
                            "weights you were given (value_and_grad computes it with the "
                            "gradient)")
        if not ok_loss:
            raise _Fail(f"your loss is {loss:.5g}, the expected one {want_loss:.5g} ({what})",
                        "d = siamese.euclidean_distance(embed(p, x1), embed(p, x2)); "
                        "siamese.contrastive_loss(same, d, margin)")
        raise _Fail(f"your loss is right, but the new weights differ from one step of gradient "
                    f"descent on it ({what})",
                    "embed x1 and x2 with the same params, and return p - lr * g for each weight")

    def one_step():
        for seed, lr, margin in [(0, 0.1, 1.0), (1, 0.5, 0.7), (2, 0.05, 1.3)]:
            params, x1, x2, same = case(seed)
            compare(params, x1, x2, same, lr, margin,
                    f"8 pairs, lr {lr}, margin {margin}")

    def trains():
        r = np.random.default_rng(7)
        means = r.normal(size=(30, 10)).astype(np.float32)
        means[:, 5:] = 0.0  # classes differ in the first 5 inputs; the last 5 are noise
        train_means, test_means = means[:20], means[20:]
        params = [t(r.normal(0, 0.3, (10, 4)).astype(np.float32)), t(np.zeros(4, np.float32))]
        tx1, tx2, tsame = _pairs(np.random.default_rng(8), test_means, 400, 0.5, 5)

        def gap(p):  # mean distance of different test pairs minus that of same ones
            d = numpy(ops.sqrt(ops.sum((toy_embed(p, t(tx1)) - toy_embed(p, t(tx2))) ** 2, -1)))
            return d[tsame == 0].mean() - d[tsame == 1].mean()

        before = gap(params)
        rng = np.random.default_rng(9)
        losses = []
        for _ in range(60):
            x1, x2, same = _pairs(rng, train_means, 32, 0.5, 5)
            params, loss = call(params, t(x1), t(x2), t(same), 0.2)
            params = [t(p.astype(np.float32)) for p in params]
            losses.append(loss)
        after = gap(params)
        if not np.isfinite(losses).all() or not np.mean(losses[-10:]) < np.mean(losses[:10]):
            raise _Fail(f"over 60 steps with your function the training loss went from "
                        f"{np.mean(losses[:10]):.3f} (first 10) to {np.mean(losses[-10:]):.3f} "
                        "(last 10): it should fall")
        if not after > before + 0.2:
            raise _Fail(f"after 60 steps the distances of pairs of *new* classes separate "
                        f"little better (mean distance of different minus same pairs: "
                        f"{before:.3f} -> {after:.3f}; the reference step reaches about 0.7)",
                        "embed x1 and x2 with the same params, and step down the gradient")

    return _run_checks("Siamese training step", [
        ("one step matches the reference on three batches of pairs", one_step),
        ("60 steps train an embedding that separates pairs of new classes", trains),
    ])
