"""Pilot for chapter 9.2: one-shot meta-imitation learning (Finn, Yu et al. 2017) in a small
numpy 2-D reaching world, with MAML on a behaviour-cloning loss.

Environment
    A fixed palette of 12 distinct colours (the 12-step hue wheel); 8 are meta-training colours,
    4 (every third) are held out for testing. A scene has ``K`` targets at random positions
    (at least 0.2 apart) with distinct colours, and the agent at a random start. A task is
    "go to the target of colour c", given only by one expert demonstration in one scene; the
    policy is tested in *new* scenes (new positions, new distractor colours, new start) with the
    same goal colour. Training tasks use only training colours (goal and distractors); test
    tasks have a held-out goal colour and distractors from the whole palette. The expert is a
    proportional controller ``a = gain (target - agent)`` with its length clipped to
    ``max_speed``; success is ending within ``radius`` of the right target.

Policy (the same architecture for every method; ``--policy``)
    Each target i gets features ``z_i = [rgb_i, target_i - agent, |target_i - agent|]``,
    shared across targets (the target order is random, so the policy is permutation-equivariant).
    ``generic`` (default): attention scores ``s_i = v . phi(z_i)`` (``phi``: 2 ReLU layers of
    32), ``w = softmax(s)``, a value ``psi(z_i)`` (1 ReLU layer of 32) per target, and a learned
    linear read-out ``a = max_speed * (U sum_i w_i psi(z_i) + c)``, clipped to ``max_speed``.
    Nothing says that the action is "go to a target": it must be learned. Ablations with a
    hand-built read-out ``a = clip(g sum_i w_i (target_i - agent))``: ``geo`` (scores from
    ``z_i``) and ``colour`` (scores from ``rgb_i`` only).

Methods
    * MAML (second order) on the BC loss (MSE on actions in units of ``max_speed``): adapt on the
      demo of scene A, outer loss on the demo of scene B of the same task. ``--adapt``: which
      weights the inner loop changes (``v``: the score vector only, default; ``score``: the
      scoring MLP; ``head``; ``all``); ``--meta-sgd`` (default on): a learned inner lr per
      adapted weight, initialised at ``--inner-lr``. Test: 1, 2, 3, 5 inner steps.
    * BC from scratch: the same architecture, randomly initialised, trained with Adam on all
      weights on the one demo (lr and steps chosen on 200 training-colour tasks).
    * demo-conditioned: the same architecture with ``c_demo`` concatenated to every ``z_i``,
      where ``c_demo`` is the colour of the demo-scene target nearest to the demo's final
      position (the demo's summary); trained on BC across training tasks, same time budget.
    * chance: the expert driving to a uniformly random one of the K = 4 targets.

Why the first draft (989e599) did not adapt: its BC loss was on raw actions (|a| <= 0.08), so
the loss and its gradients were ~1 / 0.08^2 = 156 times smaller than here; an inner step with
lr 0.5 barely moved the weights (``--raw-loss`` reproduces that scale). Tasks were continuous
hues with held-out hues interleaved between training hues (untested guess: a one-step change to
a colour score then also moves its neighbours'; only the loss scale was checked, see
scripts/pilot_meta_imitation_notes.md). Here: the loss in units of max_speed, a palette of 12
distinct colours, adapting only the score vector with a learned inner lr.

Run:  PYTHONPATH=. python scripts/pilot_meta_imitation.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# ------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------

PALETTE = np.array([
    (1.0, 0.0, 0.0), (1.0, 0.5, 0.0), (1.0, 1.0, 0.0), (0.5, 1.0, 0.0),
    (0.0, 1.0, 0.0), (0.0, 1.0, 0.5), (0.0, 1.0, 1.0), (0.0, 0.5, 1.0),
    (0.0, 0.0, 1.0), (0.5, 0.0, 1.0), (1.0, 0.0, 1.0), (1.0, 0.0, 0.5)], dtype=np.float32)
TEST_COLOURS = np.array([1, 4, 7, 10])
TRAIN_COLOURS = np.array([i for i in range(12) if i not in TEST_COLOURS])
ENV = dict(K=4, T=20, max_speed=0.08, gain=0.5, radius=0.08, min_sep=0.2)


def sample_positions(rng, n, K, min_sep):
    pos = rng.uniform(0.1, 0.9, size=(n, K, 2))
    while True:
        d = np.linalg.norm(pos[:, :, None] - pos[:, None], axis=-1) + np.eye(K) * 9
        bad = d.min(axis=(1, 2)) < min_sep
        if not bad.any():
            return pos
        pos[bad] = rng.uniform(0.1, 0.9, size=(bad.sum(), K, 2))


def make_scenes(rng, goal_colour, distractor_pool, env=ENV):
    """Scenes for goal colours ``goal_colour`` (n,): dict of colours idx (n, K), positions
    (n, K, 2), goal slot (n,), start (n, 2)."""
    n, K = len(goal_colour), env["K"]
    cols = np.zeros((n, K), dtype=int)
    for i, g in enumerate(goal_colour):
        pool = distractor_pool[distractor_pool != g]
        cols[i, 0] = g
        cols[i, 1:] = rng.choice(pool, size=K - 1, replace=False)
        cols[i] = cols[i, rng.permutation(K)]
    goal = np.argmax(cols == goal_colour[:, None], axis=1)
    return dict(cols=cols, rgb=PALETTE[cols], pos=sample_positions(rng, n, K, env["min_sep"]),
                goal=goal, start=rng.uniform(0.0, 1.0, size=(n, 2)))


def clip_speed(a, m):
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a * np.minimum(1.0, m / np.maximum(n, 1e-12))


def rollout(scenes, policy, env=ENV):
    """``policy(agent (n,2), t) -> action (n,2)``; returns agent positions (n,T,2), actions
    (n,T,2) and the final position (n,2)."""
    x = scenes["start"].copy()
    xs, acts = [], []
    for t in range(env["T"]):
        a = clip_speed(np.asarray(policy(x, t), dtype=np.float64), env["max_speed"])
        xs.append(x.copy())
        acts.append(a)
        x = np.clip(x + a, 0.0, 1.0)
    return np.stack(xs, 1).astype(np.float32), np.stack(acts, 1).astype(np.float32), x


def expert_policy(scenes, goal=None, env=ENV):
    g = scenes["goal"] if goal is None else goal
    tgt = scenes["pos"][np.arange(len(g)), g]
    return lambda x, t: env["gain"] * (tgt - x)


def success(scenes, final, env=ENV):
    tgt = scenes["pos"][np.arange(len(final)), scenes["goal"]]
    return np.linalg.norm(final - tgt, axis=-1) < env["radius"]


def demos(scenes, env=ENV):
    xs, acts, _ = rollout(scenes, expert_policy(scenes, env=env), env)
    return dict(x=xs, a=acts, rgb=scenes["rgb"].astype(np.float32),
                pos=scenes["pos"].astype(np.float32))


def demo_colour(scenes, d):
    """The colour of the target nearest to where the demo ended (the conditioned policy's
    summary of the demo)."""
    final = np.clip(d["x"][:, -1] + d["a"][:, -1], 0, 1)
    k = np.argmin(np.linalg.norm(scenes["pos"] - final[:, None], axis=-1), axis=1)
    return scenes["rgb"][np.arange(len(k)), k].astype(np.float32)


def task_batch(rng, n, split, env=ENV):
    """n tasks: demo A (support) and demo B (query) of the same goal colour."""
    goals = rng.choice(TRAIN_COLOURS if split == "train" else TEST_COLOURS, size=n)
    pool = TRAIN_COLOURS if split == "train" else np.arange(12)
    sa, sb = make_scenes(rng, goals, pool, env), make_scenes(rng, goals, pool, env)
    da, db = demos(sa, env), demos(sb, env)
    return dict(goals=goals, pool=pool, sa=sa, sb=sb, da=da, db=db, ctx=demo_colour(sa, da))


def tf_batch(tb):
    f = lambda d: {k: tf.constant(v) for k, v in d.items()}  # noqa: E731
    return dict(s=f(tb["da"]), q=f(tb["db"]), ctx=tf.constant(tb["ctx"]))


# ------------------------------------------------------------------------------------------
# Policy: per-target scores, softmax attention, clipped proportional action
# ------------------------------------------------------------------------------------------

def names_for(adapt):
    keys = ("W1", "b1", "W2", "b2", "v", "lg") if POLICY["kind"] != "generic" else \
        ("W1", "b1", "W2", "b2", "v", "P1", "c1", "U", "c")
    head = {"head": ("v", "lg", "U", "c"), "v": ("v",), "all": keys,
            "score": ("W1", "b1", "W2", "b2", "v")}[adapt]
    return tuple(k for k in keys if k in head)


def init_params(rng, in_dim=3, hidden=32):
    g = lambda a, b: rng.uniform(-1, 1, (a, b)) * np.sqrt(6.0 / (a + b))  # noqa: E731
    p = dict(W1=g(in_dim, hidden), b1=np.zeros(hidden), W2=g(hidden, hidden),
             b2=np.zeros(hidden), v=g(hidden, 1)[:, 0])
    if POLICY["kind"] == "generic":  # a learned value per target and a learned read-out
        p.update(P1=g(in_dim, hidden), c1=np.zeros(hidden), U=g(hidden, 2), c=np.zeros(2))
    else:  # the action is gain * (attended target - agent)
        p.update(lg=np.zeros(()))
    return p


POLICY = {"kind": "geo"}


def in_dim(ctx=False):
    return (3 if POLICY["kind"] == "colour" else 6) + (3 if ctx else 0)


def scores(p, rgb, pos, x, ctx=None):
    """Per-task params (leading axis B) -> scores (B, T, K). ``rgb`` (B, K, 3), ``pos``
    (B, K, 2), ``x`` the agent (B, T, 2). ``colour``: features are the colour only; ``geo``:
    the colour, the target's offset from the agent and its distance."""
    T = tf.shape(x)[1]
    z = tf.broadcast_to(rgb[:, None], [tf.shape(rgb)[0], T, tf.shape(rgb)[1], 3])
    if POLICY["kind"] != "colour":
        off = pos[:, None] - x[:, :, None]
        z = tf.concat([z, off, tf.norm(off, axis=-1, keepdims=True)], -1)
    if ctx is not None:
        c = tf.broadcast_to(ctx[:, None, None], tf.concat([tf.shape(z)[:3], [3]], 0))
        z = tf.concat([z, c], -1)
    h = tf.nn.relu(tf.einsum("btkc,bch->btkh", z, p["W1"]) + p["b1"][:, None, None])
    h = tf.nn.relu(tf.einsum("btkh,bhj->btkj", h, p["W2"]) + p["b2"][:, None, None])
    s = tf.einsum("btkh,bh->btk", h, p["v"])
    if POLICY["kind"] != "generic":
        return s
    w = tf.nn.softmax(s, -1)
    val = tf.nn.relu(tf.einsum("btkc,bch->btkh", z, p["P1"]) + p["c1"][:, None, None])
    pooled = tf.einsum("btk,btkh->bth", w, val)
    return tf.einsum("bth,bhd->btd", pooled, p["U"]) + p["c"][:, None]  # the raw action


