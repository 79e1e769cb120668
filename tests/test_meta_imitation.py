"""Chapter 9.2: the 2-D world, the behaviour-cloning loss, the inner step on the score vector,
the meta-gradient through it (on every backend), and the experiment's bookkeeping."""

import json

import numpy as np
import pytest

from mlbook_utils import meta_imitation as mi
from mlbook_utils.autodiff import compile_fn

keras = pytest.importorskip("keras")
ops = keras.ops


def _tensors(d):
    return {k: ops.convert_to_tensor(v) for k, v in d.items()}


def test_the_expert_reaches_the_right_target():
    rng = np.random.default_rng(0)
    tb = mi.task_batch(rng, 200, "test")
    sc = tb["support_scene"]
    _, acts, final = mi.rollout(sc, mi.expert_policy(sc))
    assert mi.success(sc, final).all()
    # it ends nearer its own target than any other, and never moves faster than the top speed
    d = np.linalg.norm(sc["pos"] - final[:, None], axis=-1)
    assert (d.argmin(axis=1) == sc["goal"]).all()
    assert np.linalg.norm(acts, axis=-1).max() <= mi.ENV["max_speed"] + 1e-6
    # the goal is the demonstrated colour, and test tasks use only held-out goal colours
    assert (sc["cols"][np.arange(200), sc["goal"]] == tb["goals"]).all()
    assert np.isin(tb["goals"], mi.TEST_COLOURS).all()
    np.testing.assert_allclose(tb["ctx"], mi.PALETTE[tb["goals"]])
    # training tasks never show a held-out colour
    tr = mi.task_batch(rng, 100, "train")
    assert not np.isin(tr["support_scene"]["cols"], mi.TEST_COLOURS).any()


def test_the_bc_loss_is_zero_on_the_experts_own_actions_and_in_units_of_the_top_speed():
    tb = mi.task_batch(np.random.default_rng(1), 5, "train")
    a = ops.convert_to_tensor(tb["support"]["a"])
    np.testing.assert_allclose(ops.convert_to_numpy(mi.action_error(a, a)), 0.0, atol=1e-12)
    off = a + ops.convert_to_tensor(np.array([mi.ENV["max_speed"], 0.0], np.float32))
    np.testing.assert_allclose(ops.convert_to_numpy(mi.action_error(off, a)), 1.0, rtol=1e-5)


def _go_to_attended_target(rng, n_tasks, hidden=32):
    """Random scoring weights with a read-out that drives to the attended target:
    ``a = gain * sum_i w_i (target_i - agent)`` (values +-offset through ReLUs)."""
    w = mi.init_weights(rng, hidden=hidden)
    p1 = np.zeros_like(w[5])
    p1[3, 0], p1[4, 1], p1[3, 2], p1[4, 3] = 1, 1, -1, -1  # features 3, 4: the offset
    u = np.zeros_like(w[7])
    g = mi.ENV["gain"] / mi.ENV["max_speed"]
    u[0, 0], u[1, 1], u[2, 0], u[3, 1] = g, g, -g, -g
    w[5], w[6], w[7], w[8] = p1, np.zeros_like(w[6]), u, np.zeros_like(w[8])
    return mi.tile(w, n_tasks)


def test_one_inner_step_on_a_demo_raises_the_attention_on_the_demonstrated_colour():
    n = 64
    tb = mi.task_batch(np.random.default_rng(2), n, "train")
    tiled = _go_to_attended_target(np.random.default_rng(3), n)
    demo = _tensors(tb["support"])
    alpha = ops.convert_to_tensor(np.full(32, 10.0, np.float32))
    fast = compile_fn(lambda w, a, d: mi.inner_step(w, a, d))(tiled, alpha, demo)
    goal = tb["support_scene"]["goal"]
    attend = compile_fn(mi.attention)

    def on_goal(w):
        att = ops.convert_to_numpy(attend(w, demo["rgb"], demo["pos"], demo["x"]))
        return att[np.arange(n), :, goal].mean(axis=1)  # (tasks,)

    before, after = on_goal(tiled), on_goal(fast)
    assert after.mean() > before.mean() + 0.04, (before.mean(), after.mean())
    assert (after > before).mean() > 0.7
    # only v changed, and the BC loss went down
    for i, (a, b) in enumerate(zip(tiled, fast)):
        if i != mi.V:
            np.testing.assert_array_equal(ops.convert_to_numpy(a), ops.convert_to_numpy(b))
    assert float(ops.sum(mi.bc_loss(fast, demo))) < float(ops.sum(mi.bc_loss(tiled, demo)))


