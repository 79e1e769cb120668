"""Chapter 8.1: gradient agreement (Eshratifar, Eigen & Pedram 2018), with MAML and Reptile.

Each task of a meta-batch gets a weight in the meta-update by how far its own meta-gradient
``g_i`` agrees with the batch's mean ``g``: ``w_i = g_i . g / sum_j |g_j . g|``
(:func:`inner_loop.agreement_weights`). MAML passes it as ``combine`` to
:class:`inner_loop.MetaTrainer` (which then differentiates each task on its own), Reptile to
:class:`inner_loop.ReptileTrainer` (which weighs the tasks' moves).

The paper gives no public code and no table we could check, so the chapter runs a controlled
experiment: the same network, the same tasks, the same number of meta-steps and the same seeds,
with and without the weights, and reports the paired difference over seeds with its 95 %
confidence interval (:func:`evaluation.paired_difference`). A second experiment makes a
fraction of each meta-batch's tasks pure noise (their labels shuffled) and watches the weights
those tasks get.
"""

from __future__ import annotations

import numpy as np

from . import inner_loop as il
from . import maml, registry, reptile

CHAPTER = "08_1_gradient_agreement"

ARMS = ("plain", "agreement")

#: Omniglot 5-way 1-shot, MAML (second order) as chapter 6.1 trains it at ``cpu`` but with a
#: meta-batch of 8 tasks (the weights compare tasks within a batch) for ``meta_steps`` steps,
#: each seed in both arms (``seeds``), tested after 10 steps on ``test_episodes`` episodes.
#: ``noisy_tasks`` of the 8 tasks of every meta-batch have their labels shuffled in the noisy
#: experiment (``noisy_seeds``).
OMNIGLOT_SETTINGS = {
    scale: dict(maml.MAML_SETTINGS["cpu"], runs=[dict(n_way=5, k_shot=1, n_query=5,
                                                      inner_lr=0.4, inner_steps=1,
                                                      meta_batch_size=8, budget_s=None,
                                                      steps=steps, tests=[(5, 1)])],
                tests=[(5, 1)], meta_lr_decay=True, compare_s=None, attack=False,
                seeds=seeds, noisy_seeds=noisy_seeds, noisy_tasks=2,
                test_episodes=episodes, eval_classes=classes, filters=filters)
    for scale, steps, seeds, noisy_seeds, episodes, classes, filters in (
        ("quick", 40, (0, 1), (0,), 30, 300, 16),
        ("cpu", 600, (0, 1, 2), (0,), 300, None, 64),
        ("full", 15_000, (0, 1, 2, 3, 4), (0, 1, 2), 600, None, 64),
    )
}

#: Sinusoids at K = 10: MAML (chapter 6.1's settings: 25 tasks per meta-step, one step at 0.01)
#: and Reptile (chapter 7.2's: 5 tasks, 8 Adam steps), ``meta_steps`` steps each, every seed in
#: both arms, tested on the same 1000 tasks (MSE after one step of each method's own inner
#: optimizer). ``xla`` compiles MAML's meta-step with XLA (the unit tests, which train a few
#: steps, turn it off).
SINUSOID_SETTINGS = {
    scale: dict(k_shot=10, seeds=seeds, maml_steps=maml_steps, reptile_steps=reptile_steps,
                xla=True,
                maml=dict(meta_batch_size=25, inner_lr=0.01, meta_lr=1e-3),
                reptile=dict(reptile.SINUSOID_SETTINGS["cpu"]),
                time_budget_s=None, test_tasks=tasks, test_query=100,
                test_seed=registry.TEST_SEED)
    for scale, seeds, maml_steps, reptile_steps, tasks in (
        ("quick", (0, 1), 300, 200, 200),
        ("cpu", (0, 1, 2), 5000, 3000, 1000),
        ("full", (0, 1, 2, 3, 4), 70_000, 30_000, 1000),
    )
}


def combine_for(arm: str):
    return il.agreement_weights if arm == "agreement" else None


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------


def noisy_sampler(train_set, run: dict, seed: int, noisy: int):
    """Chapter 6.1's task sampler, with the labels of the last ``noisy`` tasks of every
    meta-batch shuffled (support and query separately): tasks with nothing to learn."""
    sample = maml.omniglot_sampler(train_set, run, seed)
    rng = np.random.default_rng(seed + 7)

    def noisy_sample(i):
        tasks = sample(i)
        if noisy:
            for key in ("ys", "yq"):
                labels = tasks[key].copy()
                for t in range(len(labels) - noisy, len(labels)):
                    labels[t] = rng.permutation(labels[t])
                tasks[key] = labels
        return tasks

    return noisy_sample


