"""Chapter 9.3: CACTUs' k-means, purity and random clusters, and a short run of the experiment."""

import json

import numpy as np
import pytest

from mlbook_utils import cactus


def _blobs(seed=0, k=4, per=50, d=3):
    r = np.random.default_rng(seed)
    centres = r.normal(scale=10, size=(k, d))
    z = np.concatenate([c + r.normal(size=(per, d)) for c in centres])
    return z, np.repeat(np.arange(k), per)


def test_kmeans_finds_well_separated_blobs_and_its_inertia_never_rises():
    z, truth = _blobs()
    labels, centres, inertia = cactus.kmeans(z, 4, iters=10, seed=0)
    assert centres.shape == (4, 3)
    assert cactus.purity(labels, truth) == 1.0
    assert all(b <= a + 1e-9 for a, b in zip(inertia, inertia[1:])), inertia
    # Each centre is the mean of its points.
    for j in range(4):
        np.testing.assert_allclose(centres[j], z[labels == j].mean(0), atol=1e-9)


def test_kmeans_refuses_impossible_k_and_restarts_empty_clusters():
    z, _ = _blobs(k=2, per=5)
    with pytest.raises(ValueError, match="k must be"):
        cactus.kmeans(z, 11)
    labels, _, _ = cactus.kmeans(z, 10, iters=5, seed=1)
    assert len(np.unique(labels)) == 10  # every cluster keeps at least one point


def test_purity_and_random_clusters():
    truth = np.repeat(np.arange(10), 20)
    assert cactus.purity(truth, truth) == 1.0
    rand = cactus.random_like(truth, seed=0)
    assert sorted(np.bincount(rand)) == sorted(np.bincount(truth))  # the same sizes
    assert cactus.purity(rand, truth) < 0.5


def test_as_dataset_makes_pseudo_classes():
    x = np.zeros((6, 28, 28, 1), dtype=np.float32)
    ds = cactus.as_dataset(x, np.array([0, 0, 1, 1, 2, 2]), "clusters")
    assert ds.n_classes == 3 and ds.class_names[2] == "cluster 2"


@pytest.mark.plumbing  # the experiment's bookkeeping; the steps are tested on every backend
def test_a_short_run_records_every_arm_and_the_paired_differences(omniglot_test, tmp_path,
                                                                   monkeypatch):
    pytest.importorskip("keras")
    from mlbook_utils import registry

    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    # The test split stands in for the training split (it is small), to keep the test short.
    small = omniglot_test.subset(range(200), name="small")
    s = registry.settings_at(cactus.SETTINGS, "quick", ae_images=500, clusters=40,
                             kmeans_iters=3, episodes=4, n_way=5, seeds=(0, 1),
                             test_episodes=5)
    out = cactus.experiment(s, data={"train": small, "test": omniglot_test}, progress=False)
    records = [json.loads(line) for line in
               (tmp_path / f"{cactus.CHAPTER}.jsonl").read_text().splitlines()]
    acc = [r for r in records if r["metric"] == "accuracy"]
    assert {(r["arm"], r["seed"]) for r in acc} == {("embedding", None)} | {
        (a, sd) for a in ("cactus", "random", "supervised") for sd in (0, 1)}
    assert all(0 <= r["value"] <= 100 for r in acc)
    assert all(r["train_episodes"] == 4 for r in acc if r["arm"] != "embedding")
    diffs = [r for r in records if r["metric"] == "accuracy_difference"]
    assert len(diffs) == 3 and all(r["episodes"] == 2 for r in diffs)
    assert 0 < out.extra["purity"]["random"] < out.extra["purity"]["cactus"] <= 1
    assert out.extra["sizes"].sum() == len(small.y)