def actions(p, d, ctx=None, m=ENV["max_speed"]):
    if POLICY["kind"] == "generic":
        a = m * scores(p, d["rgb"], d["pos"], d["x"], ctx)
    else:
        w = tf.nn.softmax(scores(p, d["rgb"], d["pos"], d["x"], ctx), -1)
        tgt = tf.einsum("btk,bkd->btd", w, d["pos"])
        a = tf.exp(p["lg"])[:, None, None] * (tgt - d["x"])
    n = tf.norm(a, axis=-1, keepdims=True)
    return a * tf.minimum(1.0, m / tf.maximum(n, 1e-9))


def bc_loss(p, d, ctx=None, m=ENV["max_speed"]):
    """Per-task BC loss (B,): mean squared action error, in units of max_speed (with
    ``POLICY["raw_loss"]``, in raw units, as the first draft had it: 1 / max_speed^2 = 156
    times smaller, and so are its gradients)."""
    scale = 1.0 if POLICY.get("raw_loss") else m
    return tf.reduce_mean(tf.reduce_sum(tf.square((actions(p, d, ctx) - d["a"]) / scale), -1),
                          -1)


def tile(p, B):
    return {k: tf.tile(v[None], [B] + [1] * len(v.shape)) for k, v in p.items()}


def inner_adapt(p, d, lrs, steps, names, first_order=False):
    """``steps`` SGD steps on the per-task BC loss, for parameters ``names``; ``lrs`` maps a
    name to a scalar or a per-parameter tensor."""
    fast = dict(p)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch([fast[k] for k in names])
            loss = tf.reduce_sum(bc_loss(fast, d))
        grads = tape.gradient(loss, [fast[k] for k in names])
        for k, g in zip(names, grads):
            if first_order:
                g = tf.stop_gradient(g)
            fast[k] = fast[k] - lrs[k] * g
    return fast


