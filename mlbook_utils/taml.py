"""Chapter 9.1: task-agnostic meta learning (TAML; Jamal & Qi 2019), on top of MAML.

MAML learns an initialisation that adapts well on average over the training tasks. TAML adds a
term to MAML's meta-objective that keeps the initial model from favouring some tasks over
others, in one of two ways (the paper's abstract):

- **entropy-maximising** (classification only): the *unadapted* model's predictions on a task
  should be as uncertain as possible (high entropy over the labels), and the adapted model's
  predictions certain (low entropy). Per meta-batch:
  ``mean_i L_i(adapted) + lam * mean_i (-H_i(initial) + H_i(adapted))``;
- **inequality-minimising** (any loss, so regression too): the *initial* losses of the tasks of
  a meta-batch should be equal. Per meta-batch:
  ``mean_i L_i(adapted) + lam * Theil(L_1(initial), ..., L_T(initial))``, with the Theil index
  ``T = mean_i (l_i / mu) log(l_i / mu)`` (0 when every task has the same loss).

Both are a few lines on top of chapter 6.1's inner loop: one task's function returns its adapted
query loss, its initial query loss and the two entropies (:func:`task_stats`), and
:class:`TamlTrainer` combines them over the meta-batch (:func:`objective`).

The paper's tables could not be checked against its own text, so the chapter runs a controlled
experiment, as chapter 8.1 did: the same network, tasks, meta-steps and seeds with each
objective, and the paired difference over seeds with its 95 % confidence interval.
"""

from __future__ import annotations

import numpy as np

from . import inner_loop as il
from . import maml, registry

CHAPTER = "09_1_task_agnostic"

ARMS = ("maml", "entropy", "theil")
NAMES = {"maml": "MAML", "entropy": "TAML (entropy)", "theil": "TAML (Theil)"}

#: Omniglot 5-way 1-shot: second-order MAML as chapter 8.1 trains it (meta-batch 8, one inner
#: step at 0.4, 5 queries per class, Adam 1e-3 decayed along a cosine), ``meta_steps`` steps
#: per model, each seed in every arm, tested after 10 steps on ``test_episodes`` episodes.
#: ``lam``: each TAML arm's weight, fixed before any test run (see the chapter: the entropy
#: term is at most log 5 = 1.6 nats, and the Theil index of five-way losses is small, so its
#: weight is larger). ``diag_tasks``: test-class tasks on which the diagnostics are measured.
OMNIGLOT_SETTINGS = {
    scale: dict(maml.MAML_SETTINGS["cpu"], runs=[dict(n_way=5, k_shot=1, n_query=5,
                                                      inner_lr=0.4, inner_steps=1,
                                                      meta_batch_size=8, budget_s=None,
                                                      steps=steps, tests=[(5, 1)])],
                tests=[(5, 1)], meta_lr_decay=True, compare_s=None, attack=False,
                arms=ARMS, lam={"entropy": 0.5, "theil": 5.0}, seeds=seeds,
                test_episodes=episodes, eval_classes=classes, filters=filters,
                diag_tasks=diag)
    for scale, steps, seeds, episodes, classes, filters, diag in (
        ("quick", 40, (0, 1), 30, 300, 16, 16),
        ("cpu", 600, (0, 1, 2), 300, None, 64, 200),
        ("full", 15_000, (0, 1, 2, 3, 4), 600, None, 64, 1000),
    )
}

