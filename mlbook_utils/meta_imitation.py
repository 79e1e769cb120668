"""Chapter 9.2: one-shot imitation by meta-learning (Finn, Yu, Zhang, Abbeel & Levine 2017), in
a small numpy world, with MAML on a behaviour-cloning loss, on the inner-loop library.

**The world.** A 2-D point agent in the unit square and ``n_targets`` coloured targets at
random positions (at least ``min_sep`` apart). Colours come from a palette of 12
(:data:`PALETTE`); 8 are meta-training colours and 4 (:data:`TEST_COLOURS`) are never seen in
meta-training. A *task* is "go to the target of colour c"; it is given only by one expert
demonstration in one scene, and the policy is tested in new scenes (new positions, new
distractor colours, new start) with the same goal colour. The expert is a proportional
controller ``a = gain (target - agent)``, its length clipped to ``max_speed``; an episode lasts
``horizon`` steps and succeeds if the agent ends within ``radius`` of the right target. The
observation shows every target (colour and position) and the agent.

**The policy** (the same for every method) is a pure function of a list of weights, written
with ``keras.ops``. Each target ``i`` gets features ``z_i = [rgb_i, target_i - agent,
|target_i - agent|]``; a shared network scores it, ``s_i = v . phi(z_i)`` (``phi``: two ReLU
layers), the scores become attention ``w = softmax(s)``, every target also gets a value
``psi(z_i)`` (one ReLU layer), and a learned linear read-out gives the action,
``a = max_speed (U sum_i w_i psi(z_i) + c)``, clipped to ``max_speed``. Nothing in it says that
an action is "go towards a target": that is learned.

**The methods.** MAML (second order) on the behaviour-cloning loss, the squared action error
*in units of max_speed*: adapt on the demonstration of scene A, take the loss on the
demonstration of scene B of the same task. Only the score vector ``v`` is adapted, with a
learned learning rate per entry (Meta-SGD style): the inner step can change *which* target the
policy attends to, and nothing else. Baselines: behaviour cloning from scratch on the one
demonstration (the same network, every weight, Adam; learning rate and steps chosen on
training-colour tasks), and a demonstration-conditioned policy (the colour of the target nearest
the demonstration's end is appended to every ``z_i``; trained by behaviour cloning across
training tasks).

The tasks of a meta-batch are batched, not looped: every weight is tiled along a leading task
axis, and since the tasks' losses are independent, the gradient of their *sum* with respect to
the tiled ``v`` is each task's own gradient. :class:`MetaImitationTrainer` is
:class:`inner_loop.MetaTrainer` with that batched meta-batch loss (:func:`maml_batch_loss`); the
per-task :func:`maml_task_loss` gives the same value through ``map_tasks``.
"""

from __future__ import annotations

import time

import numpy as np

from . import inner_loop as il
from . import registry
from .autodiff import compile_fn, value_and_grad

CHAPTER = "09_2_meta_imitation"

# --------------------------------------------------------------------------------------------
# The world and the expert (numpy)
# --------------------------------------------------------------------------------------------

#: The 12-step hue wheel.
PALETTE = np.array([
    (1.0, 0.0, 0.0), (1.0, 0.5, 0.0), (1.0, 1.0, 0.0), (0.5, 1.0, 0.0),
    (0.0, 1.0, 0.0), (0.0, 1.0, 0.5), (0.0, 1.0, 1.0), (0.0, 0.5, 1.0),
    (0.0, 0.0, 1.0), (0.5, 0.0, 1.0), (1.0, 0.0, 1.0), (1.0, 0.0, 0.5)], dtype=np.float32)
#: Held-out goal colours (every third of the wheel); the other 8 are meta-training colours.
TEST_COLOURS = np.array([1, 4, 7, 10])
TRAIN_COLOURS = np.array([i for i in range(len(PALETTE)) if i not in TEST_COLOURS])
COLOUR_NAMES = ("red", "orange", "yellow", "lime", "green", "spring green", "cyan", "azure",
                "blue", "violet", "magenta", "rose")
#: The world: targets per scene, steps per episode, top speed (a step's length), the expert's
#: gain, the success radius, and the least distance between two targets.
ENV = dict(n_targets=4, horizon=20, max_speed=0.08, gain=0.5, radius=0.08, min_sep=0.2)


