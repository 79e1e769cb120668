"""Differentiating through optimisation: the one place where backends differ.

Learned optimizers, the LSTM meta-learner, MAML and its family need the gradient of a loss that
itself contains gradient steps. Keras 3's ``keras.ops`` has no gradient function, so this module
gives one small function per backend with the same functional signature::

    loss, grads = value_and_grad(fn, params)   # fn(params) -> scalar loss; params: list of tensors

The gradients it returns can be differentiated again: call it inside ``fn`` of an outer
``value_and_grad`` (second order), or wrap them in ``stop_gradient`` for first-order methods.
``fn`` must be a pure function of ``params`` (build models statelessly, e.g. with
``model.stateless_call`` or plain ``keras.ops`` maths). The backend is read from Keras at call time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def _backend() -> str:
    import keras

    return keras.backend.backend()


def _tf_value_and_grad(fn, params, has_aux):
    import tensorflow as tf

    params = list(params)
    with tf.GradientTape() as tape:
        tape.watch(params)
        out = fn(params)
    loss, aux = out if has_aux else (out, None)
    grads = tape.gradient(loss, params, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return ((loss, aux), grads) if has_aux else (loss, grads)


def _jax_value_and_grad(fn, params, has_aux):
    import jax

    return jax.value_and_grad(lambda p: fn(p), has_aux=has_aux)(list(params))


def _torch_value_and_grad(fn, params, has_aux):  # pragma: no cover - not used in CI
    import torch

    params = [p if p.requires_grad else p.detach().requires_grad_(True) for p in params]
    out = fn(params)
    loss, aux = out if has_aux else (out, None)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return ((loss, aux), grads) if has_aux else (loss, grads)


_IMPL = {
    "tensorflow": _tf_value_and_grad,
    "jax": _jax_value_and_grad,
    "torch": _torch_value_and_grad,
}


def value_and_grad(fn: Callable, params: Sequence, *, has_aux: bool = False):
    """``(fn(params), d fn / d params)``, differentiable again by an enclosing call.

    With ``has_aux=True``, ``fn`` returns ``(loss, aux)`` and the result is
    ``((loss, aux), grads)``.
    """
    name = _backend()
    if name not in _IMPL:
        raise NotImplementedError(f"no value_and_grad for the Keras backend {name!r}")
    return _IMPL[name](fn, params, has_aux)


def compile_fn(fn: Callable, static_argnums=(), *, xla: bool = False) -> Callable:
    """Compile a pure function of tensors for speed: ``tf.function`` on TensorFlow (with XLA
    when ``xla``: much faster for many tiny ops, such as a small MLP's meta-step, and slower
    for convolutions on the CPU), ``jax.jit`` on JAX, else as is. The function must not change
    Keras variables inside (pass values in and return new values: under ``jax.jit`` a variable
    read inside is frozen at trace time)."""
    name = _backend()
    if name == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True, jit_compile=xla or None)
    if name == "jax":
        import jax

        return jax.jit(fn, static_argnums=static_argnums)
    return fn


def stop_gradient(x):
    """Treat ``x`` as a constant (first-order approximations, truncated backpropagation)."""
    import keras

    return keras.ops.stop_gradient(x)
