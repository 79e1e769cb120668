"""Chapter 7.2: Reptile's inner Adam, its update, transduction, and its experiments."""

import json

import numpy as np
import pytest

from mlbook_utils import registry

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import inner_loop as il  # noqa: E402
from mlbook_utils import reptile  # noqa: E402


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def test_adam_step_is_keras_adam_without_momentum():
    start = np.array([1.0, -2.0, 0.5], dtype="float32")
    var = keras.Variable(start)
    opt = keras.optimizers.Adam(0.1, beta_1=0.0, beta_2=0.999, epsilon=1e-8)
    params, state = [ops.convert_to_tensor(start)], il.adam_state([start])
    for i in range(4):
        g = [ops.convert_to_tensor(np.array([0.5 * (i + 1), -1.0, 3.0 - i], dtype="float32"))]
        opt.apply(g, [var])
        params, state = il.adam_step(params, g, state, 0.1)
    np.testing.assert_allclose(_np(params[0]), _np(var.value), rtol=1e-5, atol=1e-6)
    assert float(_np(state[0])) == 4


def _one_task(rng, steps=3):
    return reptile.sinusoid_sampler(rng, 1, 5, steps)(0)


def test_reptile_with_meta_step_one_lands_on_the_adapted_weights():
    """One task and meta step 1: the new weights are that task's adapted weights, which an
    independent loop of ``adam_step`` reproduces; with meta step 0.5 it goes half way."""
    for meta_step in (1.0, 0.5):
        net = il.mlp(hidden=(8,), seed=0)
        # A copy: on TensorFlow a tensor read from a variable can follow later assignments.
        start = [ops.convert_to_tensor(np.array(_np(p), dtype="float32")) for p in net.params()]
        trainer = reptile.make_trainer(net, reptile.regression_loss(net),
                                       dict(inner_lr=0.01, meta_step=meta_step))
        tasks = _one_task(np.random.default_rng(0))
        trainer.step(tasks)
        fast, state = list(start), il.adam_state(start)
        for j in range(3):
            batch = {k: v[0, j] for k, v in tasks.items()}
            _, g = il.value_and_grad(lambda p, b=batch, n=net: il.mse(b["y"], n(p, b["x"])),
                                     fast)
            fast, state = il.adam_step(fast, g, state, 0.01)
        for new, s0, f in zip(trainer.values(), start, fast):
            np.testing.assert_allclose(_np(new), _np(s0) + meta_step * (_np(f) - _np(s0)),
                                       rtol=1e-4, atol=1e-6)
        # The inner Adam's state is carried to the next step (three inner steps so far).
        assert float(_np(trainer.adam()[0])) == 3


def test_independent_tasks_each_start_from_the_same_adam_state():
    """With ``chain_adam=False`` two tasks adapt independently from the same state: the update
    is the mean of two separate runs of ``adam_step``, and the state carried on is the mean of
    their final states (the reference code's chained state would differ)."""
    net = il.mlp(hidden=(8,), seed=1)
    start = [ops.convert_to_tensor(np.array(_np(p), dtype="float32")) for p in net.params()]
    trainer = reptile.make_trainer(net, reptile.regression_loss(net),
                                   dict(inner_lr=0.01, meta_step=1.0, chain_adam=False))
    tasks = reptile.sinusoid_sampler(np.random.default_rng(3), 2, 5, 3)(0)
    trainer.step(tasks)
    ends, states = [], []
    for i in range(2):
        fast, state = list(start), il.adam_state(start)
        for j in range(3):
            batch = {k: v[i, j] for k, v in tasks.items()}
            _, g = il.value_and_grad(lambda p, b=batch, n=net: il.mse(b["y"], n(p, b["x"])),
                                     fast)
            fast, state = il.adam_step(fast, g, state, 0.01)
        ends.append(fast)
        states.append(state)
    for k, (new, s0) in enumerate(zip(trainer.values(), start)):
        want = _np(s0) + 0.5 * ((_np(ends[0][k]) - _np(s0)) + (_np(ends[1][k]) - _np(s0)))
        np.testing.assert_allclose(_np(new), want, rtol=1e-4, atol=1e-6)
    carried = trainer.adam()
    assert float(_np(carried[0])) == 3
    for k in range(1, len(carried)):
        np.testing.assert_allclose(_np(carried[k]),
                                   0.5 * (_np(states[0][k]) + _np(states[1][k])),
                                   rtol=1e-4, atol=1e-8)


def test_the_meta_step_anneals_linearly_to_its_final_value():
    net = il.mlp(hidden=(4,), seed=0)
    s = dict(inner_lr=0.01, meta_step=1.0, meta_step_final=0.0)
    trainer = reptile.make_trainer(net, reptile.regression_loss(net), s)
    seen = []
    il.train(trainer, lambda i: _one_task(np.random.default_rng(i), 1), steps=5,
             lr_schedule=reptile.meta_step_schedule(s), progress=False,
             on_step=lambda i, tr: seen.append(tr.meta_step))
    np.testing.assert_allclose(seen, [1.0, 0.8, 0.6, 0.4, 0.2])


def test_a_non_transductive_prediction_ignores_the_other_queries(omniglot_test):
    """Transductive: a query's logits change when the other queries change (batch norm uses
    their statistics). Not transductive: they do not."""
    net = il.conv_net(3, filters=4, seed=0)
    predict = reptile.predictors(net, net.params(), il.adam_state(net.params()),
                                 inner_lr=1e-3, eval_iters=2, eval_batch=3)
    x = omniglot_test.x
    support, labels = x[None, :3].astype("float32"), np.arange(3)[None]
    q1 = x[None, 3:7].astype("float32")
    q2 = q1.copy()
    q2[0, 1:] = x[10:13]
    for transductive, same in ((False, True), (True, False)):
        a = predict[transductive](support, labels, q1, 3)[0, 0]
        b = predict[transductive](support, labels, q2, 3)[0, 0]
        assert np.allclose(a, b, atol=1e-5) == same, transductive


def test_the_omniglot_sampler_cuts_each_tasks_images_into_minibatches(omniglot_test):
    s = dict(train_shots=4, inner_batch=5, inner_iters=4, meta_batch_size=2)
    tasks = reptile.omniglot_sampler(omniglot_test, s, 5, seed=0)(0)
    assert tasks["x"].shape == tasks["y"].shape == (2, 4, 5)
    for t in range(2):  # one pass: every image of the task exactly once, labels by class
        assert sorted(tasks["x"][t].ravel()) == sorted(set(tasks["x"][t].ravel()))
        classes = omniglot_test.y[tasks["x"][t].ravel()]
        for lab in range(5):
            assert len(set(classes[tasks["y"][t].ravel() == lab])) == 1
            assert (tasks["y"][t] == lab).sum() == 4
        assert len(set(classes)) == 5


@pytest.mark.plumbing  # the experiment's bookkeeping; its steps are tested on every backend
def test_reptile_on_omniglot_end_to_end(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(reptile.SETTINGS, "quick", test_episodes=4, meta_steps=3,
                             filters=8, eval_iters=2)
    out = reptile.experiment(s, progress=False)
    records = [json.loads(x) for x in (tmp_path / f"{reptile.CHAPTER}.jsonl").read_text()
               .splitlines()]
    assert records == out.records
    assert {(r["method"], r["transductive"]) for r in records} == {
        ("Reptile", False), ("Reptile, transductive", True)}
    assert all(r["train_meta_steps"] == 3 and r["episodes"] == 4 for r in records)