def sample_positions(rng, n: int, n_targets: int, min_sep: float) -> np.ndarray:
    """``n`` scenes' target positions (n, n_targets, 2) in [0.1, 0.9]^2, at least ``min_sep``
    apart (scenes that break it are drawn again)."""
    pos = rng.uniform(0.1, 0.9, size=(n, n_targets, 2))
    while True:
        d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1) + np.eye(n_targets) * 9
        bad = d.min(axis=(1, 2)) < min_sep
        if not bad.any():
            return pos
        pos[bad] = rng.uniform(0.1, 0.9, size=(bad.sum(), n_targets, 2))


def make_scenes(rng, goal_colour, distractor_pool, env=ENV) -> dict:
    """One scene per goal colour in ``goal_colour`` (n,): the goal and ``n_targets - 1``
    distinct distractor colours from ``distractor_pool``, in random order. Returns ``cols``
    (palette indices, (n, K)), ``rgb`` (n, K, 3), ``pos`` (n, K, 2), ``goal`` (the goal's slot,
    (n,)) and ``start`` (the agent's start, (n, 2))."""
    goal_colour = np.asarray(goal_colour)
    n, k = len(goal_colour), env["n_targets"]
    cols = np.zeros((n, k), dtype=int)
    for i, g in enumerate(goal_colour):
        pool = distractor_pool[distractor_pool != g]
        cols[i, 0] = g
        cols[i, 1:] = rng.choice(pool, size=k - 1, replace=False)
        cols[i] = cols[i, rng.permutation(k)]
    goal = np.argmax(cols == goal_colour[:, None], axis=1)
    return dict(cols=cols, rgb=PALETTE[cols], pos=sample_positions(rng, n, k, env["min_sep"]),
                goal=goal, start=rng.uniform(0.0, 1.0, size=(n, 2)))


def clip_speed(a, max_speed: float):
    """``a`` (..., 2) with its length clipped to ``max_speed``."""
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a * np.minimum(1.0, max_speed / np.maximum(n, 1e-12))


def rollout(scenes: dict, policy, env=ENV):
    """Run ``policy(agent (n, 2), t) -> action (n, 2)`` for ``horizon`` steps from the scenes'
    starts (actions clipped to the top speed, positions to the square). Returns the agent's
    positions before each step (n, T, 2), the actions (n, T, 2) and the final position (n, 2)."""
    x = np.asarray(scenes["start"], dtype=np.float64).copy()
    xs, acts = [], []
    for t in range(env["horizon"]):
        a = clip_speed(np.asarray(policy(x, t), dtype=np.float64), env["max_speed"])
        xs.append(x.copy())
        acts.append(a)
        x = np.clip(x + a, 0.0, 1.0)
    return np.stack(xs, 1).astype(np.float32), np.stack(acts, 1).astype(np.float32), x


def expert_policy(scenes: dict, goal=None, env=ENV):
    """The expert: ``gain * (target - agent)`` towards the goal slot (or the slots ``goal``)."""
    g = scenes["goal"] if goal is None else goal
    target = scenes["pos"][np.arange(len(g)), g]
    return lambda x, t: env["gain"] * (target - x)


def success(scenes: dict, final, env=ENV) -> np.ndarray:
    """Whether each episode ended within ``radius`` of its goal target."""
    target = scenes["pos"][np.arange(len(final)), scenes["goal"]]
    return np.linalg.norm(final - target, axis=-1) < env["radius"]


def demos(scenes: dict, env=ENV) -> dict:
    """The expert's demonstrations in ``scenes``: observations (agent ``x`` (n, T, 2), targets'
    ``rgb`` and ``pos``) and actions ``a`` (n, T, 2), float32."""
    xs, acts, _ = rollout(scenes, expert_policy(scenes, env=env), env)
    return dict(x=xs, a=acts, rgb=scenes["rgb"].astype(np.float32),
                pos=scenes["pos"].astype(np.float32))


def demo_colour(scenes: dict, demo: dict) -> np.ndarray:
    """The colour of the target nearest to where each demonstration ended: the
    demonstration-conditioned policy's summary of the demonstration (n, 3)."""
    final = np.clip(demo["x"][:, -1] + demo["a"][:, -1], 0, 1)
    k = np.argmin(np.linalg.norm(scenes["pos"] - final[:, None], axis=-1), axis=1)
    return scenes["rgb"][np.arange(len(k)), k].astype(np.float32)


