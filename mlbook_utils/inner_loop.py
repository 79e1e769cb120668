"""The inner-loop library: learning an initialisation (MAML and its family), on any backend.

An inner loop is a pure function of a list of parameter tensors. A Keras model is used only as
a function, through ``model.stateless_call``: fast weights are passed in, never written into the
model, so the gradient flows through every inner step::

    net = MetaNet(body, head)                       # two Keras models: features, then logits
    def task_loss(params, task):                    # one task -> its query loss after adapting
        fast = adapt(lambda p: cross_entropy(task["ys"], net(p, task["xs"])), params,
                     steps=1, lr=0.4)
        return cross_entropy(task["yq"], net(fast, task["xq"]))
    trainer = MetaTrainer(net.variables, task_loss, keras.optimizers.Adam(1e-3))
    trainer.step(tasks)                             # tasks: arrays with a leading task axis

A method is a few lines on top of :func:`adapt`, by what it adapts and how:

- **second or first order**: ``adapt(..., first_order=True)`` stops the gradient through the
  inner gradients (first-order MAML);
- **ANIL**: adapt only the head, on features computed once (:meth:`MetaNet.features`);
- **Meta-SGD**: ``lr`` may be a list of tensors, one per parameter, that are themselves trained
  (pass their variables to :class:`MetaTrainer` beside the network's);
- **CAML (CAVIA)**: adapt a context vector that starts at zero for every task
  (:func:`zeros_context`), the network's weights stay shared;
- **ADML**: :func:`input_gradient` gives the gradient of a loss with respect to the inputs, for
  FGSM adversarial examples (:func:`fgsm`);
- **gradient agreement**: :meth:`MetaTrainer.task_gradients` gives each task's meta-gradient,
  and ``MetaTrainer(..., combine=...)`` weighs them before the update.

The only backend-specific code is ``autodiff.value_and_grad`` and :func:`map_tasks` (``jax.vmap``
on JAX with an accelerator; otherwise a loop over the tasks, unrolled in the compiled graph). The
whole meta-step is compiled (``jax.jit`` or ``tf.function``), and the data it reads can stay on the
device: :class:`MetaTrainer` passes a fixed ``data`` argument (for example every training image)
to each step, and a task can be a few index arrays into it.

**Batch normalisation.** :class:`TaskBatchNorm` always normalises with the statistics of the
current batch, at training and at test time, as the reference MAML code did (cbfinn/maml). It
has no running statistics, so a model is a pure function of its trainable weights. At test
time the query set is normalised with its own statistics: this is transductive (the queries of
an episode influence each other's predictions), and the chapter says so. The moments are
computed with plain ``keras.ops`` (``mean`` of the centred square), whose second derivatives
are exact on every backend; Keras's own layer on TensorFlow stops the gradient through the
mean inside the variance, which makes second-order meta-gradients off by about 10 %.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .autodiff import compile_fn, stop_gradient, value_and_grad


def _backend() -> str:
    import keras

    return keras.backend.backend()


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def cross_entropy(labels, logits):
    """Mean cross-entropy of integer ``labels`` (..., Q) under ``logits`` (..., Q, n_way),
    written with ``log_softmax`` so that its second derivatives exist on every backend."""
    from keras import ops

    log_p = ops.log_softmax(logits, axis=-1)
    onehot = ops.one_hot(ops.cast(labels, "int32"), ops.shape(logits)[-1], dtype=log_p.dtype)
    return -ops.mean(ops.sum(onehot * log_p, axis=-1))


def mse(targets, predictions):
    """Mean squared error."""
    from keras import ops

    return ops.mean(ops.square(predictions - targets))


# --------------------------------------------------------------------------------------------
# Networks as functions
# --------------------------------------------------------------------------------------------


def _task_batch_norm_class():
    import keras
    from keras import ops

    class TaskBatchNorm(keras.layers.Layer):
        """Batch normalisation with the current batch's statistics, always (no running ones).

        ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``, the moments over every axis but
        the last. The variance is the mean of the centred square, so second derivatives are
        exact on every backend."""

        def __init__(self, epsilon: float = 1e-5, **kwargs):
            super().__init__(**kwargs)
            self.epsilon = epsilon

        def build(self, input_shape):
            dim = input_shape[-1]
            self.gamma = self.add_weight(shape=(dim,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(dim,), initializer="zeros", name="beta")

        def call(self, x):
            axes = tuple(range(len(x.shape) - 1))
            mean = ops.mean(x, axis=axes, keepdims=True)
            centred = x - mean
            var = ops.mean(ops.square(centred), axis=axes, keepdims=True)
            return self.gamma * centred / ops.sqrt(var + self.epsilon) + self.beta

        def get_config(self):
            return {**super().get_config(), "epsilon": self.epsilon}

    return TaskBatchNorm


_TBN = None


def TaskBatchNorm(**kwargs):  # noqa: N802 - builds a keras.layers.Layer subclass
    """A :class:`TaskBatchNorm` layer (the class is made on first use, so that importing this
    module does not import Keras)."""
    global _TBN
    if _TBN is None:
        _TBN = _task_batch_norm_class()
    return _TBN(**kwargs)


def mlp(inputs: int = 1, hidden=(40, 40), outputs: int = 1, context: int = 0, seed: int = 0):
    """The sinusoid network of Finn et al. (2017): ``inputs`` -> 40 -> 40 -> ``outputs``, ReLU,
    as a :class:`MetaNet` whose head is the last dense layer. With ``context > 0`` (CAML), a
    context vector of that size is concatenated to the input."""
    import keras
    from keras import layers

    init = keras.initializers.GlorotUniform
    x = inp = keras.Input(shape=(inputs + context,), name="x")
    for i, width in enumerate(hidden):
        x = layers.Dense(width, activation="relu", kernel_initializer=init(seed + i),
                         name=f"hidden{i + 1}")(x)
    body = keras.Model(inp, x, name="mlp_body")
    z = keras.Input(shape=(hidden[-1],), name="features")
    head = keras.Model(z, layers.Dense(outputs, kernel_initializer=init(seed + 99),
                                       name="out")(z), name="mlp_head")
    return MetaNet(body, head, context=context)


def conv_net(n_way: int, input_shape=(28, 28, 1), filters: int = 64, context: int = 0,
             film_block: int = 3, seed: int = 0):
    """The Omniglot network of the reference MAML code (cbfinn/maml): four blocks of a 3x3
    convolution with stride 2, :class:`TaskBatchNorm` and ReLU (28 -> 14 -> 7 -> 4 -> 2), the
    mean over the 2x2 map, and a dense head with ``n_way`` logits.

    With ``context > 0`` (CAML), the body takes a second input, a context vector of that size,
    that scales and shifts the feature maps of block ``film_block`` (FiLM):
    ``h * (1 + gamma(c)) + beta(c)`` with ``gamma``, ``beta`` linear in ``c`` (Glorot-initialised,
    zero bias); a zero context leaves the network unchanged."""
    import keras
    from keras import layers, ops

    init = keras.initializers.GlorotUniform
    x = inp = keras.Input(shape=input_shape, name="image")
    inputs = [inp]
    if context:
        ctx = keras.Input(shape=(context,), name="context")
        inputs.append(ctx)
    for i in range(4):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", kernel_initializer=init(seed + i),
                          name=f"block{i + 1}_conv")(x)
        x = TaskBatchNorm(name=f"block{i + 1}_bn")(x)
        if context and i + 1 == film_block:
            # Not a zero kernel: with W = 0 the context gets no gradient in the inner loop,
            # and W none in the outer loop either (d(W c')/dW = c' = 0), a fixed point.
            gb = layers.Dense(2 * filters, kernel_initializer=init(seed + 50), name="film")(ctx)
            gamma, beta = gb[:, None, None, :filters], gb[:, None, None, filters:]
            x = x * (1.0 + gamma) + beta
        x = layers.ReLU(name=f"block{i + 1}_relu")(x)
    x = layers.Lambda(lambda t: ops.mean(t, axis=(1, 2)), name="spatial_mean")(x)
    body = keras.Model(inputs if context else inp, x, name="conv_body")
    z = keras.Input(shape=(filters,), name="features")
    head = keras.Model(z, layers.Dense(n_way, kernel_initializer=init(seed + 99),
                                       name="logits")(z), name="conv_head")
    return MetaNet(body, head, context=context)


class MetaNet:
    """A network as a pure function of its weights: a ``body`` (inputs -> features) and a
    ``head`` (features -> outputs), two Keras models called through ``stateless_call``.

    ``params`` is the list of the body's then the head's trainable weights, in the order of
    :attr:`variables`. ``net(params, x)`` computes the outputs, and ``net(params, x, context=c)``
    feeds a context vector ``c`` (one per task, broadcast over the batch) to a CAML body."""

    def __init__(self, body, head, context: int = 0):
        self.body, self.head, self.context = body, head, context
        self.n_body = len(body.trainable_variables)
        for model in (body, head):
            if model.non_trainable_variables:
                raise ValueError(
                    f"{model.name} has non-trainable state "
                    f"({model.non_trainable_variables[0].path}):"
                    " a MetaNet must be a pure function of its trainable weights (use "
                    "TaskBatchNorm, not BatchNormalization)"
                )

    @property
    def variables(self) -> list:
        """The Keras variables, body first: what the outer optimizer updates."""
        return list(self.body.trainable_variables) + list(self.head.trainable_variables)

    def params(self) -> list:
        """The current weights as a list of tensors (a snapshot; the model is not changed)."""
        from keras import ops

        return [ops.convert_to_tensor(v.value) for v in self.variables]

    def split(self, params: Sequence) -> tuple[list, list]:
        """``(body params, head params)``."""
        return list(params[: self.n_body]), list(params[self.n_body :])

    def features(self, body_params: Sequence, x, context=None):
        """The body's output for inputs ``x`` with the given body weights."""
        from keras import ops

        if self.context:
            if context is None:
                context = zeros_context(self.context)
            context = ops.broadcast_to(context[None, :], (ops.shape(x)[0], self.context))
            # A body with one input takes the context concatenated to it (an MLP); a body with
            # two inputs takes it apart (FiLM in a conv net).
            x = ops.concatenate([x, context], axis=-1) if len(self.body.inputs) == 1 \
                else [x, context]
        out, _ = self.body.stateless_call(list(body_params), [], x, training=True)
        return out

    def logits(self, head_params: Sequence, z):
        out, _ = self.head.stateless_call(list(head_params), [], z, training=True)
        return out

    def __call__(self, params: Sequence, x, context=None):
        body, head = self.split(params)
        return self.logits(head, self.features(body, x, context))

    def count(self, which: str = "all") -> int:
        """The number of scalar weights in the body, the head, or ``all``."""
        models = {"body": [self.body], "head": [self.head], "all": [self.body, self.head]}[which]
        return int(sum(np.prod(v.shape) for m in models for v in m.trainable_variables))


