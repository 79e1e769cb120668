"""Chapter 9.2: meta imitation learning (Finn, Yu, Zhang, Abbeel and Levine, CoRL 2017), in a
small 2-D environment written in numpy instead of MuJoCo and a robot.

A scene has ``n_targets`` targets at random positions in the unit square, each with a colour
(a hue, given to the policy as RGB features). The observation is the agent's position and every
target's position and colour, in random order. A task is "go to the target of hue h": it is
given only by one demonstration of the expert (a proportional controller with bounded speed)
in one scene, and the policy is tested in a *new* scene (new positions, new distractor colours,
the same target hue), rolled out in closed loop. Success: within ``radius`` of the right target
at the end. Training tasks draw their hue from the even twentieths of the hue circle, held-out
tasks from the odd ones (disjoint, interleaved).

Three policies, the same MLP (``inner_loop.mlp``):

- **MAML** (meta-imitation): one SGD step on the behaviour-cloning MSE of one demo, then the
  BC loss on a second demo of the same task in another scene (the paper's setup);
- **BC from scratch**: the same network, randomly initialised, trained on the one demo; its
  learning rate and steps are chosen on *training* tasks from a grid (``bc_grid``);
- **demo-conditioned**: the policy also gets the demo's last observation (where the expert
  ended, beside the demo scene's targets and colours), trained across the training tasks with
  the same data and budget as MAML.
"""

from __future__ import annotations

import colorsys
import time

import numpy as np

from . import inner_loop as il
from . import registry

CHAPTER = "09_2_meta_imitation_learning"

# --------------------------------------------------------------------------------------------
# The environment and the expert
# --------------------------------------------------------------------------------------------

#: Environment constants: targets per scene, steps per episode, the agent's top speed per step,
#: the expert's gain, the success radius, the minimum hue distance between a scene's colours.
ENV = dict(n_targets=3, horizon=20, max_speed=0.08, gain=0.5, radius=0.08, min_hue_gap=0.15)


def obs_dim(n_targets: int = ENV["n_targets"]) -> int:
    """Agent (x, y) plus, per target, (x, y, r, g, b)."""
    return 2 + 5 * n_targets


def hue_rgb(hue: float) -> np.ndarray:
    """A fully saturated colour of ``hue`` in [0, 1) as RGB in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, 1.0, 1.0), dtype=np.float32)


def task_hues(rng, n: int, split: str) -> np.ndarray:
    """``n`` target hues: ``train`` from the even twentieths of the circle, ``test`` from the
    odd ones."""
    bins = rng.integers(0, 10, size=n) * 2 + (0 if split == "train" else 1)
    return ((bins + rng.random(n)) / 20.0).astype(np.float64)


def hue_distance(a, b):
    d = np.abs(np.asarray(a) - np.asarray(b)) % 1.0
    return np.minimum(d, 1.0 - d)


def make_scene(rng, hue: float, env: dict = ENV) -> dict:
    """A scene for the task ``hue``: targets (n, 2), their hues, the index of the right one,
    and the agent's start. Distractor hues are at least ``min_hue_gap`` from every other
    colour of the scene; targets are at least 0.2 apart."""
    n = env["n_targets"]
    while True:
        pos = rng.uniform(0.1, 0.9, size=(n, 2))
        if min(np.linalg.norm(pos[i] - pos[j]) for i in range(n) for j in range(i)) > 0.2:
            break
    hues = [hue]
    while len(hues) < n:
        h = rng.random()
        if all(hue_distance(h, x) >= env["min_hue_gap"] for x in hues):
            hues.append(h)
    order = rng.permutation(n)
    hues = np.array(hues)[order]
    return dict(targets=pos, hues=hues, goal=int(np.argmax(order == 0)),
                start=rng.uniform(0.0, 1.0, size=2))


def observe(scene: dict, agent) -> np.ndarray:
    """The observation: the agent's position, then each target's (x, y, r, g, b)."""
    parts = [np.asarray(agent, dtype=np.float32)]
    for p, h in zip(scene["targets"], scene["hues"]):
        parts += [p.astype(np.float32), hue_rgb(h)]
    return np.concatenate(parts)


def expert_action(obs, goal: int, env: dict = ENV) -> np.ndarray:
    """The expert: a proportional controller towards target ``goal``,
    ``a = gain * (target - agent)``, its length clipped to ``max_speed``."""
    obs = np.asarray(obs, dtype=np.float32)
    target = obs[2 + 5 * goal: 4 + 5 * goal]
    a = env["gain"] * (target - obs[:2])
    speed = np.linalg.norm(a)
    if speed > env["max_speed"]:
        a = a * (env["max_speed"] / speed)
    return a.astype(np.float32)


def step(agent, action, env: dict = ENV) -> np.ndarray:
    """The dynamics: move by the action, its length clipped to ``max_speed``, in the square."""
    a = np.asarray(action, dtype=np.float64)
    speed = np.linalg.norm(a)
    if speed > env["max_speed"]:
        a = a * (env["max_speed"] / speed)
    return np.clip(np.asarray(agent) + a, 0.0, 1.0)


def rollout(scene: dict, policy, env: dict = ENV) -> tuple[np.ndarray, np.ndarray]:
    """Run ``policy(obs) -> action`` in ``scene`` for ``horizon`` steps: (observations
    (T, d), actions (T, 2)) and the final position is ``observations``' last agent + action."""
    agent = scene["start"]
    obs, acts = [], []
    for _ in range(env["horizon"]):
        o = observe(scene, agent)
        a = np.asarray(policy(o), dtype=np.float32)
        obs.append(o)
        acts.append(a)
        agent = step(agent, a, env)
    return np.stack(obs), np.stack(acts), agent


