"""The LSTM meta-learner of Ravi & Larochelle (2017), "Optimization as a model for few-shot
learning", written functionally with ``keras.ops``.

The learner is a small conv net whose parameters are ONE flat vector ``theta``: the meta-learner
is an LSTM whose cell state *is* ``theta``. At every inner step ``t`` it reads the learner's
gradient ``g_t`` and loss ``L_t`` on the support set and updates, coordinate by coordinate with
weights shared across all coordinates::

    h_t          = LSTM_1(preprocess(g_t), preprocess(L_t); h_{t-1})          (hidden size H)
    i_t          = sigmoid([h_t, theta_{t-1}, i_{t-1}] . w_I + b_I)           (learning rate)
    f_t          = sigmoid([h_t, theta_{t-1}, f_{t-1}] . w_F + b_F)           (shrinkage)
    theta_t      = f_t * theta_{t-1} - i_t * g_t                              (cell update)

``theta_0 = c_0`` is learned too: it is the learner's initialisation. As in the paper, the
gradient (and loss) fed to the meta-learner are treated as constants (``stop_gradient``), so the
meta-gradient ignores second derivatives through the learner's gradient.

``preprocess`` above is Andrychowicz et al. (2016)'s log/sign preprocessing,
:func:`mlbook_utils.gradient_preprocessing.preprocess_gradient`, the function chapter 1.3's
learned optimizer uses (``lstm_meta_learner.preprocess_gradient`` is that very function).

Everything here is a pure function of lists of tensors, so it runs on any Keras backend; the only
backend-specific line is :func:`mlbook_utils.autodiff.compile_fn` (``tf.function`` / ``jax.jit``).
Chapter 1.4's settings for every scale are :data:`SETTINGS`, and :func:`experiment` (the runner's
``lstm-meta-learner``) meta-trains and tests one meta-learner per test setting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import registry

# compile_fn is the one backend switch (tf.function / jax.jit), shared with other chapters.
from .autodiff import compile_fn
from .evaluation import show_progress

# Andrychowicz et al.'s preprocessing, the very function chapter 1.3's optimizer uses.
from .gradient_preprocessing import preprocess_gradient

# --------------------------------------------------------------------------------------------
# The learner: a small conv net with a flat parameter vector
# --------------------------------------------------------------------------------------------


@dataclass
class LearnerSpec:
    """Shapes of the learner's parameters, and how they sit in the flat vector ``theta``.

    ``blocks`` blocks of [3x3 conv (no bias), batch norm (batch statistics, learned scale and
    shift), ReLU, 2x2 max-pool], then a dense layer to ``n_way`` logits.
    """

    n_way: int = 5
    filters: int = 16
    blocks: int = 4
    image_size: int = 28
    channels: int = 1
    shapes: list = field(default_factory=list)
    names: list = field(default_factory=list)

    def __post_init__(self):
        shapes, names, c_in, size = [], [], self.channels, self.image_size
        for b in range(self.blocks):
            shapes += [(3, 3, c_in, self.filters), (self.filters,), (self.filters,)]
            names += [f"conv{b}/kernel", f"bn{b}/gamma", f"bn{b}/beta"]
            c_in, size = self.filters, size // 2
        shapes += [(size * size * self.filters, self.n_way), (self.n_way,)]
        names += ["dense/kernel", "dense/bias"]
        self.shapes, self.names = shapes, names

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(s)) for s in self.shapes]

    @property
    def n_params(self) -> int:
        return sum(self.sizes)


def init_theta(spec: LearnerSpec, seed: int = 0) -> np.ndarray:
    """A flat initial parameter vector: He-normal convs, BN scale 1 / shift 0, small dense."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, shape in zip(spec.names, spec.shapes):
        if name.endswith("kernel"):
            fan_in = int(np.prod(shape[:-1]))
            std = math.sqrt(2.0 / fan_in) if name.startswith("conv") else math.sqrt(1.0 / fan_in)
            parts.append(rng.normal(0.0, std, size=shape))
        elif name.endswith("gamma"):
            parts.append(np.ones(shape))
        else:
            parts.append(np.zeros(shape))
    return np.concatenate([p.ravel() for p in parts]).astype(np.float32)


