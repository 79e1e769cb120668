"""Chapter 7.1: Meta-SGD (Li, Zhou, Chen & Li 2017), on the inner-loop library.

Meta-SGD is MAML with a learned inner learning rate for every weight: ``alpha`` has the shape
of ``theta``, the inner step is ``theta - alpha * grad`` (elementwise), and the outer optimizer
updates ``alpha`` together with ``theta``. With the library that is one change to MAML's task
loss: :func:`inner_loop.adapt` takes a list of tensors as ``lr``, and the ``alpha`` variables
are passed to :class:`inner_loop.MetaTrainer` beside the network's.

This module holds the chapter's settings for every scale and its experiment functions, which
the notebook and the runner (``meta-sgd``, ``meta-sgd-sinusoid``) call.
"""

from __future__ import annotations

import time

import numpy as np

from . import inner_loop as il
from . import maml, registry

CHAPTER = "07_1_meta_sgd"

# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


def alpha_variables(net: il.MetaNet, low: float, high: float, seed: int = 0) -> list:
    """One trainable learning rate per weight of ``net``, drawn uniformly from
    [``low``, ``high``]: Keras variables of the weights' shapes, in the order of
    ``net.variables``."""
    import keras

    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.uniform(low, high, size=v.shape).astype("float32"),
                           name=f"alpha_{v.name}") for v in net.variables]


def meta_sgd_task_loss(net: il.MetaNet, *, inner_steps: int = 1, loss=il.cross_entropy):
    """Meta-SGD's task loss: ``values`` holds the network's weights and then their learning
    rates; adapt every weight with its own rate on the support set, then the query loss. The
    meta-gradient reaches the rates through the inner step."""
    n = len(net.variables)

    def task_loss(values, task, data=None):
        params, alphas = values[:n], values[n:]
        xs, ys, xq, yq = maml.task_arrays(task, data)
        fast = il.adapt(lambda p: loss(ys, net(p, xs)), params, steps=inner_steps, lr=alphas)
        return loss(yq, net(fast, xq))

    return task_loss


def trainer_for(net: il.MetaNet, alphas: list, s: dict, *, loss=il.cross_entropy, data=None,
                xla: bool = False) -> il.MetaTrainer:
    """The outer loop over the weights and their learning rates together (one Adam)."""
    import keras

    return il.MetaTrainer(net.variables + alphas,
                          meta_sgd_task_loss(net, inner_steps=s["inner_steps"], loss=loss),
                          keras.optimizers.Adam(s["meta_lr"]), data=data, xla=xla)