def demo(scene: dict, env: dict = ENV) -> tuple[np.ndarray, np.ndarray]:
    """The expert's demonstration in ``scene``: (observations (T, d), actions (T, 2))."""
    obs, acts, _ = rollout(scene, lambda o: expert_action(o, scene["goal"], env), env)
    return obs, acts


def success(scene: dict, final, env: dict = ENV) -> bool:
    return bool(np.linalg.norm(np.asarray(final) - scene["targets"][scene["goal"]])
                < env["radius"])


def last_observation(scene: dict, demo_obs, demo_acts, env: dict = ENV) -> np.ndarray:
    """The demo's summary for the conditioned policy: the observation after its last action
    (where the expert ended, beside the scene's targets and colours)."""
    return observe(scene, step(demo_obs[-1, :2], demo_acts[-1], env))


# --------------------------------------------------------------------------------------------
# Tasks as arrays
# --------------------------------------------------------------------------------------------


def task_batch(rng, tasks: int, split: str = "train", env: dict = ENV, scenes: bool = False):
    """``tasks`` tasks, each two demos of one hue in two scenes: ``xs, ys`` (the demo the
    policy adapts on), ``xq, yq`` (the second demo, the outer loss), and ``ctx`` (the first
    demo's last observation, for the conditioned policy), as float32 arrays with a task axis.
    With ``scenes`` also the list of (hue, first scene)."""
    xs, ys, xq, yq, ctx, meta = [], [], [], [], [], []
    for hue in task_hues(rng, tasks, split):
        a, b = make_scene(rng, hue, env), make_scene(rng, hue, env)
        (oa, aa), (ob, ab) = demo(a, env), demo(b, env)
        xs.append(oa), ys.append(aa), xq.append(ob), yq.append(ab)
        ctx.append(last_observation(a, oa, aa, env))
        meta.append((hue, a))
    out = {k: np.stack(v).astype(np.float32) for k, v in
           dict(xs=xs, ys=ys, xq=xq, yq=yq, ctx=ctx).items()}
    return (out, meta) if scenes else out


def with_context(x, ctx):
    """Concatenate the demo summary ``ctx`` (d,) to every observation of ``x`` (T, d)."""
    from keras import ops

    c = ops.broadcast_to(ctx[None, :], (ops.shape(x)[0], ops.shape(ctx)[0]))
    return ops.concatenate([x, c], axis=-1)