#: Sinusoids at K = 10 (chapter 6.1's MAML: 25 tasks per meta-step, one inner step at 0.01,
#: Adam 1e-3), ``meta_steps`` steps per model. The Theil arm's weight is chosen from
#: ``lambdas`` on ``val_tasks`` validation tasks (seed 0, a sampling seed of their own), then
#: both arms train with every seed and are tested on the same ``test_tasks`` tasks (MSE after
#: one step). ``xla`` compiles each meta-step with XLA (a few times faster per step; the unit
#: tests, which train a few steps, turn it off).
SINUSOID_SETTINGS = {
    scale: dict(k_shot=10, seeds=seeds, meta_steps=steps, meta_batch_size=25, inner_lr=0.01,
                meta_lr=1e-3, lambdas=lambdas, val_tasks=val, val_seed=7, xla=True,
                time_budget_s=None, test_tasks=tasks, test_query=100,
                test_seed=registry.TEST_SEED)
    for scale, seeds, steps, lambdas, val, tasks in (
        ("quick", (0, 1), 300, (0.1,), 100, 200),
        ("cpu", (0, 1, 2), 5000, (0.01, 0.1, 1.0), 500, 1000),
        ("full", (0, 1, 2, 3, 4), 70_000, (0.01, 0.03, 0.1, 0.3, 1.0), 1000, 1000),
    )
}


# --------------------------------------------------------------------------------------------
# The two objectives
# --------------------------------------------------------------------------------------------


def entropy(logits):
    """The mean over the rows of ``logits`` (examples, classes) of the entropy (nats) of their
    softmax."""
    from keras import ops

    logp = ops.log_softmax(logits, axis=-1)
    return ops.mean(-ops.sum(ops.exp(logp) * logp, axis=-1))


def theil(losses, eps: float = 1e-8):
    """The Theil index of ``losses`` (positive numbers, one per task):
    ``mean_i (l_i / mu) log(l_i / mu)`` with ``mu`` their mean. It is 0 when all are equal and at
    most ``log(T)`` for T tasks (one task carries all the loss)."""
    from keras import ops

    r = losses / (ops.mean(losses) + eps)
    return ops.mean(r * ops.log(r + eps))


def objective(arm: str, lam: float, post, pre, h_pre, h_post):
    """The meta-objective of one meta-batch from each task's adapted query loss ``post``,
    initial query loss ``pre`` and the entropies of the initial and adapted predictions (each
    an array over the tasks)."""
    from keras import ops

    base = ops.mean(post)
    if arm == "maml":
        return base
    if arm == "entropy":
        return base + lam * ops.mean(h_post - h_pre)
    if arm == "theil":
        return base + lam * theil(pre)
    raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")


def task_stats(net: il.MetaNet, *, inner_lr, inner_steps: int, loss=il.cross_entropy,
               classification: bool = True):
    """``stats(params, task, data)`` -> ``[post, pre, h_pre, h_post]`` for one task: the query
    loss after adapting every weight on the support set (MAML's task loss), the query loss of
    the initial weights, and the entropies of the initial and adapted predictions on the
    queries (0 for regression)."""
    from keras import ops

    def stats(params, task, data=None):
        xs, ys, xq, yq = maml.task_arrays(task, data)
        out0 = net(params, xq)
        fast = il.adapt(lambda p: loss(ys, net(p, xs)), params, steps=inner_steps, lr=inner_lr)
        out1 = net(fast, xq)
        zero = ops.zeros(())
        return [loss(yq, out1), loss(yq, out0),
                entropy(out0) if classification else zero,
                entropy(out1) if classification else zero]

    return stats


class TamlTrainer(il.MetaTrainer):
    """:class:`inner_loop.MetaTrainer` whose meta-batch loss is :func:`objective` of the tasks'
    :func:`task_stats` (with ``arm="maml"`` it is MAML's mean query loss). ``step`` returns that
    objective, regulariser included."""

    def __init__(self, variables, stats, optimizer, *, arm: str, lam: float, data=None,
                 xla: bool = False):
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; expected one of {ARMS}")
        self.arm, self.lam = arm, float(lam)
        super().__init__(variables, stats, optimizer, data=data, xla=xla)

    def batch_loss(self, values, tasks, data=None):
        stats = il.map_tasks(lambda t, d: self.task_loss(values, t, d), tasks, data)
        return objective(self.arm, self.lam, *stats)


def _adam(lr):
    import keras

    return keras.optimizers.Adam(lr)


def lam_for(s: dict, arm: str) -> float:
    return 0.0 if arm == "maml" else float(s["lam"][arm])


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------


