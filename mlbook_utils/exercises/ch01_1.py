"""Chapter 1.1: write your own episode sampler."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._feedback import Feedback, _Fail, _run_checks

# --------------------------------------------------------------------------------------------


def _toy_by_class(n_classes: int = 12, per_class: int = 8) -> np.ndarray:
    """Items whose value encodes their identity: item [c, i] holds 100 * c + i, shape (1,)."""
    c = np.arange(n_classes)[:, None]
    i = np.arange(per_class)[None, :]
    return (100 * c + i).astype(np.float32)[..., None]


def check_episode_sampler(sample_fn: Callable) -> Feedback:
    """Check ``sample_fn(x_by_class, n_way, k_shot, n_query, rng)``.

    ``x_by_class`` has shape (n_classes, examples_per_class, ...). The function must return
    ``support, support_labels, query, query_labels`` with support of shape
    (n_way * k_shot, ...), query of shape (n_way * n_query, ...) and labels in 0..n_way-1.
    """
    x = _toy_by_class()
    n_classes, per_class = x.shape[:2]
    cases = [(5, 1, 3), (3, 2, 4), (4, 3, 5)]
    out: dict = {}

    def call(n_way, k_shot, n_query, seed):
        res = sample_fn(x, n_way, k_shot, n_query, np.random.default_rng(seed))
        if not isinstance(res, (tuple, list)) or len(res) != 4:
            raise _Fail(
                "your function should return 4 things: support, support_labels, query, "
                f"query_labels; it returned {type(res).__name__}"
                + (f" of length {len(res)}" if isinstance(res, (tuple, list)) else "")
            )
        return [np.asarray(r) for r in res]

    def shapes():
        for n_way, k_shot, n_query in cases:
            s, sl, q, ql = call(n_way, k_shot, n_query, 0)
            out[(n_way, k_shot, n_query)] = (s, sl, q, ql)
            want = {"support": (n_way * k_shot, 1), "support_labels": (n_way * k_shot,),
                    "query": (n_way * n_query, 1), "query_labels": (n_way * n_query,)}
            for name, arr in zip(want, (s, sl, q, ql)):
                if arr.shape != want[name]:
                    raise _Fail(
                        f"for n_way={n_way}, k_shot={k_shot}, n_query={n_query}, {name} has "
                        f"shape {arr.shape}; expected {want[name]}",
                        "stack the examples of all classes along one first axis",
                    )

    def labels():
        for (n_way, k_shot, n_query), (_, sl, _, ql) in out.items():
            for name, lab, per in (("support_labels", sl, k_shot), ("query_labels", ql, n_query)):
                if lab.min() < 0 or lab.max() >= n_way:
                    raise _Fail(
                        f"{name} are {sorted(set(lab.tolist()))}, but labels must be "
                        f"0..{n_way - 1} for a {n_way}-way episode",
                        "relabel the drawn classes 0..n_way-1; do not use their ids in the dataset",
                    )
                counts = np.bincount(lab.astype(int), minlength=n_way)
                if not (counts == per).all():
                    raise _Fail(
                        f"in a {n_way}-way {k_shot}-shot episode with {n_query} queries per "
                        f"class, {name} count {counts.tolist()} items per label; each label "
                        f"should appear {per} times"
                    )

    def consistent():
        for (n_way, _, _), (s, sl, q, ql) in out.items():
            s_cls, q_cls = s[:, 0] // 100, q[:, 0] // 100
            for lab in range(n_way):
                from_cls = set(s_cls[sl == lab].tolist()) | set(q_cls[ql == lab].tolist())
                if len(from_cls) != 1:
                    raise _Fail(
                        f"label {lab} is given to examples of {len(from_cls)} different classes "
                        f"({sorted(int(c) for c in from_cls)}); one label must mean one class, "
                        "in the support set and in the query set",
                    )

    def distinct_classes():
        for (n_way, _, _), (s, sl, _, _) in out.items():
            s_cls = s[:, 0] // 100
            chosen = [int(s_cls[sl == lab][0]) for lab in range(n_way)]
            if len(set(chosen)) != n_way:
                raise _Fail(
                    f"the {n_way} labels map to the classes {chosen}: a class was drawn twice",
                    "draw classes without replacement, e.g. rng.choice(n, size, replace=False)",
                )

    def disjoint():
        for (n_way, k_shot, n_query), (s, _, q, _) in out.items():
            s_ids, q_ids = s[:, 0].tolist(), q[:, 0].tolist()
            both = set(s_ids) & set(q_ids)
            if both:
                raise _Fail(
                    f"for n_way={n_way}, k_shot={k_shot}, n_query={n_query}, the examples "
                    f"{sorted(int(b) for b in both)[:5]} are in the support and the query set; "
                    "a query the model has already seen makes the test too easy",
                    "draw k_shot + n_query distinct examples per class, then split them",
                )
            if len(set(s_ids)) != len(s_ids) or len(set(q_ids)) != len(q_ids):
                raise _Fail("an example appears twice in the support or in the query set",
                            "draw examples within a class without replacement")

    def random_draws():
        n_way, k_shot, n_query = 3, 1, 1
        seen_classes, seen_items = set(), set()
        for seed in range(20):
            s, sl, _, _ = call(n_way, k_shot, n_query, seed)
            seen_classes |= set((s[:, 0] // 100).astype(int).tolist())
            seen_items |= set((s[:, 0] % 100).astype(int).tolist())
        if len(seen_classes) <= n_way:
            raise _Fail(
                f"over 20 episodes with different rng seeds, only the classes "
                f"{sorted(seen_classes)} were ever drawn (of {n_classes}); the classes of an "
                "episode should be random",
                "use the rng argument to choose the classes",
            )
        if len(seen_items) <= k_shot:
            raise _Fail(
                f"over 20 episodes, the support set always used example(s) "
                f"{sorted(seen_items)} of each class (of {per_class}); examples should be random",
                "use the rng argument to choose the examples within each class too",
            )

    def reproducible():
        a = call(5, 1, 3, 123)
        b = call(5, 1, 3, 123)
        if not all(np.array_equal(u, v) for u, v in zip(a, b)):
            raise _Fail(
                "two calls with generators made from the same seed gave different episodes",
                "draw all randomness from the rng argument, not from np.random or random",
            )

    return _run_checks("Episode sampler", [
        ("it returns arrays of the right shapes", shapes),
        ("labels are 0..n_way-1, k_shot / n_query of each", labels),
        ("one label means one class in support and query", consistent),
        ("the n_way classes are distinct", distinct_classes),
        ("support and query sets are disjoint", disjoint),
        ("classes and examples are drawn at random", random_draws),
        ("the same seed gives the same episode", reproducible),
    ])


def reference_episode_sampler(x_by_class, n_way, k_shot, n_query, rng):
    """The reference solution of chapter 1.1's coding exercise."""
    classes = rng.choice(x_by_class.shape[0], size=n_way, replace=False)
    support, query = [], []
    for c in classes:
        items = rng.choice(x_by_class.shape[1], size=k_shot + n_query, replace=False)
        support.append(x_by_class[c, items[:k_shot]])
        query.append(x_by_class[c, items[k_shot:]])
    support_labels = np.repeat(np.arange(n_way), k_shot)
    query_labels = np.repeat(np.arange(n_way), n_query)
    return np.concatenate(support), support_labels, np.concatenate(query), query_labels