def bc_loss(net: il.MetaNet, params, obs, actions):
    """Behaviour cloning: the mean squared error between the policy's and the demo's actions."""
    return il.mse(actions, net(params, obs))


def bc_inner_step(net: il.MetaNet, params, obs, actions, lr):
    """One SGD step on the BC loss of one demonstration (MAML's inner loop)."""
    return il.adapt(lambda p: bc_loss(net, p, obs, actions), params, steps=1, lr=lr)


def maml_task_loss(net: il.MetaNet, *, inner_lr, inner_steps: int = 1):
    """Meta-imitation's task loss: adapt on the first demo, BC loss on the second."""

    def task_loss(params, task, data=None):
        fast = il.adapt(lambda p: bc_loss(net, p, task["xs"], task["ys"]), params,
                        steps=inner_steps, lr=inner_lr)
        return bc_loss(net, fast, task["xq"], task["yq"])

    return task_loss


def conditioned_task_loss(net: il.MetaNet):
    """The demo-conditioned policy's loss: BC on the second demo, given the first's summary."""

    def task_loss(params, task, data=None):
        return bc_loss(net, params, with_context(task["xq"], task["ctx"]), task["yq"])

    return task_loss


# --------------------------------------------------------------------------------------------
# Policies as numpy functions, and evaluation
# --------------------------------------------------------------------------------------------


def numpy_policy(values) -> callable:
    """The MLP ``relu(relu(x W1 + b1) W2 + b2) W3 + b3`` from its weight list, in numpy (for
    closed-loop rollouts)."""
    w = [np.asarray(v, dtype=np.float32) for v in values]

    def policy(x):
        h = x
        for i in range(0, len(w) - 2, 2):
            h = np.maximum(h @ w[i] + w[i + 1], 0.0)
        return h @ w[-2] + w[-1]

    return policy


def adapter(net: il.MetaNet, lr: float, steps: int):
    """A compiled function ``(values, obs, actions) -> fast weights`` after ``steps`` SGD
    steps on the BC loss of one demo (no meta-gradient needed at test time)."""
    from .autodiff import compile_fn

    return compile_fn(lambda values, xs, ys: il.adapt(
        lambda p: bc_loss(net, p, xs, ys), list(values), steps=steps, lr=lr, first_order=True))


def evaluate_tasks(policy_for, test, env: dict = ENV, scenes_per_task: int = 4,
                   seed: int = registry.TEST_SEED) -> np.ndarray:
    """The success rate of every test task: ``policy_for(i) -> policy`` (adapted to task
    ``i``'s demo), rolled out in ``scenes_per_task`` new scenes with the task's hue."""
    data, meta = test
    rng = np.random.default_rng(seed + 7)
    rates = []
    for i, (hue, _) in enumerate(meta):
        policy = policy_for(i)
        hits = 0
        for _ in range(scenes_per_task):
            scene = make_scene(rng, hue, env)
            _, _, final = rollout(scene, policy, env)
            hits += success(scene, final, env)
        rates.append(hits / scenes_per_task)
    return np.array(rates)


def chance_rates(test, env: dict = ENV, scenes_per_task: int = 4,
                 seed: int = registry.TEST_SEED) -> np.ndarray:
    """Chance: the expert going to a uniformly random one of the targets, in the same scenes
    that :func:`evaluate_tasks` draws (the same seed)."""
    data, meta = test
    rng = np.random.default_rng(seed + 7)
    pick = np.random.default_rng(seed + 11)
    rates = []
    for hue, _ in meta:
        hits = 0
        for _ in range(scenes_per_task):
            scene = make_scene(rng, hue, env)
            g = int(pick.integers(env["n_targets"]))
            _, _, final = rollout(scene, lambda o, g=g: expert_action(o, g, env), env)
            hits += success(scene, final, env)
        rates.append(hits / scenes_per_task)
    return np.array(rates)


