"""Chapter 1.1's checker: the reference passes, typical mistakes fail with the right message."""

import numpy as np

from mlbook_utils.exercises import check_episode_sampler, reference_episode_sampler


def test_reference_solution_passes():
    fb = check_episode_sampler(reference_episode_sampler)
    assert fb.passed, str(fb)
    assert len(fb.passed_checks) == 7
    assert "all checks passed" in str(fb) and "all checks passed" in fb._repr_html_()


def classes_with_replacement(x, n_way, k_shot, n_query, rng):
    classes = rng.integers(0, 2, size=n_way)  # draws the same class again
    s, q = [], []
    for c in classes:
        items = rng.choice(x.shape[1], k_shot + n_query, replace=False)
        s.append(x[c, items[:k_shot]])
        q.append(x[c, items[k_shot:]])
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def query_overlaps_support(x, n_way, k_shot, n_query, rng):
    classes = rng.choice(x.shape[0], n_way, replace=False)
    s, q = [], []
    for c in classes:
        s.append(x[c, rng.choice(x.shape[1], k_shot, replace=False)])
        q.append(x[c, rng.choice(x.shape[1], n_query, replace=False)])  # may repeat a support
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def dataset_ids_as_labels(x, n_way, k_shot, n_query, rng):
    s, sl, q, ql = reference_episode_sampler(x, n_way, k_shot, n_query, rng)
    return s, (s[:, 0] // 100).astype(int), q, (q[:, 0] // 100).astype(int)


def always_first_classes(x, n_way, k_shot, n_query, rng):
    s, q = [], []
    for c in range(n_way):
        items = rng.choice(x.shape[1], k_shot + n_query, replace=False)
        s.append(x[c, items[:k_shot]])
        q.append(x[c, items[k_shot:]])
    return (np.concatenate(s), np.repeat(np.arange(n_way), k_shot), np.concatenate(q),
            np.repeat(np.arange(n_way), n_query))


def unstacked(x, n_way, k_shot, n_query, rng):
    s, sl, q, ql = reference_episode_sampler(x, n_way, k_shot, n_query, rng)
    return s.reshape(n_way, k_shot, -1), sl, q, ql


def global_random_state(x, n_way, k_shot, n_query, rng):
    return reference_episode_sampler(x, n_way, k_shot, n_query, np.random.default_rng())


def not_implemented(x, n_way, k_shot, n_query, rng):
    raise NotImplementedError("write the sampler")


def check(fn, *needles):
    fb = check_episode_sampler(fn)
    assert not fb.passed
    text = str(fb)
    for needle in needles:
        assert needle in text, text
    return fb


def test_typical_mistakes_fail_with_the_right_message():
    check(classes_with_replacement, "a class was drawn twice", "without replacement")
    check(query_overlaps_support, "are in the support and the query set")
    check(dataset_ids_as_labels, "labels must be 0..")
    check(always_first_classes, "only the classes [0, 1, 2] were ever drawn")
    check(unstacked, "support has shape (5, 1, 1); expected (5, 1)")
    check(global_random_state, "same seed gave different episodes")
    check(not_implemented, "raised NotImplementedError")
    check(lambda *a: None, "should return 4 things")
