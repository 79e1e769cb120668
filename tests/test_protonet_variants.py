"""Chapter 3.1: Gaussian prototypes, semi-supervised episodes and soft k-means, the checker."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import protonet_variants as pv  # noqa: E402
from mlbook_utils.data import FewShotDataset  # noqa: E402
from mlbook_utils.exercises import ch03_1  # noqa: E402


def _toy_dataset(n_classes=12, per_class=20, seed=0):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for c in range(n_classes):
        for _ in range(per_class):
            img = np.round(rng.random((28, 28, 1)) * 127) / 255.0
            r, col = divmod(c, 4)
            img[7 * r : 7 * r + 7, 7 * col : 7 * col + 7] += 128 / 255.0
            x.append(img.astype(np.float32))
            y.append(c)
    return FewShotDataset(np.stack(x), np.array(y), [f"c{c}" for c in range(n_classes)],
                          name="toy")


def test_gaussian_prototypes_weight_by_precision():
    z = np.array([[[0.0, 0.0], [2.0, 4.0]]], np.float32)  # (1, K=2, D=2)
    s = np.array([[[1.0, 3.0], [1.0, 1.0]]], np.float32)
    p, total = (keras.ops.convert_to_numpy(t) for t in pv.gaussian_prototypes(z, s, axis=1))
    np.testing.assert_allclose(p, [[1.0, 1.0]])  # dim 0: plain mean; dim 1: (0*3 + 4*1) / 4
    np.testing.assert_allclose(total, [[2.0, 4.0]])


def test_gaussian_scores_match_a_loop():
    rng = np.random.default_rng(0)
    zq, p = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 4, 3))
    s = rng.random((2, 4, 3)) + 0.5
    got = keras.ops.convert_to_numpy(pv.gaussian_scores(zq.astype("float32"),
                                                        p.astype("float32"), s.astype("float32")))
    want = -(s[:, None] * (zq[:, :, None] - p[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_split_embedding_gives_positive_precision():
    z = np.array([[1.0, -2.0, 0.0, 50.0]], np.float32)
    emb, prec = pv.split_embedding(z, xp=np)
    np.testing.assert_allclose(emb, [[1.0, -2.0]])
    assert (prec >= 1.0).all() and prec[0, 1] > 50


def test_gaussian_model_and_predictor_agree():
    ds = _toy_dataset()
    emb = pv.gaussian_embedding(dim=8)
    from mlbook_utils import metric
    from mlbook_utils.episodes import sample_episode

    model = pv.GaussianPrototypicalNetwork(emb, metric.image_store(ds.x))
    (si, qi), _ = metric.index_batches(ds, 3, 2, 2, np.random.default_rng(0), 2)
    scores = keras.ops.convert_to_numpy(model((si, qi), training=False))
    assert scores.shape == (2, 6, 3) and (scores <= 1e-4).all()
    ep = sample_episode(ds, 3, 2, 2, seed=0, batch=2)
    want = pv.make_gaussian_predictor(emb)(
        ds.x[si.reshape(2, -1)], ep.support_labels, ds.x[qi.reshape(2, -1)], 3)
    np.testing.assert_allclose(scores, want, rtol=1e-3, atol=1e-3)


def test_gaussian_training_lowers_the_loss():
    keras.utils.set_random_seed(0)
    ds = _toy_dataset()
    s = dict(n_way=4, k_shot=1, n_query=3, episodes=40, learning_rate=3e-3, decay_every=0,
             val_every=0, val_episodes=0, time_budget_s=None)
    _, log = pv.train_gaussian_protonet(ds, s, progress=False, dim=8)
    assert log["episodes"] == 40
    assert log["loss"][-8:].mean() < log["loss"][:8].mean()


def test_semisupervised_episodes_keep_sets_apart():
    ds = _toy_dataset()
    s, q, u, dis = pv.sample_semisupervised_indices(ds, 3, 2, 5, 4, 2, np.random.default_rng(1),
                                                    batch=5)
    assert s.shape == (5, 3, 2) and q.shape == (5, 3, 5) and u.shape == (5, 20)
    assert dis.shape == u.shape and dis[:, 12:].all() and not dis[:, :12].any()
    for b in range(5):
        all_idx = np.concatenate([s[b].ravel(), q[b].ravel(), u[b]])
        assert len(set(all_idx.tolist())) == len(all_idx)  # no example used twice
        episode_classes = set(ds.y[s[b].ravel()].tolist())
        assert set(ds.y[q[b].ravel()].tolist()) == episode_classes
        assert set(ds.y[u[b][~dis[b]]].tolist()) == episode_classes
        assert not set(ds.y[u[b][dis[b]]].tolist()) & episode_classes  # distractors are new


def test_soft_kmeans_refine_matches_the_reference_and_moves_towards_unlabeled():
    rng = np.random.default_rng(0)
    zs, labels = rng.normal(size=(6, 4)), np.repeat(np.arange(3), 2)
    zu = rng.normal(size=(5, 4))
    want = ch03_1.reference_refine_prototypes(zs, labels, zu, 3)
    protos = np.stack([zs[labels == c].mean(0) for c in range(3)])[None]
    got = pv.soft_kmeans_refine(protos, np.full((1, 3), 2.0), zu[None])[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # an unlabeled point right at a far-away prototype pulls only that prototype
    p = np.array([[[0.0, 0.0], [10.0, 0.0]]])
    out = pv.soft_kmeans_refine(p, np.ones((1, 2)), np.array([[[12.0, 0.0]]]))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [11.0, 0.0], atol=1e-6)


def test_evaluate_semisupervised_refinement_helps_on_clusters():
    ds = _toy_dataset()
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=1.5, size=(ds.n_classes, 6))
    z_all = centres[ds.y] + rng.normal(scale=1.0, size=(len(ds.y), 6))
    res = pv.evaluate_semisupervised(z_all, ds, 3, 1, n_query=5, n_unlabeled=10, episodes=200)
    assert res["soft k-means"].accuracy > res["plain"].accuracy


# The checker -----------------------------------------------------------------------------------


def test_checker_passes_the_reference():
    fb = ch03_1.check_refine_prototypes(ch03_1.reference_refine_prototypes)
    assert fb.passed, str(fb)


def _stub(zs, labels, zu, n_way):
    raise NotImplementedError("write it")


def _wrong_shape(zs, labels, zu, n_way):
    return ch03_1.reference_refine_prototypes(zs, labels, zu, n_way).T


def _class_major(zs, labels, zu, n_way):
    p = zs.reshape(n_way, -1, zs.shape[1]).mean(1)
    d = ((zu[:, None] - p[None]) ** 2).sum(-1)
    w = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
    k = len(labels) // n_way
    return (p * k + w.T @ zu) / (k + w.sum(0))[:, None]


def _wrap(mistake):
    def fn(zs, labels, zu, n_way):
        if len(zu) == 0:
            return ch03_1.reference_refine_prototypes(zs, labels, zu, n_way)
        return mistake(zs, labels, zu, n_way)
    return fn


@pytest.mark.parametrize("fn, message", [
    (_stub, "NotImplementedError"),
    (_wrong_shape, "has shape"),
    (_class_major, "plain class means"),
    (_wrap(ch03_1._mistake_hard), "hard assignments"),
    (_wrap(ch03_1._mistake_axis), "over the unlabeled points"),
    (_wrap(ch03_1._mistake_sign), "+distances"),
    (_wrap(ch03_1._mistake_unlabeled_only), "support embeddings were left out"),
    (_wrap(ch03_1._mistake_no_weight_in_denominator), "denominator"),
])
def test_checker_names_typical_mistakes(fn, message):
    fb = ch03_1.check_refine_prototypes(fn)
    assert not fb.passed
    assert message in fb.problem, fb.problem