def adapted_rates(net, values, test, lr, steps, env=ENV, scenes_per_task=4):
    """Success rates after adapting ``values`` to each test task's demo."""
    data, _ = test
    run = adapter(net, lr, steps) if steps else None

    def policy_for(i):
        if run is None:
            return numpy_policy(values)
        from keras import ops

        fast = run(list(values), ops.convert_to_tensor(data["xs"][i]),
                   ops.convert_to_tensor(data["ys"][i]))
        return numpy_policy([ops.convert_to_numpy(f) for f in fast])

    return evaluate_tasks(policy_for, test, env, scenes_per_task)


def conditioned_rates(values, test, env=ENV, scenes_per_task=4):
    data, _ = test
    base = numpy_policy(values)

    def policy_for(i):
        c = data["ctx"][i]
        return lambda o: base(np.concatenate([o, c]))

    return evaluate_tasks(policy_for, test, env, scenes_per_task)


# --------------------------------------------------------------------------------------------
# Settings and the experiment
# --------------------------------------------------------------------------------------------

#: ``seeds``: each seed meta-trains MAML and the conditioned policy (``time_budget_s`` seconds
#: or ``meta_steps`` each, meta-batch ``meta_batch_size``) and draws its own BC initialisation;
#: every seed is tested on the same ``test_tasks`` held-out tasks (``registry.TEST_SEED``),
#: each in ``scenes_per_task`` new scenes. ``bc_grid``: BC's (lr, steps) candidates, chosen by
#: the success rate on ``val_tasks`` *training* tasks.
_COMMON = dict(hidden=(64, 64), inner_lr=0.3, inner_steps=1, meta_lr=1e-3,
               meta_batch_size=16, scenes_per_task=4, test_seed=registry.TEST_SEED,
               bc_grid=((0.03, 20), (0.1, 20), (0.3, 20), (0.1, 100), (0.3, 100), (1.0, 100)),
               xla=False)
SETTINGS = {
    "quick": dict(_COMMON, seeds=(0,), meta_steps=100_000, time_budget_s=15, test_tasks=30,
                  val_tasks=10, bc_grid=((0.1, 20), (0.3, 20))),
    "cpu": dict(_COMMON, seeds=(0, 1, 2), meta_steps=100_000, time_budget_s=60,
                test_tasks=100, val_tasks=30),
    "full": dict(_COMMON, seeds=(0, 1, 2, 3, 4), meta_steps=30_000, time_budget_s=None,
                 test_tasks=500, val_tasks=100),
}


def _train(net, loss, s, rng, desc, progress):
    import keras

    trainer = il.MetaTrainer(net.variables, loss, keras.optimizers.Adam(s["meta_lr"]),
                             xla=s["xla"])
    hist = il.train(trainer, lambda i: task_batch(rng, s["meta_batch_size"]),
                    steps=s["meta_steps"], time_budget_s=s["time_budget_s"],
                    progress=progress, desc=desc)
    trainer.sync()
    return hist


def choose_bc(s: dict, seed: int, env=ENV):
    """BC from scratch's (lr, steps): the best mean success on training tasks."""
    rng = np.random.default_rng(10_000 + seed)
    val = task_batch(rng, s["val_tasks"], "train", env, scenes=True)
    net = il.mlp(inputs=obs_dim(), hidden=s["hidden"], outputs=2, seed=seed + 500)
    scores = {(lr, st): float(adapted_rates(net, net.params(), val, lr, st, env,
                                            s["scenes_per_task"]).mean())
              for lr, st in s["bc_grid"]}
    return max(scores, key=scores.get), scores


@registry.register("meta-imitation", chapter=CHAPTER, settings=SETTINGS,
                   aliases={"train_episodes": "meta_steps"},
                   describe="meta-imitation (MAML on behaviour cloning) vs BC from one demo "
                            "and a demo-conditioned policy, 2-D reaching")