def task_batch(rng, n: int, split: str, env=ENV) -> dict:
    """``n`` tasks: a goal colour (training colours for ``split="train"``, held-out ones for
    ``"test"``), a support scene with its demonstration and a query scene with its
    demonstration. Training tasks use only training colours; test tasks draw distractors from
    the whole palette."""
    goals = rng.choice(TRAIN_COLOURS if split == "train" else TEST_COLOURS, size=n)
    pool = TRAIN_COLOURS if split == "train" else np.arange(len(PALETTE))
    sa, sb = make_scenes(rng, goals, pool, env), make_scenes(rng, goals, pool, env)
    da, db = demos(sa, env), demos(sb, env)
    return dict(goals=goals, pool=pool, support_scene=sa, query_scene=sb, support=da,
                query=db, ctx=demo_colour(sa, da))


def trainer_arrays(tb: dict) -> dict:
    """The arrays one meta-step reads: the support and query demonstrations and the context."""
    out = {f"s_{k}": v for k, v in tb["support"].items()}
    out.update({f"q_{k}": v for k, v in tb["query"].items()})
    out["ctx"] = tb["ctx"]
    return out


def _demo(arrays: dict, prefix: str) -> dict:
    return {k: arrays[f"{prefix}_{k}"] for k in ("x", "a", "rgb", "pos")}


def eval_scenes(tb: dict, n_scenes: int, seed: int, env=ENV) -> list:
    """``n_scenes`` new scenes for every task of ``tb`` (same goal colour): a list of scene
    dicts."""
    rng = np.random.default_rng(seed)
    return [make_scenes(rng, tb["goals"], tb["pool"], env) for _ in range(n_scenes)]


# --------------------------------------------------------------------------------------------
# The policy, a pure function of its weights
# --------------------------------------------------------------------------------------------

#: The policy's weights, in order: the scoring network (W1, b1, W2, b2) and score vector v, the
#: value layer (P1, c1) and the read-out (U, c).
WEIGHT_NAMES = ("W1", "b1", "W2", "b2", "v", "P1", "c1", "U", "c")
V = WEIGHT_NAMES.index("v")


def init_weights(rng, *, context: bool = False, hidden: int = 32) -> list:
    """Glorot-uniform weights and zero biases (numpy float32), in :data:`WEIGHT_NAMES` order;
    ``context`` adds 3 inputs (the demonstration's colour)."""
    f = 6 + (3 if context else 0)

    def g(a, b):
        return rng.uniform(-1, 1, (a, b)) * np.sqrt(6.0 / (a + b))

    w = [g(f, hidden), np.zeros(hidden), g(hidden, hidden), np.zeros(hidden),
         g(hidden, 1)[:, 0], g(f, hidden), np.zeros(hidden), g(hidden, 2), np.zeros(2)]
    return [np.asarray(x, dtype=np.float32) for x in w]


def tile(weights, n):
    """Every weight repeated along a new leading task axis of length ``n``: one copy per task."""
    from keras import ops

    return [ops.repeat(ops.expand_dims(ops.convert_to_tensor(w), 0), n, axis=0)
            for w in weights]


def features(rgb, pos, x, ctx=None):
    """Per-target features (B, T, K, F) from the targets' colours ``rgb`` (B, K, 3) and
    positions ``pos`` (B, K, 2), the agent's positions ``x`` (B, T, 2) and, for the
    conditioned policy, a context colour ``ctx`` (B, 3): ``[rgb, target - agent, distance]``."""
    from keras import ops

    b, t, k = ops.shape(x)[0], ops.shape(x)[1], ops.shape(rgb)[1]
    off = pos[:, None] - x[:, :, None]
    dist = ops.sqrt(ops.sum(ops.square(off), axis=-1, keepdims=True) + 1e-12)
    parts = [ops.broadcast_to(rgb[:, None], (b, t, k, 3)), off, dist]
    if ctx is not None:
        parts.append(ops.broadcast_to(ctx[:, None, None], (b, t, k, 3)))
    return ops.concatenate(parts, axis=-1)


def attention(weights, rgb, pos, x, ctx=None):
    """The policy's attention over the targets, ``softmax(v . phi(z_i))`` (B, T, K); every
    weight has a leading task axis B."""
    from keras import ops

    w1, b1, w2, b2, v = weights[:5]
    z = features(rgb, pos, x, ctx)
    h = ops.relu(ops.einsum("btkf,bfh->btkh", z, w1) + b1[:, None, None])
    h = ops.relu(ops.einsum("btkh,bhj->btkj", h, w2) + b2[:, None, None])
    return ops.softmax(ops.einsum("btkh,bh->btk", h, v), axis=-1)


