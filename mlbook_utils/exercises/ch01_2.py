"""Chapter 1.2: compute the prototypes and the scores (negative squared distances)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks


def reference_prototype_scores(support_embeddings, support_labels, query_embeddings, n_way):
    """The reference solution of chapter 1.2's coding exercise (one episode, numpy)."""
    prototypes = np.stack(
        [support_embeddings[support_labels == c].mean(axis=0) for c in range(n_way)]
    )  # (n_way, D)
    diff = query_embeddings[:, None, :] - prototypes[None, :, :]  # (Q, n_way, D)
    return -(diff**2).sum(axis=-1)  # (Q, n_way)


def _wrong_answers(zs, labels, zq, n_way) -> dict[str, tuple[np.ndarray, str, str]]:
    """Outputs of typical mistakes on a case, with what to tell the learner."""
    protos = np.stack([zs[labels == c].mean(axis=0) for c in range(n_way)])
    sums = np.stack([zs[labels == c].sum(axis=0) for c in range(n_way)])
    sq = ((zq[:, None] - protos[None]) ** 2).sum(-1)
    return {
        "positive": (
            sq,
            "your scores are the squared distances themselves: the closest class gets the "
            "lowest score, so the arg-max (and the softmax) would pick the farthest class",
            "return minus the squared distance, so that higher means closer",
        ),
        "euclidean": (
            -np.sqrt(sq),
            "your scores are minus the Euclidean distance (with a square root); the prototypical "
            "network uses minus the *squared* distance",
            "drop the square root: -((q - p) ** 2).sum(axis=-1)",
        ),
        "sum": (
            -((zq[:, None] - sums[None]) ** 2).sum(-1),
            "your prototypes are the *sum* of the support embeddings of a class, not their mean "
            "(with k_shot = 3 they are 3 times too far from the origin)",
            "divide by the number of shots of the class, or use .mean(axis=0)",
        ),
        "nearest": (
            -np.stack([((zq[:, None] - zs[labels == c][None]) ** 2).sum(-1).min(1)
                       for c in range(n_way)], axis=1),
            "your score is the distance to the *closest* support example of each class "
            "(nearest neighbour); a prototype is the *mean* of the class's support embeddings",
            "average the support embeddings of each class first, then take distances",
        ),
    }


