"""Chapter 7.2: Reptile (Nichol, Achiam & Schulman 2018), on the inner-loop library.

Reptile needs no meta-gradient. For each task it takes a few steps of Adam (``beta1 = 0``) from
the current weights ``theta`` and moves ``theta`` towards where they ended,
``theta <- theta + meta_step * mean(theta_task - theta)``, with ``meta_step`` annealed
linearly to zero. :class:`inner_loop.ReptileTrainer` is that loop; this module holds the task
samplers, the evaluation (transductive or not), the chapter's settings for every scale and the
experiment functions that its notebook and the runner call: ``reptile``, ``reptile-sinusoid``
and ``reptile-cost`` (:data:`RUNNER_METHODS`).

**Transduction.** The network normalises with the statistics of the batch it is given
(:class:`inner_loop.TaskBatchNorm`, as in the reference code). Given all of an episode's queries
at once, each query's prediction depends on the other queries (transductive). The reference
code's non-transductive test predicts each query alone, in a batch made of the support set and
that one query; :func:`predictor` does the same with ``transductive=False``.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from . import inner_loop as il
from . import maml, registry

CHAPTER = "07_2_reptile"

# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: Reptile on Omniglot. At ``full`` the README command of openai/supervised-reptile for 5-way
#: (1-shot and 5-shot): 10 training shots per class, 5 inner steps of Adam (beta1 = 0, step
#: 0.001) on minibatches of 10, meta-batch 5, meta step 1 annealed linearly to 0 over 100,000
#: meta-steps; tested with 50 steps on minibatches of 5 support images; the inner Adam's state
#: chained through the tasks (``chain_adam``). At 20-way the paper ran 200,000 meta-steps. At
#: ``cpu`` one 5-way model for a budget just under 10 minutes (the meta step anneals over it),
#: tested at 5-way 1-shot and 5-shot, with two changes that ``scripts/reptile_cpu_settings.py``
#: measured in 150-second runs: an inner step of 0.003 (80.2 -> 84.3 % at 5-way 1-shot) and one
#: Adam state per task, so that the five tasks run side by side on two cores (13.7 -> 18.4
#: meta-steps/s; 84.3 -> 85.6 %).
_COMMON = dict(train_shots=10, inner_batch=10, inner_iters=5, meta_batch_size=5,
               inner_lr=1e-3, chain_adam=True, meta_step=1.0, meta_step_final=0.0,
               eval_batch=5, eval_iters=50, seed=0, test_query=15,
               test_seed=registry.TEST_SEED, transductive=(False, True))
_CPU = dict(_COMMON, inner_lr=3e-3, chain_adam=False)
SETTINGS = {
    "quick": dict(_CPU, runs=[dict(n_way=5, steps=300, budget_s=None, tests=[(5, 1)])],
                  filters=32, test_episodes=50, eval_iters=20, eval_classes=300,
                  time_budget_s=None, meta_steps=None),
    "cpu": dict(_CPU, runs=[dict(n_way=5, steps=100_000, budget_s=580,
                                 tests=[(5, 1), (5, 5)])],
                filters=64, test_episodes=600, eval_classes=None, time_budget_s=None,
                meta_steps=None),
    "full": dict(_COMMON, runs=[dict(n_way=n, steps=steps, budget_s=None, tests=[(n, 1), (n, 5)])
                                for n, steps in ((5, 100_000), (20, 200_000))],
                 filters=64, test_episodes=600, eval_classes=None, time_budget_s=None,
                 meta_steps=None),
}
for _s in SETTINGS.values():
    _s["tests"] = [t for run in _s["runs"] for t in run["tests"]]

#: Reptile on sinusoids, beside MAML (chapter 6.1's settings: a 40-40 MLP, K = 10 points, one
#: SGD step at 0.01 for MAML). Reptile takes ``inner_iters`` Adam steps on the K points of each
#: of ``meta_batch_size`` tasks; both are trained for ``time_budget_s`` seconds on the same task
#: stream and tested on the same 1000 tasks, each adapting with its own inner optimizer.
SINUSOID_SETTINGS = {
    scale: dict(k_shot=10, meta_batch_size=5, inner_iters=8, inner_lr=0.01, meta_step=1.0,
                meta_step_final=0.0, maml_inner_lr=0.01, maml_meta_batch_size=25, meta_lr=1e-3,
                meta_steps=70_000, time_budget_s=budget, seed=0, test_tasks=tasks,
                test_query=100, test_seed=registry.TEST_SEED, eval_steps=10)
    for scale, budget, tasks in (("quick", 6, 200), ("cpu", 30, 1000), ("full", 600, 1000))
}

#: The cost of a meta-step: Reptile, first-order and second-order MAML trained for the same
#: ``budget_s`` seconds each on 5-way 1-shot Omniglot (MAML as chapter 6.1 trains it), tested at
#: 5-way 1-shot (non-transductive for Reptile, and MAML as chapter 6.1 tests it), with the
#: memory one meta-step needs (:func:`inner_loop.step_memory_mib`).
COST_SETTINGS = {
    "quick": dict(budget_s=None, steps=40, test_episodes=20, eval_classes=300, filters=32),
    "cpu": dict(budget_s=40, steps=100_000, test_episodes=200, eval_classes=None, filters=64),
    "full": dict(budget_s=300, steps=1_000_000, test_episodes=600, eval_classes=None,
                 filters=64),
}
for _s in COST_SETTINGS.values():
    _s.update(test_query=15, test_seed=registry.TEST_SEED, seed=0, tests=[(5, 1)])

# --------------------------------------------------------------------------------------------
# Tasks and the loss of a minibatch
# --------------------------------------------------------------------------------------------


def omniglot_sampler(train_set, s: dict, n_way: int, seed: int):
    """``sample(i)`` -> a meta-batch of Reptile tasks: for each task ``n_way`` classes with
    ``train_shots`` images each, cut into ``inner_iters`` minibatches of ``inner_batch`` images
    (a shuffled pass through the task's images, reshuffled when used up, as the reference code's
    ``_mini_batches``). Index arrays ``x`` into the training images and labels ``y``, each
    (tasks, inner_iters, inner_batch)."""
    from .episodes import sample_indices

    rng = np.random.default_rng(seed)
    shots, b = s["train_shots"], s["meta_batch_size"]
    iters, size = s["inner_iters"], s["inner_batch"]
    total = n_way * shots
    labels = np.repeat(np.arange(n_way, dtype=np.int32), shots)
    passes = -(-iters * size // total)

    def sample(i):
        _, index = sample_indices(train_set, n_way, 1, shots - 1, rng, b)
        index = index.reshape(b, total)
        order = np.concatenate([np.argsort(rng.random((b, total)), axis=1)
                                for _ in range(passes)], axis=1)[:, :iters * size]
        x = np.take_along_axis(index, order, axis=1).reshape(b, iters, size)
        y = labels[order].reshape(b, iters, size)
        return {"x": x.astype(np.int32), "y": y}

    return sample


def classification_loss(net: il.MetaNet):
    """The loss of one minibatch of images (indices into the stored training images)."""
    from .metric import gather_images

    def batch_loss(values, batch, data):
        return il.cross_entropy(batch["y"], net(values, gather_images(data, batch["x"])))

    return batch_loss


def regression_loss(net: il.MetaNet):
    def batch_loss(values, batch, data=None):
        return il.mse(batch["y"], net(values, batch["x"]))

    return batch_loss


def sinusoid_sampler(rng, tasks: int, k_shot: int, inner_iters: int):
    """``sample(i)``: ``tasks`` sinusoid tasks, each's K points used whole at every inner step
    (arrays (tasks, inner_iters, K, 1))."""
    from .data import sinusoid_tasks

    def sample(i):
        t = sinusoid_tasks(tasks, k_shot, 1, seed=rng)
        rep = lambda a: np.repeat(a[:, None], inner_iters, axis=1)  # noqa: E731
        return {"x": rep(t.x_support), "y": rep(t.y_support)}

    return sample


# --------------------------------------------------------------------------------------------
# Evaluation: adapt with the inner Adam, then predict (transductive or not)
# --------------------------------------------------------------------------------------------


def adapt_adam(loss_fn, params, state, *, steps: int, lr: float, batches=None):
    """``steps`` steps of Adam (``beta1 = 0``) from ``params`` and the inner optimizer's
    ``state``: ``loss_fn(p, batch)`` with ``batches[i]`` at step i (or ``None``)."""
    fast = list(params)
    for i in range(steps):
        batch = None if batches is None else batches[i]
        _, grads = il.value_and_grad(lambda p, b=batch: loss_fn(p, b), fast)
        fast, state = il.adam_step(fast, [il.stop_gradient(g) for g in grads], state, lr)
    return fast


def predictors(net: il.MetaNet, values, adam_state, *, inner_lr: float, eval_iters: int,
               eval_batch: int, seed: int = 0) -> dict:
    """``{transductive: predict}`` for ``evaluation.evaluate``, for ``transductive`` False and
    True. Each episode is adapted once: ``eval_iters`` Adam steps on minibatches of
    ``eval_batch`` support images, from the trained weights ``values`` and a copy of the inner
    Adam's state. Then the queries are scored all at once (transductive), and each in a batch
    of the support set and itself (not transductive). Both predictions are kept, so testing
    the second way on the same episodes costs nothing more."""
    from keras import ops

    cache, schedules = {}, {}
    n_values = len(values)

    def schedule(n_support):
        if n_support not in schedules:
            rng = np.random.default_rng(seed)
            size = min(eval_batch, n_support)
            passes = -(-eval_iters * size // n_support)
            order = np.concatenate([rng.permutation(n_support) for _ in range(passes)])
            schedules[n_support] = order[:eval_iters * size].reshape(eval_iters, size)
        return schedules[n_support]

    def one(all_values, xs, ys, xq, idx):
        params, state = all_values[:n_values], all_values[n_values:]
        batches = [(ops.take(xs, idx[i], axis=0), ops.take(ys, idx[i], axis=0))
                   for i in range(eval_iters)]
        fast = adapt_adam(lambda p, b: il.cross_entropy(b[1], net(p, b[0])), params, state,
                          steps=eval_iters, lr=inner_lr, batches=batches)

        def alone(x):  # the support set and this one query: the query's logits
            return net(fast, ops.concatenate([xs, x[None]], axis=0))[-1]

        return ops.stack([net(fast, xq), ops.map(alone, xq)])

    run = il.batched(one)
    everything = list(values) + list(adam_state)

    def make(transductive: bool):
        def predict(support, support_labels, query, n_way):
            key = hashlib.sha1(support.tobytes() + query.tobytes()).digest()
            if key not in cache:
                idx = np.broadcast_to(schedule(support.shape[1]),
                                      (len(support), eval_iters, min(eval_batch,
                                                                     support.shape[1])))
                cache[key] = np.asarray(run(everything, support.astype("float32"),
                                            support_labels.astype("int32"),
                                            query.astype("float32"), idx.astype("int32")))
            return cache[key][:, int(not transductive)]

        return predict

    return {False: make(False), True: make(True)}


def sinusoid_curves(net: il.MetaNet, values, adam_state, tasks, *, lr: float, steps: int):
    """Query MSE of every task after 0..``steps`` Adam steps on its K points (tasks, steps+1)."""
    from keras import ops

    n_values = len(values)

    def one(all_values, xs, ys, xq, yq):
        params, state = all_values[:n_values], all_values[n_values:]
        out, fast = [il.mse(yq, net(params, xq))], list(params)
        for _ in range(steps):
            _, grads = il.value_and_grad(lambda p: il.mse(ys, net(p, xs)), fast)
            fast, state = il.adam_step(fast, grads, state, lr)
            out.append(il.mse(yq, net(fast, xq)))
        return ops.stack(out)

    run = il.batched(one, chunk=100)
    return np.asarray(run(list(values) + list(adam_state), tasks.x_support, tasks.y_support,
                          tasks.x_query, tasks.y_query))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def make_trainer(net: il.MetaNet, batch_loss, s: dict, *, data=None, combine=None):
    return il.ReptileTrainer(net.variables, batch_loss, inner_lr=s["inner_lr"],
                             meta_step=s["meta_step"], data=data, combine=combine,
                             chain_adam=s.get("chain_adam", True))


def meta_step_schedule(s: dict):
    """The meta step size's schedule: linear from ``meta_step`` to ``meta_step_final``."""
    return il.linear_decay(s["meta_step_final"] / s["meta_step"])