def policy_actions(weights, rgb, pos, x, ctx=None, max_speed: float = ENV["max_speed"]):
    """The policy's actions (B, T, 2): attention over the targets, a learned value per target,
    a learned linear read-out, clipped to ``max_speed``. Every weight has a leading task axis."""
    from keras import ops

    p1, c1, u, c = weights[5:]
    w = attention(weights, rgb, pos, x, ctx)
    z = features(rgb, pos, x, ctx)
    val = ops.relu(ops.einsum("btkf,bfh->btkh", z, p1) + c1[:, None, None])
    pooled = ops.einsum("btk,btkh->bth", w, val)
    a = max_speed * (ops.einsum("bth,bhd->btd", pooled, u) + c[:, None])
    n = ops.sqrt(ops.sum(ops.square(a), axis=-1, keepdims=True) + 1e-12)
    return a * ops.minimum(1.0, max_speed / n)


def bc_loss(weights, demo: dict, ctx=None, max_speed: float = ENV["max_speed"]):
    """Behaviour cloning, one number per task (B,): the squared error of the policy's actions
    on the demonstration's observations, summed over the 2 action dimensions and averaged over
    the time steps, **in units of the top speed**. (On raw actions, whose length is at most
    0.08, the loss and its gradients are 1 / 0.08^2 = 156 times smaller, and an inner step with
    a learning rate of order 1 barely moves the weights.)"""
    pred = policy_actions(weights, demo["rgb"], demo["pos"], demo["x"], ctx, max_speed)
    return action_error(pred, demo["a"], max_speed)


def action_error(predicted, actions, max_speed: float = ENV["max_speed"]):
    """The behaviour-cloning error per task (B,) of ``predicted`` against the demonstrated
    ``actions`` (B, T, 2): ``mean_t |(predicted_t - actions_t) / max_speed|^2``."""
    from keras import ops

    return ops.mean(ops.sum(ops.square((predicted - actions) / max_speed), axis=-1), axis=-1)


# --------------------------------------------------------------------------------------------
# MAML on the score vector, with learned per-entry inner learning rates
# --------------------------------------------------------------------------------------------


def with_v(weights, v) -> list:
    """``weights`` with the score vector replaced by ``v``."""
    return [v if i == V else w for i, w in enumerate(weights)]


def inner_step(tiled, alpha, support: dict, *, steps: int = 1, first_order: bool = False):
    """Adapt every task's score vector on its demonstration: ``steps`` steps of
    ``v - alpha * grad_v BC``, with ``tiled`` weights (one copy per task) and ``alpha`` the
    learned rates (shape of v). The gradient of the *sum* of the tasks' losses with respect to
    the tiled ``v`` is each task's own gradient. Returns the adapted per-task weights."""
    from keras import ops

    fast_v = il.adapt(lambda p: ops.sum(bc_loss(with_v(tiled, p[0]), support)), [tiled[V]],
                      steps=steps, lr=[alpha], first_order=first_order)
    return with_v(tiled, fast_v[0])


def maml_batch_loss(values, tasks: dict, *, inner_steps: int = 1):
    """The meta-batch loss: ``values`` are the policy's weights then ``alpha``; every task
    adapts ``v`` on its support demonstration, and the loss is the mean BC loss on the query
    demonstrations of the same tasks (new scenes)."""
    from keras import ops

    weights, alpha = list(values[:-1]), values[-1]
    n = ops.shape(tasks["s_x"])[0]
    fast = inner_step(tile(weights, n), alpha, _demo(tasks, "s"), steps=inner_steps)
    return ops.mean(bc_loss(fast, _demo(tasks, "q")))


def maml_task_loss(*, inner_steps: int = 1):
    """The same loss for one task (arrays without the task axis), for
    :class:`inner_loop.MetaTrainer`'s default ``map_tasks`` path."""
    from keras import ops

    def task_loss(values, task, data=None):
        batched = {k: ops.expand_dims(v, 0) for k, v in task.items()}
        return maml_batch_loss(values, batched, inner_steps=inner_steps)

    return task_loss


class MetaImitationTrainer(il.MetaTrainer):
    """:class:`inner_loop.MetaTrainer` whose meta-batch loss is :func:`maml_batch_loss`: the
    tasks batched along a leading axis instead of one graph per task."""

    def __init__(self, variables, optimizer, *, inner_steps: int = 1):
        self.inner_steps = inner_steps
        super().__init__(variables, maml_task_loss(inner_steps=inner_steps), optimizer)

    def batch_loss(self, values, tasks, data=None):
        return maml_batch_loss(values, tasks, inner_steps=self.inner_steps)


