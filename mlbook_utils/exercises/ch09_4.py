"""Chapter 9.4: DEML's joint objective, by hand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _one_number, _run_checks


def _log_softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _cross_entropy(labels, logits):
    lp = _log_softmax(logits)
    return float(-np.mean(np.take_along_axis(lp, np.asarray(labels)[..., None], -1)))


def reference_joint_loss(query_labels, scores, external_labels, external_logits, lam):
    """The reference solution: the prototypical network's episode loss (cross-entropy of the
    softmax over the classes' scores, minus squared distances, mean over the queries) plus
    ``lam`` times the concept discriminator's cross-entropy on the external images."""
    return (_cross_entropy(query_labels, scores)
            + lam * _cross_entropy(external_labels, external_logits))


def _unstable(query_labels, scores, external_labels, external_logits, lam):
    def ce(y, z):
        p = np.exp(np.asarray(z, dtype=np.float64))
        p = p / p.sum(-1, keepdims=True)
        return float(-np.mean(np.log(np.take_along_axis(p, np.asarray(y)[..., None], -1))))
    return ce(query_labels, scores) + lam * ce(external_labels, external_logits)


def _lambda_on_episode(query_labels, scores, external_labels, external_logits, lam):
    return (lam * _cross_entropy(query_labels, scores)
            + _cross_entropy(external_labels, external_logits))


def _sum_not_mean(query_labels, scores, external_labels, external_logits, lam):
    n_q, n_e = np.asarray(query_labels).size, np.asarray(external_labels).size
    return (n_q * _cross_entropy(query_labels, scores)
            + lam * n_e * _cross_entropy(external_labels, external_logits))


def _argmin_distance(query_labels, scores, external_labels, external_logits, lam):
    return (_cross_entropy(query_labels, -np.asarray(scores))
            + lam * _cross_entropy(external_labels, external_logits))


_MISTAKES = (
    (_lambda_on_episode, "your lambda multiplies the episode loss; it weighs the concept "
                         "discriminator's term", "episode + lam * discriminator"),
    (_sum_not_mean, "you summed the cross-entropies; take the mean over the queries and over "
                    "the external images, so that lambda does not depend on the batch sizes",
     "np.mean(...)"),
    (_argmin_distance, "you negated the scores: they are already minus the squared distances, "
                       "so the softmax of the scores themselves gives the class probabilities",
     "use scores as the logits"),
)


def _case(seed, n_way=4, n_query=3, n_ext=5, n_classes=9, scale=1.0):
    r = np.random.default_rng(seed)
    qy = np.repeat(np.arange(n_way), n_query)
    scores = -scale * r.gamma(2.0, 2.0, size=(len(qy), n_way))
    ey = r.integers(0, n_classes, n_ext)
    logits = scale * r.normal(size=(n_ext, n_classes))
    return qy, scores, ey, logits


def check_joint_loss(fn: Callable) -> Feedback:
    """Check ``fn(query_labels, scores, external_labels, external_logits, lam)`` -> one number.

    ``scores`` (Q, n_way): minus the squared distances of each query to each prototype;
    ``external_logits`` (E, C): the discriminator's logits for E external images of C classes.
    """

    def call(*args):
        return _one_number(fn(*args), "the loss",
                           "take the mean over the queries and over the external images")

    def lam_zero():
        qy, sc, ey, lg = _case(0)
        got, want = call(qy, sc, ey, lg, 0.0), _cross_entropy(qy, sc)
        if not np.isclose(got, want, rtol=1e-6):
            for wrong, problem, hint in _MISTAKES:
                if np.isclose(got, wrong(qy, sc, ey, lg, 0.0), rtol=1e-6):
                    raise _Fail(problem, hint)
            raise _Fail(f"with lambda = 0 the loss is the prototypical network's episode loss, "
                        f"{want:.4f} here; yours is {got:.4f}",
                        "the mean over the queries of -log softmax(scores)[true class]")

    def values():
        for seed, lam in ((1, 0.5), (2, 3.0), (3, 1.0)):
            args = (*_case(seed), lam)
            got, want = call(*args), reference_joint_loss(*args)
            if np.isclose(got, want, rtol=1e-6):
                continue
            for wrong, problem, hint in _MISTAKES:
                if np.isclose(got, wrong(*args), rtol=1e-6):
                    raise _Fail(problem, hint)
            raise _Fail(f"with lambda = {lam} the joint loss should be {want:.4f}; yours is "
                        f"{got:.4f}")

    def large_logits():
        args = (*_case(4, scale=400.0), 1.0)
        got, want = call(*args), reference_joint_loss(*args)
        if not np.isfinite(got) or not np.isclose(got, want, rtol=1e-6):
            if not np.isfinite(_unstable(*args)) and not np.isfinite(got):
                raise _Fail("with large scores or logits your loss is not finite: exp overflows",
                            "subtract each row's maximum before the exponential "
                            "(log-sum-exp)")
            raise _Fail(f"with large scores and logits the loss should be {want:.4f}; yours is "
                        f"{got:.4f}", "compute log-softmax stably, subtracting each row's max")

    return _run_checks("DEML's joint loss", [
        ("with lambda = 0 it is the prototypical network's episode loss", lam_zero),
        ("it adds lambda times the discriminator's cross-entropy", values),
        ("it stays finite and right with large scores and logits", large_logits),
    ])
