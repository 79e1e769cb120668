"""Chapter 7.1: Meta-SGD's learned learning rates, and its experiments end to end."""

import json

import numpy as np
import pytest

from mlbook_utils import registry

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import inner_loop as il  # noqa: E402
from mlbook_utils import maml, meta_sgd  # noqa: E402


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def test_alpha_changes_after_one_outer_step_and_the_weights_do_too():
    """A public Meta-SGD once shipped with alpha never updated: alpha must move with theta."""
    net = il.mlp(hidden=(8,), seed=0)
    alphas = meta_sgd.alpha_variables(net, 0.005, 0.1, seed=1)
    before = [_np(a.value) for a in alphas]
    weights = [_np(v.value) for v in net.variables]
    assert all(((b >= 0.005) & (b <= 0.1)).all() for b in before)
    assert [b.shape for b in before] == [w.shape for w in weights]
    trainer = meta_sgd.trainer_for(net, alphas, dict(inner_steps=1, meta_lr=1e-2),
                                   loss=il.mse)
    trainer.step(maml.sinusoid_batch(np.random.default_rng(0), 4, 5))
    trainer.sync()
    moved = [np.abs(_np(a.value) - b).max() for a, b in zip(alphas, before)]
    assert all(m > 0 for m in moved), moved
    assert any(np.abs(_np(v.value) - w).max() > 0 for v, w in zip(net.variables, weights))


def test_the_inner_step_scales_each_gradient_by_its_own_rate():
    net = il.mlp(hidden=(4,), seed=0)
    task = {k: v[0] for k, v in maml.sinusoid_batch(np.random.default_rng(2), 1, 5).items()}
    params = net.params()
    alphas = [ops.convert_to_tensor(np.full(tuple(p.shape), 0.1 * (i + 1), dtype="float32"))
              for i, p in enumerate(params)]
    _, grads = il.value_and_grad(lambda p: il.mse(task["ys"], net(p, task["xs"])), params)
    fast = il.adapt(lambda p: il.mse(task["ys"], net(p, task["xs"])), params, steps=1,
                    lr=alphas)
    for i, (p, g, f) in enumerate(zip(params, grads, fast)):
        np.testing.assert_allclose(_np(f), _np(p) - 0.1 * (i + 1) * _np(g), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
def test_the_sinusoid_experiment_pairs_the_two_methods_on_the_same_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(meta_sgd.SINUSOID_SETTINGS, "quick", test_tasks=20, meta_steps=4,
                             xla=False)
    out = meta_sgd.sinusoid_experiment(s, progress=False)
    records = [json.loads(x) for x in (tmp_path / f"{meta_sgd.CHAPTER}.jsonl").read_text()
               .splitlines()]
    paired = [r for r in records if r["metric"] == "mse_difference"]
    assert len(paired) == 1 and paired[0]["episodes"] == 20
    a, b = out.results["Meta-SGD", 10][:, 1], out.results["MAML", 10][:, 1]
    assert paired[0]["value"] == pytest.approx(float(np.mean(a - b)), abs=1e-3)
    # Before adaptation the two start from the same weights and see the same tasks.
    assert out.histories["MAML", 10]["steps"] == out.histories["Meta-SGD", 10]["steps"] == 4


def test_meta_sgd_on_omniglot_end_to_end(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(meta_sgd.SETTINGS, "quick", test_episodes=4, meta_steps=3,
                             filters=8)
    out = meta_sgd.omniglot_experiment(s, progress=False)
    (rec,) = out.records
    assert (rec["method"], rec["n_way"], rec["k_shot"], rec["episodes"]) == ("Meta-SGD", 5, 1, 4)
    assert rec["test_inner_steps"] == 1 and rec["train_meta_steps"] == 3
    assert 0 <= rec["alpha_negative"] <= 1 and 0.0 < rec["alpha_median"] < 1.0