def check_prototype_scores(fn: Callable) -> Feedback:
    """Check ``fn(support_embeddings, support_labels, query_embeddings, n_way)``.

    For one episode, ``support_embeddings`` is (S, D), ``support_labels`` (S,) in 0..n_way-1 and
    ``query_embeddings`` (Q, D). The function must return a (Q, n_way) array whose entry [j, c]
    is minus the squared Euclidean distance from query j to the mean support embedding of class c.
    """
    def case(n_way, k_shot, n_queries, dim, shuffle=False, seed=0):
        r = np.random.default_rng(seed)
        labels = np.repeat(np.arange(n_way), k_shot)
        if shuffle:
            labels = r.permutation(labels)
        zs = r.normal(size=(n_way * k_shot, dim)).astype(np.float32)
        zq = r.normal(size=(n_queries, dim)).astype(np.float32)
        return zs, labels, zq

    def call(zs, labels, zq, n_way):
        out = fn(zs.copy(), labels.copy(), zq.copy(), n_way)
        if out is None:
            raise _Fail("your function returned None", "return the (Q, n_way) array of scores")
        return np.asarray(out, dtype=np.float64)

    def shape():
        for n_way, k_shot, n_queries, dim in [(3, 1, 7, 4), (5, 2, 4, 8)]:
            zs, labels, zq = case(n_way, k_shot, n_queries, dim)
            out = call(zs, labels, zq, n_way)
            if out.shape == (n_way, n_queries):
                raise _Fail(
                    f"with {n_queries} queries and n_way={n_way} the scores have shape "
                    f"{out.shape}: rows should be queries and columns classes, "
                    f"expected ({n_queries}, {n_way})",
                    "transpose, or compute query[:, None, :] - prototypes[None, :, :]",
                )
            if out.shape != (n_queries, n_way):
                raise _Fail(
                    f"with {n_queries} queries, n_way={n_way} and {dim}-d embeddings the scores "
                    f"have shape {out.shape}; expected ({n_queries}, {n_way})",
                    "one score per query and class: sum the squared differences over the "
                    "embedding axis",
                )

    def one_shot_values():
        # 1-shot: the prototypes are the support embeddings themselves.
        zs = np.array([[0.0, 0.0], [3.0, 0.0]], np.float32)
        zq = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
        labels = np.array([0, 1])
        want = np.array([[-1.0, -4.0], [-4.0, -13.0]])
        out = call(zs, labels, zq, 2)
        if np.allclose(out, want, atol=1e-4):
            return
        for _, (wrong, problem, hint) in _wrong_answers(zs, labels, zq, 2).items():
            if np.allclose(out, wrong, atol=1e-4):
                raise _Fail(problem + f" (support {zs.tolist()}, queries {zq.tolist()})", hint)
        raise _Fail(
            f"with support {zs.tolist()} (labels 0, 1) and queries {zq.tolist()}, your scores "
            f"are {np.round(out, 3).tolist()}; expected {want.tolist()}",
            "score[j, c] = -sum_d (query[j, d] - prototype[c, d]) ** 2",
        )

    def k_shot_values():
        zs, labels, zq = case(4, 3, 6, 5, seed=1)
        want = reference_prototype_scores(zs, labels, zq, 4)
        out = call(zs, labels, zq, 4)
        if np.allclose(out, want, rtol=1e-4, atol=1e-4):
            return
        for _, (wrong, problem, hint) in _wrong_answers(zs, labels, zq, 4).items():
            if np.allclose(out, wrong, rtol=1e-4, atol=1e-4):
                raise _Fail(problem + " (on a 4-way 3-shot case)", hint)
        raise _Fail(
            "on a 4-way 3-shot case with 6 queries your scores differ from the expected ones by "
            f"up to {np.abs(out - want).max():.3g}",
            "the prototype of class c is support_embeddings[support_labels == c].mean(axis=0)",
        )

    def any_label_order():
        zs, labels, zq = case(3, 4, 5, 6, shuffle=True, seed=2)
        want = reference_prototype_scores(zs, labels, zq, 3)
        out = call(zs, labels, zq, 3)
        if not np.allclose(out, want, rtol=1e-4, atol=1e-4):
            raise _Fail(
                "with the support examples in a shuffled order (labels "
                f"{labels.tolist()}) your scores are wrong, although they were right for "
                "class-major supports: do not assume the order of the support set",
                "select the examples of class c with support_labels == c instead of reshaping",
            )

    def no_side_effects():
        zs, labels, zq = case(3, 2, 4, 3, seed=3)
        zs0, zq0 = zs.copy(), zq.copy()
        fn(zs, labels, zq, 3)
        if not (np.array_equal(zs, zs0) and np.array_equal(zq, zq0)):
            raise _Fail("your function changed its input arrays in place",
                        "compute new arrays instead of writing into the inputs")

    return _run_checks("Prototype scores", [
        ("the scores have shape (queries, n_way)", shape),
        ("1-shot scores are minus the squared distances", one_shot_values),
        ("k-shot prototypes are class means", k_shot_values),
        ("the support set may come in any order", any_label_order),
        ("the inputs are left unchanged", no_side_effects),
    ])


# --------------------------------------------------------------------------------------------
# The prototypical episode loss, in keras.ops, that trains an embedding
# --------------------------------------------------------------------------------------------


def reference_episode_loss(z_support, support_labels, z_query, query_labels, n_way):
    """The reference solution of chapter 1.2's second coding exercise, in ``keras.ops``: the
    mean cross-entropy of the softmax over minus the squared distances to the prototypes."""
    from keras import ops

    onehot = ops.one_hot(support_labels, n_way)  # (S, n_way)
    prototypes = ops.matmul(ops.transpose(onehot), z_support) / ops.sum(onehot, axis=0)[:, None]
    d = ops.sum((z_query[:, None, :] - prototypes[None, :, :]) ** 2, axis=-1)  # (Q, n_way)
    return ops.mean(ops.sparse_categorical_crossentropy(query_labels, -d, from_logits=True))