def test_the_meta_gradient_reaches_vs_learning_rates_and_batching_changes_nothing():
    from mlbook_utils import inner_loop as il
    from mlbook_utils.autodiff import value_and_grad

    rng = np.random.default_rng(4)
    w = mi.init_weights(rng, hidden=8)
    values = [ops.convert_to_tensor(x) for x in w] + [ops.ones((8,))]
    tasks = _tensors(mi.trainer_arrays(mi.task_batch(rng, 3, "train")))
    batched = compile_fn(lambda vals, t: value_and_grad(lambda v: mi.maml_batch_loss(v, t),
                                                        vals))
    looped = compile_fn(lambda vals, t: value_and_grad(
        lambda v: ops.mean(il.map_tasks(lambda x: mi.maml_task_loss()(v, x), t)), vals))
    loss, grads = batched(values, tasks)
    g_alpha = ops.convert_to_numpy(grads[-1])
    assert all(np.isfinite(ops.convert_to_numpy(g)).all() for g in grads)
    assert np.abs(g_alpha).max() > 0, "no meta-gradient reaches the inner learning rates"
    # every weight gets one, through the inner step and the query loss
    assert all(np.abs(ops.convert_to_numpy(g)).max() > 0 for g in grads)
    # the batched meta-batch loss is the mean of the tasks' own losses (map_tasks)
    loss2, grads2 = looped(values, tasks)
    np.testing.assert_allclose(float(loss), float(loss2), rtol=1e-5)
    for a, b in zip(grads, grads2):
        np.testing.assert_allclose(ops.convert_to_numpy(a), ops.convert_to_numpy(b),
                                   rtol=1e-4, atol=1e-6)


def test_a_few_meta_steps_lower_the_meta_loss():
    from mlbook_utils import registry

    s = registry.settings_at(mi.SETTINGS, "quick", meta_steps=150, meta_batch_size=16)
    weights, alpha, hist = mi.train_maml(s, 0, progress=False)
    assert hist["steps"] == 150 and np.isfinite(hist["loss"]).all()
    assert hist["loss"][-1] < hist["loss"][0]
    assert np.all(np.isfinite(alpha)) and not np.allclose(alpha, s["inner_lr"])


@pytest.mark.plumbing
def test_the_experiment_records_every_method_per_seed_and_the_paired_difference(tmp_path,
                                                                                monkeypatch):
    from mlbook_utils import registry

    monkeypatch.setenv("MLBOOK_RESULTS", str(tmp_path))
    s = registry.settings_at(mi.SETTINGS, "quick", seeds=(0, 1), meta_steps=3,
                             conditioned_steps=2, meta_batch_size=4, bc_lrs=(0.03,),
                             bc_steps=(2,), val_tasks=4, test_tasks=6, test_scenes=1)
    out = mi.experiment(s, progress=False)
    lines = (tmp_path / f"{mi.CHAPTER}.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert records == out.records
    by = {}
    for r in records:
        by.setdefault(r["method"], []).append(r)
    for key in ("maml", "unadapted", "maml_train", "bc", "conditioned"):
        recs = by[mi.NAMES[key]]
        assert [r["seed"] for r in recs] == [0, 1], key
        assert all(r["metric"] == "success_rate" and 0 <= r["value"] <= 100 for r in recs)
        assert all(r["episodes"] == 6 and r["k_shot"] == 1 for r in recs)
    assert len(by[mi.NAMES["chance"]]) == 1
    (paired,) = by["MAML minus BC from scratch (paired over seeds)"]
    assert paired["metric"] == "success_rate_difference" and paired["episodes"] == 2
    a = [100 * out.results["maml", sd].mean() for sd in (0, 1)]
    b = [100 * out.results["bc", sd].mean() for sd in (0, 1)]
    assert paired["value"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-3)
    assert mi.summary_table(out).shape == (6, 2)
    # the runner finds it
    assert registry.get("meta-imitation").experiment is mi.experiment