def unflatten(spec: LearnerSpec, theta) -> list:
    """Split the flat vector into the learner's tensors (views, so gradients flow back)."""
    from keras import ops

    out, start = [], 0
    for shape, size in zip(spec.shapes, spec.sizes):
        out.append(ops.reshape(theta[start:start + size], shape))
        start += size
    return out


def learner_forward(spec: LearnerSpec, theta, x):
    """Logits (N, n_way) of images ``x`` (N, 28, 28, 1). Batch norm uses the batch's statistics
    (as the paper's learner does, in the inner loop and at test time)."""
    from keras import ops

    params = unflatten(spec, theta)
    h = x
    for b in range(spec.blocks):
        kernel, gamma, beta = params[3 * b: 3 * b + 3]
        h = ops.conv(h, kernel, strides=1, padding="same")
        mean = ops.mean(h, axis=(0, 1, 2))
        var = ops.var(h, axis=(0, 1, 2))
        h = (h - mean) / ops.sqrt(var + 1e-5) * gamma + beta
        h = ops.max_pool(ops.relu(h), pool_size=2, strides=2)
    h = ops.reshape(h, (ops.shape(h)[0], -1))
    return ops.matmul(h, params[-2]) + params[-1]


def cross_entropy(logits, labels):
    """Mean sparse softmax cross-entropy."""
    from keras import ops

    return ops.mean(ops.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def accuracy(logits, labels):
    from keras import ops

    return ops.mean(ops.cast(ops.equal(ops.argmax(logits, axis=-1), labels), "float32"))


# --------------------------------------------------------------------------------------------
# The meta-learner
# --------------------------------------------------------------------------------------------


def init_meta_params(spec: LearnerSpec, hidden: int = 20, seed: int = 0,
                     input_bias=(-5.0, -4.0), forget_bias=(4.0, 6.0)) -> dict[str, np.ndarray]:
    """Initial meta-parameters. The paper's advice: a large forget-gate bias (here U(4, 6):
    f ~ 1, keep the parameters) and a small input-gate bias (here U(-5, -4) by default: i ~ 0.01,
    a small learning rate)."""
    rng = np.random.default_rng(seed)
    n_in = 4  # preprocessed gradient (2) and loss (2)
    u = lambda lo, hi, shape: rng.uniform(lo, hi, size=shape).astype(np.float32)  # noqa: E731
    lim = 1.0 / math.sqrt(hidden)
    return {
        "c0": init_theta(spec, seed),
        "lstm/kernel": u(-lim, lim, (n_in + hidden, 4 * hidden)),
        "lstm/bias": np.zeros(4 * hidden, np.float32),
        "w_i": u(-0.01, 0.01, (hidden + 2, 1)),
        "b_i": u(*input_bias, (1,)),
        "w_f": u(-0.01, 0.01, (hidden + 2, 1)),
        "b_f": u(*forget_bias, (1,)),
    }


META_KEYS = ("c0", "lstm/kernel", "lstm/bias", "w_i", "b_i", "w_f", "b_f")


def meta_lstm_step(meta, state, theta, grad, loss, p: float = 10.0):
    """One step of the two-layer meta-learner, for all P coordinates at once.

    ``meta``: dict of meta-parameters; ``state = (h, c, i_prev, f_prev)`` with h, c of shape
    (P, H) and i_prev, f_prev of shape (P, 1); ``theta``, ``grad``: (P,); ``loss``: scalar.
    Returns ``(theta_new, state_new)``.
    """
    from keras import ops

    h, c, i_prev, f_prev = state
    n = ops.shape(theta)[0]
    x = ops.concatenate([
        preprocess_gradient(grad, p),
        ops.broadcast_to(preprocess_gradient(ops.reshape(loss, (1,)), p), (n, 2)),
    ], axis=-1)  # (P, 4)
    # Layer 1: an ordinary LSTM, coordinate-wise with shared weights.
    z = ops.matmul(ops.concatenate([x, h], axis=-1), meta["lstm/kernel"]) + meta["lstm/bias"]
    zi, zf, zg, zo = ops.split(z, 4, axis=-1)
    c = ops.sigmoid(zf) * c + ops.sigmoid(zi) * ops.tanh(zg)
    h = ops.sigmoid(zo) * ops.tanh(c)
    # Layer 2: the meta-learner cell, whose cell state is the learner's parameters.
    th = ops.reshape(theta, (-1, 1))
    i_t = ops.sigmoid(ops.matmul(ops.concatenate([h, th, i_prev], -1), meta["w_i"]) + meta["b_i"])
    f_t = ops.sigmoid(ops.matmul(ops.concatenate([h, th, f_prev], -1), meta["w_f"]) + meta["b_f"])
    theta_new = f_t[:, 0] * theta - i_t[:, 0] * grad
    return theta_new, (h, c, i_t, f_t)


def inner_loop(spec: LearnerSpec, meta, support, support_labels, inner_steps: int,
               p: float = 10.0, return_trace: bool = False):
    """Adapt the learner to one support set with the meta-learner; return the final ``theta``.

    With ``return_trace``, also return the list of (i_t, f_t, support loss) of every step.
    The learner's gradient and loss enter the meta-learner through ``stop_gradient``: the
    paper's first-order simplification, which also saves the cost of second derivatives.
    """
    from keras import ops

    from .autodiff import stop_gradient, value_and_grad

    theta = meta["c0"]
    n, hidden = ops.shape(theta)[0], ops.shape(meta["lstm/bias"])[0] // 4
    state = (ops.zeros((n, hidden)), ops.zeros((n, hidden)), ops.zeros((n, 1)), ops.zeros((n, 1)))
    trace = []
    for _ in range(inner_steps):
        loss, (grad,) = value_and_grad(
            lambda ps: cross_entropy(learner_forward(spec, ps[0], support), support_labels),
            [theta])
        grad, loss = stop_gradient(grad), stop_gradient(loss)
        theta, state = meta_lstm_step(meta, state, theta, grad, loss, p)
        if return_trace:
            trace.append((state[2][:, 0], state[3][:, 0], loss))
    return (theta, trace) if return_trace else theta


def episode_loss(spec, meta, support, support_labels, query, query_labels, inner_steps, p=10.0):
    """The meta-training objective of one episode: the query loss after the inner loop."""
    theta = inner_loop(spec, meta, support, support_labels, inner_steps, p)
    logits = learner_forward(spec, theta, query)
    return cross_entropy(logits, query_labels), accuracy(logits, query_labels)


# --------------------------------------------------------------------------------------------
# Meta-training and prediction
# --------------------------------------------------------------------------------------------


class LSTMMetaLearner:
    """Holds the meta-parameters as Keras variables and meta-trains them with Adam.

    ``fit(sampler_fn, episodes)`` draws batches of episodes from ``sampler_fn(batch)`` (which
    returns an ``Episode`` with a leading batch axis) and takes one Adam step per batch, with
    each gradient tensor's norm clipped to ``clip_norm`` (the paper's value; Keras's
    ``clipnorm`` clips tensor by tensor, not the global norm).
    """

    def __init__(self, n_way=5, filters=16, blocks=4, hidden=20, inner_steps=5, meta_lr=1e-3,
                 clip_norm=0.25, p=10.0, seed=0, input_bias=(-5.0, -4.0)):
        import keras

        self.spec = LearnerSpec(n_way=n_way, filters=filters, blocks=blocks)
        self.inner_steps, self.p = inner_steps, p
        init = init_meta_params(self.spec, hidden, seed, input_bias=input_bias)
        self.variables = {k: keras.Variable(init[k], name=k.replace("/", "_")) for k in META_KEYS}
        self.optimizer = keras.optimizers.Adam(meta_lr, clipnorm=clip_norm)
        self.optimizer.build(list(self.variables.values()))
        self.history: dict[str, list] = {"loss": [], "accuracy": []}
        self.train_wall_s, self.train_episodes = 0.0, 0
        self._train_step = compile_fn(self._train_step_impl)
        self._adapt_predict = compile_fn(self._adapt_predict_impl)

    def meta_params(self) -> dict:
        return {k: v.value for k, v in self.variables.items()}

    def _train_step_impl(self, meta_values, support, support_labels, query, query_labels):
        """The meta-gradient as a pure function of values (so that it compiles with jax.jit as
        well as tf.function): returns the loss, the accuracy and the gradients. The optimizer
        step is taken outside, on the Keras variables."""
        from keras import ops

        from .autodiff import value_and_grad

        keys = list(META_KEYS)
        batch = support.shape[0]

        def objective(params):
            meta = dict(zip(keys, params))
            losses, accs = [], []
            for b in range(batch):
                loss, acc = episode_loss(self.spec, meta, support[b], support_labels[b],
                                         query[b], query_labels[b], self.inner_steps, self.p)
                losses.append(loss)
                accs.append(acc)
            return ops.mean(ops.stack(losses)), ops.mean(ops.stack(accs))

        (loss, acc), grads = value_and_grad(objective, list(meta_values), has_aux=True)
        return loss, acc, grads

    def fit(self, sample_batch, episodes: int, meta_batch_size: int = 1, progress: bool = True,
            desc: str = "meta-training", time_budget_s: float | None = None):
        """Meta-train on ``episodes`` episodes; ``sample_batch(b)`` returns an Episode batch.

        With ``time_budget_s``, training stops early once that many seconds have passed (checked
        before each step); ``train_episodes`` counts the episodes actually trained.
        """
        from tqdm.auto import tqdm

        steps = max(1, episodes // meta_batch_size)
        start = time.perf_counter()
        bar = tqdm(range(steps), desc=desc, leave=False, disable=not show_progress(progress))
        meta_vars = [self.variables[k] for k in META_KEYS]
        done = 0
        for _ in bar:
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                break
            ep = sample_batch(meta_batch_size)
            loss, acc, grads = self._train_step(
                [v.value for v in meta_vars], ep.support, ep.support_labels.astype("int32"),
                ep.query, ep.query_labels.astype("int32"))
            self.optimizer.apply(grads, meta_vars)
            self.history["loss"].append(float(loss))
            self.history["accuracy"].append(float(acc))
            if len(self.history["loss"]) % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(self.history['loss'][-20:]):.3f}")
            done += 1
        bar.close()
        self.train_wall_s += time.perf_counter() - start
        self.train_episodes += done * meta_batch_size
        return self

    def _adapt_predict_impl(self, meta, support, support_labels, query):
        theta = inner_loop(self.spec, meta, support, support_labels, self.inner_steps, self.p)
        return learner_forward(self.spec, theta, query)

    def predict(self, support, support_labels, query, n_way):
        """Batch predictor for ``evaluation.evaluate``: scores (B, Q, n_way)."""
        from keras import ops

        assert n_way == self.spec.n_way, (n_way, self.spec.n_way)
        meta = self.meta_params()
        out = [ops.convert_to_numpy(self._adapt_predict(meta, s, sl.astype("int32"), q))
               for s, sl, q in zip(support, support_labels, query)]
        return np.stack(out)

    def gate_trace(self, support, support_labels):
        """Input and forget gates of every parameter at every inner step, for one episode:
        arrays (inner_steps, P), and the support loss per step (inner_steps,)."""
        from keras import ops

        _, trace = inner_loop(self.spec, self.meta_params(), support,
                              support_labels.astype("int32"), self.inner_steps, self.p,
                              return_trace=True)
        i = np.stack([ops.convert_to_numpy(t[0]) for t in trace])
        f = np.stack([ops.convert_to_numpy(t[1]) for t in trace])
        loss = np.array([float(ops.convert_to_numpy(t[2])) for t in trace])
        return i, f, loss


# --------------------------------------------------------------------------------------------
# Baselines: fine-tuning the same initialisation with SGD or Adam
# --------------------------------------------------------------------------------------------


def finetune_logits(spec, theta0, support, support_labels, query, lr, steps, optimizer):
    """Query logits after 0, 1, ..., ``steps`` SGD or Adam steps on the support set from
    ``theta0``: shape (steps + 1, Q, n_way)."""
    from keras import ops

    from .autodiff import value_and_grad

    theta, m, v = theta0, ops.zeros_like(theta0), ops.zeros_like(theta0)
    b1, b2, eps = 0.9, 0.999, 1e-8
    out = [learner_forward(spec, theta, query)]
    for t in range(1, steps + 1):
        _, (g,) = value_and_grad(
            lambda ps: cross_entropy(learner_forward(spec, ps[0], support), support_labels),
            [theta])
        if optimizer == "sgd":
            theta = theta - lr * g
        else:  # Adam, with bias correction
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            theta = theta - lr * (m / (1 - b1 ** t)) / (ops.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(learner_forward(spec, theta, query))
    return ops.stack(out)


class FineTuner:
    """Fine-tune the learner from a given flat initialisation with plain SGD or Adam.

    One compiled function returns the query logits after every step up to ``max_steps``, with
    the learning rate as an argument, so tuning (lr, steps) and testing share one trace.
    """

    def __init__(self, spec: LearnerSpec, theta0, optimizer: str = "sgd", max_steps: int = 10):
        from keras import ops

        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.spec, self.optimizer, self.max_steps = spec, optimizer, max_steps
        self.theta0 = ops.convert_to_tensor(np.asarray(theta0, np.float32))
        self._run = compile_fn(lambda s, sl, q, lr: finetune_logits(
            self.spec, self.theta0, s, sl, q, lr, self.max_steps, self.optimizer))

    def logits(self, support, support_labels, query, lr: float) -> np.ndarray:
        """Query logits after 0..max_steps steps, for a batch: (B, max_steps + 1, Q, n_way)."""
        from keras import ops

        lr = np.asarray(lr, np.float32)
        return np.stack([ops.convert_to_numpy(self._run(s, sl.astype("int32"), q, lr))
                         for s, sl, q in zip(support, support_labels, query)])

    def accuracy_curves(self, ep, lr: float) -> np.ndarray:
        """Query accuracy (%) after 0..max_steps steps for each episode of a batch: (B, steps+1)."""
        logits = self.logits(ep.support, ep.support_labels, ep.query, lr)
        return 100 * (logits.argmax(-1) == ep.query_labels[:, None, :]).mean(-1)

    def predictor(self, lr: float, steps: int):
        """A batch predictor for ``evaluation.evaluate``: fine-tune ``steps`` steps at ``lr``."""
        if not 0 <= steps <= self.max_steps:
            raise ValueError(f"steps must be in 0..{self.max_steps}, got {steps}")

        def predict(support, support_labels, query, n_way):
            return self.logits(support, support_labels, query, lr)[:, steps]
        return predict


# --------------------------------------------------------------------------------------------
# Chapter 1.4's settings and experiment
# --------------------------------------------------------------------------------------------

CHAPTER = "01_4_lstm_meta_learner"
DATASET = "omniglot-vinyals-test"
NAME = "LSTM meta-learner"

# tests, train_episodes (by shot), inner_steps, test_episodes, ft_tune_episodes, gate_episodes
_BY_SCALE = {
    "quick": (((5, 1),), {1: 100, 5: 0}, 5, 50, 5, 3),
    "cpu": (((5, 1), (5, 5)), {1: 700, 5: 400}, 5, 600, 40, 10),
    "full": (((5, 1), (5, 5)), {1: 20000, 5: 20000}, 8, 1000, 200, 20),
}
#: Chapter 1.4's settings, by scale. :func:`experiment` meta-trains one LSTM meta-learner per
#: ``tests`` setting (n_way, k_shot): ``train_episodes[k_shot]`` episodes (or ``train_episodes``
#: for every shot, when it is a number) of ``train_query`` queries per class, with Adam at
#: ``meta_lr``, each gradient tensor clipped to norm ``clip_norm`` (Keras's ``clipnorm``; the
#: paper's value), ``meta_batch_size``
#: episodes per meta step, ``inner_steps`` inner steps; the learner has ``blocks`` blocks of
#: ``filters`` filters, the meta-learner ``hidden`` units, an input-gate bias drawn from
#: U(``input_bias``); sampler and model seeds are the shot; ``time_budget_s`` (seconds, None: no
#: cap) stops each model's training early. Each model is tested on ``test_episodes`` episodes
#: with ``test_query`` queries per class, drawn from ``test_seed``. The ``quick`` scale trains
#: only the 1-shot model. The ``ft_*`` and ``gate_*`` keys are the notebook's own parts: the
#: fine-tuning baselines from c_0 (learning rates ``ft_sgd_lrs`` and ``ft_adam_lrs``: Adam's grid
#: reaches 0.3, since with four rates up to 0.03 its best was the grid's edge; tuned on
#: ``ft_tune_episodes`` validation episodes drawn from ``ft_val_seed``) and the gate traces
#: (``gate_episodes`` test episodes drawn from ``gate_seed``).
SETTINGS = {
    scale: dict(tests=tests, train_episodes=train, inner_steps=inner, train_query=15,
                meta_batch_size=1, meta_lr=5e-3, clip_norm=0.25, input_bias=(-2.0, -1.0),
                filters=16, blocks=4, hidden=20, time_budget_s=None, test_episodes=n_test,
                test_query=15, test_seed=registry.TEST_SEED,
                ft_sgd_lrs=(0.03, 0.1, 0.3, 1.0), ft_adam_lrs=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
                ft_tune_episodes=ft_tune, ft_val_seed=7, gate_episodes=gates, gate_seed=99)
    for scale, (tests, train, inner, n_test, ft_tune, gates) in _BY_SCALE.items()
}


def planned_episodes(settings: dict, k_shot: int) -> int:
    """The training episodes of the ``k_shot`` model: ``train_episodes[k_shot]``, or
    ``train_episodes`` itself when it is one number for every shot (``--train-episodes``)."""
    planned = settings["train_episodes"]
    if isinstance(planned, dict):
        if k_shot not in planned:
            raise ValueError(f"train_episodes has no entry for {k_shot}-shot: {planned}")
        planned = planned[k_shot]
    return int(planned)


def build(settings: dict, n_way: int, k_shot: int) -> LSTMMetaLearner:
    """The untrained meta-learner of the ``n_way``-way ``k_shot``-shot setting."""
    s = settings
    return LSTMMetaLearner(n_way=n_way, filters=s["filters"], blocks=s["blocks"],
                           hidden=s["hidden"], inner_steps=s["inner_steps"], meta_lr=s["meta_lr"],
                           clip_norm=s["clip_norm"], seed=k_shot, input_bias=s["input_bias"])


@registry.register("lstm-meta-learner", chapter=CHAPTER, settings=SETTINGS,
                   describe="LSTM meta-learner (Ravi & Larochelle), one 5-way model per shot")
def experiment(settings: dict, *, tests=None, data=None, runner=None,
               progress=True) -> registry.Outcome:
    """Chapter 1.4's main result: for each (n_way, k_shot) of ``tests`` (default:
    ``settings["tests"]``), meta-train an LSTM meta-learner (:func:`build`,
    :meth:`LSTMMetaLearner.fit`) on episodes of Omniglot's training classes from an
    ``EpisodeSampler`` (seed: the shot), then test it on the book's test episodes of the test
    classes and append its record.

    ``data``: ``{"train": ..., "test": ...}`` when the caller has them loaded. The outcome's
    ``results`` map ``("LSTM meta-learner", n_way, k_shot)`` to the ``EvalResult``; ``models``
    and ``histories`` (loss and accuracy per meta step, episodes, wall time) are keyed by
    ``(n_way, k_shot)``."""
    from . import config, episodes

    s = settings
    tests = list(tests or s["tests"])
    config.seed_everything(0)
    train, test = registry.omniglot(data, "train"), registry.omniglot(data, "test")
    out = registry.Outcome(settings=s)
    for n_way, k_shot in tests:
        planned = planned_episodes(s, k_shot)
        sampler = episodes.EpisodeSampler(train, n_way, k_shot, s["train_query"], seed=k_shot)
        model = build(s, n_way, k_shot)
        model.fit(sampler.sample, planned, meta_batch_size=s["meta_batch_size"],
                  progress=progress, desc=f"{n_way}-way {k_shot}-shot",
                  time_budget_s=s["time_budget_s"])
        wall = model.train_wall_s
        hist = dict(model.history, episodes=model.train_episodes, wall_s=wall,
                    episodes_per_s=model.train_episodes / wall if wall else 0.0)
        out.models[n_way, k_shot], out.histories[n_way, k_shot] = model, hist
        if runner:
            print(f"{NAME} {n_way}-way {k_shot}-shot: trained {model.train_episodes} of "
                  f"{planned} episodes in {wall:.0f} s ({hist['episodes_per_s']:.2f} "
                  f"episodes/s) on {config.device()}")
        registry.test_and_record(
            out, NAME, model.predict, test, s, chapter=CHAPTER, dataset_name=DATASET,
            tests=[(n_way, k_shot)], runner=runner, progress=progress,
            inner_steps=s["inner_steps"],
            **registry.train_fields(hist, way=n_way, shot=k_shot, query=s["train_query"],
                                    planned=planned, budget=s["time_budget_s"]))
    return out
