"""The learned optimizer: the one gradient preprocessing (shared with chapter 1.4), LSTM shapes,
baselines, meta-training and its time budget, chapter 1.3's settings and its experiment."""

from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import gradient_preprocessing, nbtools, registry  # noqa: E402
from mlbook_utils import learned_optimizer as lo  # noqa: E402
from mlbook_utils import lstm_meta_learner as lml  # noqa: E402
from mlbook_utils.exercises.ch01_3 import reference_preprocess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# The gradient preprocessing: one function for chapters 1.3 and 1.4
# --------------------------------------------------------------------------------------------


def test_preprocess_matches_the_paper():
    g = np.array([1.0, -np.e, 1e-6, -1e-6, 0.0, 50.0, -2e-5, 4.6e-5], dtype="float32")
    out = np.asarray(lo.preprocess_gradient(g, p=10.0))
    assert out.shape == (8, 2)
    np.testing.assert_allclose(out[:2], [[0.0, 1.0], [0.1, -1.0]], atol=1e-5)
    np.testing.assert_allclose(out[2:5, 0], -1.0)
    np.testing.assert_allclose(out[2:5, 1], np.exp(10.0) * g[2:5], rtol=1e-4)
    np.testing.assert_allclose(out[5], [np.log(50.0) / 10, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[6], [-1.0, np.exp(10.0) * -2e-5], rtol=1e-4)
    np.testing.assert_allclose(out[7], [np.log(4.6e-5) / 10, 1.0], rtol=1e-5)  # just above
    np.testing.assert_allclose(out, reference_preprocess(g), atol=1e-4)
    # any shape, another p
    g2 = np.random.default_rng(0).normal(scale=1e-3, size=(2, 3, 4)).astype("float32")
    out2 = np.asarray(lo.preprocess_gradient(g2, p=5.0))
    assert out2.shape == (2, 3, 4, 2)
    np.testing.assert_allclose(out2, reference_preprocess(g2, 5.0), rtol=1e-5, atol=1e-5)


def test_preprocess_has_a_finite_gradient_everywhere():
    from keras import ops

    from mlbook_utils.autodiff import value_and_grad

    x = ops.convert_to_tensor(np.array([-3.0, -1e-3, 0.0, 1e-6, 2e-5, 0.5], "float32"))
    _, (g,) = value_and_grad(lambda ps: ops.sum(lo.preprocess_gradient(ps[0])), [x])
    assert np.isfinite(ops.convert_to_numpy(g)).all()


def test_both_chapters_call_the_one_preprocessing(monkeypatch):
    fn = gradient_preprocessing.preprocess_gradient
    assert lo.preprocess_gradient is fn and lml.preprocess_gradient is fn
    assert not hasattr(lml, "preprocess"), "one name for the one function"
    calls = []

    def spy(x, p=10.0):
        calls.append(tuple(np.shape(x)))
        return fn(x, p)

    # Chapter 1.3's optimizer step goes through it ...
    monkeypatch.setattr(lo, "preprocess_gradient", spy)
    params = lo.init_lstm_optimizer(hidden=4, layers=1)
    lo.lstm_optimizer(params, np.ones((2, 3), "float32"), lo.init_lstm_state(6, 4, 1))
    assert calls == [(2, 3)]
    # ... and so does chapter 1.4's meta-learner step, for the gradient and the loss.
    monkeypatch.setattr(lml, "preprocess_gradient", spy)
    spec = lml.LearnerSpec(n_way=2, filters=2, blocks=1)
    meta = lml.init_meta_params(spec, hidden=3)
    n = spec.n_params
    state = (np.zeros((n, 3), "float32"), np.zeros((n, 3), "float32"),
             np.zeros((n, 1), "float32"), np.zeros((n, 1), "float32"))
    lml.meta_lstm_step(meta, state, meta["c0"], np.ones(n, "float32"), np.float32(0.5))
    assert calls[1:] == [(n,), (1,)]


# --------------------------------------------------------------------------------------------
# The optimizer, the baselines, meta-training
# --------------------------------------------------------------------------------------------


def test_lstm_update_shape_and_state():
    params = lo.init_lstm_optimizer(hidden=8)
    grad = np.random.default_rng(0).normal(size=(3, 7)).astype("float32")
    state = lo.init_lstm_state(21, hidden=8)
    update, new_state = lo.lstm_optimizer(params, grad, state)
    assert tuple(np.asarray(update).shape) == (3, 7)
    assert len(new_state) == 4 and tuple(np.asarray(new_state[0]).shape) == (21, 8)
    # coordinate-wise: permuting coordinates permutes the updates
    perm = np.random.default_rng(1).permutation(21)
    up2, _ = lo.lstm_optimizer(params, grad.reshape(-1)[perm], lo.init_lstm_state(21, 8))
    np.testing.assert_allclose(np.asarray(up2), np.asarray(update).reshape(-1)[perm], atol=1e-6)


def test_quadratic_gradient_and_baselines_descend():
    prob = lo.Quadratic()
    theta, data, _ = prob.sample(np.random.default_rng(0), 8, 30)
    w, y = data
    # gradient through value_and_grad equals 2 W^T (W theta - y)
    from mlbook_utils.autodiff import value_and_grad
    _, (g,) = value_and_grad(lambda p: keras.ops.sum(prob.loss(p[0], data)),
                             [keras.ops.convert_to_tensor(theta)])
    want = 2 * np.einsum("bji,bj->bi", w, np.einsum("bij,bj->bi", w, theta) - y)
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-4)
    for name in lo.BASELINES:
        curves = lo.run_baseline(prob, name, [0.005], theta, data, None, 30)
        assert curves.shape == (1, 31, 8)
        assert curves[0, -1].mean() < curves[0, 0].mean(), name


