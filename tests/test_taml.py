"""Chapter 9.1: TAML's two regularisers, that MAML is its lambda = 0 case, and short runs of both
experiments."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import inner_loop as il  # noqa: E402
from mlbook_utils import maml, registry, taml  # noqa: E402


@pytest.fixture(scope="module")
def omniglot_train(data_dir):
    from mlbook_utils import data

    return data.load_omniglot("train")


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def test_the_theil_index_is_zero_for_equal_losses_and_log_t_at_most():
    equal = ops.convert_to_tensor([0.7, 0.7, 0.7, 0.7])
    assert _np(taml.theil(equal)) == pytest.approx(0, abs=1e-6)
    losses = np.array([0.2, 1.0, 3.0, 0.5])
    r = losses / losses.mean()
    assert _np(taml.theil(ops.convert_to_tensor(losses.astype("float32")))) == pytest.approx(
        np.mean(r * np.log(r)), rel=1e-5)
    # One task carries (nearly) all the loss: the index approaches log(T).
    one = ops.convert_to_tensor(np.array([1e-6, 1e-6, 1e-6, 1.0], dtype="float32"))
    assert _np(taml.theil(one)) == pytest.approx(np.log(4), rel=1e-3)
    # Scale-free: multiplying every loss by 10 leaves it unchanged.
    assert _np(taml.theil(ops.convert_to_tensor((10 * losses).astype("float32")))) == \
        pytest.approx(np.mean(r * np.log(r)), rel=1e-5)


def test_the_entropy_is_log_n_for_uniform_and_zero_for_certain_predictions():
    assert _np(taml.entropy(ops.zeros((3, 5)))) == pytest.approx(np.log(5), rel=1e-6)
    certain = ops.convert_to_tensor(np.array([[50.0, 0, 0], [0, 0, 50.0]], dtype="float32"))
    assert _np(taml.entropy(certain)) == pytest.approx(0, abs=1e-6)


def test_the_objectives_add_their_terms_to_mamls_mean_loss():
    post, pre = np.array([0.5, 1.0, 1.5]), np.array([1.0, 2.0, 4.0])
    h_pre, h_post = np.array([1.2, 1.4, 1.0]), np.array([0.3, 0.2, 0.4])
    args = [ops.convert_to_tensor(a.astype("float32")) for a in (post, pre, h_pre, h_post)]
    r = pre / pre.mean()
    assert _np(taml.objective("maml", 3.0, *args)) == pytest.approx(1.0, rel=1e-6)
    assert _np(taml.objective("entropy", 0.5, *args)) == pytest.approx(
        1.0 + 0.5 * np.mean(h_post - h_pre), rel=1e-5)
    assert _np(taml.objective("theil", 2.0, *args)) == pytest.approx(
        1.0 + 2.0 * np.mean(r * np.log(r)), rel=1e-5)
    with pytest.raises(ValueError, match="unknown arm"):
        taml.objective("gini", 1.0, *args)


def test_with_lambda_zero_each_arm_is_mamls_meta_step():
    net = il.mlp(hidden=(8,), seed=0)
    tasks = maml.sinusoid_batch(np.random.default_rng(1), 4, 5)
    plain = il.MetaTrainer(net.variables, maml.maml_task_loss(net, inner_lr=0.01, inner_steps=1,
                                                              loss=il.mse),
                           keras.optimizers.SGD(1.0))
    values = plain.values()
    _, g_plain, _ = plain._loss_and_grads(values, tasks, None)
    stats = taml.task_stats(net, inner_lr=0.01, inner_steps=1, loss=il.mse,
                            classification=False)
    for arm, lam in (("maml", 5.0), ("theil", 0.0)):
        t = taml.TamlTrainer(net.variables, stats, keras.optimizers.SGD(1.0), arm=arm, lam=lam)
        _, g, _ = t._loss_and_grads(values, tasks, None)
        for a, b in zip(g, g_plain):
            np.testing.assert_allclose(_np(a), _np(b), rtol=1e-4, atol=1e-6)
    # With a weight, the Theil term changes the meta-gradient.
    t = taml.TamlTrainer(net.variables, stats, keras.optimizers.SGD(1.0), arm="theil", lam=1.0)
    _, g, _ = t._loss_and_grads(values, tasks, None)
    assert max(np.abs(_np(a) - _np(b)).max() for a, b in zip(g, g_plain)) > 1e-4


def test_the_entropy_arm_raises_the_initial_entropy_on_classification():
    """A few meta-steps of the entropy objective with a large weight make the unadapted
    network's predictions more uncertain than MAML's from the same start."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5, 3)).astype("float32")  # 6 tasks, 5 points, 3 features
    y = np.tile(np.arange(5, dtype="int32"), (6, 1))
    tasks = {"xs": x, "ys": y, "xq": x, "yq": y}
    ents = {}
    for arm in ("maml", "entropy"):
        net = il.mlp(inputs=3, hidden=(16,), outputs=5, seed=0)
        stats = taml.task_stats(net, inner_lr=0.1, inner_steps=1)
        t = taml.TamlTrainer(net.variables, stats, keras.optimizers.Adam(0.05), arm=arm,
                             lam=5.0)
        for _ in range(30):
            t.step(tasks)
        t.sync()
        ents[arm] = np.mean([_np(stats(t.values(), {k: v[i] for k, v in tasks.items()})[2])
                             for i in range(6)])
    assert ents["entropy"] > ents["maml"] + 0.2, ents