def split_values(net: il.MetaNet, values) -> tuple[list, list]:
    """``(weights, learning rates)`` from a trainer's values."""
    n = len(net.variables)
    return list(values[:n]), list(values[n:])


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: Sinusoids (Finn et al.'s tasks and 40-40 network): Meta-SGD and MAML trained for the same
#: ``meta_steps`` meta-steps of 25 tasks, on the same task stream from the same initial weights,
#: at each K of ``k_shots``, one inner step (MAML at 0.01; Meta-SGD's rates start uniformly in
#: ``alpha_range``), Adam at 1e-3, tested on the same 1000 tasks.
SINUSOID_SETTINGS = {
    scale: dict(k_shots=k_shots, meta_steps=steps, meta_batch_size=25, inner_lr=0.01,
                inner_steps=1, alpha_range=(0.005, 0.1), meta_lr=1e-3, seed=0, xla=xla,
                time_budget_s=None, test_tasks=tasks, test_query=100,
                test_seed=registry.TEST_SEED, eval_steps=10)
    for scale, k_shots, steps, tasks, xla in (
        ("quick", (10,), 600, 200, False),
        ("cpu", (5, 10, 20), 20_000, 1000, True),
        ("full", (5, 10, 20), 70_000, 1000, True),
    )
}

#: Omniglot: the network and training of chapter 6.1's MAML (:data:`maml.MAML_SETTINGS`), with
#: one inner step whose rates are learned (starting uniformly in ``alpha_range``, around MAML's
#: 0.4), tested after one step (``test_inner_steps``), as Meta-SGD is trained. ``cpu``: one
#: 5-way model trained on 1-shot tasks for 600 s, tested at 5-way 1-shot and 5-shot; ``full``:
#: the four settings, each its own model, 60,000 meta-steps.
SETTINGS = {}
for _scale, _base in maml.MAML_SETTINGS.items():
    SETTINGS[_scale] = dict(
        {k: v for k, v in _base.items() if k not in ("first_order", "context", "inner_lr_caml",
                                                     "epsilon", "attack", "compare_s")},
        method="meta-sgd", alpha_range=(0.2, 0.6), test_inner_steps=1,
        runs=[dict(r, inner_steps=1, inner_lr=None) for r in _base["runs"]])
    SETTINGS[_scale]["tests"] = [t for r in SETTINGS[_scale]["runs"] for t in r["tests"]]


# --------------------------------------------------------------------------------------------
# Sinusoid
# --------------------------------------------------------------------------------------------


def sinusoid_experiment(settings: dict, *, data=None, tests=None, runner=None,
                        progress=True) -> registry.Outcome:
    """For every K: Meta-SGD and MAML from the same initial weights, trained on the same tasks
    for the same number of meta-steps, tested on the same tasks: the query MSE after 0 to
    ``eval_steps`` steps (metric ``mse``, after 0, 1 and ``eval_steps`` steps), and the paired
    difference after one step (``out.extra["paired", k]``: mean, 95 % CI, tasks)."""
    from . import config
    from .data import sinusoid_tasks
    from .evaluation import append_record, make_record, paired_difference

    s = settings
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    for k in s["k_shots"]:
        test = sinusoid_tasks(s["test_tasks"], k, s["test_query"], seed=s["test_seed"])
        curves = {}
        for name in ("MAML", "Meta-SGD"):
            config.seed_everything(s["seed"] + k)
            net = il.mlp(seed=s["seed"] + k)
            if name == "MAML":
                alphas = None
                trainer = il.MetaTrainer(
                    net.variables, maml.maml_task_loss(net, inner_lr=s["inner_lr"],
                                                       inner_steps=s["inner_steps"],
                                                       loss=il.mse),
                    _adam(s["meta_lr"]), xla=s["xla"])
            else:
                alphas = alpha_variables(net, *s["alpha_range"], seed=s["seed"] + k)
                trainer = trainer_for(net, alphas, s, loss=il.mse, xla=s["xla"])
            rng = np.random.default_rng(s["seed"] + k)  # the same tasks for both
            hist = il.train(trainer, maml._sampler(rng, s["meta_batch_size"], k),
                            steps=s["meta_steps"], time_budget_s=s["time_budget_s"],
                            progress=progress, desc=f"{name} K={k}")
            lr = s["inner_lr"] if alphas is None else [a.value for a in alphas]
            start = time.perf_counter()
            curve = maml.sinusoid_curves(net, net.params(), test, lr=lr, steps=s["eval_steps"])
            curves[name] = curve
            out.results[name, k] = curve
            out.models[name, k] = (net, alphas)
            out.histories[name, k] = hist
            maml._record_curve(out, f"{name} (sinusoid)", curve, s, k,
                               time.perf_counter() - start, chapter=CHAPTER,
                               train_meta_steps=hist["steps"],
                               train_wall_s=round(hist["wall_s"], 1),
                               train_steps_per_s=round(hist["steps_per_s"], 1), **run)
            if runner:
                print(f"{name} K={k}: " + ", ".join(
                    f"MSE after {st} steps {m:.3f} ± {c:.3f}"
                    for st, m, c, _ in maml._curve_fields(curve)))
        a, b = curves["Meta-SGD"][:, 1], curves["MAML"][:, 1]
        finite = np.isfinite(a) & np.isfinite(b)
        mean, ci, n = paired_difference(a[finite], b[finite])
        out.extra["paired", k] = (mean, ci, n)
        rec = make_record("Meta-SGD minus MAML (sinusoid, paired over test tasks)", "sinusoid",
                          None, k, mean, ci, n, 0.0, metric="mse_difference", pairs="test tasks",
                          setting=maml.sinusoid_setting(k, 1), inner_steps_at_test=1,
                          train_meta_steps=s["meta_steps"], **run)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"K={k}: Meta-SGD minus MAML after one step {mean:+.3f} ± {ci:.3f}")
    return out


def _adam(lr):
    import keras

    return keras.optimizers.Adam(lr)


