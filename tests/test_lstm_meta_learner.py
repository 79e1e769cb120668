"""The LSTM meta-learner: the shared preprocessing, the cell update, shapes, gradients, a tiny
problem, the time budget of its training, chapter 1.4's settings and its experiment. (Chapter
1.4's checkers are tested in test_exercises.py.)"""

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import lstm_meta_learner as lml  # noqa: E402
from mlbook_utils import nbtools, registry  # noqa: E402
from mlbook_utils.autodiff import value_and_grad  # noqa: E402
from mlbook_utils.exercises.ch01_3 import reference_preprocess  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _np(x):
    return ops.convert_to_numpy(x)


def test_preprocess_matches_reference_and_is_finite():
    # The one preprocessing (test_learned_optimizer.py checks that both chapters call it).
    x = np.array([-3.0, -1e-3, 0.0, 1e-6, 2e-5, 0.5, 50.0], dtype=np.float32)
    got = _np(lml.preprocess_gradient(x))
    assert got.shape == (7, 2)
    np.testing.assert_allclose(got, reference_preprocess(x), rtol=1e-5, atol=1e-6)
    # The gradient of the preprocessing is finite at zero (no log(0) leak through where).
    xt = ops.convert_to_tensor(x)
    _, (g,) = value_and_grad(lambda ps: ops.sum(lml.preprocess_gradient(ps[0])), [xt])
    assert np.isfinite(_np(g)).all()


def test_spec_and_forward_shapes():
    spec = lml.LearnerSpec(n_way=5, filters=8, blocks=4)
    theta = lml.init_theta(spec, seed=0)
    assert theta.shape == (spec.n_params,)
    assert [int(np.prod(s)) for s in spec.shapes] == spec.sizes
    x = np.random.default_rng(0).uniform(size=(7, 28, 28, 1)).astype("float32")
    assert _np(lml.learner_forward(spec, ops.convert_to_tensor(theta), x)).shape == (7, 5)


def _one_episode(n_way=3, k_shot=2, n_query=4, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(n_way, 28, 28, 1)).astype("float32")
    s_lab = np.repeat(np.arange(n_way), k_shot).astype("int32")
    q_lab = np.repeat(np.arange(n_way), n_query).astype("int32")
    noise = lambda n: 0.1 * rng.normal(size=(n, 28, 28, 1)).astype("float32")  # noqa: E731
    return protos[s_lab] + noise(len(s_lab)), s_lab, protos[q_lab] + noise(len(q_lab)), q_lab


def test_meta_step_is_sgd_when_gates_are_saturated():
    # With f = 1 and i = alpha (huge biases, zero weights) the cell update is SGD.
    spec = lml.LearnerSpec(n_way=3, filters=4, blocks=2)
    meta = lml.init_meta_params(spec, hidden=6, seed=0)
    meta.update(w_i=np.zeros_like(meta["w_i"]), w_f=np.zeros_like(meta["w_f"]),
                b_i=np.array([np.log(0.1 / 0.9)], np.float32), b_f=np.array([30.0], np.float32))
    meta = {k: ops.convert_to_tensor(v) for k, v in meta.items()}
    s, sl, _, _ = _one_episode()
    theta1 = lml.inner_loop(spec, meta, s, sl, inner_steps=1)
    _, (g,) = value_and_grad(
        lambda ps: lml.cross_entropy(lml.learner_forward(spec, ps[0], s), sl), [meta["c0"]])
    np.testing.assert_allclose(_np(theta1), _np(meta["c0"]) - 0.1 * _np(g), rtol=1e-4,
                               atol=1e-6)