def train_omniglot(s: dict, run: dict, train_set, *, progress=True, combine=None,
                   on_step=None, sampler=None):
    """Meta-train Reptile on Omniglot's training classes; returns ``(net, trainer, history)``."""
    from .metric import image_store

    net = maml.omniglot_net(dict(s, context=0), run["n_way"])
    trainer = make_trainer(net, classification_loss(net), s,
                           data=image_store(train_set.x).value, combine=combine)
    sample = sampler or omniglot_sampler(train_set, s, run["n_way"], s["seed"])
    hist = il.train(trainer, sample, steps=s["meta_steps"] or run["steps"],
                    time_budget_s=s["time_budget_s"] or run["budget_s"], progress=progress,
                    desc=f"Reptile {run['n_way']}-way", lr_schedule=meta_step_schedule(s),
                    on_step=on_step)
    return net, trainer, hist


def label(transductive: bool) -> str:
    return "Reptile, transductive" if transductive else "Reptile"


def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Meta-train Reptile for each of ``runs`` and test it on the book's test episodes, without
    and with transduction (``transductive``). Results and records are named ``Reptile`` and
    ``Reptile, transductive``; models, trainers and histories are keyed by n_way."""
    from .metric import eval_set

    s = settings
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    for run in s["runs"]:
        wanted = registry.wanted(run, tests)
        if not wanted:
            continue
        net, trainer, hist = train_omniglot(s, run, train_set, progress=progress)
        out.models[run["n_way"]], out.histories[run["n_way"]] = net, hist
        out.extra["trainer", run["n_way"]] = trainer
        if runner:
            print(f"Reptile {run['n_way']}-way: {hist['steps']} meta-steps in "
                  f"{hist['wall_s']:.0f} s ({hist['steps_per_s']:.2f}/s)")
        fields = dict(train_way=run["n_way"], train_shots=s["train_shots"],
                      inner_iters=s["inner_iters"], inner_batch=s["inner_batch"],
                      inner_lr=s["inner_lr"], chain_adam=s["chain_adam"],
                      meta_batch_size=s["meta_batch_size"],
                      meta_step=s["meta_step"], eval_iters=s["eval_iters"],
                      eval_batch=s["eval_batch"], train_meta_steps=hist["steps"],
                      train_wall_s=round(hist["wall_s"], 1),
                      train_steps_per_s=round(hist["steps_per_s"], 2),
                      time_budget_s=s["time_budget_s"] or run["budget_s"], filters=s["filters"])
        predict = predictors(net, trainer.values(), trainer.adam(), inner_lr=s["inner_lr"],
                             eval_iters=s["eval_iters"], eval_batch=s["eval_batch"])
        for n_way, k_shot in wanted:  # the second way reads the first one's predictions
            for transductive in s["transductive"]:
                registry.test_and_record(out, label(transductive), predict[transductive],
                                         test_set, s, chapter=CHAPTER,
                                         dataset_name=dataset_name, tests=[(n_way, k_shot)],
                                         runner=runner, progress=progress,
                                         transductive=transductive, **fields)
    return out


def sinusoid_experiment(settings: dict, *, data=None, tests=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Reptile and MAML on sinusoids (K = ``k_shot``), each trained for ``time_budget_s``
    seconds from the same initial weights, tested on the same tasks: the query MSE after 0..
    ``eval_steps`` steps of each one's own inner optimizer (Reptile: Adam from its training
    state; MAML: SGD at its inner lr). Records metric ``mse`` after 0, 1 and ``eval_steps``."""
    import keras

    from . import config
    from .data import sinusoid_tasks

    s = settings
    k = s["k_shot"]
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])
    config.seed_everything(s["seed"])
    net = il.mlp(seed=s["seed"])
    trainer = make_trainer(net, regression_loss(net), s)
    rng = np.random.default_rng(s["seed"])
    hist = il.train(trainer, sinusoid_sampler(rng, s["meta_batch_size"], k, s["inner_iters"]),
                    steps=s["meta_steps"], time_budget_s=s["time_budget_s"],
                    progress=progress, desc="Reptile (sinusoid)",
                    lr_schedule=meta_step_schedule(s))
    start = time.perf_counter()
    curves = {"Reptile": sinusoid_curves(net, trainer.values(), trainer.adam(), test,
                                         lr=s["inner_lr"], steps=s["eval_steps"])}
    walls = {"Reptile": time.perf_counter() - start}
    hists = {"Reptile": hist}
    config.seed_everything(s["seed"])
    mnet = il.mlp(seed=s["seed"])
    mtrainer = il.MetaTrainer(mnet.variables,
                              maml.maml_task_loss(mnet, inner_lr=s["maml_inner_lr"],
                                                  inner_steps=1, loss=il.mse),
                              keras.optimizers.Adam(s["meta_lr"]), xla=True)
    rng = np.random.default_rng(s["seed"])
    hists["MAML"] = il.train(mtrainer, maml._sampler(rng, s["maml_meta_batch_size"], k),
                             steps=s["meta_steps"], time_budget_s=s["time_budget_s"],
                             progress=progress, desc="MAML (sinusoid)")
    start = time.perf_counter()
    curves["MAML"] = maml.sinusoid_curves(mnet, mnet.params(), test, lr=s["maml_inner_lr"],
                                          steps=s["eval_steps"])
    walls["MAML"] = time.perf_counter() - start
    for name, curve in curves.items():
        h = hists[name]
        out.results[name] = curve
        maml._record_curve(out, f"{name} (sinusoid)", curve, s, k, walls[name],
                           chapter=CHAPTER, train_meta_steps=h["steps"],
                           train_wall_s=round(h["wall_s"], 1),
                           train_steps_per_s=round(h["steps_per_s"], 1), **run)
        if runner:
            print(f"{name} K={k}: " + ", ".join(
                f"MSE after {st} steps {m:.3f} ± {c:.3f}"
                for st, m, c, _ in maml._curve_fields(curve)))
    out.models.update(Reptile=net, MAML=mnet)
    out.histories.update(hists)
    out.extra.update(test_tasks=test, adam=trainer.adam(), reptile_values=trainer.values())
    return out


