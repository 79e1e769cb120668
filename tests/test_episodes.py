import numpy as np
import pytest

from mlbook_utils.data import FewShotDataset
from mlbook_utils.episodes import EpisodeSampler, sample_episode, sample_indices


def toy(n_classes=30, per_class=20):
    """Example value 1000 * class + index, so an item tells where it came from."""
    y = np.repeat(np.arange(n_classes), per_class)
    x = (1000 * y + np.tile(np.arange(per_class), n_classes)).astype(np.float32)[:, None]
    return FewShotDataset(x, y, [f"c{i}" for i in range(n_classes)], "toy")


def origin(values):
    return (values[..., 0] // 1000).astype(int)


@pytest.mark.parametrize("n_way,k_shot,n_query", [(5, 1, 15), (20, 5, 5), (30, 1, 19), (2, 10, 10)])
def test_episode_invariants(n_way, k_shot, n_query):
    ds = toy()
    for seed in range(10):
        ep = sample_episode(ds, n_way, k_shot, n_query, seed=seed)
        assert ep.support.shape == (n_way * k_shot, 1)
        assert ep.query.shape == (n_way * n_query, 1)
        # labels 0..n_way-1, k_shot / n_query of each
        assert np.bincount(ep.support_labels, minlength=n_way).tolist() == [k_shot] * n_way
        assert np.bincount(ep.query_labels, minlength=n_way).tolist() == [n_query] * n_way
        # classes are distinct, and each label maps to one class, the one in `classes`
        assert len(set(ep.classes.tolist())) == n_way
        for lab in range(n_way):
            assert set(origin(ep.support[ep.support_labels == lab])) == {ep.classes[lab]}
            assert set(origin(ep.query[ep.query_labels == lab])) == {ep.classes[lab]}
        # support and query are disjoint, with no repeats
        items = np.concatenate([ep.support[:, 0], ep.query[:, 0]])
        assert len(np.unique(items)) == len(items)


def test_a_seed_reproduces_an_episode_and_different_seeds_differ():
    ds = toy()
    a = sample_episode(ds, 5, 2, 3, seed=11)
    b = sample_episode(ds, 5, 2, 3, seed=11)
    c = sample_episode(ds, 5, 2, 3, seed=12)
    np.testing.assert_array_equal(a.support, b.support)
    np.testing.assert_array_equal(a.query, b.query)
    assert not np.array_equal(a.support, c.support)
    s1, s2 = EpisodeSampler(ds, 5, 1, 2, seed=4), EpisodeSampler(ds, 5, 1, 2, seed=4)
    for _ in range(3):
        np.testing.assert_array_equal(s1.sample().query, s2.sample().query)


def test_batches_of_episodes():
    ds = toy()
    batch = sample_episode(ds, 5, 1, 4, seed=0, batch=8)
    assert batch.support.shape == (8, 5, 1) and batch.query.shape == (8, 20, 1)
    assert batch.support_labels.shape == (8, 5) and batch.classes.shape == (8, 5)
    for b in range(8):
        for lab in range(5):
            drawn = origin(batch.query[b][batch.query_labels[b] == lab])
            assert set(drawn) == {batch.classes[b, lab]}
    assert len({tuple(sorted(c)) for c in batch.classes.tolist()}) > 1, "episodes differ"


def test_sampling_is_uniform_over_classes_and_items():
    ds = toy(n_classes=10, per_class=6)
    classes, index = sample_indices(ds, 3, 1, 1, np.random.default_rng(0), batch=6000)
    class_freq = np.bincount(classes.ravel(), minlength=10) / classes.size
    np.testing.assert_allclose(class_freq, 0.1, atol=0.01)
    item_freq = np.bincount(index[..., 0].ravel() % 6, minlength=6) / index[..., 0].size
    np.testing.assert_allclose(item_freq, 1 / 6, atol=0.01)


def test_ragged_classes_too_small_are_never_drawn():
    y = np.array([0] * 10 + [1] * 3 + [2] * 10 + [3] * 10)
    ds = FewShotDataset(np.arange(len(y), dtype=np.float32)[:, None], y, list("abcd"))
    for seed in range(50):
        ep = sample_episode(ds, 3, 2, 3, seed=seed)
        assert 1 not in ep.classes.tolist()
    with pytest.raises(ValueError, match="only 3 classes have that many"):
        sample_episode(ds, 4, 2, 3, seed=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(n_way=31, k_shot=1, n_query=1), "n_way=31 but toy has only 30 classes"),
        (dict(n_way=5, k_shot=15, n_query=6), "21 examples per class are needed"),
        (dict(n_way=0, k_shot=1, n_query=1), "n_way must be a positive integer"),
        (dict(n_way=5, k_shot=0, n_query=1), "k_shot must be a positive integer"),
        (dict(n_way=5, k_shot=1, n_query=-1), "n_query must be an integer >= 0"),
    ],
)
def test_impossible_requests_say_what_is_available(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_episode(toy(), **kwargs, seed=0)
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(toy(), **kwargs)


def test_real_omniglot_episode(omniglot_test):
    ep = sample_episode(omniglot_test, 20, 5, 15, seed=0)
    assert ep.support.shape == (100, 28, 28, 1) and ep.query.shape == (300, 28, 28, 1)
    assert len(set(ep.classes.tolist())) == 20


@pytest.mark.parametrize("name", ["n_way", "k_shot", "n_query"])
@pytest.mark.parametrize("bad", [True, False, 5.0, 2.5, None, float("nan"), float("inf"), "5",
                                 np.float64(3.0), np.bool_(True)])
def test_only_real_integers_are_accepted(name, bad):
    # True and 5.0 used to get through the check and fail deep inside numpy; None, NaN and inf
    # failed inside int(). Every one is now a TypeError that names the argument.
    kwargs = dict(n_way=5, k_shot=1, n_query=2) | {name: bad}
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        sample_episode(toy(), **kwargs, seed=0)
    with pytest.raises(TypeError, match=f"{name} must be an integer"):
        EpisodeSampler(toy(), **kwargs)


def test_numpy_integers_are_accepted_and_batch_is_checked():
    ep = sample_episode(toy(), np.int64(5), np.int32(2), np.uint8(3), seed=0, batch=np.int64(2))
    assert ep.support.shape == (2, 10, 1) and ep.query.shape == (2, 15, 1)
    assert type(ep.n_way) is int
    for bad, error in ((0, ValueError), (True, TypeError), (2.0, TypeError)):
        with pytest.raises(error, match="batch must be"):
            sample_episode(toy(), 5, 1, 1, seed=0, batch=bad)
