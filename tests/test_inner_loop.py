"""The inner-loop library (chapter 6): exact meta-gradients on the active backend.

The finite-difference tests differentiate a task's query loss after one inner step with respect
to the initial weights, along a random direction, and compare with the central difference of
the loss itself. They fail for accidentally first-order code (whose gradient misses the
Hessian term) and for second derivatives that a backend computes inexactly (TensorFlow's own
batch normalisation)."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils import inner_loop as il  # noqa: E402
from mlbook_utils import maml  # noqa: E402
from mlbook_utils.autodiff import value_and_grad  # noqa: E402


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _sin_task(k=5, seed=0):
    rng = np.random.default_rng(seed)
    return {key: v[0] for key, v in maml.sinusoid_batch(rng, 1, k).items()}


def _directional_check(loss_fn, params, seed=0, eps=1e-2):
    """(analytic, finite-difference) derivative of loss_fn at params along a random unit
    direction."""
    rng = np.random.default_rng(seed)
    dirs = [rng.normal(size=tuple(p.shape)).astype("float32") for p in params]
    norm = np.sqrt(sum((d ** 2).sum() for d in dirs))
    dirs = [d / norm for d in dirs]
    _, grads = value_and_grad(loss_fn, params)
    analytic = sum(float((_np(g) * d).sum()) for g, d in zip(grads, dirs))
    plus = float(loss_fn([p + eps * d for p, d in zip(params, dirs)]))
    minus = float(loss_fn([p - eps * d for p, d in zip(params, dirs)]))
    return analytic, (plus - minus) / (2 * eps)


def test_the_meta_gradient_of_an_mlp_matches_finite_differences_and_is_second_order():
    keras.utils.set_random_seed(0)
    net = il.mlp(hidden=(8, 8), seed=3)
    task = _sin_task()
    second = maml.maml_task_loss(net, inner_lr=0.05, inner_steps=1, loss=il.mse)
    first = maml.maml_task_loss(net, inner_lr=0.05, inner_steps=1, first_order=True,
                                loss=il.mse)
    params = net.params()
    analytic, fd = _directional_check(lambda p: second(p, task), params)
    assert analytic == pytest.approx(fd, rel=2e-2, abs=1e-4)
    fo, _ = _directional_check(lambda p: first(p, task), params)
    # First order drops the Hessian term: here it is far from the true derivative.
    assert abs(fo - fd) > 10 * abs(analytic - fd)
    # ... and it is exactly the query gradient at the fast weights.
    _, g = value_and_grad(lambda p: il.mse(task["ys"], net(p, task["xs"])), params)
    fast = [p - 0.05 * x for p, x in zip(params, g)]
    _, g_fast = value_and_grad(lambda p: il.mse(task["yq"], net(p, task["xq"])), fast)
    _, g_fo = value_and_grad(lambda p: first(p, task), params)
    for a, b in zip(g_fo, g_fast):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-4, atol=1e-6)


def test_the_meta_gradient_through_the_conv_net_and_its_batch_norm_is_exact():
    net = il.conv_net(3, filters=4, seed=1)
    rng = np.random.default_rng(0)
    task = {"xs": rng.random((3, 28, 28, 1), dtype=np.float32), "ys": np.arange(3),
            "xq": rng.random((6, 28, 28, 1), dtype=np.float32), "yq": np.arange(6) % 3}
    loss = maml.maml_task_loss(net, inner_lr=0.4, inner_steps=1)
    analytic, fd = _directional_check(lambda p: loss(p, task), net.params(), eps=1e-3)
    assert analytic == pytest.approx(fd, rel=3e-2, abs=3e-4)


def test_fast_weights_are_never_written_into_the_model():
    net = il.mlp(hidden=(8,), seed=0)
    before = [_np(v.value) for v in net.variables]
    loss = maml.maml_task_loss(net, inner_lr=0.5, inner_steps=3, loss=il.mse)
    value_and_grad(lambda p: loss(p, _sin_task()), net.params())
    for b, v in zip(before, net.variables):
        np.testing.assert_array_equal(b, _np(v.value))


def test_anil_adapts_only_the_head_and_caml_only_a_context_that_starts_at_zero():
    net = il.mlp(hidden=(8,), seed=0)
    task = _sin_task()
    body, head = net.split(net.params())
    zs = net.features(body, task["xs"])
    fast_head = il.adapt(lambda h: il.mse(task["ys"], net.logits(h, zs)), head, steps=2,
                         lr=0.1)
    assert len(fast_head) == len(head) and not np.allclose(_np(fast_head[0]), _np(head[0]))
    # CAML: a zero context leaves the network as it is; adapting it changes the outputs.
    cnet = il.mlp(hidden=(8,), context=3, seed=0)
    assert cnet.count("all") == 8 * 4 + 8 + 8 + 1
    out0 = cnet(cnet.params(), task["xq"], context=il.zeros_context(3))
    (c,) = il.adapt(lambda c: il.mse(task["ys"], cnet(cnet.params(), task["xs"], context=c[0])),
                    [il.zeros_context(3)], steps=1, lr=1.0)
    assert _np(c).shape == (3,) and np.abs(_np(c)).sum() > 0
    assert not np.allclose(_np(out0), _np(cnet(cnet.params(), task["xq"], context=c)))
    # The conv net's FiLM starts at the identity: a zero context changes nothing.
    conv = il.conv_net(2, filters=4, context=5, seed=0)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    plain = il.MetaNet(conv.body, conv.head, context=5)
    np.testing.assert_allclose(_np(conv(conv.params(), x)),
                               _np(plain(plain.params(), x, context=il.zeros_context(5))))


def test_the_conv_nets_film_context_adapts_and_its_weights_get_a_meta_gradient():
    # A zero-initialised FiLM kernel is a fixed point of CAML: the context would get no inner
    # gradient and the kernel no meta-gradient, and CAML would stay at chance (it did, once).
    net = il.conv_net(3, filters=4, context=5, seed=0)
    rng = np.random.default_rng(0)
    task = {"xs": rng.random((3, 28, 28, 1), dtype=np.float32), "ys": np.arange(3),
            "xq": rng.random((6, 28, 28, 1), dtype=np.float32), "yq": np.arange(6) % 3}
    params = net.params()
    (c,) = il.adapt(lambda c: il.cross_entropy(task["ys"], net(params, task["xs"], context=c[0])),
                    [il.zeros_context(5)], steps=1, lr=1.0)
    assert np.abs(_np(c)).sum() > 1e-6
    loss = maml.caml_task_loss(net, inner_lr=1.0, inner_steps=1)
    _, grads = value_and_grad(lambda p: loss(p, task), params)
    film = [i for i, v in enumerate(net.variables) if "film" in v.path and "kernel" in v.path]
    assert film and np.abs(_np(grads[film[0]])).sum() > 1e-6
def test_learned_per_parameter_learning_rates_get_a_gradient():
    net = il.mlp(hidden=(8,), seed=0)
    task = _sin_task()
    params = net.params()
    lrs = [ops.full(p.shape, 0.05) for p in params]

    def meta_sgd(values):
        p, a = values[: len(params)], values[len(params):]
        fast = il.adapt(lambda q: il.mse(task["ys"], net(q, task["xs"])), p, steps=1, lr=a)
        return il.mse(task["yq"], net(fast, task["xq"]))

    loss, grads = value_and_grad(meta_sgd, params + lrs)
    assert np.isfinite(float(loss))
    assert all(np.abs(_np(g)).sum() > 0 for g in grads[len(params):])


def test_fgsm_moves_the_inputs_by_epsilon_uphill():
    net = il.conv_net(3, filters=4, seed=2)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, (6, 28, 28, 1)).astype("float32")
    y = np.arange(6) % 3
    loss = lambda x: il.cross_entropy(y, net(net.params(), x))  # noqa: E731
    x_adv = _np(il.fgsm(loss, ops.convert_to_tensor(x), 0.05))
    assert np.abs(x_adv - x).max() == pytest.approx(0.05, abs=1e-6)
    assert float(loss(x_adv.astype("float32"))) > float(loss(x))


def test_the_trainer_learns_sinusoids_and_gives_each_tasks_meta_gradient():
    keras.utils.set_random_seed(0)
    net = il.mlp(hidden=(20, 20), seed=0)
    loss = maml.maml_task_loss(net, inner_lr=0.01, inner_steps=1, loss=il.mse)
    trainer = il.MetaTrainer(net.variables, loss, keras.optimizers.Adam(3e-3))
    rng = np.random.default_rng(0)
    hist = il.train(trainer, lambda i: maml.sinusoid_batch(rng, 10, 10), steps=300,
                    progress=False, log_every=50, snapshots=(0.0,))
    assert hist["loss"][-1] < 0.85 * hist["loss"][0], hist["loss"]
    assert 0.0 in hist["snapshots"] and hist["snapshots"][0.0][0] >= 1
    # The variables hold the trained weights (on JAX, after sync).
    np.testing.assert_allclose(_np(net.variables[0].value), _np(trainer.values()[0]))
    # Per-task meta-gradients average to the meta-batch's gradient.
    tasks = maml.sinusoid_batch(rng, 4, 10)
    values = trainer.values()
    losses, per_task = trainer.task_gradients(values, tasks)
    assert _np(losses).shape == (4,) and _np(per_task[0]).shape == (4, *values[0].shape)
    _, mean_grads = value_and_grad(lambda v: trainer.batch_loss(v, tasks), values)
    for g_tasks, g in zip(per_task, mean_grads):
        np.testing.assert_allclose(_np(g_tasks).mean(axis=0), _np(g), rtol=1e-4, atol=1e-6)


def test_combine_weighs_the_tasks_meta_gradients():
    net = il.mlp(hidden=(8,), seed=0)
    loss = maml.maml_task_loss(net, inner_lr=0.01, inner_steps=1, loss=il.mse)
    rng = np.random.default_rng(3)
    tasks = maml.sinusoid_batch(rng, 3, 5)
    only_first = il.MetaTrainer(net.variables, loss, keras.optimizers.SGD(1.0),
                                combine=lambda flat: ops.one_hot(0, 3))
    values = only_first.values()
    loss_w, grads_w, weights = only_first._loss_and_grads(values, tasks, None)
    np.testing.assert_allclose(_np(weights), [1, 0, 0])
    losses, per_task = only_first.task_gradients(values, tasks)
    assert float(loss_w) == pytest.approx(float(_np(losses)[0]), rel=1e-5)
    np.testing.assert_allclose(_np(grads_w[0]), _np(per_task[0])[0], rtol=1e-5, atol=1e-7)


def test_a_metanet_refuses_running_statistics():
    body = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="TaskBatchNorm"):
        il.MetaNet(body, head)


@pytest.mark.parametrize("vmap", [False, True])
def test_vectorised_and_looped_tasks_give_the_same_meta_gradient(vmap, monkeypatch):
    # On JAX, map_tasks vectorises only with an accelerator; both paths are checked here.
    if vmap and keras.backend.backend() != "jax":
        pytest.skip("vmap is JAX's")
    monkeypatch.setattr(il, "_vmap_ok", lambda: vmap)
    net = il.mlp(hidden=(8,), seed=0)
    tasks = maml.sinusoid_batch(np.random.default_rng(0), 3, 5)
    loss = maml.maml_task_loss(net, inner_lr=0.05, inner_steps=1, loss=il.mse)
    trainer = il.MetaTrainer(net.variables, loss, keras.optimizers.SGD(0.0))
    params = net.params()
    _, grads = value_and_grad(lambda p: trainer.batch_loss(p, tasks), params)
    one_by_one = [value_and_grad(lambda p, i=i: loss(p, {k: v[i] for k, v in tasks.items()}),
                                 params)[1] for i in range(3)]
    mean = [np.mean([_np(g[j]) for g in one_by_one], axis=0) for j in range(len(params))]
    for g, m in zip(grads, mean):
        np.testing.assert_allclose(_np(g), m, rtol=1e-4, atol=1e-6)


def test_a_meta_lr_schedule_sets_the_rate_the_compiled_step_uses():
    sched = il.cosine_decay(floor=0.0)
    assert sched(0.0) == pytest.approx(1.0) and sched(0.5) == pytest.approx(0.5)
    assert sched(1.0) == pytest.approx(0.0, abs=1e-12)
    net = il.mlp(hidden=(8,), seed=0)
    loss = maml.maml_task_loss(net, inner_lr=0.01, inner_steps=1, loss=il.mse)
    trainer = il.MetaTrainer(net.variables, loss, keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    seen = []
    il.train(trainer, lambda i: maml.sinusoid_batch(rng, 2, 5), steps=5, progress=False,
             lr_schedule=lambda f: seen.append(f) or 1.0 - f)
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    # A rate of zero, set after the step was compiled, freezes the weights; a rate of 0.1
    # moves them (the compiled step reads the rate, it was not baked in at trace time).
    before = [_np(v) for v in trainer.values()]
    trainer.set_learning_rate(0.0)
    trainer.step(maml.sinusoid_batch(rng, 2, 5))
    np.testing.assert_array_equal(_np(trainer.values()[0]), before[0])
    trainer.set_learning_rate(0.1)
    trainer.step(maml.sinusoid_batch(rng, 2, 5))
    assert np.abs(_np(trainer.values()[0]) - before[0]).max() > 0