def cost_experiment(settings: dict, *, data=None, tests=None, runner=None,
                    progress=True) -> registry.Outcome:
    """Reptile, first-order MAML and second-order MAML, each trained for ``budget_s`` seconds
    on 5-way 1-shot Omniglot tasks (Reptile with :data:`SETTINGS`, the MAMLs with chapter 6.1's
    ``cpu`` run), in one process: seconds per meta-step, the memory of one meta-step, and the
    5-way 1-shot test accuracy. ``out.extra["cost"][name]`` holds the figures."""
    from .evaluation import append_record, evaluate, make_record
    from .metric import eval_set

    c = settings
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), c)
    out = registry.Outcome(settings=c)
    rs = dict(registry.settings_at(SETTINGS, "cpu"), filters=c["filters"], seed=c["seed"])
    rrun = dict(rs["runs"][0], budget_s=c["budget_s"], steps=c["steps"])
    ms = dict(registry.settings_at(maml.MAML_SETTINGS, "cpu"), filters=c["filters"],
              seed=c["seed"], meta_lr_decay=False)
    mrun = dict(ms["runs"][0], budget_s=c["budget_s"], steps=c["steps"])
    cost = {}
    for name in ("Reptile", "first-order MAML", "MAML"):
        if name == "Reptile":
            net, trainer, hist = train_omniglot(rs, rrun, train_set, progress=progress)
            predict = predictors(net, trainer.values(), trainer.adam(),
                                 inner_lr=rs["inner_lr"], eval_iters=rs["eval_iters"],
                                 eval_batch=rs["eval_batch"])[False]
            tasks_per_step = rs["meta_batch_size"]
        else:
            s = dict(ms, first_order=name != "MAML")
            net, hist = maml.train_omniglot(s, mrun, train_set, progress=progress)
            predict = maml.predictor_for(s, net, mrun)
            tasks_per_step = mrun["meta_batch_size"]
        res = evaluate(predict, test_set, 5, 1, c["test_query"], c["test_episodes"],
                       seed=c["test_seed"], progress=progress, desc=f"{name} 5w1s")
        memory = step_memory(name, rs, ms, mrun, train_set, c["filters"])
        fig = dict(s_per_step=1.0 / hist["steps_per_s"], steps=hist["steps"],
                   wall_s=hist["wall_s"], tasks_per_step=tasks_per_step,
                   memory_mib=memory["mib"], memory_kind=memory["kind"], accuracy=res.accuracy,
                   ci95=res.ci95)
        cost[name] = fig
        out.results[name, 5, 1] = res
        out.histories[name] = hist
        rec = make_record(f"{name} (cost comparison)", dataset_name, 5, 1, res.accuracy,
                          res.ci95, res.episodes, res.wall_s, train_meta_steps=hist["steps"],
                          train_wall_s=round(hist["wall_s"], 1),
                          train_steps_per_s=round(hist["steps_per_s"], 2),
                          time_budget_s=c["budget_s"], tasks_per_step=tasks_per_step,
                          step_memory_mib=memory["mib"], memory_kind=memory["kind"],
                          filters=c["filters"], **registry.run_fields(runner))
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"{name}: {fig}")
    out.extra["cost"] = cost
    return out


