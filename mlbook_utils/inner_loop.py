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
  and ``MetaTrainer(..., combine=...)`` weighs them before the update
  (:func:`agreement_weights`);
- **Reptile**: no meta-gradient at all. :class:`ReptileTrainer` runs a few steps of Adam
  (:func:`adam_step`, a pure function) on each task and moves the weights towards the adapted
  ones; the same ``combine`` weighs the tasks' moves.

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


def adam_state(params: Sequence) -> list:
    """The state of :func:`adam_step` for ``params``: ``[t, m..., v...]``, all zeros."""
    from keras import ops

    return ([ops.zeros((), dtype="float32")] + [ops.zeros_like(p) for p in params]
            + [ops.zeros_like(p) for p in params])


def adam_step(params: Sequence, grads: Sequence, state: Sequence, lr, *, beta1: float = 0.0,
              beta2: float = 0.999, epsilon: float = 1e-8) -> tuple[list, list]:
    """One step of Adam (Kingma & Ba 2015) as a pure function: ``(new params, new state)``.

    ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2) g^2``, and
    ``p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)``, the form of
    TensorFlow 1's ``AdamOptimizer`` that the Reptile code used. Reptile's inner loop uses
    ``beta1 = 0`` (no momentum): the step is the gradient scaled by a running estimate of its
    size. ``state`` comes from :func:`adam_state` (or a previous step)."""
    from keras import ops

    n = len(params)
    t = state[0] + 1.0
    m = [beta1 * mi + (1.0 - beta1) * g for mi, g in zip(state[1:1 + n], grads)]
    v = [beta2 * vi + (1.0 - beta2) * ops.square(g) for vi, g in zip(state[1 + n:], grads)]
    step = lr * ops.sqrt(1.0 - ops.power(beta2, t)) / (1.0 - ops.power(beta1, t))
    new = [p - step * mi / (ops.sqrt(vi) + epsilon) for p, mi, vi in zip(params, m, v)]
    return new, [t, *m, *v]


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
    called item by item (a small graph, traced once per shape; two or four items unrolled in
    one graph were no faster on 2 cores once their longer compilation is counted)."""
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


class _Trainer:
    """What both trainers share: the meta-parameters' current values, and writing them back
    into the Keras variables (on JAX they live in the trainer between steps)."""

    backend: str
    variables: list
    _values: list

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


class MetaTrainer(_Trainer):
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
        self._initial_lr = float(ops.convert_to_numpy(self.optimizer.learning_rate))
        self.backend = _backend()
        self.steps = 0
        self.last_weights = None
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
        """The meta-loss, its gradient, and the tasks' weights (``None`` without ``combine``)."""
        from keras import ops

        if self.combine is None:
            loss, grads = value_and_grad(lambda v: self.batch_loss(v, tasks, data), values)
            return loss, grads, None
        losses, grads = self.task_gradients(values, tasks, data)
        flat = ops.concatenate([ops.reshape(g, (ops.shape(g)[0], -1)) for g in grads], axis=1)
        weights = stop_gradient(self.combine(flat))  # (T,)
        combined = [ops.tensordot(weights, g, axes=1) for g in grads]
        return ops.sum(weights * losses), combined, weights

    # -- per backend ------------------------------------------------------------------------
    def _jax_step(self, values, opt_vars, tasks, data):
        loss, grads, weights = self._loss_and_grads(values, tasks, data)
        values, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, values)
        return loss, values, opt_vars, weights

    def _tf_step(self, tasks, data):
        from keras import ops

        values = [ops.convert_to_tensor(v.value) for v in self.variables]
        loss, grads, weights = self._loss_and_grads(values, tasks, data)
        self.optimizer.apply(grads, self.variables)
        return loss if weights is None else (loss, weights)

    def step(self, tasks: dict):
        """One meta-update on a batch of tasks; returns the (weighted) mean query loss. With
        ``combine``, the tasks' weights are kept in :attr:`last_weights`."""
        self.steps += 1
        if self.backend == "jax":
            loss, self._values, self._opt, self.last_weights = self._step(
                self._values, self._opt, tasks, self.data)
            return loss
        out = self._step(tasks, self.data)
        if self.combine is None:
            return out
        loss, self.last_weights = out
        return loss

    def learning_rate(self) -> float:
        """The outer optimizer's current learning rate."""
        from keras import ops

        if self.backend == "jax":
            for i, v in enumerate(self.optimizer.variables):
                if v is self.optimizer._learning_rate:
                    return float(self._opt[i])
        return float(ops.convert_to_numpy(self.optimizer.learning_rate))

    def reset(self, values: Sequence) -> None:
        """Start again from the weights ``values``, with a fresh optimizer state (for another
        seed), reusing the compiled step: the variables keep their identity, so nothing is
        traced again."""
        from keras import ops

        lr = self.optimizer._learning_rate
        if self.backend == "jax":
            self._values = [ops.convert_to_tensor(x) for x in values]
            self._opt = [v.value if v is lr else ops.zeros_like(v.value)
                         for v in self.optimizer.variables]
        else:
            for var, x in zip(self.variables, values):
                var.assign(x)
            for v in self.optimizer.variables:
                if v is not lr:
                    v.assign(ops.zeros_like(v.value))
        self.set_learning_rate(self._initial_lr)
        self.steps = 0

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

    def sync(self) -> None:
        """Write the current meta-parameters and the optimizer's state into the Keras
        variables (JAX keeps them apart)."""
        super().sync()
        if self.backend == "jax":
            for v, x in zip(self.optimizer.variables, self._opt):
                v.assign(x)