def train_omniglot(s: dict, seed: int, arm: str, train_set, *, progress=True,
                   cache: dict | None = None):
    """One arm and seed on Omniglot 5-way 1-shot; returns ``(net, history)``. ``cache`` keeps
    one network and trainer per arm, so a later seed reuses the compiled meta-step."""
    from .metric import image_store

    run = s["runs"][0]
    s = dict(s, seed=seed)
    fresh = maml.omniglot_net(s, run["n_way"])
    cache = {} if cache is None else cache
    if arm not in cache:
        stats = task_stats(fresh, inner_lr=run["inner_lr"], inner_steps=run["inner_steps"])
        cache[arm] = (fresh, TamlTrainer(fresh.variables, stats, _adam(s["meta_lr"]), arm=arm,
                                         lam=lam_for(s, arm),
                                         data=image_store(train_set.x).value))
    net, trainer = cache[arm]
    trainer.reset(fresh.params())
    hist = il.train(trainer, maml.omniglot_sampler(train_set, run, seed),
                    steps=s["meta_steps"] or run["steps"], time_budget_s=s["time_budget_s"],
                    progress=progress, desc=f"{NAMES[arm]} seed {seed}",
                    lr_schedule=il.cosine_decay() if s["meta_lr_decay"] else None)
    trainer.sync()
    return net, hist


def diagnostics(net: il.MetaNet, values, test_set, s: dict, *, seed: int = 1) -> dict:
    """What each objective acts on, measured on ``s["diag_tasks"]`` 5-way 1-shot tasks of the
    test classes (5 queries per class, sampling seed ``seed``): the mean initial and adapted
    query losses, the mean entropies of the initial and adapted predictions (nats), and the
    Theil index of the initial losses over those tasks."""
    from keras import ops

    run = s["runs"][0]
    stats = task_stats(net, inner_lr=run["inner_lr"], inner_steps=run["inner_steps"])
    tasks = maml.omniglot_sampler(test_set, dict(run, meta_batch_size=s["diag_tasks"]),
                                  seed)(0)
    x = np.asarray(test_set.x, dtype=np.float32)

    def one(params, xs, ys, xq, yq):
        return ops.stack(stats(params, {"xs": xs, "ys": ys, "xq": xq, "yq": yq}))

    out = il.batched(one, chunk=50)(list(values), x[tasks["s"]], tasks["ys"], x[tasks["q"]],
                                    tasks["yq"])
    post, pre, h_pre, h_post = (np.asarray(out[:, i], dtype=np.float64) for i in range(4))
    r = pre / pre.mean()
    return {"initial_loss": float(pre.mean()), "adapted_loss": float(post.mean()),
            "initial_entropy": float(h_pre.mean()), "adapted_entropy": float(h_post.mean()),
            "theil_initial": float(np.mean(r * np.log(r))), "tasks": len(pre)}