def zeros_context(size: int):
    """A CAML context vector: zeros, the start of every task's adaptation."""
    from keras import ops

    return ops.zeros((size,), dtype="float32")


# --------------------------------------------------------------------------------------------
# The inner loop
# --------------------------------------------------------------------------------------------


def sgd_step(params: Sequence, grads: Sequence, lr) -> list:
    """One gradient step, ``p - lr * g`` for every parameter. ``lr`` is a number (MAML) or a
    list of tensors of the parameters' shapes (Meta-SGD's learned, per-parameter rates)."""
    if isinstance(lr, (list, tuple)):
        return [p - a * g for p, a, g in zip(params, lr, grads)]
    return [p - lr * g for p, g in zip(params, grads)]


def adapt(loss_fn: Callable, params: Sequence, *, steps: int, lr, first_order: bool = False
          ) -> list:
    """Fast weights after ``steps`` steps of gradient descent on ``loss_fn(params)``.

    Each step's gradient comes from ``autodiff.value_and_grad``, which an enclosing
    differentiation goes through: the result is a differentiable function of ``params`` (and of
    ``lr``), so the meta-gradient is exact (second order). With ``first_order=True`` the inner
    gradients are treated as constants (first-order MAML): the meta-gradient is then the query
    gradient at the fast weights. The loop is a Python loop, unrolled when compiled."""
    fast = list(params)
    for _ in range(steps):
        _, grads = value_and_grad(loss_fn, fast)
        if first_order:
            grads = [stop_gradient(g) for g in grads]
        fast = sgd_step(fast, grads, lr)
    return fast