def test_meta_gradient_reaches_every_meta_parameter():
    spec = lml.LearnerSpec(n_way=3, filters=4, blocks=2)
    meta = {k: ops.convert_to_tensor(v)
            for k, v in lml.init_meta_params(spec, hidden=6, seed=1).items()}
    # Make the gates move away from saturation, so all paths carry gradient.
    meta["b_i"] = ops.convert_to_tensor(np.array([-1.0], np.float32))
    meta["b_f"] = ops.convert_to_tensor(np.array([1.0], np.float32))
    s, sl, q, ql = _one_episode()
    keys = list(lml.META_KEYS)

    def objective(params):
        return lml.episode_loss(spec, dict(zip(keys, params)), s, sl, q, ql, 2)[0]

    loss, grads = value_and_grad(objective, [meta[k] for k in keys])
    assert np.isfinite(float(loss))
    for k, g in zip(keys, grads):
        g = _np(g)
        assert np.isfinite(g).all(), k
        assert np.abs(g).sum() > 0, f"no meta-gradient reaches {k}"


def test_meta_training_reduces_the_query_loss_on_a_tiny_problem():
    keras.utils.set_random_seed(0)
    model = lml.LSTMMetaLearner(n_way=3, filters=4, blocks=2, hidden=6, inner_steps=2,
                                meta_lr=1e-2, clip_norm=1.0, seed=0)
    rng = np.random.default_rng(0)
    protos = rng.uniform(size=(6, 28, 28, 1)).astype("float32")

    class Ep:
        pass

    def sample(batch):
        ep = Ep()
        sup, qry = [], []
        for _ in range(batch):
            cls = rng.choice(6, size=3, replace=False)
            sup.append(protos[np.repeat(cls, 1)] + 0.2 * rng.normal(size=(3, 28, 28, 1)))
            qry.append(protos[np.repeat(cls, 3)] + 0.2 * rng.normal(size=(9, 28, 28, 1)))
        ep.support, ep.query = np.float32(sup), np.float32(qry)
        ep.support_labels = np.tile(np.arange(3), (batch, 1))
        ep.query_labels = np.tile(np.repeat(np.arange(3), 3), (batch, 1))
        return ep

    model.fit(sample, 160, meta_batch_size=2, progress=False)
    h = np.array(model.history["loss"])
    assert h[-5:].mean() < h[:5].mean() - 0.2, (h[:5].mean(), h[-5:].mean())
    ep = sample(4)
    scores = model.predict(ep.support, ep.support_labels, ep.query, 3)
    assert scores.shape == (4, 9, 3)
    i, f, loss = model.gate_trace(ep.support[0], ep.support_labels[0])
    assert i.shape == f.shape == (2, model.spec.n_params) and loss.shape == (2,)
    assert ((i > 0) & (i < 1) & (f > 0) & (f < 1)).all()


def test_finetuner_sgd_step_and_predictor():
    spec = lml.LearnerSpec(n_way=3, filters=4, blocks=2)
    theta0 = lml.init_theta(spec, seed=0)
    s, sl, q, ql = _one_episode()
    ft = lml.FineTuner(spec, theta0, optimizer="sgd", max_steps=3)
    logits = ft.logits(s[None], sl[None], q[None], 0.0)
    assert logits.shape == (1, 4, len(ql), 3)
    np.testing.assert_allclose(logits[0, 0], logits[0, 3], rtol=1e-5)  # lr 0: no change
    acc = ft.predictor(0.5, 3)(s[None], sl[None], q[None], 3)
    assert acc.shape == (1, len(ql), 3)
    with pytest.raises(ValueError):
        lml.FineTuner(spec, theta0, optimizer="rmsprop")


def test_fit_stops_at_its_time_budget():
    rng = np.random.default_rng(0)

    def sample(batch):
        time.sleep(0.2)
        return SimpleNamespace(
            support=rng.uniform(size=(batch, 3, 28, 28, 1)).astype("float32"),
            support_labels=np.tile(np.arange(3), (batch, 1)),
            query=rng.uniform(size=(batch, 3, 28, 28, 1)).astype("float32"),
            query_labels=np.tile(np.arange(3), (batch, 1)))

    model = lml.LSTMMetaLearner(n_way=3, filters=4, blocks=2, hidden=4, inner_steps=1)
    model.fit(sample, 50, progress=False, time_budget_s=0.0)
    assert model.train_episodes == 0 and model.history["loss"] == []
    model.fit(sample, 50, progress=False, time_budget_s=0.3)  # the first step alone is longer
    assert 1 <= model.train_episodes < 50
    assert len(model.history["loss"]) == model.train_episodes
    before = model.train_episodes
    model.fit(sample, 2, progress=False)  # no budget: every episode
    assert model.train_episodes == before + 2