def omniglot_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Every arm for every seed on 5-way 1-shot Omniglot, tested on the same episodes
    (``results[arm, seed]``, metric ``accuracy``), the diagnostics of each model
    (``extra["diag", arm, seed]``), and each TAML arm's paired difference against MAML over
    the seeds (``extra["paired", arm]``, metric ``accuracy_difference``)."""
    from .evaluation import append_record, evaluate, make_record, paired_difference
    from .metric import eval_set

    s = settings
    train_set = registry.omniglot(data, "train")
    test_full = registry.omniglot(data, "test")
    test_set, dataset_name = eval_set(test_full, s)
    out = registry.Outcome(settings=s)
    run = s["runs"][0]
    extra = registry.run_fields(runner)
    cache = {}
    for seed in s["seeds"]:
        for arm in s["arms"]:
            net, hist = train_omniglot(s, seed, arm, train_set, progress=progress, cache=cache)
            values = [v.value for v in net.variables]
            res = evaluate(maml.predictor_for(dict(s, method="maml"), net, run), test_set, 5, 1,
                           s["test_query"], s["test_episodes"], seed=s["test_seed"],
                           progress=progress, desc=f"{NAMES[arm]} seed {seed}")
            diag = diagnostics(net, values, test_set, s)
            out.results[arm, seed], out.histories[arm, seed] = res, hist
            out.extra["diag", arm, seed] = diag
            rec = make_record(NAMES[arm], dataset_name, 5, 1, res.accuracy, res.ci95,
                              res.episodes, res.wall_s, setting="5-way 1-shot", seed=seed,
                              lam=lam_for(s, arm), meta_batch_size=run["meta_batch_size"],
                              train_meta_steps=hist["steps"],
                              train_wall_s=round(hist["wall_s"], 1),
                              train_steps_per_s=round(hist["steps_per_s"], 2),
                              **{k: round(v, 4) for k, v in diag.items() if k != "tasks"},
                              **extra)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"{NAMES[arm]} seed {seed}: {res}")
    if len(s["seeds"]) >= 2:
        for arm in s["arms"]:
            if arm == "maml":
                continue
            mean, ci, n = paired_difference(
                [out.results[arm, sd].accuracy for sd in s["seeds"]],
                [out.results["maml", sd].accuracy for sd in s["seeds"]])
            out.extra["paired", arm] = (mean, ci, n)
            rec = make_record(f"{NAMES[arm]} minus MAML (paired over seeds)", dataset_name, 5, 1,
                              mean, ci, n, 0.0, metric="accuracy_difference",
                              setting="5-way 1-shot", pairs="seeds", seeds=list(s["seeds"]),
                              lam=lam_for(s, arm), train_meta_steps=s["meta_steps"] or
                              run["steps"], **extra)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"{NAMES[arm]} minus MAML: {mean:+.2f} ± {ci:.2f} points")
    return out


# --------------------------------------------------------------------------------------------
# Sinusoids: the inequality-minimising objective on a regression problem
# --------------------------------------------------------------------------------------------


def train_sinusoid(s: dict, arm: str, lam: float, seed: int, *, progress=True,
                   cache: dict | None = None):
    """One arm, weight and seed on sinusoids; returns ``(net, values, history)``. ``cache``
    keeps one network and trainer per ``(arm, lam)`` (the weight is read when the step is
    compiled), so a later seed reuses the compiled step."""
    from . import config

    cache = {} if cache is None else cache
    config.seed_everything(seed)
    fresh = il.mlp(seed=seed)
    if (arm, lam) not in cache:
        stats = task_stats(fresh, inner_lr=s["inner_lr"], inner_steps=1, loss=il.mse,
                           classification=False)
        cache[arm, lam] = (fresh, TamlTrainer(fresh.variables, stats, _adam(s["meta_lr"]),
                                              arm=arm, lam=lam, xla=s["xla"]))
    net, trainer = cache[arm, lam]
    trainer.reset(fresh.params())
    rng = np.random.default_rng(seed)
    hist = il.train(trainer, maml._sampler(rng, s["meta_batch_size"], s["k_shot"]),
                    steps=s["meta_steps"], time_budget_s=s["time_budget_s"],
                    progress=progress, desc=f"{NAMES[arm]} lam={lam:g} seed {seed}")
    from keras import ops

    return net, [ops.convert_to_numpy(v) for v in trainer.values()], hist


def sinusoid_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Choose the Theil arm's weight on validation tasks (seed 0), then train MAML and TAML
    (Theil) with every seed and test both on the same tasks: the query MSE after one step
    (``results[arm, seed]``, an array over the test tasks, metric ``mse``), the Theil index of
    the initial losses over the test tasks (``extra["theil", arm, seed]``) and the paired
    difference (``extra["paired", "theil"]``, metric ``mse_difference``)."""
    from .data import sinusoid_tasks
    from .evaluation import append_record, make_record, mean_ci95, paired_difference

    s = settings
    k = s["k_shot"]
    out = registry.Outcome(settings=s)
    extra = registry.run_fields(runner)
    val = sinusoid_tasks(s["val_tasks"], k, s["test_query"], seed=s["val_seed"])
    test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])
    cache = {}
    seed0 = s["seeds"][0]
    sweep = {}
    trained = {}
    for lam in (0.0, *s["lambdas"]):
        arm = "maml" if lam == 0 else "theil"
        net, values, hist = train_sinusoid(s, arm, lam, seed0, progress=progress, cache=cache)
        curve = maml.sinusoid_curves(net, values, val, lr=s["inner_lr"], steps=1)
        sweep[lam] = float(np.nanmean(curve[:, 1]))
        trained[arm, lam, seed0] = (net, values, hist)
        if runner:
            print(f"lambda={lam:g}: validation MSE after one step {sweep[lam]:.3f}")
    best = min(s["lambdas"], key=lambda lam: sweep[lam])
    out.extra["val"], out.extra["best_lambda"] = sweep, best
    for seed in s["seeds"]:
        for arm, lam in (("maml", 0.0), ("theil", best)):
            if (arm, lam, seed) not in trained:
                trained[arm, lam, seed] = train_sinusoid(s, arm, lam, seed, progress=progress,
                                                         cache=cache)
            net, values, hist = trained[arm, lam, seed]
            curve = maml.sinusoid_curves(net, values, test, lr=s["inner_lr"], steps=1)
            mse = curve[:, 1]
            r = curve[:, 0] / curve[:, 0].mean()
            out.extra["theil", arm, seed] = float(np.mean(r * np.log(r)))
            out.results[arm, seed] = mse
            out.histories[arm, seed] = hist
            out.extra["curve", arm, seed] = curve
            mean, ci = mean_ci95(mse[np.isfinite(mse)])
            rec = make_record(f"{NAMES[arm]} (sinusoid)", "sinusoid", None, k, mean, ci,
                              len(mse), 0.0, metric="mse",
                              setting=maml.sinusoid_setting(k, 1), seed=seed, lam=lam,
                              val_mse=round(sweep[lam], 4) if seed == seed0 else None,
                              theil_initial=round(out.extra["theil", arm, seed], 4),
                              train_meta_steps=hist["steps"],
                              train_wall_s=round(hist["wall_s"], 1), **extra)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            if runner:
                print(f"{NAMES[arm]} seed {seed}: MSE after one step {mean:.3f} ± {ci:.3f}")
    means = {arm: [float(np.nanmean(out.results[arm, sd])) for sd in s["seeds"]]
             for arm in ("maml", "theil")}
    if len(s["seeds"]) >= 2:
        mean, ci, n = paired_difference(means["theil"], means["maml"])
        out.extra["paired", "theil"] = (mean, ci, n)
        rec = make_record("TAML (Theil) minus MAML (sinusoid, paired over seeds)", "sinusoid",
                          None, k, mean, ci, n, 0.0, metric="mse_difference",
                          setting=maml.sinusoid_setting(k, 1), pairs="seeds",
                          seeds=list(s["seeds"]), lam=best, **extra)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"TAML (Theil) minus MAML: {mean:+.3f} ± {ci:.3f} (MSE)")
    return out


RUNNER_METHODS = {
    "taml": (OMNIGLOT_SETTINGS, omniglot_experiment,
             "MAML and TAML (entropy, Theil) on Omniglot 5w1s, paired over seeds"),
    "taml-sinusoid": (SINUSOID_SETTINGS, sinusoid_experiment,
                      "MAML and TAML (Theil) on sinusoids, weight chosen on validation tasks, "
                      "paired over seeds"),
}
_ALIASES = {"taml": {"train_episodes": "meta_steps"},
            "taml-sinusoid": {"train_episodes": "meta_steps", "test_episodes": "test_tasks"}}

for _name, (_settings, _fn, _describe) in RUNNER_METHODS.items():
    registry.register(_name, chapter=CHAPTER, settings=_settings, describe=_describe,
                      aliases=_ALIASES[_name], threads="tasks")(_fn)