def input_gradient(loss_fn: Callable, x):
    """``d loss_fn(x) / d x``: the gradient with respect to the inputs (for adversarial
    examples). It is returned as a constant (``stop_gradient``)."""
    _, (g,) = value_and_grad(lambda xs: loss_fn(xs[0]), [x])
    return stop_gradient(g)


def fgsm(loss_fn: Callable, x, epsilon: float, clip=(0.0, 1.0)):
    """The fast gradient sign method (Goodfellow et al. 2015): ``x + epsilon * sign(grad)``,
    clipped to the valid pixel range; a constant, not a path for the meta-gradient."""
    from keras import ops

    x_adv = x + epsilon * ops.sign(input_gradient(loss_fn, x))
    if clip is not None:
        x_adv = ops.clip(x_adv, clip[0], clip[1])
    return stop_gradient(x_adv)


# --------------------------------------------------------------------------------------------
# Many tasks at once, and the compiled meta-step
# --------------------------------------------------------------------------------------------


def _vmap_ok() -> bool:
    """Whether :func:`map_tasks` vectorises: on JAX with an accelerator. On JAX's CPU backend a
    vmapped conv net's meta-step (each task with its own fast weights) was about 0.23
    meta-steps/s on 2 cores, far slower than the tasks one after the other."""
    if _backend() != "jax":
        return False
    import jax

    return jax.default_backend() != "cpu"