@pytest.mark.plumbing  # the experiment's bookkeeping; the steps are tested on every backend
def test_the_omniglot_experiment_records_every_arm_and_the_paired_differences(
        omniglot_train, omniglot_test, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    # Two of the three arms (each arm compiles its own second-order step, the slow part); the
    # entropy arm's step is tested above.
    arms = ("maml", "theil")
    s = registry.settings_at(taml.OMNIGLOT_SETTINGS, "quick", meta_steps=2, test_episodes=4,
                             seeds=(0, 1), diag_tasks=4, arms=arms)
    out = taml.omniglot_experiment(s, data={"train": omniglot_train, "test": omniglot_test},
                                   progress=False)
    acc = [r for r in out.records if r["metric"] == "accuracy"]
    assert {(r["method"], r["seed"]) for r in acc} == {
        (taml.NAMES[a], sd) for a in arms for sd in (0, 1)}
    assert all(0 <= r["value"] <= 100 and r["train_meta_steps"] == 2 for r in acc)
    assert all(0 <= r["initial_entropy"] <= np.log(5) + 1e-4 for r in acc)
    paired = [r for r in out.records if r["metric"] == "accuracy_difference"]
    assert len(paired) == 1 and all(r["episodes"] == 2 for r in paired)
    d = [out.results["theil", sd].accuracy - out.results["maml", sd].accuracy for sd in (0, 1)]
    assert out.extra["paired", "theil"][0] == pytest.approx(np.mean(d), abs=1e-6)


@pytest.mark.plumbing  # the experiment's bookkeeping; the steps are tested on every backend
def test_the_sinusoid_experiment_chooses_lambda_on_validation_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(taml.SINUSOID_SETTINGS, "quick", meta_steps=3, test_tasks=10,
                             val_tasks=10, seeds=(0, 1), lambdas=(0.1, 1.0), xla=False)
    out = taml.sinusoid_experiment(s, progress=False)
    assert set(out.extra["val"]) == {0.0, 0.1, 1.0}
    best = out.extra["best_lambda"]
    assert out.extra["val"][best] == min(out.extra["val"][0.1], out.extra["val"][1.0])
    mse = [r for r in out.records if r["metric"] == "mse"]
    assert {(r["method"], r["seed"]) for r in mse} == {
        (f"{taml.NAMES[a]} (sinusoid)", sd) for a in ("maml", "theil") for sd in (0, 1)}
    assert all(r["lam"] == (best if "Theil" in r["method"] else 0.0) for r in mse)
    (paired,) = [r for r in out.records if r["metric"] == "mse_difference"]
    assert paired["episodes"] == 2 and np.isfinite(paired["value"])
