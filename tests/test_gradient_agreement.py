"""Chapter 8.1: gradient agreement's weights, the paired difference, and the noisy tasks."""

import numpy as np
import pytest

from mlbook_utils.evaluation import paired_difference

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import gradient_agreement as ga  # noqa: E402
from mlbook_utils import inner_loop as il  # noqa: E402
from mlbook_utils import maml, registry  # noqa: E402


def test_agreement_weights_follow_the_formula():
    g = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.5]], dtype="float32")
    mean = g.mean(axis=0)
    dots = g @ mean
    expected = dots / np.abs(dots).sum()
    w = np.asarray(ops.convert_to_numpy(il.agreement_weights(ops.convert_to_tensor(g))))
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    assert w[2] < 0 < w[0] < w[1]  # the task against the mean gets a negative weight
    same = np.asarray(ops.convert_to_numpy(il.agreement_weights(ops.convert_to_tensor(
        np.tile(g[:1], (4, 1))))))
    np.testing.assert_allclose(same, 0.25, rtol=1e-5)  # full agreement: the plain mean


def test_identical_tasks_give_the_plain_meta_step():
    net = il.mlp(hidden=(8,), seed=0)
    loss = maml.maml_task_loss(net, inner_lr=0.01, inner_steps=1, loss=il.mse)
    one = maml.sinusoid_batch(np.random.default_rng(1), 1, 5)
    tasks = {k: np.repeat(v, 3, axis=0) for k, v in one.items()}
    trainer = il.MetaTrainer(net.variables, loss, keras.optimizers.SGD(1.0),
                             combine=il.agreement_weights)
    values = trainer.values()
    _, g_ga, w = trainer._loss_and_grads(values, tasks, None)
    plain = il.MetaTrainer(net.variables, loss, keras.optimizers.SGD(1.0))
    _, g_plain, none = plain._loss_and_grads(values, tasks, None)
    assert none is None
    np.testing.assert_allclose(np.asarray(ops.convert_to_numpy(w)), 1 / 3, rtol=1e-4)
    for a, b in zip(g_ga, g_plain):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                   rtol=1e-4, atol=1e-6)


def test_paired_difference_uses_students_t_for_few_seeds():
    mean, ci, n = paired_difference([2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert (mean, n) == (2.0, 3)
    assert ci == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    with pytest.raises(ValueError):
        paired_difference([1.0], [0.0])


def test_the_noisy_sampler_shuffles_only_the_last_tasks_labels(omniglot_test):
    run = dict(n_way=5, k_shot=2, n_query=3, meta_batch_size=4)
    clean = maml.omniglot_sampler(omniglot_test, run, 0)(0)
    noisy = ga.noisy_sampler(omniglot_test, run, 0, noisy=2)(0)
    np.testing.assert_array_equal(clean["s"], noisy["s"])
    np.testing.assert_array_equal(clean["ys"][:2], noisy["ys"][:2])
    assert not np.array_equal(clean["yq"][2:], noisy["yq"][2:])
    assert sorted(noisy["yq"][3]) == sorted(clean["yq"][3])  # the same labels, shuffled


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
def test_the_sinusoid_experiment_pairs_the_arms_over_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(ga.SINUSOID_SETTINGS, "quick", maml_steps=3, reptile_steps=3,
                             test_tasks=10, seeds=(0, 1), xla=False)
    out = ga.sinusoid_experiment(s, progress=False)
    paired = [r for r in out.records if r["metric"] == "mse_difference"]
    assert [r["episodes"] for r in paired] == [2, 2]
    for method in ("MAML", "Reptile"):
        d = [np.mean(out.results[method, "agreement", sd])
             - np.mean(out.results[method, "plain", sd]) for sd in (0, 1)]
        assert out.extra["paired", method][0] == pytest.approx(np.mean(d), rel=1e-4, abs=1e-6)