def map_tasks(fn: Callable, tasks: dict, *shared):
    """``fn(task, *shared)`` for every task of ``tasks`` (a dict of arrays with a leading task
    axis), stacked along a new first axis (or a list of stacked outputs when ``fn`` returns a
    list). ``jax.vmap`` on JAX with a GPU or TPU (:func:`_vmap_ok`); otherwise a loop over the
    tasks, which a compiled function unrolls (the number of tasks must be known when it is
    traced): independent chains of operations, which TensorFlow runs side by side with
    ``config.task_parallel_threads``."""
    from keras import ops

    if _vmap_ok():
        import jax

        return jax.vmap(fn, in_axes=(0,) + (None,) * len(shared))(tasks, *shared)
    n = next(iter(tasks.values())).shape[0]
    outs = [fn({k: v[i] for k, v in tasks.items()}, *shared) for i in range(n)]
    if isinstance(outs[0], (list, tuple)):
        return [ops.stack([o[j] for o in outs]) for j in range(len(outs[0]))]
    return ops.stack(outs)


def batched(fn: Callable, chunk: int | None = 50) -> Callable:
    """``run(values, *arrays)``: ``fn(values, *items)`` for the items along the first axis of
    ``arrays`` (numpy), stacked into a numpy array. For evaluation: ``jax.jit(jax.vmap(fn))``
    on JAX, ``chunk`` items at a time; on other backends ``fn`` is compiled for one item and
    called item by item (a small graph, traced once per shape)."""
    from keras import ops

    if _backend() == "jax":
        import jax

        def run(values, *arrays):
            n = len(arrays[0])
            step = n if chunk is None else chunk
            outs = [np.asarray(many(list(values), tuple(a[i:i + step] for a in arrays)))
                    for i in range(0, n, step)]
            return np.concatenate(outs)

        def unpack(values, items):
            return fn(values, *items)

        many = jax.jit(jax.vmap(unpack, in_axes=(None, 0)))
        return run
    one = compile_fn(fn)

    def run(values, *arrays):
        values = list(values)
        return np.stack([ops.convert_to_numpy(one(values, *(a[i] for a in arrays)))
                         for i in range(len(arrays[0]))])

    return run