def agreement_weights(flat):
    """Gradient agreement (Eshratifar et al. 2018): task ``i``'s weight in the meta-update,
    ``w_i = g_i . g_mean / sum_j |g_j . g_mean|``, from the tasks' flattened meta-gradients (or
    Reptile moves) ``flat`` (tasks, P). A task whose gradient points along the batch's mean
    gets a large weight, one that points against it a negative weight; when every task agrees
    the weights sum to 1, the plain mean's scale."""
    from keras import ops

    dots = ops.sum(flat * ops.mean(flat, axis=0, keepdims=True), axis=1)
    return dots / (ops.sum(ops.abs(dots)) + 1e-12)


class ReptileTrainer(_Trainer):
    """Reptile's outer loop (Nichol et al. 2018). For each task of the meta-batch: start from
    the current weights, take one step of Adam (:func:`adam_step`, ``beta1 = 0``) on each of
    the task's minibatches, and keep the move ``fast - weights``; then move the weights by
    ``meta_step`` times the mean move. No gradient goes through the inner steps.

    ``batch_loss(values, batch, data)`` is the loss of one minibatch (a dict of arrays without
    the task and step axes; ``data`` as in :class:`MetaTrainer`). :meth:`step` takes a dict of
    arrays shaped (tasks, inner steps, ...): the second axis is the number of inner steps.
    Serial Reptile is a meta-batch of one task; batched Reptile averages several. The inner
    Adam's state carries over from step to step and, with ``chain_adam=True`` (the default), from
    task to task, as in the reference code (openai/supervised-reptile). That makes the tasks of a
    meta-batch a serial chain. With ``chain_adam=False`` every task starts from the same state
    and the state carried on is the mean of the tasks' final states: the tasks are then
    independent and run side by side (:func:`config.task_parallel_threads`). :meth:`adam` gives
    a copy for evaluation. ``combine`` weighs the tasks' moves (:func:`agreement_weights`; the
    last weights are in :attr:`last_weights`). The meta step size is an argument of the compiled
    step, so annealing it (``train(lr_schedule=...)``, :func:`linear_decay`) does not recompile."""

    def __init__(self, variables: Sequence, batch_loss: Callable, *, inner_lr: float,
                 meta_step: float, beta1: float = 0.0, beta2: float = 0.999, data=None,
                 combine: Callable | None = None, chain_adam: bool = True):
        import keras
        from keras import ops

        self.variables = list(variables)
        self.batch_loss = batch_loss
        self.inner_lr, self.beta1, self.beta2 = inner_lr, beta1, beta2
        self.base_meta_step = self.meta_step = float(meta_step)
        self.combine = combine
        self.chain_adam = chain_adam
        self.data = None if data is None else ops.convert_to_tensor(data)
        self.backend = _backend()
        self.steps = 0
        self.last_weights = None
        start = adam_state([v.value for v in self.variables])
        if self.backend == "jax":
            import jax

            self._values = [v.value for v in self.variables]
            self._state = start
            self._step = jax.jit(self._pure)
        else:
            self._state_vars = [keras.Variable(x, trainable=False, name="inner_adam")
                                for x in start]
            self._step = compile_fn(self._tf_step)

    def _pure(self, values, state, tasks, data, meta_step):
        from keras import ops

        first = next(iter(tasks.values()))
        n_tasks, n_steps = first.shape[0], first.shape[1]
        moves, losses, ends = [], [], []
        for i in range(n_tasks):
            fast = list(values)
            task_state = state if self.chain_adam else list(state)
            for j in range(n_steps):
                batch = {k: v[i, j] for k, v in tasks.items()}
                loss, grads = value_and_grad(
                    lambda p, b=batch: self.batch_loss(p, b, data), fast)
                fast, task_state = adam_step(fast, grads, task_state, self.inner_lr,
                                             beta1=self.beta1, beta2=self.beta2)
            if self.chain_adam:
                state = task_state
            ends.append(task_state)
            moves.append([f - v for f, v in zip(fast, values)])
            losses.append(loss)
        if not self.chain_adam:  # carry on the mean of the tasks' final states
            state = [sum(e[k] for e in ends) / n_tasks for k in range(len(state))]
        if self.combine is None:
            weights = ops.ones((n_tasks,), dtype="float32") / n_tasks
        else:
            flat = ops.stack([ops.concatenate([ops.reshape(m, (-1,)) for m in move])
                              for move in moves])
            weights = self.combine(flat)
        new = [v + meta_step * sum(weights[i] * moves[i][k] for i in range(n_tasks))
               for k, v in enumerate(values)]
        return ops.mean(ops.stack(losses)), new, state, weights

    def _tf_step(self, tasks, data, meta_step):
        from keras import ops

        values = [ops.convert_to_tensor(v.value) for v in self.variables]
        state = [ops.convert_to_tensor(v.value) for v in self._state_vars]
        loss, new, state, weights = self._pure(values, state, tasks, data, meta_step)
        for var, x in zip(self.variables, new):
            var.assign(x)
        for var, x in zip(self._state_vars, state):
            var.assign(x)
        return loss, weights

    def step(self, tasks: dict):
        """One meta-update; returns the mean over tasks of their last minibatch loss."""
        from keras import ops

        self.steps += 1
        meta_step = ops.convert_to_tensor(np.float32(self.meta_step))
        if self.backend == "jax":
            loss, self._values, self._state, self.last_weights = self._step(
                self._values, self._state, tasks, self.data, meta_step)
            return loss
        loss, self.last_weights = self._step(tasks, self.data, meta_step)
        return loss

    def learning_rate(self) -> float:
        """The meta step size (what ``train``'s ``lr_schedule`` scales)."""
        return self.meta_step

    def set_learning_rate(self, lr: float) -> None:
        self.meta_step = float(lr)

    def reset(self, values: Sequence) -> None:
        """Start again from the weights ``values`` with a fresh inner Adam state and the
        initial meta step (for another seed), reusing the compiled step."""
        from keras import ops

        start = adam_state(list(values))
        if self.backend == "jax":
            self._values = [ops.convert_to_tensor(x) for x in values]
            self._state = start
        else:
            for var, x in zip(self.variables, values):
                var.assign(x)
            for var, x in zip(self._state_vars, start):
                var.assign(x)
        self.meta_step = self.base_meta_step
        self.steps = 0

    def adam(self) -> list:
        """A copy of the inner Adam's state (for evaluation, which starts from it)."""
        from keras import ops

        if self.backend == "jax":
            return [ops.copy(x) for x in self._state]
        return [ops.convert_to_tensor(ops.copy(v.value)) for v in self._state_vars]