def train_maml(s: dict, seed: int, arm: str, train_set, *, noisy: int = 0, progress=True,
               cache: dict | None = None):
    """MAML on Omniglot for one seed and arm; returns ``(net, history, weights)`` where
    ``weights`` (steps, tasks) are the tasks' weights at every step (agreement arm only).
    ``cache`` keeps one network and trainer per arm: a later seed starts from its own initial
    weights in the same variables, so the meta-step is not compiled again."""
    from .metric import image_store

    run = s["runs"][0]
    s = dict(s, seed=seed)
    fresh = maml.omniglot_net(s, 5)
    cache = {} if cache is None else cache
    if arm not in cache:
        trainer = il.MetaTrainer(fresh.variables, maml.task_loss_for(s, fresh, run),
                                 _adam(s["meta_lr"]), data=image_store(train_set.x).value,
                                 combine=combine_for(arm))
        cache[arm] = (fresh, trainer)
    net, trainer = cache[arm]
    trainer.reset(fresh.params())
    weights = []

    def keep(i, tr):
        if tr.last_weights is not None:
            weights.append(np.asarray(tr.last_weights))

    hist = il.train(trainer, noisy_sampler(train_set, run, seed, noisy),
                    steps=s["meta_steps"] or run["steps"],
                    time_budget_s=s["time_budget_s"], progress=progress,
                    desc=f"MAML {arm} seed {seed}",
                    lr_schedule=il.cosine_decay() if s["meta_lr_decay"] else None,
                    on_step=keep)
    return net, hist, np.array(weights)