class MetaTrainer:
    """The outer loop: ``step(tasks)`` adapts to each task, averages the tasks' query losses,
    differentiates that average with respect to the meta-parameters (through the inner loop),
    and updates them with ``optimizer``. The whole step is one compiled function.

    ``variables`` are Keras variables (the network's, and any extra meta-parameters such as
    Meta-SGD's learning rates). ``task_loss(values, task, data)`` returns one task's loss from
    the variables' current values (a list in the same order), one task of the batch (a dict of
    arrays without the task axis) and ``data``, a fixed argument passed to every step (for
    example every training image, kept on the device; ``None`` when the tasks carry their own
    data). ``xla`` compiles the TensorFlow step with XLA (for small MLPs). ``combine``, if
    given, maps the tasks' flattened meta-gradients (tasks, P) to one
    weight per task (gradient agreement); by default every task weighs 1 / tasks.

    On JAX the weights live in the trainer between steps (no host round trip); call
    :meth:`sync` to write them into the variables (``values`` reads them at any time).
    """

    def __init__(self, variables: Sequence, task_loss: Callable, optimizer, *, data=None,
                 combine: Callable | None = None, xla: bool = False):
        from keras import ops

        self.variables = list(variables)
        self.task_loss = task_loss
        self.optimizer = optimizer
        self.combine = combine
        self.data = None if data is None else ops.convert_to_tensor(data)
        self.optimizer.build(self.variables)
        self.backend = _backend()
        self.steps = 0
        if self.backend == "jax":
            import jax

            self._values = [v.value for v in self.variables]
            self._opt = [v.value for v in self.optimizer.variables]
            self._step = jax.jit(self._jax_step)
        else:
            self._step = compile_fn(self._tf_step, xla=xla)

    # -- the loss of a meta-batch, and its gradient ---------------------------------------
    def batch_loss(self, values: Sequence, tasks: dict, data=None):
        """The mean of ``task_loss`` over the tasks (what the default meta-step minimises)."""
        from keras import ops

        return ops.mean(map_tasks(lambda t, d: self.task_loss(values, t, d), tasks, data))

    def task_gradients(self, values: Sequence, tasks: dict, data=None):
        """Each task's loss and meta-gradient: ``(losses (T,), [grads (T, *shape) per
        parameter])`` (what gradient agreement weighs)."""

        def one(task, d):
            loss, grads = value_and_grad(lambda v: self.task_loss(v, task, d), values)
            return [loss, *grads]

        out = map_tasks(one, tasks, data)
        return out[0], list(out[1:])

    def _loss_and_grads(self, values, tasks, data):
        from keras import ops

        if self.combine is None:
            return value_and_grad(lambda v: self.batch_loss(v, tasks, data), values)
        losses, grads = self.task_gradients(values, tasks, data)
        flat = ops.concatenate([ops.reshape(g, (ops.shape(g)[0], -1)) for g in grads], axis=1)
        weights = stop_gradient(self.combine(flat))  # (T,)
        combined = [ops.tensordot(weights, g, axes=1) for g in grads]
        return ops.sum(weights * losses), combined

    # -- per backend ------------------------------------------------------------------------
    def _jax_step(self, values, opt_vars, tasks, data):
        loss, grads = self._loss_and_grads(values, tasks, data)
        values, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, values)
        return loss, values, opt_vars

    def _tf_step(self, tasks, data):
        from keras import ops

        values = [ops.convert_to_tensor(v.value) for v in self.variables]
        loss, grads = self._loss_and_grads(values, tasks, data)
        self.optimizer.apply(grads, self.variables)
        return loss

    def step(self, tasks: dict):
        """One meta-update on a batch of tasks; returns the (weighted) mean query loss."""
        self.steps += 1
        if self.backend == "jax":
            loss, self._values, self._opt = self._step(self._values, self._opt, tasks,
                                                       self.data)
            return loss
        return self._step(tasks, self.data)

    def set_learning_rate(self, lr: float) -> None:
        """Set the outer optimizer's learning rate (a variable that the compiled step reads, so
        changing it does not recompile)."""
        if self.backend == "jax":
            import jax.numpy as jnp

            for i, v in enumerate(self.optimizer.variables):
                if v is self.optimizer._learning_rate:
                    self._opt[i] = jnp.asarray(lr, dtype=self._opt[i].dtype)
                    return
            raise ValueError("the optimizer's learning rate is not a variable")
        self.optimizer.learning_rate = lr

    def values(self) -> list:
        """The current meta-parameters, as tensors."""
        from keras import ops

        if self.backend == "jax":
            return list(self._values)
        return [ops.convert_to_tensor(v.value) for v in self.variables]

    def sync(self) -> None:
        """Write the current meta-parameters into the Keras variables (JAX keeps them apart)."""
        if self.backend == "jax":
            for v, x in zip(self.variables, self._values):
                v.assign(x)
            for v, x in zip(self.optimizer.variables, self._opt):
                v.assign(x)