# --------------------------------------------------------------------------------------------
# The episodic evaluation loop: mean accuracy over test episodes and its 95 % interval
# --------------------------------------------------------------------------------------------


def reference_evaluate(predict, episodes):
    """The reference solution of chapter 1.1's second coding exercise: the accuracy (%) of each
    episode's queries, then the mean over episodes and its 95 % half-width 1.96 s / sqrt(n)."""
    accs = []
    for ep in episodes:
        scores = predict(ep.support[None], ep.support_labels[None], ep.query[None], ep.n_way)[0]
        accs.append(100.0 * np.mean(np.argmax(scores, axis=-1) == ep.query_labels))
    accs = np.asarray(accs)
    return float(accs.mean()), float(1.96 * accs.std(ddof=1) / np.sqrt(len(accs)))


def _scripted_episodes(correct_per_episode, n_way: int = 4, n_query: int = 5, seed: int = 0):
    """Episodes whose queries say whether the scripted predictor gets them right: a query
    holds ``label + 10 * right`` (shape (1,)); the support holds its labels."""
    from ..episodes import Episode

    rng = np.random.default_rng(seed)
    eps = []
    for n_right in correct_per_episode:
        labels = np.repeat(np.arange(n_way), n_query)
        right = np.zeros(len(labels), dtype=int)
        right[rng.choice(len(labels), size=n_right, replace=False)] = 1
        query = (labels + 10 * right).astype(np.float32)[:, None]
        support = np.arange(n_way, dtype=np.float32)[:, None]
        eps.append(Episode(support, np.arange(n_way), query, labels, np.arange(n_way),
                           n_way, 1, n_query))
    return eps