def experiment(settings: dict, *, data=None, tests=None, runner=None,
               progress=True) -> registry.Outcome:
    """For every seed: meta-train MAML and the conditioned policy, choose BC's (lr, steps) on
    training tasks, and test all three on the held-out tasks; records ``success_rate`` per arm
    and seed, chance, and the paired MAML - BC difference over seeds."""
    from . import config
    from .evaluation import append_record, make_record, mean_ci95, paired_difference

    s = settings
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    test = task_batch(np.random.default_rng(s["test_seed"]), s["test_tasks"], "test",
                      scenes=True)
    sp = s["scenes_per_task"]

    def record(name, rates, seed, wall, **extra):
        mean, ci = mean_ci95(rates)
        rec = make_record(name, "2-D reaching (held-out hues)", None, 1, mean, ci, len(rates),
                          wall, metric="success_rate", seed=seed, scenes_per_task=sp,
                          setting="one demo, new scene", **extra, **run)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        out.results[name, seed] = rates
        if runner:
            print(f"{name} seed {seed}: success {mean:.3f} ± {ci:.3f}")

    record("chance (random target)", chance_rates(test, scenes_per_task=sp), None, 0.0)
    per_seed = {"MAML": [], "BC from scratch": [], "demo-conditioned": []}
    for seed in s["seeds"]:
        config.seed_everything(seed)
        rng = np.random.default_rng(seed)
        net = il.mlp(inputs=obs_dim(), hidden=s["hidden"], outputs=2, seed=seed)
        hist = _train(net, maml_task_loss(net, inner_lr=s["inner_lr"],
                                          inner_steps=s["inner_steps"]),
                      s, rng, f"MAML seed {seed}", progress)
        t0 = time.perf_counter()
        rates = adapted_rates(net, net.params(), test, s["inner_lr"], s["inner_steps"],
                              scenes_per_task=sp)
        record("MAML", rates, seed, time.perf_counter() - t0, train_meta_steps=hist["steps"],
               train_wall_s=round(hist["wall_s"], 1), inner_lr=s["inner_lr"])
        per_seed["MAML"].append(rates.mean())
        out.models["MAML", seed], out.histories["MAML", seed] = net, hist

        cnet = il.mlp(inputs=2 * obs_dim(), hidden=s["hidden"], outputs=2, seed=seed)
        chist = _train(cnet, conditioned_task_loss(cnet), s, np.random.default_rng(seed),
                       f"conditioned seed {seed}", progress)
        t0 = time.perf_counter()
        rates = conditioned_rates(cnet.params(), test, scenes_per_task=sp)
        record("demo-conditioned", rates, seed, time.perf_counter() - t0,
               train_meta_steps=chist["steps"], train_wall_s=round(chist["wall_s"], 1))
        per_seed["demo-conditioned"].append(rates.mean())
        out.models["conditioned", seed] = cnet

        (lr, st), scores = choose_bc(s, seed)
        bnet = il.mlp(inputs=obs_dim(), hidden=s["hidden"], outputs=2, seed=seed + 500)
        t0 = time.perf_counter()
        rates = adapted_rates(bnet, bnet.params(), test, lr, st, scenes_per_task=sp)
        record("BC from scratch", rates, seed, time.perf_counter() - t0, bc_lr=lr,
               bc_steps=st)
        per_seed["BC from scratch"].append(rates.mean())
        out.extra["bc_choice", seed] = ((lr, st), scores)
    out.extra["per_seed"] = per_seed
    out.extra["test"] = test
    if len(s["seeds"]) >= 2:
        for other in ("BC from scratch", "demo-conditioned"):
            d, ci, n = paired_difference(per_seed["MAML"], per_seed[other])
            rec = make_record(f"MAML - {other} (paired over seeds)",
                              "2-D reaching (held-out hues)", None, 1, d, ci, n, 0.0,
                              metric="success_rate_difference", seeds=list(s["seeds"]), **run)
            append_record(CHAPTER, rec)
            out.records.append(rec)
            out.extra["paired", other] = (d, ci, n)
            if runner:
                print(f"MAML - {other}: {d:+.3f} ± {ci:.3f} over {n} seeds")
    return out