# --------------------------------------------------------------------------------------------
# Chapter 1.4's settings and experiment
# --------------------------------------------------------------------------------------------


def test_settings_and_registration():
    method = registry.get("lstm-meta-learner")
    assert method.experiment is lml.experiment and method.settings is lml.SETTINGS
    assert method.chapter == lml.CHAPTER == "01_4_lstm_meta_learner"
    keys = set(lml.SETTINGS["quick"])
    for scale in registry.SCALES:
        s = lml.SETTINGS[scale]
        assert set(s) == keys, scale
        for common in registry.COMMON_KEYS:
            assert method.key(common) in s, (scale, common)
        assert {w for w, _ in s["tests"]} == {5}, "the chapter is 5-way"
        for _, k_shot in s["tests"]:
            assert lml.planned_episodes(s, k_shot) > 0, (scale, k_shot)
    assert [k for _, k in lml.SETTINGS["quick"]["tests"]] == [1]  # quick: 1-shot only
    s = registry.get("lstm-meta-learner").settings_for("quick", train_episodes=7)
    assert lml.planned_episodes(s, 1) == lml.planned_episodes(s, 5) == 7  # --train-episodes
    with pytest.raises(ValueError, match="20-shot"):
        lml.planned_episodes(lml.SETTINGS["cpu"], 20)


def test_notebook_reads_its_numbers_from_the_settings():
    code = nbtools.code_source(ROOT / "chapters" / f"{lml.CHAPTER}.ipynb")
    assert "by_scale" not in code, "the chapter restates a number of the settings"
    assert "S = lml.SETTINGS[config.scale()]" in code and "lml.experiment(S, " in code
    assert "registry.settings_table(lml.SETTINGS)" in code
    assert "inspect.getsource(lml.preprocess_gradient)" in code


def test_experiment_at_quick_scale(monkeypatch, tmp_path):
    from mlbook_utils import data, evaluation

    monkeypatch.setenv("MLBOOK_SCALE", "quick")
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    # 8 classes of 20 noisy copies of a random image: the data never matter here, and no
    # Omniglot split has to be decoded (the notebook passes its loaded splits the same way).
    rng = np.random.default_rng(0)
    protos = rng.uniform(size=(8, 1, 28, 28, 1))
    x = (protos + 0.1 * rng.normal(size=(8, 20, 28, 28, 1))).reshape(-1, 28, 28, 1)
    small = data.FewShotDataset(x.astype("float32"), np.repeat(np.arange(8), 20),
                                [str(c) for c in range(8)], "synthetic")
    settings = registry.get("lstm-meta-learner").settings_for(
        "quick", train_episodes=2, test_episodes=3, inner_steps=1, filters=4, blocks=2,
        hidden=4)
    out = lml.experiment(settings, data={"train": small, "test": small}, runner="test",
                         progress=False)
    assert [(r["method"], r["dataset"], r["n_way"], r["k_shot"]) for r in out.records] == [
        ("LSTM meta-learner", "omniglot-vinyals-test", 5, 1)]
    assert evaluation.read_records(lml.CHAPTER, folder=tmp_path) == out.records
    r = out.records[0]
    assert r["metric"] == "accuracy" and 0 <= r["value"] <= 100 and r["episodes"] == 3
    assert r["train_episodes"] == r["train_episodes_planned"] == 2 and r["inner_steps"] == 1
    assert (r["train_way"], r["train_shot"], r["train_query"]) == (5, 1, 15)
    assert r["scale"] == "quick" and r["runner"] == "test" and r["peak_host_mib"] > 0
    model = out.models[5, 1]
    assert isinstance(model, lml.LSTMMetaLearner) and model.spec.filters == 4
    assert out.histories[5, 1]["episodes"] == 2 and len(out.histories[5, 1]["loss"]) == 2
    assert out.results["LSTM meta-learner", 5, 1].accuracy == pytest.approx(r["value"],
                                                                            abs=1e-3)
