"""Chapter 9.4: learning in the concept space (DEML): the alphabet split, the joint loss, and a
short run of the experiment through the registry."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import concept_space as cs  # noqa: E402
from mlbook_utils import metric, registry  # noqa: E402


@pytest.fixture(scope="module")
def omniglot_train(data_dir):
    from mlbook_utils import data

    return data.load_omniglot("train")


def alphabets(ds):
    return {n.split("/")[0] for n in ds.class_names}


def test_the_three_groups_share_no_alphabet_and_cover_the_training_split(omniglot_train):
    meta, val, ext = cs.alphabet_groups(omniglot_train, n_val_alphabets=3, seed=0)
    a_meta, a_val, a_ext = alphabets(meta), alphabets(val), alphabets(ext)
    assert len(a_val) == 3
    assert not (a_meta & a_val or a_meta & a_ext or a_val & a_ext)
    assert a_meta | a_val | a_ext == alphabets(omniglot_train)
    assert meta.n_classes + val.n_classes + ext.n_classes == omniglot_train.n_classes
    # The images come with their classes: every class keeps its 20 drawings.
    for g in (meta, val, ext):
        assert np.bincount(g.y).min() == np.bincount(g.y).max() == 20
    # Another seed gives another split: the split is not an accident of the alphabets' order.
    assert alphabets(cs.alphabet_groups(omniglot_train, 3, seed=1)[2]) != a_ext


def test_the_test_classes_are_in_no_group(omniglot_train, omniglot_test):
    groups = cs.alphabet_groups(omniglot_train)
    seen = set().union(*(set(g.class_names) for g in groups))
    assert not seen & set(omniglot_test.class_names)


def test_the_joint_loss_adds_lambda_times_the_discriminators_cross_entropy():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(1, 6, 3)).astype("float32")
    qy = np.array([[0, 1, 2, 0, 1, 2]])
    logits = rng.normal(size=(4, 7)).astype("float32")
    ey = np.array([1, 6, 0, 3])
    base = float(ops.convert_to_numpy(metric.episode_loss(qy, scores)))
    z = logits - logits.max(1, keepdims=True)
    ce = float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(4), ey]))
    for lam in (0.0, 0.5, 3.0):
        got = float(ops.convert_to_numpy(cs.joint_loss(qy, scores, ey, logits, lam)))
        assert got == pytest.approx(base + lam * ce, rel=1e-5)


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
def test_a_short_run_records_every_arm_and_seed(omniglot_train, omniglot_test, tmp_path,
                                                monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.get("concept-space").settings_for(
        "quick", episodes=6, n_way=5, external_batch=8, lambdas=(1.0,), seeds=(0, 1),
        val_episodes=5, test_episodes=5, tests=((5, 1),), union=True)
    out = cs.experiment(s, data={"train": omniglot_train, "test": omniglot_test}, progress=False)
    records = [json.loads(line) for line in
               (tmp_path / f"{cs.CHAPTER}.jsonl").read_text().splitlines()]
    arms = {(r["arm"], r["seed"]) for r in records}
    assert arms == {(a, sd) for a in ("protonet", "deml", "union") for sd in (0, 1)}
    assert all(r["metric"] == "accuracy" and 0 <= r["value"] <= 100 for r in records)
    assert all(r["train_episodes"] == 6 and r["best_lambda"] == 1.0 for r in records)
    assert {r["lam"] for r in records if r["arm"] == "deml"} == {1.0}
    assert set(out.extra["val"]) == {0.0, 1.0}
    mean, ci, n = out.extra["deml - protonet", 5, 1]
    assert n == 2 and np.isfinite(mean) and ci > 0


def test_training_with_the_discriminator_lowers_its_loss(omniglot_train):
    meta, _, ext = cs.alphabet_groups(omniglot_train)
    s = registry.get("concept-space").settings_for("quick", episodes=40, n_way=5,
                                                   external_batch=16, time_budget_s=None)
    _, hist = cs.train_deml(meta, ext, s, lam=1.0, seed=0, progress=False)
    loss = hist["loss"]
    assert hist["episodes"] == 40 and len(loss) == 40
    assert loss[-10:].mean() < loss[:10].mean() - 0.5, (loss[:10].mean(), loss[-10:].mean())


def test_the_time_budget_stops_training_early(omniglot_train):
    meta, _, ext = cs.alphabet_groups(omniglot_train)
    s = registry.get("concept-space").settings_for("quick", episodes=10_000, n_way=5,
                                                   external_batch=8, time_budget_s=0.0)
    _, hist = cs.train_deml(meta, ext, s, lam=1.0, seed=0, progress=False)
    assert hist["episodes"] < 10_000