def step_memory_mib(trainer, tasks: dict) -> dict:
    """The memory one meta-step of ``trainer`` needs, in MiB: on TensorFlow the peak of its
    allocator during the step above what was allocated before it (``kind: "TensorFlow peak"``);
    on JAX, XLA's account of the compiled step's temporary buffers (``kind: "XLA temp"``). Where
    TensorFlow keeps no statistics for the CPU's allocator, ``mib`` is NaN (``kind: "not
    measured"``)."""
    from keras import ops

    if trainer.backend == "jax":
        args = ((trainer._values, trainer._opt, tasks, trainer.data)
                if isinstance(trainer, MetaTrainer)
                else (trainer._values, trainer._state, tasks, trainer.data,
                      ops.convert_to_tensor(np.float32(trainer.meta_step))))
        m = trainer._step.lower(*args).compile().memory_analysis()
        return {"mib": round(m.temp_size_in_bytes / 2**20, 1), "kind": "XLA temp"}
    import tensorflow as tf

    float(ops.convert_to_numpy(trainer.step(tasks)))  # compiled before measuring
    try:
        tf.config.experimental.reset_memory_stats("CPU:0")
        before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    except ValueError:  # some TensorFlow builds keep no allocator statistics for the CPU
        return {"mib": float("nan"), "kind": "not measured"}
    float(ops.convert_to_numpy(trainer.step(tasks)))
    peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
    return {"mib": round((peak - before) / 2**20, 1), "kind": "TensorFlow peak"}