# --------------------------------------------------------------------------------------------
# Omniglot
# --------------------------------------------------------------------------------------------


def train_omniglot(s: dict, run: dict, train_set, *, progress=True):
    """Meta-train Meta-SGD on Omniglot: ``(net, alphas, history)``."""
    from .metric import image_store

    net = maml.omniglot_net(dict(s, context=0), run["n_way"])
    alphas = alpha_variables(net, *s["alpha_range"], seed=s["seed"])
    trainer = trainer_for(net, alphas, dict(s, inner_steps=run["inner_steps"]),
                          data=image_store(train_set.x).value)
    hist = il.train(trainer, maml.omniglot_sampler(train_set, run, s["seed"]),
                    steps=s["meta_steps"] or run["steps"],
                    time_budget_s=s["time_budget_s"] or run["budget_s"], progress=progress,
                    desc=f"Meta-SGD {run['n_way']}w{run['k_shot']}s",
                    lr_schedule=il.cosine_decay() if s.get("meta_lr_decay") else None)
    return net, alphas, hist


def omniglot_experiment(settings: dict, *, tests=None, data=None, runner=None,
                        progress=True) -> registry.Outcome:
    """Meta-train Meta-SGD for every entry of ``runs`` and test it on the book's test episodes
    after ``test_inner_steps`` steps with its learned rates. Results, models ``(net, alphas)``
    and histories are keyed by ``("Meta-SGD", n_way, k_shot)`` of the training run."""
    from .metric import eval_set

    s = settings
    train_set = registry.omniglot(data, "train")
    test_set, dataset_name = eval_set(registry.omniglot(data, "test"), s)
    out = registry.Outcome(settings=s)
    for run in s["runs"]:
        wanted = registry.wanted(run, tests)
        if not wanted:
            continue
        net, alphas, hist = train_omniglot(s, run, train_set, progress=progress)
        key = ("Meta-SGD", run["n_way"], run["k_shot"])
        out.models[key], out.histories[key] = (net, alphas), hist
        if runner:
            print(f"Meta-SGD: {hist['steps']} meta-steps in {hist['wall_s']:.0f} s "
                  f"({hist['steps_per_s']:.2f}/s)")
        rates = [a.value for a in alphas]
        flat = np.concatenate([np.ravel(np.asarray(r)) for r in rates])
        fields = dict(train_way=run["n_way"], train_shot=run["k_shot"],
                      train_query=run["n_query"], inner_steps=run["inner_steps"],
                      meta_batch_size=run["meta_batch_size"],
                      test_inner_steps=s["test_inner_steps"], train_meta_steps=hist["steps"],
                      train_wall_s=round(hist["wall_s"], 1),
                      train_steps_per_s=round(hist["steps_per_s"], 2),
                      time_budget_s=s["time_budget_s"] or run["budget_s"], filters=s["filters"],
                      alpha_range=list(s["alpha_range"]),
                      alpha_median=round(float(np.median(flat)), 4),
                      alpha_negative=round(float(np.mean(flat < 0)), 4))
        predict = maml.adapted_predictor(net, "maml", inner_lr=rates,
                                         steps=s["test_inner_steps"])
        registry.test_and_record(out, "Meta-SGD", predict, test_set, s, chapter=CHAPTER,
                                 dataset_name=dataset_name, tests=wanted, runner=runner,
                                 progress=progress, **fields)
    return out


RUNNER_METHODS = {
    "meta-sgd": (SETTINGS, omniglot_experiment,
                 "Meta-SGD on Omniglot (chapter 6.1's MAML training, learned per-weight rates)"),
    "meta-sgd-sinusoid": (SINUSOID_SETTINGS, sinusoid_experiment,
                          "Meta-SGD and MAML on sinusoids at K = 5, 10, 20 (paired)"),
}
_ALIASES = {"meta-sgd": {"train_episodes": "meta_steps"},
            "meta-sgd-sinusoid": {"train_episodes": "meta_steps", "test_episodes": "test_tasks"}}

for _name, (_settings, _fn, _describe) in RUNNER_METHODS.items():
    registry.register(_name, chapter=CHAPTER, settings=_settings, describe=_describe,
                      aliases=_ALIASES[_name], threads="tasks")(_fn)