def step_memory(name: str, rs: dict, ms: dict, mrun: dict, train_set, filters: int) -> dict:
    """The memory of one meta-step of ``name``, on a fresh network (the trained one is left
    as it is): :func:`inner_loop.step_memory_mib`."""
    import keras

    from .metric import image_store

    store = image_store(train_set.x).value
    net = maml.omniglot_net(dict(ms, filters=filters, context=0), 5)
    if name == "Reptile":
        trainer = make_trainer(net, classification_loss(net), rs, data=store)
        tasks = omniglot_sampler(train_set, rs, 5, 1)(0)
    else:
        s = dict(ms, first_order=name != "MAML")
        trainer = il.MetaTrainer(net.variables, maml.task_loss_for(s, net, mrun),
                                 keras.optimizers.Adam(ms["meta_lr"]), data=store)
        tasks = maml.omniglot_sampler(train_set, mrun, 1)(0)
    return il.step_memory_mib(trainer, tasks)


RUNNER_METHODS = {
    "reptile": (SETTINGS, experiment,
                "Reptile on Omniglot (transductive and not; the README's settings at full)"),
    "reptile-sinusoid": (SINUSOID_SETTINGS, sinusoid_experiment,
                         "Reptile and MAML on sinusoids, the same budget and test tasks"),
    "reptile-cost": (COST_SETTINGS, cost_experiment,
                     "Reptile, first-order and second-order MAML: time, memory and accuracy "
                     "within one budget"),
}
_ALIASES = {"reptile": {"train_episodes": "meta_steps"},
            "reptile-sinusoid": {"train_episodes": "meta_steps", "test_episodes": "test_tasks"},
            "reptile-cost": {"train_episodes": "steps", "time_budget_s": "budget_s"}}

for _name, (_settings, _fn, _describe) in RUNNER_METHODS.items():
    registry.register(_name, chapter=CHAPTER, settings=_settings, describe=_describe,
                      aliases=_ALIASES[_name], threads="tasks")(_fn)