def linear_decay(floor: float = 0.0) -> Callable[[float], float]:
    """A multiplier that falls linearly from 1 to ``floor`` (Reptile's meta step size)."""

    def schedule(frac: float) -> float:
        return 1.0 + (floor - 1.0) * frac

    return schedule


def cosine_decay(floor: float = 0.0) -> Callable[[float], float]:
    """A learning-rate multiplier that falls from 1 to ``floor`` along half a cosine."""

    def schedule(frac: float) -> float:
        return floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(np.pi * frac))

    return schedule


def train(trainer: MetaTrainer, sample_tasks: Callable[[int], dict], *, steps: int,
          time_budget_s: float | None = None, log_every: int = 50, snapshots=(),
          progress: bool = True, desc: str = "meta-training",
          lr_schedule: Callable[[float], float] | None = None,
          on_step: Callable | None = None) -> dict:
    """Run ``trainer.step(sample_tasks(i))`` for ``steps`` meta-steps, or until
    ``time_budget_s`` seconds of training have passed, with a progress bar.

    ``lr_schedule(f)`` multiplies the outer optimizer's initial learning rate before each step,
    where ``f`` in [0, 1] is the fraction of training done: of the steps, or of the time budget
    when there is one, whichever is further (:func:`cosine_decay`). ``on_step(i, trainer)``,
    if given, is called after each step (for example to keep gradient agreement's weights).

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
    base_lr = trainer.learning_rate()
    with tqdm(total=steps, desc=desc, disable=not show_progress(progress), leave=False,
              unit="step", mininterval=1.0) as bar:
        for i in range(steps):
            if lr_schedule is not None:
                frac = i / steps
                if t0 is not None and time_budget_s:
                    frac = max(frac, (time.perf_counter() - t0) / time_budget_s)
                trainer.set_learning_rate(base_lr * lr_schedule(min(frac, 1.0)))
            loss = trainer.step(sample_tasks(i))
            if on_step is not None:
                on_step(i, trainer)
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
