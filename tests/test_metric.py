"""The learned metric of chapter 1.2: model shapes, distances, a tiny training run, the checker."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import baselines, metric, models  # noqa: E402
from mlbook_utils.data import FewShotDataset  # noqa: E402
from mlbook_utils.exercises import ch01_2  # noqa: E402


def test_conv4_embedding_is_64d_on_28x28():
    emb = models.conv4_embedding(name="e")
    assert emb.name == "e"
    out = emb(np.zeros((3, 28, 28, 1), np.float32), training=False)
    assert tuple(out.shape) == (3, 64)
    bns = [la for la in emb.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert len(bns) == 4 and all(b.momentum == 0.9 and b.epsilon == 1e-5 for b in bns)


def test_squared_distances_and_prototypes_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 5, 3)).astype(np.float32)
    b = rng.normal(size=(2, 4, 3)).astype(np.float32)
    d = keras.ops.convert_to_numpy(metric.squared_distances(a, b))
    np.testing.assert_allclose(d, baselines.pairwise_sq_distances(a, b), rtol=1e-4, atol=1e-5)
    labels = np.array([[0, 1, 0, 1], [1, 1, 0, 0]])
    p = keras.ops.convert_to_numpy(metric.class_prototypes(b, metric.onehot(labels, 2)))
    np.testing.assert_allclose(p[0, 0], b[0, [0, 2]].mean(0), rtol=1e-5)
    np.testing.assert_allclose(p[1, 1], b[1, [0, 1]].mean(0), rtol=1e-5)


def test_model_scores_are_minus_distances_to_prototypes():
    emb = models.conv4_embedding()
    model = metric.PrototypicalNetwork(emb)
    rng = np.random.default_rng(1)
    support = rng.random((2, 6, 28, 28, 1)).astype(np.float32)  # 3-way 2-shot
    query = rng.random((2, 4, 28, 28, 1)).astype(np.float32)
    labels = np.tile(np.repeat(np.arange(3), 2), (2, 1))
    scores = keras.ops.convert_to_numpy(
        model((support, metric.onehot(labels, 3), query), training=False)
    )
    assert scores.shape == (2, 4, 3)
    assert (scores <= 1e-5).all()
    want = metric.make_predictor(emb)(support, labels, query, 3)
    np.testing.assert_allclose(scores, want, rtol=1e-3, atol=1e-3)


def _toy_dataset(n_classes=12, per_class=6, seed=0):
    """Classes that differ in which 7x7 block of the image is lit, plus noise."""
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


def test_training_lowers_the_loss_on_a_tiny_problem():
    keras.utils.set_random_seed(0)
    ds = _toy_dataset()
    net = metric.PrototypicalNetwork(models.conv4_embedding(filters=8))
    model = metric.compile_model(metric.IndexedEpisodes(net, metric.image_store(ds.x)),
                                 learning_rate=3e-3)
    hist = metric.train_indexed(model, ds, n_way=4, k_shot=1, n_query=3, episodes=40, chunk=20,
                                meta_batch_size=2, progress=False)
    assert hist["episodes"] == 40 and len(hist["loss"]) == 20
    assert hist["loss"][-5:].mean() < hist["loss"][:5].mean()
    assert hist["episodes_per_s"] > 0


def test_cached_predictor_equals_plain_predictor():
    ds = _toy_dataset(per_class=4)
    emb = models.conv4_embedding(filters=8)
    from mlbook_utils.episodes import sample_episode

    ep = sample_episode(ds, 3, 1, 2, seed=0, batch=2)
    plain = metric.make_predictor(emb)(ep.support, ep.support_labels, ep.query, 3)
    cached = metric.make_predictor(emb, ds)(ep.support, ep.support_labels, ep.query, 3)
    np.testing.assert_allclose(plain, cached, rtol=1e-4, atol=1e-4)
    new = ep.query + 0.01  # images not in the dataset are embedded on the fly
    cached_new = metric.make_predictor(emb, ds)(ep.support, ep.support_labels, new, 3)
    plain_new = metric.make_predictor(emb)(ep.support, ep.support_labels, new, 3)
    np.testing.assert_allclose(plain_new, cached_new, rtol=1e-4, atol=1e-4)


def test_pca_2d_keeps_the_main_direction():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    x = np.stack([t * 10, rng.normal(size=200) * 0.1, rng.normal(size=200) * 0.1], axis=1)
    p = metric.pca_2d(x)
    assert p.shape == (200, 2)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.99


# The checker -----------------------------------------------------------------------------------


def test_checker_passes_the_reference():
    fb = ch01_2.check_prototype_scores(ch01_2.reference_prototype_scores)
    assert fb.passed, str(fb)


def _positive(zs, labels, zq, n_way):
    return -ch01_2.reference_prototype_scores(zs, labels, zq, n_way)


def _euclidean(zs, labels, zq, n_way):
    return -np.sqrt(-ch01_2.reference_prototype_scores(zs, labels, zq, n_way))


def _sum_prototypes(zs, labels, zq, n_way):
    p = np.stack([zs[labels == c].sum(0) for c in range(n_way)])
    return -((zq[:, None] - p[None]) ** 2).sum(-1)


def _transposed(zs, labels, zq, n_way):
    return ch01_2.reference_prototype_scores(zs, labels, zq, n_way).T


def _assumes_class_major(zs, labels, zq, n_way):
    p = zs.reshape(n_way, -1, zs.shape[-1]).mean(1)
    return -((zq[:, None] - p[None]) ** 2).sum(-1)


def _stub(zs, labels, zq, n_way):
    raise NotImplementedError("write it")


@pytest.mark.parametrize("fn, message", [
    (_positive, "farthest class"),
    (_euclidean, "square root"),
    (_sum_prototypes, "*sum*"),
    (_transposed, "rows should be queries"),
    (_assumes_class_major, "shuffled order"),
    (_stub, "NotImplementedError"),
])
def test_checker_names_typical_mistakes(fn, message):
    fb = ch01_2.check_prototype_scores(fn)
    assert not fb.passed
    assert message in fb.problem, fb.problem


# Chapter 3: index-fed training, settings, cosine -------------------------------------------------


def test_settings_hold_every_scale_and_reject_unknown_keys():
    for scale in ("quick", "cpu", "full"):
        s = metric.settings_for(scale)
        assert {"n_way", "k_shot", "n_query", "episodes", "learning_rate", "decay_every"} <= set(s)
    assert metric.settings_for("full")["n_way"] == 60
    assert metric.settings_for("cpu", k_shot=5)["k_shot"] == 5
    with pytest.raises(ValueError, match="unknown settings"):
        metric.settings_for("cpu", n_ways=5)


def test_image_store_is_exact_uint8_for_omniglot_like_pixels():
    x = (np.arange(2 * 28 * 28) % 256).reshape(2, 28, 28, 1).astype(np.float32) / 255.0
    store = metric.image_store(x)
    assert store.dtype == "uint8"
    got = keras.ops.convert_to_numpy(metric.gather_images(store, np.array([[1, 0]])))
    assert got.shape == (1, 2, 28, 28, 1)
    np.testing.assert_allclose(got[0], x[[1, 0]], rtol=1e-6)  # GPU division: within 1 ulp
    assert metric.image_store(x + 0.001).dtype == "float32"


def test_index_batches_are_class_major_episodes():
    ds = _toy_dataset(per_class=8)
    (s, q), labels = metric.index_batches(ds, 4, 2, 3, np.random.default_rng(0), 5)
    assert s.shape == (5, 4, 2) and q.shape == (5, 4, 3) and labels.shape == (5, 12)
    assert s.dtype == np.int32
    np.testing.assert_array_equal(labels[0], np.repeat(np.arange(4), 3))
    for b in range(5):
        assert (ds.y[s[b]] == ds.y[s[b]][:, :1]).all()  # one class per row
        assert (ds.y[q[b]] == ds.y[s[b]][:, :1]).all()  # queries of the same class
        assert not set(s[b].ravel()) & set(q[b].ravel())


def test_indexed_model_equals_the_array_model():
    ds = _toy_dataset(per_class=8)
    emb = models.conv4_embedding(filters=8)
    (s, q), _ = metric.index_batches(ds, 3, 2, 2, np.random.default_rng(0), 2)
    indexed = metric.IndexedPrototypicalNetwork(emb, metric.image_store(ds.x))
    got = keras.ops.convert_to_numpy(indexed((s, q), training=False))
    support, query = ds.x[s.reshape(2, -1)], ds.x[q.reshape(2, -1)]
    onehot = metric.onehot(np.tile(np.repeat(np.arange(3), 2), (2, 1)), 3)
    want = keras.ops.convert_to_numpy(
        metric.PrototypicalNetwork(emb)((support, onehot, query), training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    cos = metric.IndexedPrototypicalNetwork(emb, metric.image_store(ds.x), distance="cosine")
    c = keras.ops.convert_to_numpy(cos((s, q), training=False))
    assert (np.abs(c) <= 1 + 1e-5).all()
    pred = metric.make_predictor(emb, distance="cosine")(
        support, np.tile(np.repeat(np.arange(3), 2), (2, 1)), query, 3)
    np.testing.assert_allclose(c, pred, rtol=1e-3, atol=1e-3)


def test_train_protonet_learns_a_tiny_problem_and_selects_on_val():
    keras.utils.set_random_seed(0)
    ds = _toy_dataset(per_class=20)
    s = dict(n_way=4, k_shot=1, n_query=3, episodes=60, learning_rate=3e-3, decay_every=30,
             val_every=30, val_episodes=20, time_budget_s=None)
    model, log = metric.train_protonet(ds, s, val_ds=ds, progress=False,
                                       embedding=models.conv4_embedding(filters=8))
    assert log["episodes"] == 60 and len(log["loss"]) == 60
    assert log["loss"][-10:].mean() < log["loss"][:10].mean()
    assert list(log["val_episode"]) == [30, 60] and log["val_accuracy"].max() > 40
    assert log["episodes_per_s"] > 0
    assert np.isclose(log["learning_rate"][0], 3e-3)
    assert np.isclose(log["learning_rate"][-1], 1.5e-3)  # halved after 30 episodes
    lr = model.optimizer.learning_rate
    assert np.isclose(float(keras.ops.convert_to_numpy(lr)), 1.5e-3)


def test_halvings_follow_episodes_or_the_time_budget():
    assert metric.halvings(0, 0.0, 100, 1000) == 0
    assert metric.halvings(250, 0.0, 100, 1000) == 2
    assert metric.halvings(0, 50.0, 100, 1000) == 0
    assert metric.halvings(10, 50.0, 100, 1000, time_budget_s=100.0) == 5  # half the time gone
    assert metric.halvings(10**6, 0.0, 0, 1000) == 0


def test_train_indexed_reports_each_execution_and_never_trains_past_the_request():
    keras.utils.set_random_seed(1)
    ds = _toy_dataset(per_class=20)
    s = dict(n_way=4, k_shot=1, n_query=3, episodes=48, learning_rate=3e-3, decay_every=0,
             val_every=0, val_episodes=0, time_budget_s=None, meta_batch_size=2,
             steps_per_execution=4)
    model, log = metric.train_protonet(ds, s, progress=False,
                                       embedding=models.conv4_embedding(filters=8))
    # 48 episodes, 2 per step, 4 steps per execution: 6 executions, one history row each.
    assert log["episodes"] == 48 and list(log["episode"]) == [8, 16, 24, 32, 40, 48]
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 24
    assert ((log["loss"] > 0) & np.isfinite(log["loss"])).all()
    assert ((log["accuracy"] >= 0) & (log["accuracy"] <= 1)).all()


def test_step_log_recovers_per_step_values_from_running_means():
    log = metric._StepLog(bar=type("Bar", (), {"update": lambda self, n: None})(), deadline=None)
    log.start(n_steps=4, mbs=1)
    losses, accs = [1.0, 0.5, 0.25, 0.125], [0.0, 0.5, 1.0, 1.0]
    for t in (4, 2, 1, 3):  # asynchronous callbacks may finish out of order
        log.rows.append((t, float(np.mean(losses[:t])), float(np.mean(accs[:t]))))
    got = log.per_step()
    np.testing.assert_allclose([r[1] for r in got], losses)
    np.testing.assert_allclose([r[2] for r in got], accs)
    assert [r[0] for r in got] == [1, 1, 1, 1]


def test_train_indexed_stops_on_its_time_budget():
    ds = _toy_dataset(per_class=20)
    s = dict(n_way=4, k_shot=1, n_query=3, episodes=100000, learning_rate=1e-3, decay_every=0,
             val_every=0, val_episodes=0, time_budget_s=3.0)
    _, log = metric.train_protonet(ds, s, progress=False,
                                   embedding=models.conv4_embedding(filters=8))
    assert 0 < log["episodes"] < 100000 and log["wall_s"] < 30
    assert len(log["episode"]) == log["episodes"]


def test_indexed_episodes_feed_the_same_episode_as_arrays():
    """IndexedEpisodes gathers support and query class-major with the matching one-hot labels:
    its scores equal the wrapped model's scores on the same episode given as image arrays."""
    ds = _toy_dataset(per_class=6)
    net = metric.PrototypicalNetwork(models.conv4_embedding(filters=8))
    fed = metric.IndexedEpisodes(net, metric.image_store(ds.x))
    (s_idx, q_idx), labels = metric.index_batches(ds, 3, 2, 2, np.random.default_rng(0), 2)
    scores = np.asarray(fed((s_idx, q_idx), training=False))
    support = ds.x[s_idx.reshape(2, -1)]
    query = ds.x[q_idx.reshape(2, -1)]
    onehot = metric.onehot(np.repeat(np.arange(3), 2)[None].repeat(2, 0), 3)
    direct = np.asarray(net((support, onehot, query), training=False))
    np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-4)
    assert (scores.argmax(-1) == labels).mean() > 1 / 3  # the toy classes are easy


def test_embed_pads_every_chunk_to_one_shape_and_drops_the_padding():
    import numpy as np

    from mlbook_utils import metric, models

    emb = models.conv4_embedding(filters=4)
    x = np.random.default_rng(0).random((37, 28, 28, 1)).astype("float32")
    seen = []
    real = emb.predict_on_batch
    emb.predict_on_batch = lambda batch: seen.append(batch.shape[0]) or real(batch)
    z = metric.embed(emb, x, chunk=16)
    assert z.shape == (37, 4) and set(seen) == {16}  # 16 + 16 + (5 padded to 16)
    np.testing.assert_allclose(z, np.asarray(real(x)), rtol=1e-4, atol=1e-5)