def _np_episode_loss(zs, ls, zq, lq, n_way, variant="right"):
    """The loss in float64 numpy, and what typical mistakes compute instead."""
    zs, zq = np.asarray(zs, np.float64), np.asarray(zq, np.float64)
    groups = [zs[ls == c] for c in range(n_way)]
    protos = np.stack([(g.sum(0) if variant == "sum" else g.mean(0)) for g in groups])
    sq = ((zq[:, None] - protos[None]) ** 2).sum(-1)
    if variant == "nearest":
        sq = np.stack([((zq[:, None] - g[None]) ** 2).sum(-1).min(1) for g in groups], axis=1)
    logits = {"positive": sq, "euclidean": -np.sqrt(sq)}.get(variant, -sq)
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(lq)), lq]
    return float(nll.sum() if variant == "summed" else nll.mean())


_LOSS_MISTAKES = {
    "positive": ("your loss uses the squared distances themselves as logits, so the softmax "
                 "favours the *farthest* prototype",
                 "the logits are minus the squared distances: -d"),
    "euclidean": ("your loss uses minus the Euclidean distance (with a square root) as logits; "
                  "the prototypical network uses minus the *squared* distance",
                  "drop the square root"),
    "sum": ("your prototypes are the *sum* of a class's support embeddings, not their mean",
            "divide by the number of shots: ops.sum(onehot, axis=0)"),
    "nearest": ("your loss uses the distance to the *closest* support example of each class "
                "(nearest neighbour); a prototype is the *mean* of the class's support embeddings",
                "average each class's support embeddings first"),
    "summed": ("your loss is the *sum* of the queries' cross-entropies; the episode loss is their "
               "mean, so that its scale does not depend on the number of queries",
               "ops.mean over the queries"),
}


def _loss_case(n_way, k_shot, n_query, dim, seed, shuffle=False):
    r = np.random.default_rng(seed)
    ls = np.repeat(np.arange(n_way), k_shot)
    if shuffle:
        ls = r.permutation(ls)
    lq = np.repeat(np.arange(n_way), n_query)
    zs = r.normal(size=(len(ls), dim)).astype(np.float32)
    zq = r.normal(size=(len(lq), dim)).astype(np.float32)
    return zs, ls.astype(np.int32), zq, lq.astype(np.int32)