def test_meta_training_lowers_the_meta_loss():
    prob = lo.Quadratic(dim=4)
    params = lo.init_lstm_optimizer(hidden=8)
    params, hist = lo.meta_train(prob, params, iterations=12, batch=32, steps=10,
                                 unroll_steps=5, meta_lr=0.01, progress=False)
    loss = hist["meta_loss"]
    assert loss[-3:].mean() < loss[:3].mean()


def test_meta_train_stops_at_its_time_budget():
    quad = lo.Quadratic(dim=3)
    phi = lo.init_lstm_optimizer(hidden=4, layers=1, seed=0)
    _, hist = lo.meta_train(quad, phi, iterations=5, batch=2, steps=4, unroll_steps=2,
                            progress=False, time_budget_s=0.0)
    assert hist["iterations"] == 0 and len(hist["meta_loss"]) == 0
    _, hist = lo.meta_train(quad, phi, iterations=10**6, batch=2, steps=4, unroll_steps=2,
                            progress=False, time_budget_s=0.5)
    assert 1 <= hist["iterations"] < 10**6 and hist["trajectories"] == 2 * hist["iterations"]
    assert len(hist["meta_loss"]) == hist["iterations"]
    _, hist = lo.meta_train(quad, phi, iterations=3, batch=2, steps=4, unroll_steps=2,
                            progress=False)
    assert hist["iterations"] == 3 and len(hist["meta_loss"]) == 3
    assert hist["trajectories_per_s"] == pytest.approx(6 / hist["wall_s"])


# --------------------------------------------------------------------------------------------
# Chapter 1.3's settings and experiment
# --------------------------------------------------------------------------------------------


def test_settings_and_registration():
    method = registry.get("learned-optimizer")
    assert method.experiment is lo.experiment and method.settings is lo.SETTINGS
    assert method.chapter == lo.CHAPTER == "01_3_learned_optimizer"
    keys = set(lo.SETTINGS["quick"])
    for scale in registry.SCALES:
        s = lo.SETTINGS[scale]
        assert set(s) == keys, scale
        assert "tests" not in s and "test_query" not in s  # no episodes here
        for common in ("test_episodes", "train_episodes", "time_budget_s"):
            assert method.key(common) in s, (scale, common)
        assert len(lo.learning_rates(s["lr_logspace"])) == 13
    assert (method.key("test_episodes"), method.key("train_episodes")) == ("n_test", "meta_iters")
    # the runner's flags land on the method's own keys
    from mlbook_utils import reproduce

    args = Namespace(scale="quick", episodes=7, n_query=None, train_episodes=3, time_budget=1.5,
                     meta_batch_size=None, steps_per_execution=None, dataset=None,
                     trainval=False, checkpoint_dir=None, set=["n_tune=4"])
    assert reproduce.overrides_from(args, method) == {"n_test": 7, "meta_iters": 3,
                                                       "time_budget_s": 1.5, "n_tune": 4}


def test_notebook_reads_its_numbers_from_the_settings():
    code = nbtools.code_source(ROOT / "chapters" / f"{lo.CHAPTER}.ipynb")
    assert "by_scale" not in code, "the chapter restates a number of the settings"
    assert "S = lo.SETTINGS[config.scale()]" in code and "lo.experiment(S)" in code
    assert "registry.settings_table(lo.SETTINGS)" in code
    assert "inspect.getsource(lo.preprocess_gradient)" in code


def test_experiment_at_quick_scale(monkeypatch, tmp_path):
    from mlbook_utils import evaluation

    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    settings = registry.get("learned-optimizer").settings_for(
        "quick", meta_iters=1, meta_batch=8, n_tune=6, n_test=9, steps=10, unroll=5,
        lr_logspace=(-3, 0, 4))
    out = lo.experiment(settings, runner="test", progress=False)
    names = [lo.LSTM_NAME, "SGD optimizer", "RMSprop optimizer", "Adam optimizer",
             "NAG optimizer"]
    assert [r["method"] for r in out.records] == names
    assert evaluation.read_records(lo.CHAPTER, folder=tmp_path) == out.records
    for r in out.records:
        assert (r["dataset"], r["n_way"], r["k_shot"]) == ("quadratic-10d", None, None)
        assert r["metric"] == "final_loss" and "accuracy" not in r
        assert np.isfinite(r["value"]) and r["episodes"] == 9 and r["steps"] == 10
        assert r["scale"] == "quick" and r["runner"] == "test" and r["peak_host_mib"] > 0
        res = out.results[r["method"], None, None]
        assert res.value == pytest.approx(r["value"], abs=1e-3)
        assert res.curves.shape == (11, 9)
    lstm = out.records[0]
    assert lstm["train_iterations"] == lstm["train_iterations_planned"] == 1
    assert lstm["train_episodes"] == 8 and lstm["meta_batch"] == 8
    assert all(r["lr"] in r["lr_grid"] and len(r["lr_grid"]) == 4 for r in out.records[1:])
    assert out.histories[lo.LSTM_NAME]["iterations"] == 1
    assert len(out.models[lo.LSTM_NAME]) == 2 * settings["layers"] + 2
    assert set(out.extra["baselines"]) == set(lo.BASELINES)
    assert out.extra["untrained"].curves.shape == (11, 9)
    with pytest.raises(ValueError, match="n_way, k_shot"):
        lo.experiment(settings, tests=[(5, 1)])