def omniglot_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Both arms for every seed on 5-way 1-shot Omniglot, tested on the same episodes; the
    paired difference (agreement minus plain) over seeds, recorded with metric
    ``accuracy_difference``. Then the noisy experiment for ``noisy_seeds``: results keyed
    ``("noisy", arm, seed)`` and the weights of every step in ``out.extra["weights", seed]``.
    """
    from .evaluation import append_record, evaluate, make_record, paired_difference
    from .metric import eval_set

    s = settings
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    run = s["runs"][0]
    extra = registry.run_fields(runner)
    cache = {}
    for experiment, seeds, noisy in (("clean", s["seeds"], 0),
                                     ("noisy", s["noisy_seeds"], s["noisy_tasks"])):
        for seed in seeds:
            for arm in ARMS:
                net, hist, weights = train_maml(s, seed, arm, train_set, noisy=noisy,
                                                progress=progress, cache=cache)
                res = evaluate(maml.predictor_for(s, net, run), test_set, 5, 1, s["test_query"],
                               s["test_episodes"], seed=s["test_seed"], progress=progress,
                               desc=f"{experiment} {arm} seed {seed}")
                out.results[experiment, arm, seed] = res
                out.histories[experiment, arm, seed] = hist
                if arm == "agreement":
                    out.extra["weights", experiment, seed] = weights
                name = f"MAML{' + gradient agreement' if arm == 'agreement' else ''}"
                setting = ("5-way 1-shot" if not noisy else
                           f"5-way 1-shot, {noisy} of {run['meta_batch_size']} training tasks "
                           "with shuffled labels")
                rec = make_record(name, dataset_name, 5, 1, res.accuracy, res.ci95,
                                  res.episodes, res.wall_s, setting=setting, seed=seed,
                                  noisy_tasks=noisy, meta_batch_size=run["meta_batch_size"],
                                  train_meta_steps=hist["steps"],
                                  train_wall_s=round(hist["wall_s"], 1),
                                  train_steps_per_s=round(hist["steps_per_s"], 2), **extra)
                append_record(CHAPTER, rec)
                out.records.append(rec)
                if runner:
                    print(f"{experiment} {arm} seed {seed}: {res}")
        if len(seeds) < 2:
            continue
        mean, ci, n = paired_difference(
            [out.results[experiment, "agreement", sd].accuracy for sd in seeds],
            [out.results[experiment, "plain", sd].accuracy for sd in seeds])
        out.extra["paired", experiment] = (mean, ci, n)
        rec = make_record("MAML + gradient agreement minus MAML (paired over seeds)",
                          dataset_name, 5, 1, mean, ci, n, 0.0, metric="accuracy_difference",
                          setting=f"5-way 1-shot{', noisy tasks' if noisy else ''}",
                          pairs="seeds", seeds=list(seeds),
                          train_meta_steps=s["meta_steps"] or run["steps"],
                          **extra)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"{experiment}: agreement minus plain {mean:+.2f} ± {ci:.2f} points")
    return out


def _adam(lr):
    import keras

    return keras.optimizers.Adam(lr)


# --------------------------------------------------------------------------------------------
# Sinusoids
# --------------------------------------------------------------------------------------------


def sinusoid_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """MAML and Reptile on sinusoids, both arms for every seed, the same test tasks: the MSE
    after one step (results keyed ``(method, arm, seed)``, arrays over the test tasks), and the
    paired difference over seeds (metric ``mse_difference``)."""
    from . import config
    from .data import sinusoid_tasks
    from .evaluation import append_record, make_record, mean_ci95, paired_difference

    s = settings
    k = s["k_shot"]
    out = registry.Outcome(settings=s)
    extra = registry.run_fields(runner)
    test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])
    cache = {}
    for method in ("MAML", "Reptile"):
        for seed in s["seeds"]:
            for arm in ARMS:
                config.seed_everything(seed)
                fresh = il.mlp(seed=seed)
                rng = np.random.default_rng(seed)
                if (method, arm) not in cache:
                    if method == "MAML":
                        m = s["maml"]
                        trainer = il.MetaTrainer(
                            fresh.variables, maml.maml_task_loss(fresh, inner_lr=m["inner_lr"],
                                                                 inner_steps=1, loss=il.mse),
                            _adam(m["meta_lr"]), xla=s["xla"], combine=combine_for(arm))
                    else:
                        trainer = reptile.make_trainer(fresh, reptile.regression_loss(fresh),
                                                       s["reptile"], combine=combine_for(arm))
                    cache[method, arm] = (fresh, trainer)
                net, trainer = cache[method, arm]
                trainer.reset(fresh.params())
                if method == "MAML":
                    m = s["maml"]
                    hist = il.train(trainer, maml._sampler(rng, m["meta_batch_size"], k),
                                    steps=s["maml_steps"], time_budget_s=s["time_budget_s"],
                                    progress=progress, desc=f"MAML {arm} seed {seed}")
                    curve = maml.sinusoid_curves(net, trainer.values(), test,
                                                 lr=m["inner_lr"], steps=1)
                else:
                    r = s["reptile"]
                    hist = il.train(trainer, reptile.sinusoid_sampler(
                        rng, r["meta_batch_size"], k, r["inner_iters"]),
                        steps=s["reptile_steps"], time_budget_s=s["time_budget_s"],
                        progress=progress, desc=f"Reptile {arm} seed {seed}",
                        lr_schedule=reptile.meta_step_schedule(r))
                    curve = reptile.sinusoid_curves(net, trainer.values(), trainer.adam(), test,
                                                    lr=r["inner_lr"], steps=1)
                mse = curve[:, 1]
                out.results[method, arm, seed] = mse
                mean, ci = mean_ci95(mse[np.isfinite(mse)])
                name = f"{method}{' + gradient agreement' if arm == 'agreement' else ''}"
                rec = make_record(f"{name} (sinusoid)", "sinusoid", None, k, mean, ci,
                                  len(mse), 0.0, metric="mse",
                                  setting=maml.sinusoid_setting(k, 1), seed=seed,
                                  train_meta_steps=hist["steps"],
                                  train_wall_s=round(hist["wall_s"], 1), **extra)
                append_record(CHAPTER, rec)
                out.records.append(rec)
                if runner:
                    print(f"{name} seed {seed}: MSE after one step {mean:.3f} ± {ci:.3f}")
        means = {arm: [float(np.nanmean(out.results[method, arm, sd])) for sd in s["seeds"]]
                 for arm in ARMS}
        mean, ci, n = paired_difference(means["agreement"], means["plain"])
        out.extra["paired", method] = (mean, ci, n)
        rec = make_record(f"{method} + gradient agreement minus {method} (sinusoid, paired over "
                          "seeds)", "sinusoid", None, k, mean, ci, n, 0.0,
                          metric="mse_difference", setting=maml.sinusoid_setting(k, 1),
                          pairs="seeds", seeds=list(s["seeds"]), **extra)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"{method}: agreement minus plain {mean:+.3f} ± {ci:.3f} (MSE)")
    return out


RUNNER_METHODS = {
    "gradient-agreement": (OMNIGLOT_SETTINGS, omniglot_experiment,
                           "MAML with and without gradient agreement on Omniglot 5w1s, paired "
                           "over seeds, and with noisy tasks"),
    "gradient-agreement-sinusoid": (SINUSOID_SETTINGS, sinusoid_experiment,
                                    "MAML and Reptile with and without gradient agreement on "
                                    "sinusoids, paired over seeds"),
}
_ALIASES = {"gradient-agreement": {"train_episodes": "meta_steps"},
            "gradient-agreement-sinusoid": {"train_episodes": "maml_steps",
                                            "test_episodes": "test_tasks"}}

for _name, (_settings, _fn, _describe) in RUNNER_METHODS.items():
    registry.register(_name, chapter=CHAPTER, settings=_settings, describe=_describe,
                      aliases=_ALIASES[_name], threads="tasks")(_fn)