def check_episode_loss(fn: Callable) -> Feedback:
    """Check ``fn(z_support, support_labels, z_query, query_labels, n_way)`` -> the episode's
    loss, one number, written in ``keras.ops`` so that it can be differentiated (it is
    then used to train a small embedding for 40 episodes)."""
    from keras import ops

    from ..autodiff import value_and_grad

    def call(zs, ls, zq, lq, n_way):
        t = ops.convert_to_tensor
        out = fn(t(zs), t(ls), t(zq), t(lq), n_way)
        if out is None:
            raise _Fail("your function returned None", "return the mean cross-entropy")
        value = np.asarray(ops.convert_to_numpy(out), dtype=np.float64)
        if value.size != 1:
            raise _Fail(f"your loss has shape {value.shape}; it should be one number, the mean "
                        "over the queries", "average the per-query cross-entropies")
        return float(value.reshape(()))

    def values():
        for n_way, k_shot, n_query, dim, seed, shuffle in [(3, 1, 2, 4, 0, False),
                                                           (4, 3, 5, 6, 1, False),
                                                           (5, 2, 3, 8, 2, True)]:
            zs, ls, zq, lq = _loss_case(n_way, k_shot, n_query, dim, seed, shuffle)
            out = call(zs, ls, zq, lq, n_way)
            want = _np_episode_loss(zs, ls, zq, lq, n_way)
            if abs(out - want) <= 1e-4 * max(1.0, abs(want)):
                continue
            where = (f" (on a {n_way}-way {k_shot}-shot case"
                     + (", support in a shuffled order)" if shuffle else ")"))
            for variant, (problem, hint) in _LOSS_MISTAKES.items():
                if k_shot == 1 and variant in ("sum", "nearest"):
                    continue  # the same as the right answer with one shot
                wrong = _np_episode_loss(zs, ls, zq, lq, n_way, variant)
                if abs(out - wrong) <= 1e-4 * max(1.0, abs(wrong)):
                    raise _Fail(problem + where, hint)
            raise _Fail(f"your loss is {out:.5g}, the expected one {want:.5g}" + where,
                        "prototypes = class means of the support embeddings; logits = minus the "
                        "squared distances; loss = mean cross-entropy of the softmax")

    def gradient():
        zs, ls, zq, lq = _loss_case(4, 2, 3, 5, 3)
        t = ops.convert_to_tensor
        try:
            _, grads = value_and_grad(lambda p: fn(p[0], t(ls), p[1], t(lq), 4), [t(zs), t(zq)])
            grads = [np.asarray(ops.convert_to_numpy(g), np.float64) for g in grads]
        except Exception as exc:  # e.g. numpy on JAX's traced values
            raise _Fail(f"the loss could not be differentiated ({type(exc).__name__}): it must "
                        "be written with keras.ops, which every backend can differentiate",
                        "use ops.one_hot, ops.matmul, ops.sum and "
                        "ops.sparse_categorical_crossentropy, not numpy") from None
        _, want = value_and_grad(
            lambda p: reference_episode_loss(p[0], t(ls), p[1], t(lq), 4), [t(zs), t(zq)])
        want = [np.asarray(ops.convert_to_numpy(g), np.float64) for g in want]
        if all(np.abs(g).max() == 0 for g in grads):
            raise _Fail("the gradient of your loss with respect to the embeddings is zero: "
                        "the computation left the backend (numpy?), so it cannot train anything",
                        "write it with keras.ops only")
        for name, g, w in zip(("support", "query"), grads, want):
            if not np.allclose(g, w, rtol=1e-3, atol=1e-5):
                raise _Fail(f"the gradient of your loss with respect to the {name} embeddings "
                            f"differs from the expected one by up to {np.abs(g - w).max():.3g}, "
                            "although the values agree")

    def trains():
        r = np.random.default_rng(5)
        means = r.normal(size=(40, 20)).astype(np.float32)

        def episode(rng, n_way=5, k_shot=2, n_query=5):
            classes = rng.choice(len(means), n_way, replace=False)
            ls = np.repeat(np.arange(n_way), k_shot).astype(np.int32)
            lq = np.repeat(np.arange(n_way), n_query).astype(np.int32)
            xs = means[classes][ls] + 1.2 * rng.normal(size=(len(ls), 20))
            xq = means[classes][lq] + 1.2 * rng.normal(size=(len(lq), 20))
            return xs.astype(np.float32), ls, xq.astype(np.float32), lq

        t = ops.convert_to_tensor
        held_out = [episode(np.random.default_rng(100 + i)) for i in range(20)]

        def held_out_loss(w):
            w = np.asarray(ops.convert_to_numpy(w), np.float64)
            return np.mean([_np_episode_loss(xs @ w, ls, xq @ w, lq, 5)
                            for xs, ls, xq, lq in held_out])

        w = t((0.1 * r.normal(size=(20, 8))).astype(np.float32))
        before = held_out_loss(w)
        rng = np.random.default_rng(6)
        for _ in range(40):
            xs, ls, xq, lq = (t(v) for v in episode(rng))

            def loss_fn(p, xs=xs, ls=ls, xq=xq, lq=lq):
                return fn(ops.matmul(xs, p[0]), ls, ops.matmul(xq, p[0]), lq, 5)

            loss, (g,) = value_and_grad(loss_fn, [w])
            if not np.isfinite(float(ops.convert_to_numpy(loss))):
                raise _Fail("training a linear embedding with your loss gave a NaN or infinite "
                            "loss", "keep the distances squared, not square-rooted, at 0")
            w = w - 0.05 * g
        after = held_out_loss(w)
        if not after < 0.8 * before:
            raise _Fail(f"40 steps of gradient descent on a linear 20-to-8 embedding with your "
                        f"loss took the loss on 20 held-out episodes from {before:.3f} to "
                        f"{after:.3f}; the reference loss gets it well below 80 % of the start")

    return _run_checks("Prototypical episode loss", [
        ("its value is the mean cross-entropy over minus the squared distances", values),
        ("it can be differentiated, with the expected gradient", gradient),
        ("it trains a small embedding (40 episodes)", trains),
    ])