def numpy_rollout_policy(p, scenes, ctx=None):
    """Closed-loop policy from per-task params (numpy dict, leading axis n)."""
    pt = {k: tf.constant(v, tf.float32) for k, v in p.items()}
    rgb = tf.constant(scenes["rgb"], tf.float32)
    pos = tf.constant(scenes["pos"], tf.float32)
    c = None if ctx is None else tf.constant(ctx)
    g = np.exp(p["lg"])[:, None] if "lg" in p else None

    def policy(x, t):
        if g is None:
            return ENV["max_speed"] * _scores_fn(pt, rgb, pos, tf.constant(x[:, None], tf.float32),
                                                 c).numpy()[:, 0]
        s = _scores_fn(pt, rgb, pos, tf.constant(x[:, None], tf.float32), c).numpy()[:, 0]
        w = np.exp(s - s.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        return g * (np.einsum("bk,bkd->bd", w, scenes["pos"]) - x)

    return policy


_scores_fn = tf.function(scores, reduce_retracing=True)


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def train_maml(seed, cfg, budget_s, log=print):
    rng = np.random.default_rng(seed)
    tf.random.set_seed(seed)
    theta = {k: tf.Variable(np.asarray(v, np.float32), name=k)
             for k, v in init_params(rng, in_dim=in_dim(), hidden=cfg["hidden"]).items()}
    names = names_for(cfg["adapt"])
    alphas = {k: tf.Variable(np.full(theta[k].shape, cfg["inner_lr"], np.float32),
                             name="alpha_" + k) for k in names}
    train_vars = list(theta.values()) + (list(alphas.values()) if cfg["meta_sgd"] else [])
    opt = tf.keras.optimizers.Adam(cfg["meta_lr"])
    B = cfg["meta_batch"]

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            p = tile({k: v for k, v in theta.items()}, B)
            lrs = {k: (alphas[k][None] if cfg["meta_sgd"] else cfg["inner_lr"]) for k in names}
            fast = inner_adapt(p, batch["s"], lrs, cfg["inner_steps"], names)
            loss = tf.reduce_mean(bc_loss(fast, batch["q"]))
        grads = tape.gradient(loss, train_vars)
        opt.apply_gradients(zip(grads, train_vars))
        return loss

    t0, n, losses = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < budget_s:
        losses.append(float(step(tf_batch(task_batch(rng, B, "train")))))
        n += 1
        if n % 500 == 0:
            log(f"  maml step {n} loss {np.mean(losses[-500:]):.3f} "
                f"({time.perf_counter() - t0:.0f}s)")
    params = {k: v.numpy() for k, v in theta.items()}
    lrs = {k: (alphas[k].numpy() if cfg["meta_sgd"] else cfg["inner_lr"]) for k in names}
    return params, lrs, names, dict(steps=n, wall_s=time.perf_counter() - t0)


def train_conditioned(seed, cfg, budget_s, log=print):
    rng = np.random.default_rng(seed + 1000)
    theta = {k: tf.Variable(np.asarray(v, np.float32), name=k)
             for k, v in init_params(rng, in_dim=in_dim(True), hidden=cfg["hidden"]).items()}
    vars_ = list(theta.values())
    opt = tf.keras.optimizers.Adam(cfg["meta_lr"])
    B = cfg["meta_batch"]

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(bc_loss(tile(theta, B), batch["q"], batch["ctx"]))
        opt.apply_gradients(zip(tape.gradient(loss, vars_), vars_))
        return loss

    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < budget_s:
        step(tf_batch(task_batch(rng, B, "train")))
        n += 1
    return {k: v.numpy() for k, v in theta.items()}, dict(steps=n,
                                                          wall_s=time.perf_counter() - t0)


def adapt_numpy(params, lrs, names, demo_np, steps, first_order=True):
    """Adapt ``params`` (shared, numpy) to each task's demo: per-task numpy params."""
    B = len(demo_np["x"])
    p = tile({k: tf.constant(np.asarray(v, np.float32)) for k, v in params.items()}, B)
    d = {k: tf.constant(v) for k, v in demo_np.items()}
    lr_t = {k: (tf.constant(np.asarray(lrs[k], np.float32))[None]
                if np.ndim(lrs[k]) else float(lrs[k])) for k in names}
    fast = inner_adapt(p, d, lr_t, steps, names, first_order=True) if steps else p
    return {k: v.numpy() for k, v in fast.items()}


def bc_scratch(init, demo_np, lr, steps):
    """Adam on each task's demo BC loss from the same random init (all weights)."""
    B = len(demo_np["x"])
    p = {k: tf.Variable(v) for k, v in
         tile({k: tf.constant(np.asarray(v, np.float32)) for k, v in init.items()}, B).items()}
    d = {k: tf.constant(v) for k, v in demo_np.items()}
    opt = tf.keras.optimizers.Adam(lr)
    vs = list(p.values())

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(bc_loss(p, d))  # per-task params: sum = independent tasks
        opt.apply_gradients(zip(tape.gradient(loss, vs), vs))

    for _ in range(steps):
        step()
    return {k: v.numpy() for k, v in p.items()}


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------


def eval_scenes(tb, n_scenes, seed):
    """``n_scenes`` new scenes per task (same goal colour): a list of scene dicts (n,)."""
    rng = np.random.default_rng(seed)
    return [make_scenes(rng, tb["goals"], tb["pool"]) for _ in range(n_scenes)]


def success_rates(per_task_params, scenes_list, ctx=None):
    hits = []
    for sc in scenes_list:
        _, _, final = rollout(sc, numpy_rollout_policy(per_task_params, sc, ctx))
        hits.append(success(sc, final))
    return np.mean(hits, axis=0)  # per task


def chance_rates(scenes_list, seed):
    rng = np.random.default_rng(seed)
    hits = []
    for sc in scenes_list:
        g = rng.integers(0, ENV["K"], size=len(sc["goal"]))
        _, _, final = rollout(sc, expert_policy(sc, goal=g))
        hits.append(success(sc, final))
    return np.mean(hits, axis=0)


def ci(r):
    r = np.asarray(r, float)
    return float(r.mean()), float(1.96 * r.std(ddof=1) / np.sqrt(len(r)))


def fmt(r):
    m, c = ci(r)
    return f"{100 * m:5.1f}% ± {100 * c:4.1f}"


def choose_bc(init, cfg, seed):
    """BC-from-scratch's (lr, steps): best mean success on training tasks."""
    rng = np.random.default_rng(20_000 + seed)
    val = task_batch(rng, cfg["val_tasks"], "train")
    sc = eval_scenes(val, 2, 30_000 + seed)
    best, table = None, {}
    for lr in cfg["bc_lrs"]:
        for st in cfg["bc_steps"]:
            r = success_rates(bc_scratch(init, val["da"], lr, st), sc).mean()
            table[f"{lr}/{st}"] = round(float(r), 3)
            if best is None or r > best[0]:
                best = (r, lr, st)
    return best[1], best[2], table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    ap.add_argument("--adapt", default="v", choices=["all", "head", "v", "score"])
    ap.add_argument("--meta-sgd", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--inner-lr", type=float, default=1.0)
    ap.add_argument("--inner-steps", type=int, default=1)
    ap.add_argument("--test-tasks", type=int, default=500)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--skip-conditioned", action="store_true")
    ap.add_argument("--skip-bc", action="store_true")
    ap.add_argument("--raw-loss", action="store_true",
                    help="BC loss on raw actions (the first draft's scale)")
    ap.add_argument("--policy", default="generic", choices=["geo", "colour", "generic"])
    a = ap.parse_args()
    POLICY["kind"] = a.policy
    POLICY["raw_loss"] = a.raw_loss
    cfg = dict(policy=a.policy, raw_loss=a.raw_loss, hidden=a.hidden, adapt=a.adapt,
               meta_sgd=a.meta_sgd, inner_lr=a.inner_lr,
               inner_steps=a.inner_steps, meta_lr=1e-3, meta_batch=32, val_tasks=200,
               bc_lrs=(0.01, 0.03, 0.1), bc_steps=(20, 100, 300))
    print("config", json.dumps(cfg))
    t_all = time.perf_counter()
    test = task_batch(np.random.default_rng(12345), a.test_tasks, "test")
    test_sc = eval_scenes(test, a.scenes, 54321)
    # the same held-out-combination check: new tasks with *training* colours
    trcol = task_batch(np.random.default_rng(777), a.test_tasks, "train")
    trcol_sc = eval_scenes(trcol, a.scenes, 4321)
    results = {"chance": [fmt(chance_rates(test_sc, 99))]}
    print(f"chance (random target)          : {results['chance'][0]}")
    for seed in a.seeds:
        t0 = time.perf_counter()
        params, lrs, names, info = train_maml(seed, cfg, a.budget)
        print(f"seed {seed}: MAML trained {info['steps']} steps in {info['wall_s']:.0f}s")
        if cfg["meta_sgd"]:
            print("  learned inner lr means:",
                  {k: round(float(np.mean(v)), 3) for k, v in lrs.items()})
        B = a.test_tasks
        tiled = {k: np.repeat(np.asarray(v, np.float32)[None], B, 0) for k, v in params.items()}
        r0 = success_rates(tiled, test_sc)
        print(f"  MAML unadapted (held-out colours): {fmt(r0)}")
        for st in (1, 2, 3, 5):
            r = success_rates(adapt_numpy(params, lrs, names, test["da"], st), test_sc)
            rt = success_rates(adapt_numpy(params, lrs, names, trcol["da"], st), trcol_sc)
            print(f"  MAML {st} step(s): held-out colours {fmt(r)} | train colours, new "
                  f"tasks {fmt(rt)}")
            results.setdefault(f"MAML {st} step", []).append(fmt(r))
        results.setdefault("MAML unadapted", []).append(fmt(r0))
        print(f"  (MAML eval done at {time.perf_counter() - t0:.0f}s)")
        if not a.skip_bc:
            init = init_params(np.random.default_rng(seed + 500), in_dim=in_dim(), hidden=a.hidden)
            lr, st, table = choose_bc(init, cfg, seed)
            print(f"  BC scratch grid (train-colour val success): {table} -> lr {lr} steps {st}")
            rb = success_rates(bc_scratch(init, test["da"], lr, st), test_sc)
            print(f"  BC from scratch (held-out colours): {fmt(rb)}")
            results.setdefault("BC scratch", []).append(fmt(rb))
        if not a.skip_conditioned:
            cparams, cinfo = train_conditioned(seed, cfg, a.budget)
            tiled = {k: np.repeat(v[None], B, 0) for k, v in cparams.items()}
            rc = success_rates(tiled, test_sc, test["ctx"])
            rct = success_rates(tiled, trcol_sc, trcol["ctx"])
            print(f"  demo-conditioned ({cinfo['steps']} steps): held-out colours {fmt(rc)}"
                  f" | train colours {fmt(rct)}")
            results.setdefault("demo-conditioned", []).append(fmt(rc))
        print(f"  seed {seed} wall {time.perf_counter() - t0:.0f}s", flush=True)
    print("summary", json.dumps(results, indent=1))
    print(f"total wall {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
