"""External memory for chapter 5: the addressing, reading and writing of a memory matrix.

One home for the operations that the Neural Turing Machine (5.1, Graves et al. 2014) and the
memory-augmented neural network (5.2, Santoro et al. 2016) share. Every function is plain
``keras.ops`` on a batch, so the cells that use them run on TensorFlow and JAX alike.

Shapes: ``memory`` is ``(B, N, M)`` (N slots of width M), a weighting ``w`` is ``(B, N)`` (a
distribution over the slots), a key ``(B, M)``, and a scalar per sequence ``(B, 1)``.
"""

from __future__ import annotations

#: Guards every ``log`` and division: memory that starts at a small constant has tiny norms.
EPS = 1e-6


def cosine_similarity(memory, key):
    """Cosine similarity of ``key`` ``(B, M)`` with every row of ``memory`` ``(B, N, M)``:
    ``(B, N)``."""
    from keras import ops

    dot = ops.sum(memory * key[:, None, :], axis=-1)
    norms = ops.sqrt(ops.sum(memory**2, axis=-1) * ops.sum(key**2, axis=-1, keepdims=True))
    return dot / (norms + EPS)


def content_weights(memory, key, beta):
    """Content addressing: ``softmax(beta * cos(key, memory row))`` over the N slots.

    ``beta`` ``(B, 1)`` is the key strength (>= 0): 0 gives the uniform weighting, a large
    value a sharp one on the most similar row."""
    from keras import ops

    return ops.softmax(beta * cosine_similarity(memory, key), axis=-1)


def interpolate(w_content, w_prev, gate):
    """Interpolation gate ``g`` ``(B, 1)`` in [0, 1]: ``g * w_content + (1 - g) * w_prev``.
    With ``g = 0`` the head ignores content and keeps its previous location."""
    return gate * w_content + (1.0 - gate) * w_prev


def shift(w, s):
    """Convolutional shift of ``w`` ``(B, N)`` by the distribution ``s`` ``(B, 3)`` over the
    shifts (-1, 0, +1), cyclic over the slots: ``w~[i] = sum_j w[i - j] s[j]``. ``s = (0, 0, 1)``
    moves the whole weighting one slot forward."""
    from keras import ops

    return (s[:, 0:1] * ops.roll(w, -1, axis=1) + s[:, 1:2] * w
            + s[:, 2:3] * ops.roll(w, 1, axis=1))


def sharpen(w, gamma):
    """Sharpening ``w^gamma / sum w^gamma`` (``gamma`` ``(B, 1)`` >= 1), written as
    ``softmax(gamma * log(w + eps))`` so that it cannot underflow in float32."""
    from keras import ops

    return ops.softmax(gamma * ops.log(w + EPS), axis=-1)


def address(memory, w_prev, key, beta, gate, s, gamma):
    """The NTM's four addressing steps in order: content, interpolation, shift, sharpening."""
    w = content_weights(memory, key, beta)
    w = interpolate(w, w_prev, gate)
    w = shift(w, s)
    return sharpen(w, gamma)


def read(memory, w):
    """Read vector: the weighted sum of the memory rows, ``sum_i w[i] M[i]``, ``(B, M)``."""
    from keras import ops

    return ops.sum(w[:, :, None] * memory, axis=1)


def write(memory, w, erase, add):
    """Erase, then add: ``M[i] <- M[i] * (1 - w[i] e) + w[i] a``, with ``erase`` ``(B, M)`` in
    [0, 1] and ``add`` ``(B, M)``. With ``erase = 0`` it only adds (as MANN's LRUA does)."""
    w = w[:, :, None]
    return memory * (1.0 - w * erase[:, None, :]) + w * add[:, None, :]
