"""Learning to learn by gradient descent by gradient descent (Andrychowicz et al. 2016).

A coordinate-wise two-layer LSTM *optimizer* proposes the update of every parameter of an
*optimizee* from that parameter's gradient. The LSTM's weights are shared across coordinates, so
one small network (a few thousand weights) can optimise problems of any size. It is trained by
unrolling the optimizee's optimisation and backpropagating the summed optimizee losses into the
LSTM's weights, with truncated backpropagation through time.

Everything here is a pure function of arrays built with ``keras.ops``; the gradients go through
:func:`mlbook_utils.autodiff.value_and_grad`, so the code runs on any Keras backend. The only
backend-specific line is :func:`_compile` (``tf.function`` on TensorFlow, ``jax.jit`` on JAX).

Shapes: a *batch* of ``B`` optimizee problems is solved at once; their parameters are a matrix
``theta`` of shape ``(B, P)``, one row per problem. The LSTM sees ``B * P`` coordinates.

The gradient preprocessing is :func:`mlbook_utils.gradient_preprocessing.preprocess_gradient`,
shared with chapter 1.4. Chapter 1.3's settings for every scale are :data:`SETTINGS`, and
:func:`experiment` (the runner's ``learned-optimizer``) runs its quadratic experiment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import registry
from .autodiff import compile_fn, stop_gradient, value_and_grad
from .evaluation import show_progress
from .gradient_preprocessing import preprocess_gradient

# --------------------------------------------------------------------------------------------
# Compiling (backend-specific: see mlbook_utils.autodiff.compile_fn)
# --------------------------------------------------------------------------------------------


# The backend switch for compiling lives in mlbook_utils.autodiff, with value_and_grad.
_compile = compile_fn


def _ops():
    from keras import ops

    return ops


# --------------------------------------------------------------------------------------------
# Gradient preprocessing (paper, appendix A): one function, shared with chapter 1.4
# --------------------------------------------------------------------------------------------

# ``preprocess_gradient`` lives in mlbook_utils.gradient_preprocessing; it is imported above so
# that ``learned_optimizer.preprocess_gradient`` is that very function.


# --------------------------------------------------------------------------------------------
# The coordinate-wise LSTM optimizer
# --------------------------------------------------------------------------------------------


def init_lstm_optimizer(hidden: int = 20, layers: int = 2, n_inputs: int = 2, seed: int = 0):
    """The optimizer's weights: for each LSTM layer a kernel (in + hidden, 4 hidden) and a bias
    (forget gates at 1), then a linear output layer (hidden, 1) and its bias. NumPy float32."""
    rng = np.random.default_rng(seed)
    params, n_in = [], n_inputs
    for _ in range(layers):
        fan = n_in + hidden
        limit = np.sqrt(6.0 / (fan + 4 * hidden))
        params.append(rng.uniform(-limit, limit, (fan, 4 * hidden)).astype("float32"))
        bias = np.zeros(4 * hidden, "float32")
        bias[hidden:2 * hidden] = 1.0  # forget gate bias
        params.append(bias)
        n_in = hidden
    params.append(rng.uniform(-0.1, 0.1, (hidden, 1)).astype("float32"))
    params.append(np.zeros(1, "float32"))
    return params


def init_lstm_state(n_coords: int, hidden: int = 20, layers: int = 2):
    """Zero (h, c) for every layer, one row per coordinate."""
    return [np.zeros((n_coords, hidden), "float32") for _ in range(2 * layers)]


def lstm_optimizer(params, grad, state, *, p: float = 10.0, output_scale: float = 0.1):
    """One step of the learned optimizer: ``(update, new_state)`` for gradient ``grad``.

    ``grad`` has any shape; every coordinate is an independent row of the same two-layer LSTM
    (shared weights). The update has the shape of ``grad``.
    """
    ops = _ops()
    shape = ops.shape(grad)
    x = ops.reshape(preprocess_gradient(grad, p), (-1, 2))
    layers = (len(params) - 2) // 2
    new_state = []
    for i in range(layers):
        kernel, bias = params[2 * i], params[2 * i + 1]
        h, c = state[2 * i], state[2 * i + 1]
        z = ops.matmul(ops.concatenate([x, h], axis=-1), kernel) + bias
        zi, zf, zg, zo = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(zf) * c + ops.sigmoid(zi) * ops.tanh(zg)
        h = ops.sigmoid(zo) * ops.tanh(c)
        new_state += [h, c]
        x = h
    update = (ops.matmul(x, params[-2]) + params[-1]) * output_scale
    return ops.reshape(update, shape), new_state


# --------------------------------------------------------------------------------------------
# Hand-designed optimizers: update(grad, state, lr) -> (update, new_state)
# --------------------------------------------------------------------------------------------


def sgd(grad, state, lr):
    """Gradient descent: theta <- theta - lr * g."""
    return -lr * grad, state


def nag(grad, state, lr, momentum: float = 0.9):
    """Nesterov's accelerated gradient (Sutskever et al. 2013 form): v <- mu v + g,
    theta <- theta - lr (g + mu v)."""
    v = momentum * state[0] + grad
    return -lr * (grad + momentum * v), [v]


def rmsprop(grad, state, lr, rho: float = 0.9, eps: float = 1e-8):
    """RMSprop: a running mean of g^2 scales the step of each coordinate."""
    ops = _ops()
    s = rho * state[0] + (1 - rho) * grad * grad
    return -lr * grad / (ops.sqrt(s) + eps), [s]


def adam(grad, state, lr, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
    """Adam with bias correction; state = (m, v, t)."""
    ops = _ops()
    m, v, t = state
    t = t + 1.0
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return -lr * m_hat / (ops.sqrt(v_hat) + eps), [m, v, t]


BASELINES = {"SGD": sgd, "RMSprop": rmsprop, "Adam": adam, "NAG": nag}


def baseline_state(name: str, theta):
    """Zero state of a hand-designed optimizer for parameters shaped like ``theta``."""
    z = np.zeros_like(np.asarray(theta))
    return {"SGD": [], "NAG": [z], "RMSprop": [z], "Adam": [z, z.copy(), np.float32(0.0)]}[name]


# --------------------------------------------------------------------------------------------
# Optimizees: a batch of B problems, loss(theta, data, step_data) -> (B,) losses
# --------------------------------------------------------------------------------------------


@dataclass
class Quadratic:
    """f(theta) = ||W theta - y||^2 with W (dim, dim) and y (dim,) Gaussian, per problem."""

    dim: int = 10
    init_std: float = 0.01

    @property
    def n_params(self) -> int:
        return self.dim

    def sample(self, rng: np.random.Generator, batch: int, steps: int):
        """``(theta0, data, step_data)``: initial parameters, the problems, per-step data (none)."""
        w = rng.normal(size=(batch, self.dim, self.dim)).astype("float32")
        y = rng.normal(size=(batch, self.dim)).astype("float32")
        theta0 = (self.init_std * rng.normal(size=(batch, self.dim))).astype("float32")
        return theta0, (w, y), None

    def loss(self, theta, data, step_data=None):
        ops = _ops()
        w, y = data
        r = ops.squeeze(ops.matmul(w, ops.expand_dims(theta, -1)), -1) - y
        return ops.sum(r * r, axis=-1)


@dataclass
class MLPClassifier:
    """A one-hidden-layer MLP trained on minibatches of a small 10-way classification problem.

    Each problem in a batch has its own ``n_classes`` classes of images (``images``: an array
    (n_classes_total, per_class, D) of flattened, standardised images) and its own random
    initialisation. ``step_data`` holds the minibatch of every step: x (T, B, mb, D), y (T, B, mb).
    """

    images: np.ndarray
    hidden: int = 20
    n_classes: int = 10
    minibatch: int = 64
    activation: str = "sigmoid"

    @property
    def n_inputs(self) -> int:
        return self.images.shape[-1]

    @property
    def n_params(self) -> int:
        d, h, c = self.n_inputs, self.hidden, self.n_classes
        return d * h + h + h * c + c

    def init_params(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        d, h, c = self.n_inputs, self.hidden, self.n_classes
        w1 = rng.normal(size=(batch, d * h)) / np.sqrt(d)
        w2 = rng.normal(size=(batch, h * c)) / np.sqrt(h)
        z = np.zeros
        return np.concatenate([w1, z((batch, h)), w2, z((batch, c))], 1).astype("float32")

    def sample(self, rng: np.random.Generator, batch: int, steps: int):
        """``(theta0, data, step_data)`` for ``batch`` problems of ``n_classes`` random classes."""
        n_total, per_class, d = self.images.shape
        xs, ys = [], []
        for _ in range(batch):
            classes = rng.choice(n_total, self.n_classes, replace=False)
            x = self.images[classes].reshape(-1, d)
            y = np.repeat(np.arange(self.n_classes), per_class)
            idx = np.stack([rng.choice(len(x), self.minibatch, replace=False)
                            for _ in range(steps + 1)])
            xs.append(x[idx])
            ys.append(y[idx])
        step_x = np.stack(xs, 1).astype("float32")  # (T + 1, B, mb, D)
        step_y = np.stack(ys, 1).astype("int32")
        return self.init_params(rng, batch), (), (step_x, step_y)

    def unpack(self, theta):
        ops = _ops()
        d, h, c = self.n_inputs, self.hidden, self.n_classes
        sizes = [d * h, h, h * c, c]
        cuts = list(np.cumsum(sizes)[:-1])
        w1, b1, w2, b2 = ops.split(theta, cuts, axis=-1)
        return (ops.reshape(w1, (-1, d, h)), ops.expand_dims(b1, 1),
                ops.reshape(w2, (-1, h, c)), ops.expand_dims(b2, 1))

    def logits(self, theta, x):
        ops = _ops()
        w1, b1, w2, b2 = self.unpack(theta)
        act = ops.sigmoid if self.activation == "sigmoid" else ops.relu
        return ops.matmul(act(ops.matmul(x, w1) + b1), w2) + b2

    def loss(self, theta, data, step_data):
        ops = _ops()
        x, y = step_data
        ce = ops.sparse_categorical_crossentropy(y, self.logits(theta, x), from_logits=True)
        return ops.mean(ce, axis=-1)


def omniglot_images(split: str = "background", pool: int = 4) -> np.ndarray:
    """Omniglot characters as (n_classes, 20, D) flattened images, average-pooled by ``pool``
    (28x28 -> 7x7 for pool=4, 14x14 for pool=2) and standardised."""
    from .data import load_omniglot

    ds = load_omniglot(split)
    x = ds.x[ds.class_index][..., 0]  # (n_classes, per_class, 28, 28)
    s = 28 // pool
    x = x.reshape(*x.shape[:2], s, pool, s, pool).mean(axis=(3, 5)).reshape(*x.shape[:2], s * s)
    return ((x - x.mean()) / x.std()).astype("float32")


# --------------------------------------------------------------------------------------------
# Unrolled optimisation and meta-training with truncated BPTT
# --------------------------------------------------------------------------------------------


def _step_slice(step_data, t):
    return None if step_data is None else tuple(s[t] for s in step_data)


def unroll(opt_params, theta, state, problem, data, step_data, steps: int, output_scale=0.1):
    """Run ``steps`` steps of the LSTM optimizer on a batch of problems.

    Returns ``(meta_loss, theta, state, losses)``. ``losses[t]`` is the (B,) loss at theta_t
    (t = 0..steps); ``meta_loss`` is the mean over problems of sum_{t=1..steps} f(theta_t) /
    steps. The optimizee's gradient is an input to the LSTM, and like the paper we drop its
    second derivatives: ``stop_gradient`` on it, so no Hessian of f is ever needed.
    """
    ops = _ops()
    losses = []
    for t in range(steps + 1):
        sd = _step_slice(step_data, t)

        def f(p, sd=sd):
            per_problem = problem.loss(p[0], data, sd)
            return ops.sum(per_problem), per_problem

        (_, per_problem), (grad,) = value_and_grad(f, [theta], has_aux=True)
        losses.append(per_problem)
        if t == steps:
            break
        update, state = lstm_optimizer(opt_params, stop_gradient(grad), state,
                                       output_scale=output_scale)
        theta = theta + update
    meta_loss = ops.mean(ops.sum(ops.stack(losses[1:]), axis=0)) / steps
    return meta_loss, theta, state, ops.stack(losses)


def make_meta_step(problem, unroll_steps: int = 20, output_scale: float = 0.1):
    """A compiled function: one truncation of ``unroll_steps`` optimizee steps and the gradient
    of its meta-loss with respect to the optimizer's weights.

    ``meta_step(opt_params, theta, state, data, step_data) ->
    (meta_loss, grads, theta, state, losses)``; theta and state come back detached (truncation).
    """

    def meta_step(opt_params, theta, state, data, step_data):
        def fn(params):
            meta_loss, th, st, losses = unroll(params, theta, state, problem, data, step_data,
                                               unroll_steps, output_scale)
            return meta_loss, (th, st, losses)

        (meta_loss, (th, st, losses)), grads = value_and_grad(fn, opt_params, has_aux=True)
        th = stop_gradient(th)
        st = [stop_gradient(s) for s in st]
        return meta_loss, grads, th, st, losses

    return _compile(meta_step)


class AdamState:
    """A plain NumPy Adam for the optimizer's own weights (the paper meta-trains with Adam)."""

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, beta1, beta2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def apply(self, params, grads):
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = np.asarray(g)
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            m_hat = self.m[i] / (1 - self.b1 ** self.t)
            v_hat = self.v[i] / (1 - self.b2 ** self.t)
            out.append((p - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype("float32"))
        return out


def _slice_steps(step_data, start, stop):
    return None if step_data is None else tuple(s[start:stop] for s in step_data)


def meta_train(problem, opt_params, *, iterations: int, batch: int, steps: int = 100,
               unroll_steps: int = 20, meta_lr: float = 1e-3, output_scale: float = 0.1,
               seed: int = 0, progress: bool = True, desc: str = "meta-training",
               time_budget_s: float | None = None):
    """Meta-train the LSTM optimizer: each iteration draws ``batch`` new problems and optimises
    them for ``steps`` steps, updating the optimizer after every truncation of ``unroll_steps``.

    Returns ``(opt_params, history)`` with history a dict of per-iteration mean meta-losses,
    wall time, the number of iterations and optimizee trajectories done, and trajectories per
    second. With ``time_budget_s``, training stops early once that many seconds have passed
    (checked before each iteration, so every iteration that starts is finished).
    """
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    meta_step = make_meta_step(problem, unroll_steps, output_scale)
    adam_state = AdamState(opt_params, lr=meta_lr)
    hidden = opt_params[-2].shape[0]
    layers = (len(opt_params) - 2) // 2
    history = []
    start = time.perf_counter()
    bar = tqdm(range(iterations), desc=desc, leave=False, disable=not show_progress(progress))
    for _ in bar:
        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
            break
        theta, data, step_data = problem.sample(rng, batch, steps)
        state = init_lstm_state(theta.size, hidden, layers)
        chunk_losses = []
        for t0 in range(0, steps, unroll_steps):
            sd = _slice_steps(step_data, t0, t0 + unroll_steps + 1)
            meta_loss, grads, theta, state, _ = meta_step(opt_params, theta, state, data, sd)
            opt_params = adam_state.apply(opt_params, grads)
            chunk_losses.append(float(meta_loss))
        history.append(np.mean(chunk_losses))
    bar.close()
    wall = time.perf_counter() - start
    done = len(history)
    return opt_params, {"meta_loss": np.array(history), "wall_s": wall, "iterations": done,
                        "trajectories": done * batch, "trajectories_per_s": done * batch / wall}


# --------------------------------------------------------------------------------------------
# Meta-test: loss curves of the learned and the hand-designed optimizers
# --------------------------------------------------------------------------------------------


def run_learned(problem, opt_params, theta, data, step_data, steps: int,
                chunk: int = 20, output_scale: float = 0.1):
    """Loss curves (steps + 1, B) of the LSTM optimizer (no meta-gradient; compiled chunks)."""

    def rollout(params, th, st, dt, sd):
        _, th, st, losses = unroll(params, th, st, problem, dt, sd, chunk, output_scale)
        return th, st, losses

    rollout = _compile(rollout)
    hidden, layers = opt_params[-2].shape[0], (len(opt_params) - 2) // 2
    state = init_lstm_state(np.asarray(theta).size, hidden, layers)
    curves = []
    for t0 in range(0, steps, chunk):
        sd = _slice_steps(step_data, t0, t0 + chunk + 1)
        theta, state, losses = rollout(opt_params, theta, state, data, sd)
        losses = np.asarray(losses)
        curves.append(losses if t0 == 0 else losses[1:])
    return np.concatenate(curves)[: steps + 1]


def run_baseline(problem, name: str, lrs, theta, data, step_data, steps: int):
    """Loss curves (len(lrs), steps + 1, B) of a hand-designed optimizer for every learning rate.

    All learning rates run at once: the batch of problems is tiled once per learning rate.
    """
    ops = _ops()
    lrs = np.asarray(lrs, "float32")
    n_lr, b = len(lrs), np.asarray(theta).shape[0]
    theta = np.tile(theta, (n_lr, 1))
    data = tuple(np.tile(d, (n_lr,) + (1,) * (d.ndim - 1)) for d in data)
    if step_data is not None:
        step_data = tuple(np.tile(s, (1, n_lr) + (1,) * (s.ndim - 2)) for s in step_data)
    lr = np.repeat(lrs, b)[:, None]
    rule = BASELINES[name]
    state = baseline_state(name, theta)
    theta = ops.convert_to_tensor(theta)
    losses = []

    @_compile
    def step(th, st, sd):
        (_, per), (g,) = value_and_grad(
            lambda p: (ops.sum(problem.loss(p[0], data, sd)), problem.loss(p[0], data, sd)),
            [th], has_aux=True)
        update, st = rule(g, st, lr)
        return th + update, st, per

    for t in range(steps + 1):
        sd = _step_slice(step_data, t)
        new_theta, new_state, per = step(theta, state, sd)
        losses.append(np.asarray(per))
        theta, state = new_theta, new_state
    return np.stack(losses).reshape(steps + 1, n_lr, b).transpose(1, 0, 2)


def tune_and_test(problem, lrs, tune, test, steps: int, names=tuple(BASELINES)):
    """For each hand-designed optimizer, pick the learning rate with the lowest mean final loss
    on the ``tune`` problems, then return its curves on the ``test`` problems.

    ``tune`` and ``test`` are ``(theta0, data, step_data)`` triples. Returns
    ``{name: {"lr": best, "grid": {lr: mean final tuning loss}, "curves": (steps + 1, B)}}``.
    """
    out = {}
    for name in names:
        tune_curves = run_baseline(problem, name, lrs, *tune, steps)
        final = tune_curves[:, -1, :].mean(axis=1)
        final = np.where(np.isfinite(final), final, np.inf)
        best = float(lrs[int(np.argmin(final))])
        curves = run_baseline(problem, name, [best], *test, steps)[0]
        out[name] = {"lr": best, "grid": dict(zip(map(float, lrs), map(float, final))),
                     "curves": curves}
    return out


# --------------------------------------------------------------------------------------------
# A figure: the optimizer-optimizee loop
# --------------------------------------------------------------------------------------------


def draw_optimizer_loop(ax=None):
    """Boxes and arrows: the optimizer sends updates, the optimizee returns loss and gradient."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.axis("off")
    boxes = {"optimizer": (0.5, 1.2, "Optimizer $m_\\phi$\n(2-layer LSTM,\nper coordinate)",
                           "#dbe9f6"),
             "optimizee": (6.5, 1.2, "Optimizee $f(\\theta)$\n(quadratic or MLP)", "#fde2c8")}
    for x, y, text, colour in boxes.values():
        ax.add_patch(FancyBboxPatch((x, y), 3, 1.6, boxstyle="round,pad=0.1", fc=colour,
                                    ec="black"))
        ax.text(x + 1.5, y + 0.8, text, ha="center", va="center", fontsize=10)
    arrow = dict(arrowstyle="-|>", mutation_scale=18, lw=1.6, color="black")
    ax.add_patch(FancyArrowPatch((3.6, 2.5), (6.4, 2.5), connectionstyle="arc3,rad=-0.25",
                                 **arrow))
    ax.text(5.0, 3.35, "parameter update $g_t$\n$\\theta_{t+1} = \\theta_t + g_t$",
            ha="center", va="center", fontsize=9)
    ax.add_patch(FancyArrowPatch((6.4, 1.5), (3.6, 1.5), connectionstyle="arc3,rad=-0.25",
                                 **arrow))
    ax.text(5.0, 0.55, "loss $f(\\theta_t)$ and gradient $\\nabla_\\theta f(\\theta_t)$",
            ha="center", va="center", fontsize=9)
    ax.set_title("The optimizer-optimizee loop (Andrychowicz et al. 2016, Fig. 1)")
    return ax


# --------------------------------------------------------------------------------------------
# Chapter 1.3's settings and experiment
# --------------------------------------------------------------------------------------------

CHAPTER = "01_3_learned_optimizer"

# n_tune, n_test, meta_iters, meta_batch, mlp_n_tune, mlp_n_test, mlp_iters, mlp_batch
_BY_SCALE = {
    "quick": (100, 100, 15, 64, 5, 5, 2, 2),
    "cpu": (200, 500, 150, 128, 20, 40, 30, 4),
    "full": (1000, 1000, 2000, 128, 100, 100, 500, 16),
}
#: Chapter 1.3's settings, by scale. The quadratic experiment (:func:`experiment`, which the
#: notebook and the runner call): ``n_tune`` tuning and ``n_test`` test quadratics of dimension
#: ``dim`` (drawn from ``tune_seed`` and ``test_seed``), ``steps`` optimizee steps each; the
#: hand-designed optimizers try every learning rate of ``np.logspace(*lr_logspace)``; the LSTM
#: optimizer (``hidden`` units, ``layers`` layers, initial weights from ``init_seed``) is
#: meta-trained for ``meta_iters`` iterations of ``meta_batch`` new quadratics, in truncations
#: of ``unroll`` steps, with Adam at ``meta_lr`` (problems drawn from ``meta_seed``);
#: ``time_budget_s`` (seconds, None: no cap) stops meta-training early.
#: The ``mlp_*`` keys are the chapter's MLP part, which only the notebook runs: Omniglot
#: characters average-pooled by ``mlp_pool``, an MLP with ``mlp_hidden`` sigmoid units on
#: minibatches of ``mlp_minibatch``; ``mlp_n_tune`` / ``mlp_n_test`` problems (seeds
#: ``mlp_tune_seed`` / ``mlp_test_seed``), learning rates ``np.logspace(*mlp_lr_logspace)``, and
#: meta-training for ``mlp_iters`` iterations of ``mlp_batch`` problems with Adam at
#: ``mlp_meta_lr`` (problems from ``mlp_meta_seed``); ``steps``, ``unroll`` and the optimizer's
#: shape are the quadratic's.
SETTINGS = {
    scale: dict(dim=10, steps=100, n_tune=n_tune, n_test=n_test, lr_logspace=(-4, 0, 13),
                tune_seed=101, test_seed=registry.TEST_SEED, hidden=20, layers=2, init_seed=0,
                meta_iters=iters, meta_batch=batch, unroll=20, meta_lr=1e-3, meta_seed=1,
                time_budget_s=None,
                mlp_pool=4, mlp_hidden=20, mlp_minibatch=64, mlp_n_tune=mlp_tune,
                mlp_n_test=mlp_test, mlp_lr_logspace=(-3, 1, 9), mlp_tune_seed=202,
                mlp_test_seed=registry.TEST_SEED, mlp_iters=mlp_iters, mlp_batch=mlp_batch,
                mlp_meta_lr=3e-3, mlp_meta_seed=2)
    for scale, (n_tune, n_test, iters, batch, mlp_tune, mlp_test, mlp_iters, mlp_batch)
    in _BY_SCALE.items()
}
LSTM_NAME = "LSTM optimizer (learned)"


def learning_rates(logspace) -> np.ndarray:
    """The learning-rate grid ``np.logspace(start, stop, num)`` (float32) of a setting such as
    ``lr_logspace=(-4, 0, 13)``: 1e-4 ... 1, three per decade."""
    return np.logspace(*logspace).astype("float32")


@dataclass
class FinalLoss:
    """The loss after the last step on ``problems`` test problems: its mean (``value``), the
    half-width of its 95% confidence interval, its median, and the loss curves
    (steps + 1, problems) it comes from."""

    value: float
    ci95: float
    median: float
    problems: int
    curves: np.ndarray

    @classmethod
    def of(cls, curves) -> FinalLoss:
        from .evaluation import mean_ci95

        curves = np.asarray(curves)
        mean, ci = mean_ci95(curves[-1])
        return cls(mean, ci, float(np.median(curves[-1])), curves.shape[1], curves)

    def __str__(self) -> str:
        return (f"final loss {self.value:.3f} ± {self.ci95:.3f} (median {self.median:.3f}) "
                f"over {self.problems} test problems")

    __repr__ = __str__


@registry.register("learned-optimizer", chapter=CHAPTER, settings=SETTINGS,
                   aliases={"test_episodes": "n_test", "train_episodes": "meta_iters"},
                   describe="LSTM optimizer and tuned baselines on 10-D quadratics (final loss)")
def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Chapter 1.3 on 10-D quadratics: tune SGD, RMSprop, Adam and NAG on the learning-rate grid
    and the tuning problems, then test them (:func:`tune_and_test`); meta-train the LSTM
    optimizer (:func:`meta_train`) and test it (:func:`run_learned`) on the same test problems.
    Appends one record per optimizer: the mean loss after ``steps`` steps (``metric=
    "final_loss"``) with its 95% interval over the test problems.

    ``tests`` and ``data`` do not apply (there are no episodes, and the problems are drawn
    here). The outcome's ``results`` map ``(record name, None, None)`` to a :class:`FinalLoss`;
    ``histories`` and ``models`` hold the LSTM's meta-training history and weights; ``extra``
    holds ``baselines`` (the :func:`tune_and_test` result: learning rate, grid, curves),
    ``untrained`` (the LSTM before meta-training, a :class:`FinalLoss`), ``lr_grid``, the
    ``problem`` and its ``test_problems``."""
    from . import config, evaluation

    if tests:
        raise ValueError("the learned optimizer has no (n_way, k_shot) test settings")
    s = settings
    steps, n_test = s["steps"], s["n_test"]
    lr_grid = learning_rates(s["lr_logspace"])
    quad = Quadratic(dim=s["dim"])
    tune = quad.sample(np.random.default_rng(s["tune_seed"]), s["n_tune"], steps)
    test = quad.sample(np.random.default_rng(s["test_seed"]), n_test, steps)
    start = time.perf_counter()
    base = tune_and_test(quad, lr_grid, tune, test, steps)
    base_wall = time.perf_counter() - start

    phi0 = init_lstm_optimizer(hidden=s["hidden"], layers=s["layers"], seed=s["init_seed"])
    untrained = FinalLoss.of(run_learned(quad, phi0, *test, steps))
    phi, hist = meta_train(quad, phi0, iterations=s["meta_iters"], batch=s["meta_batch"],
                           steps=steps, unroll_steps=s["unroll"], meta_lr=s["meta_lr"],
                           seed=s["meta_seed"], progress=progress,
                           time_budget_s=s["time_budget_s"])
    done = int(hist["iterations"])
    if runner:
        print(f"{LSTM_NAME}: meta-trained {done} of {s['meta_iters']} iterations of "
              f"{s['meta_batch']} quadratics in {hist['wall_s']:.1f} s "
              f"({hist['trajectories_per_s']:.0f} trajectories/s) on {config.device()}")
    start = time.perf_counter()
    curves = {LSTM_NAME: run_learned(quad, phi, *test, steps)}
    lstm_eval_s = time.perf_counter() - start
    curves.update({f"{name} optimizer": r["curves"] for name, r in base.items()})

    dataset = f"quadratic-{s['dim']}d"
    out = registry.Outcome(settings=s, histories={LSTM_NAME: hist}, models={LSTM_NAME: phi},
                           extra=dict(baselines=base, untrained=untrained, lr_grid=lr_grid,
                                      problem=quad, test_problems=test))
    for name, c in curves.items():
        res = FinalLoss.of(c)
        out.results[name, None, None] = res
        extra = dict(steps=steps)
        if name == LSTM_NAME:
            extra.update(train_wall_s=round(hist["wall_s"], 1),
                         train_trajectories_per_s=round(hist["trajectories_per_s"], 1),
                         train_episodes=done * s["meta_batch"], train_iterations=done,
                         train_iterations_planned=s["meta_iters"], meta_batch=s["meta_batch"],
                         time_budget_s=s["time_budget_s"])
            wall = lstm_eval_s
        else:
            lr = base[name.removesuffix(" optimizer")]["lr"]
            extra.update(lr=lr, lr_grid=[float(v) for v in lr_grid],
                         wall_s_is="grid tuning + test of all four baselines")
            wall = base_wall
        rec = evaluation.make_record(name, dataset, None, None, res.value, res.ci95, n_test,
                                     wall, metric="final_loss", **extra,
                                     **registry.run_fields(runner))
        evaluation.append_record(CHAPTER, rec)
        out.records.append(rec)
        if runner:
            print(f"{name}: {res}")
    return out