def _scripted_predict(support, support_labels, query, n_way):
    """The book's predictor interface, on a batch of scripted episodes: scores (B, Q, n_way)
    whose arg-max is the true label where the query says so, and the next label elsewhere."""
    query = np.asarray(query)
    if query.ndim != 3:
        raise _Fail(
            f"predict received a query array of shape {query.shape}; the book's predictors take "
            "a *batch* of episodes, (episodes, queries, ...)",
            "add a batch axis, predict(ep.support[None], ep.support_labels[None], "
            "ep.query[None], ep.n_way), and take [0] of the result",
        )
    value = query[..., 0].astype(int)
    label, right = value % 10, value // 10
    guess = np.where(right == 1, label, (label + 1) % n_way)
    # Scores are minus a distance: the guess gets 0, the other classes -1, -2, ...
    scores = -((np.arange(n_way)[None, None, :] - guess[..., None]) % n_way).astype(np.float64)
    return scores


def check_evaluate(fn: Callable) -> Feedback:
    """Check ``fn(predict, episodes) -> (mean accuracy in %, 95 % half-width)``.

    ``predict(support, support_labels, query, n_way)`` is a book predictor (a batch of episodes
    in, scores (B, Q, n_way) out); ``episodes`` is a list of :class:`episodes.Episode`.
    """
    from ..evaluation import mean_ci95

    def call(eps, predict=_scripted_predict):
        out = fn(predict, eps)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise _Fail(
                "your function should return two numbers, the mean accuracy and the half-width "
                f"of its 95 % interval; it returned {type(out).__name__}"
                + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""),
            )
        mean, ci = (float(np.asarray(v)) for v in out)
        return mean, ci

    def perfect():
        mean, ci = call(_scripted_episodes([20] * 6))
        if abs(mean - 1.0) < 1e-9:
            raise _Fail("every query is right, and your mean is 1.0: the book reports accuracy "
                        "in %, so it should be 100", "multiply each episode's fraction by 100")
        if abs(mean - 100.0) > 1e-6:
            raise _Fail(f"every query of every episode is right, but your mean is {mean:.4g} "
                        "instead of 100", "the predicted class is the arg-max of the scores over "
                        "the classes (last axis)")
        if not abs(ci) < 1e-6:
            raise _Fail(f"all episodes score 100 %, so the interval's half-width is 0; yours is "
                        f"{ci:.4g}")

    counts = [12, 15, 20, 8, 17, 11, 14, 19, 16, 10]  # of 20 queries per episode

    def values():
        eps = _scripted_episodes(counts)
        accs = 100.0 * np.asarray(counts) / 20
        want_mean, want_ci = mean_ci95(accs)
        mean, ci = call(eps)
        if abs(mean - want_mean / 100) < 1e-6:
            raise _Fail(f"your mean is {mean:.4g}, a fraction; the book reports accuracy in %",
                        "multiply each episode's fraction by 100")
        if abs(mean - want_mean) > 1e-6:
            hint = ("take the arg-max of the scores over the classes (last axis): a score is "
                    "minus a distance, so the highest score is the closest class")
            if abs(mean - (100.0 - want_mean)) < 1e-6:  # what the arg-min gives on these cases
                raise _Fail(f"your mean accuracy is {mean:.4g} % where it should be "
                            f"{want_mean:.4g} %: the arg-min of the scores picks the farthest "
                            "class", hint)
            raise _Fail(f"on 10 episodes of 20 queries whose accuracies are "
                        f"{accs.astype(int).tolist()} %, your mean is {mean:.4g} % instead of "
                        f"{want_mean:.4g} %", hint)
        ddof0 = 1.96 * accs.std() / np.sqrt(len(accs))
        if abs(ci - want_ci) < 1e-6 or abs(ci - ddof0) < 1e-6:
            return
        sd = accs.std(ddof=1)
        wrong = {
            "spread": (1.96 * sd, "your half-width is 1.96 times the standard deviation of the "
                       "episodes' accuracies: that is the spread of single episodes, not the "
                       "uncertainty of their mean", "divide by sqrt(number of episodes)"),
            "no 1.96": (sd / np.sqrt(len(accs)), "your half-width is the standard error "
                        "s / sqrt(n); a 95 % interval is 1.96 standard errors wide on each side",
                        "multiply by 1.96"),
            "queries": (1.96 * sd / np.sqrt(20 * len(accs)), "your half-width divides by the "
                        "square root of the number of *queries*; the episodes are the "
                        "independent samples (queries of one episode share its support set)",
                        "n is the number of episodes"),
            "fraction": (1.96 * sd / 100 / np.sqrt(len(accs)), "your half-width is in "
                         "fractions while the mean is in %", "compute both from accuracies in %"),
        }
        for want, problem, hint in wrong.values():
            if abs(ci - want) < 1e-6 * max(1.0, want):
                raise _Fail(problem, hint)
        raise _Fail(f"on 10 episodes whose accuracies are {accs.astype(int).tolist()} %, your "
                    f"half-width is {ci:.4g} instead of {want_ci:.4g} (1.96 s / sqrt(n))")

    def with_nearest_neighbour():
        from ..baselines import nearest_neighbour
        from ..evaluation import episode_accuracy

        eps = _toy_image_episodes()
        want = mean_ci95([100.0 * episode_accuracy(
            nearest_neighbour(e.support[None], e.support_labels[None], e.query[None],
                              e.n_way), e.query_labels[None])[0] for e in eps])
        mean, ci = call(eps, nearest_neighbour)
        n = len(eps)  # a standard deviation with ddof=0 is accepted too, as above
        ci_ok = min(abs(ci - want[1]), abs(ci - want[1] * np.sqrt((n - 1) / n))) <= 1e-3 * max(
            1.0, want[1])
        if abs(mean - want[0]) > 1e-6 or not ci_ok:
            raise _Fail(f"with the book's pixel nearest neighbour on 30 toy 5-way 1-shot "
                        f"episodes your function gives {mean:.2f} ± {ci:.2f} %, where "
                        f"evaluation.evaluate's recipe gives {want[0]:.2f} ± {want[1]:.2f} %")

    return _run_checks("Episodic evaluation", [
        ("it returns the mean accuracy in % and the half-width of its 95 % interval", perfect),
        ("mean and interval are right on 10 scripted episodes", values),
        ("it gives evaluation.evaluate's figures with a real predictor", with_nearest_neighbour),
    ])


def _toy_image_episodes(n: int = 30, n_way: int = 5, n_query: int = 3, seed: int = 4):
    """Episodes of noisy 6x6 'images': each class is a random template plus noise."""
    from ..episodes import Episode

    rng = np.random.default_rng(seed)
    eps = []
    for _ in range(n):
        templates = rng.normal(size=(n_way, 6, 6, 1))
        support = templates + 0.9 * rng.normal(size=templates.shape)
        labels = np.repeat(np.arange(n_way), n_query)
        query = templates[labels] + 0.9 * rng.normal(size=(len(labels), 6, 6, 1))
        eps.append(Episode(support.astype(np.float32), np.arange(n_way),
                           query.astype(np.float32), labels, np.arange(n_way), n_way, 1,
                           n_query))
    return eps