def cosine_decay(floor: float = 0.0) -> Callable[[float], float]:
    """A learning-rate multiplier that falls from 1 to ``floor`` along half a cosine."""

    def schedule(frac: float) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * frac))

    return schedule


def train(trainer: MetaTrainer, sample_tasks: Callable[[int], dict], *, steps: int,
          time_budget_s: float | None = None, log_every: int = 50, snapshots=(),
          progress: bool = True, desc: str = "meta-training",
          lr_schedule: Callable[[float], float] | None = None) -> dict:
    """Run ``trainer.step(sample_tasks(i))`` for ``steps`` meta-steps, or until
    ``time_budget_s`` seconds of training have passed, with a progress bar.

    ``lr_schedule(f)`` multiplies the outer optimizer's initial learning rate before each step,
    where ``f`` in [0, 1] is the fraction of training done: of the steps, or of the time budget
    when there is one, whichever is further (:func:`cosine_decay`).

    ``snapshots`` are times in seconds (of training, excluding the first step, which compiles)
    at which a copy of the meta-parameters is kept, so that another method trained for that
    long can be compared at the same budget. Returns the history: ``step`` and ``loss`` every
    ``log_every`` steps (the mean over those steps), ``steps``, ``wall_s``, ``compile_s``,
    ``steps_per_s`` (after compilation), and ``snapshots`` ``{seconds: (step, values)}``."""
    from keras import ops
    from tqdm.auto import tqdm

    from .evaluation import DivergedError, show_progress

    steps_log, loss_log, pending = [], [], []
    snaps, todo = {}, sorted(snapshots)
    start = time.perf_counter()
    t0 = None
    compile_s = 0.0
    done = 0
    base_lr = float(ops.convert_to_numpy(trainer.optimizer.learning_rate))
    with tqdm(total=steps, desc=desc, disable=not show_progress(progress), leave=False,
              unit="step", mininterval=1.0) as bar:
        for i in range(steps):
            if lr_schedule is not None:
                frac = i / steps
                if t0 is not None and time_budget_s:
                    frac = max(frac, (time.perf_counter() - t0) / time_budget_s)
                trainer.set_learning_rate(base_lr * lr_schedule(min(frac, 1.0)))
            loss = trainer.step(sample_tasks(i))
            pending.append(loss)
            done = i + 1
            if t0 is None:  # the first step traces and compiles
                float(ops.convert_to_numpy(loss))
                t0 = time.perf_counter()
                compile_s = t0 - start
            if done % log_every == 0 or done == steps:
                mean = float(np.mean([float(ops.convert_to_numpy(x)) for x in pending]))
                if not np.isfinite(mean):
                    raise DivergedError(f"{desc}: the meta-loss is {mean} at step {done}")
                pending = []
                steps_log.append(done)
                loss_log.append(mean)
                bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
            bar.update(1)
            elapsed = time.perf_counter() - t0
            while todo and elapsed >= todo[0]:
                snaps[todo.pop(0)] = (done, [ops.convert_to_tensor(ops.copy(v))
                                             for v in trainer.values()])
            if time_budget_s is not None and elapsed >= time_budget_s:
                break
    if pending:
        steps_log.append(done)
        loss_log.append(float(np.mean([float(ops.convert_to_numpy(x)) for x in pending])))
    wall = time.perf_counter() - start
    run = max(wall - compile_s, 1e-9)
    trainer.sync()
    return {"step": np.array(steps_log), "loss": np.array(loss_log), "steps": done,
            "wall_s": wall, "compile_s": compile_s,
            "steps_per_s": (done - 1) / run if done > 1 else float("nan"),
            "snapshots": snaps}
