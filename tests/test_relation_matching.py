"""Relation and matching networks (chapter 4.1): shapes, exactness, a tiny training run, checker."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import metric, models  # noqa: E402
from mlbook_utils import relation_matching as rm  # noqa: E402
from mlbook_utils.data import FewShotDataset  # noqa: E402
from mlbook_utils.exercises import ch04_1  # noqa: E402


def _episode(b=2, n_way=3, k_shot=2, n_query=4, seed=0):
    rng = np.random.default_rng(seed)
    support = rng.random((b, n_way * k_shot, 28, 28, 1)).astype(np.float32)
    query = rng.random((b, n_way * n_query, 28, 28, 1)).astype(np.float32)
    labels = np.tile(np.repeat(np.arange(n_way), k_shot), (b, 1))
    return support, labels, query


def test_relation_embedding_keeps_a_3x3_map():
    emb = rm.relation_embedding(filters=8)
    out = emb(np.zeros((2, 28, 28, 1), np.float32), training=False)
    assert tuple(out.shape) == (2, 3, 3, 8)


def test_relation_scores_shape_range_and_split_conv_is_exact():
    keras.utils.set_random_seed(0)
    model = rm.RelationNetwork(rm.relation_embedding(filters=8), filters=8, combine="sum")
    support, labels, query = _episode()
    onehot = metric.onehot(labels, 3)
    scores = keras.ops.convert_to_numpy(model((support, onehot, query), training=False))
    assert scores.shape == (2, 12, 3) and (scores > 0).all() and (scores < 1).all()
    # The split first convolution equals one Conv2D on the concatenated [class; query] maps.
    fs = keras.ops.convert_to_numpy(model.embedding(support[0], training=False))  # (6, 3, 3, 8)
    fq = keras.ops.convert_to_numpy(model.embedding(query[0], training=False))  # (12, 3, 3, 8)
    classes = fs.reshape(3, 2, 3, 3, 8).sum(1)  # combine="sum": class maps summed over shots
    conv = keras.layers.Conv2D(8, 3, padding="same")
    conv.build((None, 3, 3, 16))
    kernel = np.concatenate([keras.ops.convert_to_numpy(model.conv1_class.kernel),
                             keras.ops.convert_to_numpy(model.conv1_query.kernel)], axis=2)
    conv.set_weights([kernel, keras.ops.convert_to_numpy(model.conv1_class.bias)])
    pairs = np.concatenate([np.repeat(fq[:, None], 3, 1), np.repeat(classes[None], 12, 0)], -1)
    x = conv(pairs.reshape(36, 3, 3, 16)[..., list(range(8, 16)) + list(range(8))])
    # (the concatenation above is [query; class]; reorder channels to [class; query])
    x = model.pool1(keras.ops.relu(model.bn1(x, training=False)))
    x = keras.ops.relu(model.bn2(model.conv2(x), training=False))
    want = keras.ops.convert_to_numpy(model.fc2(model.fc1(keras.ops.reshape(x, (36, -1)))))
    np.testing.assert_allclose(scores[0], want.reshape(12, 3), rtol=1e-4, atol=1e-5)


def test_relation_mse_uses_one_hot_targets():
    scores = np.array([[[0.9, 0.1], [0.5, 0.5]]], np.float32)
    labels = np.array([[0, 1]])
    got = float(rm.relation_mse(labels, scores))
    assert got == pytest.approx(((0.1**2 + 0.1**2) + (0.5**2 + 0.5**2)) / 4, rel=1e-5)


@pytest.mark.parametrize("fce", [False, True])
def test_matching_log_probs_are_normalised(fce):
    keras.utils.set_random_seed(0)
    model = rm.MatchingNetwork(models.conv4_embedding(filters=8), fce=fce, steps=3,
                               scale=10.0 if fce else None)
    support, labels, query = _episode()
    logp = keras.ops.convert_to_numpy(
        model((support, metric.onehot(labels, 3), query), training=False))
    assert logp.shape == (2, 12, 3)
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-4)
    # The predictor (cached embeddings + head) gives the same scores.
    pred = rm.make_predictor(model, model.match)(support, labels, query, 3)
    np.testing.assert_allclose(pred, logp, rtol=1e-3, atol=1e-4)


def test_matching_without_fce_is_the_exercise_reference():
    model = rm.MatchingNetwork(models.conv4_embedding(filters=8), fce=False)
    rng = np.random.default_rng(1)
    zs, zq = rng.normal(size=(1, 6, 5)), rng.normal(size=(1, 4, 5))
    labels = np.array([[2, 0, 1, 1, 0, 2]])
    logp = keras.ops.convert_to_numpy(
        model.match(zs.astype("float32"), metric.onehot(labels, 3), zq.astype("float32")))
    want = ch04_1.reference_matching_probs(zs[0], labels[0], zq[0], 3)
    np.testing.assert_allclose(np.exp(logp[0]), want, rtol=1e-4, atol=1e-5)


def test_fce_context_changes_the_embeddings():
    keras.utils.set_random_seed(0)
    model = rm.MatchingNetwork(models.conv4_embedding(filters=8), fce=True, steps=2)
    rng = np.random.default_rng(2)
    zs = rng.normal(size=(1, 4, 8)).astype("float32")
    g1 = keras.ops.convert_to_numpy(model.full_context_support(zs))
    g2 = keras.ops.convert_to_numpy(model.full_context_support(zs[:, ::-1]))[:, ::-1]
    assert g1.shape == (1, 4, 8) and not np.allclose(g1, g2)  # depends on the rest of the set


def _toy_dataset(n_classes=12, per_class=6, seed=0):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for c in range(n_classes):
        for _ in range(per_class):
            img = rng.random((28, 28, 1)).astype(np.float32) * 0.5
            r, col = divmod(c, 4)
            img[7 * r : 7 * r + 7, 7 * col : 7 * col + 7] += 1.0
            x.append(img)
            y.append(c)
    return FewShotDataset(np.stack(x), np.array(y), [f"c{c}" for c in range(n_classes)],
                          name="toy")


@pytest.mark.parametrize("kind", ["relation", "matching"])
def test_training_lowers_the_loss_on_a_tiny_problem(kind):
    keras.utils.set_random_seed(0)
    ds = _toy_dataset()
    store = metric.image_store(ds.x)
    if kind == "relation":
        model = rm.compile_relation(metric.IndexedEpisodes(
            rm.RelationNetwork(rm.relation_embedding(filters=8), filters=8), store), 3e-3)
    else:
        model = rm.compile_matching(metric.IndexedEpisodes(
            rm.MatchingNetwork(models.conv4_embedding(filters=8), fce=True, steps=2), store),
            3e-3)
    hist = metric.train_indexed(model, ds, n_way=4, k_shot=1, n_query=3, episodes=40, chunk=20,
                                meta_batch_size=2, progress=False)
    assert hist["loss"][-5:].mean() < hist["loss"][:5].mean()


# The checker of the coding exercise.

def test_checker_passes_the_reference():
    fb = ch04_1.check_matching_probs(ch04_1.reference_matching_probs)
    assert fb.passed, str(fb)


def test_checker_catches_dot_products():
    def dot(zs, labels, zq, n_way):
        a = np.exp(zq @ zs.T)
        a /= a.sum(1, keepdims=True)
        return a @ (labels[:, None] == np.arange(n_way))

    fb = ch04_1.check_matching_probs(dot)
    assert not fb.passed and "dot products" in fb.problem


def test_checker_catches_softmax_over_queries():
    def wrong_axis(zs, labels, zq, n_way):
        cos = (zq / np.linalg.norm(zq, axis=1, keepdims=True)) @ (
            zs / np.linalg.norm(zs, axis=1, keepdims=True)).T
        a = np.exp(cos) / np.exp(cos).sum(0, keepdims=True)
        return a @ (labels[:, None] == np.arange(n_way))

    fb = ch04_1.check_matching_probs(wrong_axis)
    assert not fb.passed and "over the queries" in fb.problem


def test_checker_catches_returning_the_attention_and_stubs():
    def attention_only(zs, labels, zq, n_way):
        cos = (zq / np.linalg.norm(zq, axis=1, keepdims=True)) @ (
            zs / np.linalg.norm(zs, axis=1, keepdims=True)).T
        return np.exp(cos) / np.exp(cos).sum(1, keepdims=True)

    fb = ch04_1.check_matching_probs(attention_only)
    assert not fb.passed and "sum it per class" in fb.problem

    def stub(zs, labels, zq, n_way):
        raise NotImplementedError

    fb = ch04_1.check_matching_probs(stub)
    assert not fb.passed and "NotImplementedError" in fb.problem


def test_full_scale_relation_network_uses_the_papers_recipe():
    """Sung et al.'s Omniglot code: 5-way 1-shot episodes with 19 queries per class, Adam at
    1e-3 halved every 100,000 episodes, gradient norm clipped at 0.5, 1,000,000 episodes."""
    s = rm.RELATION_SETTINGS["full"]
    assert (s["train_way"], s["train_shot"], s["train_query"]) == (5, 1, 19)
    assert (s["learning_rate"], s["lr_schedule"], s["decay_every"]) == (1e-3, "halving", 100_000)
    assert s["global_clipnorm"] == 0.5 and s["train_episodes"] == 1_000_000


def test_the_halving_recipe_halves_the_rate_in_the_one_loop():
    ds = _toy_dataset()
    s = dict(rm.RELATION_SETTINGS["quick"], filters=8, train_way=4, train_query=3,
             train_episodes=6, lr_schedule="halving", learning_rate=1e-3, decay_every=2,
             global_clipnorm=0.5)
    model = rm.build(s, ds.x.shape[1:])
    hist = rm.train(model, ds, s, progress=False)
    assert hist["episodes"] == 6
    np.testing.assert_allclose(hist["learning_rate"], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    with pytest.raises(ValueError, match="lr_schedule"):
        rm.train(model, ds, dict(s, lr_schedule="step"), progress=False)