def conditioned_batch_loss(values, tasks: dict):
    """The demonstration-conditioned policy's loss: BC on the query demonstration, with the
    support demonstration's summary colour appended to every target's features."""
    from keras import ops

    n = ops.shape(tasks["q_x"])[0]
    return ops.mean(bc_loss(tile(values, n), _demo(tasks, "q"), ctx=tasks["ctx"]))


class ConditionedTrainer(il.MetaTrainer):
    """Plain behaviour cloning across training tasks for the conditioned policy (no inner
    loop), through the same compiled outer loop and progress bar."""

    def __init__(self, variables, optimizer):
        super().__init__(variables, lambda v, t, d=None: conditioned_batch_loss(
            v, {k: x[None] for k, x in t.items()}), optimizer)

    def batch_loss(self, values, tasks, data=None):
        return conditioned_batch_loss(values, tasks)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: ``meta_steps`` MAML meta-steps of ``meta_batch_size`` training tasks (one inner step on v;
#: v's rates start at ``inner_lr`` and are learned; Adam at ``meta_lr``); the conditioned
#: policy trains for ``conditioned_steps`` steps of the same batch size. BC from scratch picks
#: its Adam learning rate from ``bc_lrs`` and its steps from ``bc_steps`` on ``val_tasks``
#: training-colour tasks. Every model is tested on the same ``test_tasks`` held-out-colour
#: tasks, each in ``test_scenes`` new scenes (success per task = the fraction of its scenes).
SETTINGS = {
    scale: dict(seeds=seeds, hidden=32, meta_steps=steps, meta_batch_size=32, inner_lr=1.0,
                inner_steps=1, test_inner_steps=1, meta_lr=1e-3, conditioned_steps=csteps,
                bc_lrs=lrs, bc_steps=bsteps, val_tasks=val, test_tasks=tasks, test_scenes=4,
                time_budget_s=None, test_seed=registry.TEST_SEED)
    for scale, seeds, steps, csteps, lrs, bsteps, val, tasks in (
        ("quick", (0, 1), 1500, 300, (0.03,), (100,), 50, 150),
        ("cpu", (0, 1, 2), 12_000, 3000, (0.01, 0.03, 0.1), (20, 100, 300), 200, 500),
        ("full", (0, 1, 2, 3, 4), 30_000, 10_000, (0.01, 0.03, 0.1), (20, 100, 300), 500,
         1000),
    )
}

NAMES = {"maml": "MAML (1 step)", "unadapted": "MAML (unadapted)",
         "maml_train": "MAML (1 step, training colours)", "bc": "BC from scratch",
         "conditioned": "demo-conditioned", "chance": "chance (random target)"}


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

_COMPILED: dict = {}


def _compiled(name: str, fn):
    import keras

    key = (name, keras.backend.backend())
    if key not in _COMPILED:
        _COMPILED[key] = compile_fn(fn)
    return _COMPILED[key]


def _np(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _step_actions(weights, rgb, pos, x, ctx):
    return policy_actions(weights, rgb, pos, x[:, None], ctx)[:, 0]


def _step_actions_noctx(weights, rgb, pos, x):
    return policy_actions(weights, rgb, pos, x[:, None])[:, 0]


def policy_for(per_task, scenes: dict, ctx=None):
    """A closed-loop ``policy(agent, t)`` for :func:`rollout` from per-task weights (numpy,
    leading task axis) in ``scenes``."""
    from keras import ops

    w = [ops.convert_to_tensor(np.asarray(x, np.float32)) for x in per_task]
    rgb = ops.convert_to_tensor(scenes["rgb"].astype(np.float32))
    pos = ops.convert_to_tensor(scenes["pos"].astype(np.float32))
    if ctx is None:
        step = _compiled("actions", _step_actions_noctx)
        return lambda x, t: _np(step(w, rgb, pos, ops.convert_to_tensor(x.astype(np.float32))))
    step = _compiled("actions_ctx", _step_actions)
    c = ops.convert_to_tensor(np.asarray(ctx, np.float32))
    return lambda x, t: _np(step(w, rgb, pos, ops.convert_to_tensor(x.astype(np.float32)), c))


def success_rates(per_task, scenes_list, ctx=None, env=ENV) -> np.ndarray:
    """Each task's success rate over its scenes (a fraction per task)."""
    hits = []
    for sc in scenes_list:
        _, _, final = rollout(sc, policy_for(per_task, sc, ctx), env)
        hits.append(success(sc, final, env))
    return np.mean(hits, axis=0)


def chance_rates(scenes_list, seed: int, env=ENV) -> np.ndarray:
    """The expert driving to a uniformly random target: the success of guessing the task."""
    rng = np.random.default_rng(seed)
    hits = []
    for sc in scenes_list:
        g = rng.integers(0, env["n_targets"], size=len(sc["goal"]))
        _, _, final = rollout(sc, expert_policy(sc, goal=g, env=env), env)
        hits.append(success(sc, final, env))
    return np.mean(hits, axis=0)


def adapt_to_demos(weights, alpha, demo: dict, steps: int = 1) -> list:
    """Per-task weights (numpy, leading task axis) after ``steps`` inner steps on each task's
    demonstration; ``steps=0`` gives the unadapted weights, tiled."""
    from keras import ops

    n = len(demo["x"])
    weights = [np.asarray(_np(w), np.float32) for w in weights]
    per_task = [np.repeat(w[None], n, 0) for w in weights]
    if steps == 0:
        return per_task
    d = [ops.convert_to_tensor(demo[k]) for k in ("x", "a", "rgb", "pos")]
    alpha = ops.convert_to_tensor(np.asarray(_np(alpha), np.float32))
    v = per_task[V]
    for _ in range(steps):
        # one step at a time from the current v (the same as ``inner_step(steps=steps)``)
        cur = [ops.convert_to_tensor(w) for w in weights]
        w_task = with_v(tile(cur, n), ops.convert_to_tensor(v))
        v = _np(_adapt_v_from(w_task, alpha, d))
    return with_v(per_task, v)


def _adapt_v_from_fn(w_task, alpha, x, a, rgb, pos):
    return inner_step(w_task, alpha, dict(x=x, a=a, rgb=rgb, pos=pos))[V]


def _adapt_v_from(w_task, alpha, d):
    fn = _compiled("adapt_from", _adapt_v_from_fn)
    return fn(w_task, alpha, *d)


def _bc_fn(weights, state, x, a, rgb, pos, lr):
    from keras import ops

    demo = dict(x=x, a=a, rgb=rgb, pos=pos)
    loss, grads = value_and_grad(lambda w: ops.sum(bc_loss(w, demo)), weights)
    new, state = il.adam_step(weights, grads, state, lr, beta1=0.9)
    return new, state


def bc_from_scratch(init, demo: dict, lr: float, checkpoints) -> dict:
    """Behaviour cloning of each task's demonstration from the same random weights ``init``:
    Adam (``lr``) on every weight, each task its own copy. Returns ``{steps: per-task weights
    (numpy)}`` at each number of steps in ``checkpoints``."""
    from keras import ops

    n = len(demo["x"])
    w = tile([np.asarray(x, np.float32) for x in init], n)
    state = il.adam_state(w)
    d = [ops.convert_to_tensor(demo[k]) for k in ("x", "a", "rgb", "pos")]
    lr_t = ops.convert_to_tensor(np.float32(lr))
    fn = _compiled("bc", _bc_fn)
    out, done = {}, 0
    for target in sorted(checkpoints):
        while done < target:
            w, state = fn(w, state, *d, lr_t)
            w, state = list(w), list(state)
            done += 1
        out[target] = [_np(x) for x in w]
    return out


def choose_bc(init, s: dict, seed: int) -> tuple[float, int, dict]:
    """BC from scratch's learning rate and number of steps: the best mean success on
    ``val_tasks`` tasks of the *training* colours (two new scenes each)."""
    rng = np.random.default_rng(20_000 + seed)
    val = task_batch(rng, s["val_tasks"], "train")
    sc = eval_scenes(val, 2, 30_000 + seed)
    best, table = None, {}
    for lr in s["bc_lrs"]:
        for steps, w in bc_from_scratch(init, val["support"], lr, s["bc_steps"]).items():
            r = float(success_rates(w, sc).mean())
            table[f"lr {lr:g}, {steps} steps"] = round(100 * r, 1)
            if best is None or r > best[0]:
                best = (r, lr, steps)
    return best[1], best[2], table


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _adam(lr):
    import keras

    return keras.optimizers.Adam(lr)


def _sampler(seed: int, batch: int):
    rng = np.random.default_rng(seed)

    def sample(i):
        return trainer_arrays(task_batch(rng, batch, "train"))

    return sample


def make_maml(s: dict, seed: int):
    """Fresh weights and learning rates for ``seed`` and their trainer:
    ``(variables, trainer)``; the last variable is ``alpha``."""
    import keras

    rng = np.random.default_rng(seed)
    w = init_weights(rng, hidden=s["hidden"])
    variables = [keras.Variable(x, name=f"maml_{n}") for x, n in zip(w, WEIGHT_NAMES)]
    variables.append(keras.Variable(np.full(w[V].shape, s["inner_lr"], np.float32),
                                    name="maml_alpha_v"))
    return variables, MetaImitationTrainer(variables, _adam(s["meta_lr"]),
                                           inner_steps=s["inner_steps"])


def train_maml(s: dict, seed: int, *, progress=True, cache: dict | None = None):
    """MAML with learned rates on v for ``meta_steps`` steps; returns ``(weights, alpha,
    history)`` (numpy). ``cache`` keeps the trainer, so a later seed reuses the compiled step."""
    cache = {} if cache is None else cache
    fresh = init_weights(np.random.default_rng(seed), hidden=s["hidden"])
    fresh.append(np.full(fresh[V].shape, s["inner_lr"], np.float32))
    if "maml" not in cache:
        cache["maml"] = make_maml(s, seed)
    variables, trainer = cache["maml"]
    trainer.reset(fresh)
    hist = il.train(trainer, _sampler(seed, s["meta_batch_size"]), steps=s["meta_steps"],
                    time_budget_s=s["time_budget_s"], progress=progress,
                    desc=f"MAML seed {seed}", log_every=100)
    values = [_np(v) for v in trainer.values()]
    return values[:-1], values[-1], hist


def train_conditioned(s: dict, seed: int, *, progress=True, cache: dict | None = None):
    """The demonstration-conditioned policy, behaviour cloning across training tasks for
    ``conditioned_steps`` steps; returns ``(weights, history)``."""
    import keras

    cache = {} if cache is None else cache
    fresh = init_weights(np.random.default_rng(seed + 1000), context=True, hidden=s["hidden"])
    if "conditioned" not in cache:
        variables = [keras.Variable(x, name=f"cond_{n}") for x, n in zip(fresh, WEIGHT_NAMES)]
        cache["conditioned"] = ConditionedTrainer(variables, _adam(s["meta_lr"]))
    trainer = cache["conditioned"]
    trainer.reset(fresh)
    hist = il.train(trainer, _sampler(seed + 1000, s["meta_batch_size"]),
                    steps=s["conditioned_steps"], time_budget_s=s["time_budget_s"],
                    progress=progress, desc=f"conditioned seed {seed}", log_every=100)
    return [_np(v) for v in trainer.values()], hist


# --------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------


def _pct(rates) -> tuple[float, float]:
    from .evaluation import mean_ci95

    m, c = mean_ci95(100.0 * np.asarray(rates, dtype=np.float64))
    return m, c


def evaluation_tasks(s: dict) -> dict:
    """The held-out tasks every model is tested on (held-out goal colours), their new scenes,
    and new tasks of the training colours (the colour-generalisation gap)."""
    test = task_batch(np.random.default_rng(s["test_seed"]), s["test_tasks"], "test")
    train_col = task_batch(np.random.default_rng(s["test_seed"] + 1), s["test_tasks"], "train")
    return dict(test=test, scenes=eval_scenes(test, s["test_scenes"], s["test_seed"] + 2),
                train_col=train_col,
                train_col_scenes=eval_scenes(train_col, s["test_scenes"], s["test_seed"] + 3))


def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """For every seed: meta-train MAML, behaviour cloning from scratch (its learning rate and
    steps chosen on training-colour tasks) and the demonstration-conditioned policy, and test
    each on the same held-out-colour tasks (metric ``success_rate``, in %, with the 95 % CI over
    the test tasks; ``results[method, seed]`` holds each task's success rate). Also: chance,
    MAML unadapted, MAML on new tasks of the training colours, and MAML minus BC from scratch
    paired over the seeds (``extra["paired"]``, metric ``success_rate_difference``).
    ``data`` may pass ready :func:`evaluation_tasks`; ``tests`` is not used (one setting)."""
    from .evaluation import append_record, make_record, paired_difference

    s = settings
    out = registry.Outcome(settings=s)
    run = registry.run_fields(runner)
    ts = data if data is not None else evaluation_tasks(s)
    test, scenes = ts["test"], ts["scenes"]
    out.extra["test_set"] = ts
    dataset = "2-D reaching, held-out colours"
    common = dict(setting="one demonstration", test_scenes=s["test_scenes"],
                  n_targets=ENV["n_targets"], horizon=ENV["horizon"])

    def record(key, seed, rates, wall, **extra):
        m, c = _pct(rates)
        rec = make_record(NAMES[key], extra.pop("dataset", dataset), None, 1, m, c,
                          len(rates), wall, metric="success_rate", seed=seed,
                          **common, **extra, **run)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            seed_text = "" if seed is None else f" seed {seed}"
            print(f"{NAMES[key]}{seed_text}: {m:.1f} ± {c:.1f} % success")

    start = time.perf_counter()
    rates = chance_rates(scenes, s["test_seed"] + 4)
    out.results["chance", None] = rates
    record("chance", None, rates, time.perf_counter() - start)
    cache = {}
    for seed in s["seeds"]:
        weights, alpha, hist = train_maml(s, seed, progress=progress, cache=cache)
        out.models["maml", seed] = (weights, alpha)
        out.histories["maml", seed] = hist
        train = dict(train_meta_steps=hist["steps"], train_wall_s=round(hist["wall_s"], 1),
                     train_steps_per_s=round(hist["steps_per_s"], 1),
                     meta_batch_size=s["meta_batch_size"])
        for key, steps in (("unadapted", 0), ("maml", s["test_inner_steps"])):
            t0 = time.perf_counter()
            rates = success_rates(adapt_to_demos(weights, alpha, test["support"], steps), scenes)
            out.results[key, seed] = rates
            record(key, seed, rates, time.perf_counter() - t0, inner_steps_at_test=steps,
                   alpha_mean=round(float(np.mean(alpha)), 3), **train)
        t0 = time.perf_counter()
        rates = success_rates(adapt_to_demos(weights, alpha, ts["train_col"]["support"],
                                             s["test_inner_steps"]), ts["train_col_scenes"])
        out.results["maml_train", seed] = rates
        record("maml_train", seed, rates, time.perf_counter() - t0,
               dataset="2-D reaching, training colours (new tasks)",
               inner_steps_at_test=s["test_inner_steps"], **train)

        t0 = time.perf_counter()
        init = init_weights(np.random.default_rng(seed + 500), hidden=s["hidden"])
        lr, steps, table = choose_bc(init, s, seed)
        out.extra["bc_grid", seed] = table
        w = bc_from_scratch(init, test["support"], lr, [steps])[steps]
        rates = success_rates(w, scenes)
        out.results["bc", seed] = rates
        record("bc", seed, rates, time.perf_counter() - t0, bc_lr=lr, bc_steps=steps)

        cw, chist = train_conditioned(s, seed, progress=progress, cache=cache)
        out.models["conditioned", seed] = cw
        out.histories["conditioned", seed] = chist
        t0 = time.perf_counter()
        per_task = [np.repeat(x[None], len(test["goals"]), 0) for x in cw]
        rates = success_rates(per_task, scenes, ctx=test["ctx"])
        out.results["conditioned", seed] = rates
        record("conditioned", seed, rates, time.perf_counter() - t0,
               train_steps=chist["steps"], train_wall_s=round(chist["wall_s"], 1))
    if len(s["seeds"]) >= 2:
        a = [100 * out.results["maml", sd].mean() for sd in s["seeds"]]
        b = [100 * out.results["bc", sd].mean() for sd in s["seeds"]]
        mean, ci, n = paired_difference(a, b)
        out.extra["paired"] = (mean, ci, n)
        rec = make_record("MAML minus BC from scratch (paired over seeds)", dataset, None, 1,
                          mean, ci, n, 0.0, metric="success_rate_difference", pairs="seeds",
                          seeds=list(s["seeds"]), **common, **run)
        append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"MAML minus BC from scratch: {mean:+.1f} ± {ci:.1f} points")
    return out


def summary_table(out: registry.Outcome):
    """Success on the held-out tasks (% ± 95 % CI over tasks), one row per method, one column
    per seed."""
    import pandas as pd

    seeds = out.settings["seeds"]
    rows = {}
    for key in ("maml", "unadapted", "bc", "conditioned", "maml_train"):
        rows[NAMES[key]] = {f"seed {sd}": "{:.1f} ± {:.1f}".format(*_pct(out.results[key, sd]))
                            for sd in seeds}
    rows[NAMES["chance"]] = {f"seed {sd}": "{:.1f} ± {:.1f}".format(
        *_pct(out.results["chance", None])) for sd in seeds}
    table = pd.DataFrame(rows).T
    table.columns.name = "success rate (%)"
    return table


registry.register("meta-imitation", chapter=CHAPTER, settings=SETTINGS,
                  describe="MAML on behaviour cloning (one demonstration, learned rates on the "
                           "score vector) against BC from scratch and a demo-conditioned policy, "
                           "2-D reaching, held-out colours, paired over seeds",
                  aliases={"train_episodes": "meta_steps", "test_episodes": "test_tasks"})(
    experiment)
