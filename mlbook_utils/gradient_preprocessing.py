"""The gradient preprocessing of Andrychowicz et al. (2016, appendix A), in one place.

Chapter 1.3's learned optimizer feeds it every gradient coordinate; chapter 1.4's LSTM
meta-learner (Ravi & Larochelle 2017) feeds it the learner's gradient and loss. Both import
:func:`preprocess_gradient` from here (``learned_optimizer.preprocess_gradient`` and
``lstm_meta_learner.preprocess_gradient`` are this very function), and chapter 1.3's coding
exercise (``exercises.ch01_3.check_preprocess``) checks a reader's version of it.
"""

from __future__ import annotations

import math


def preprocess_gradient(grad, p: float = 10.0):
    """Map each coordinate of a gradient (or loss) to two numbers that an LSTM can read at
    any scale, on a new last axis (output shape ``grad.shape + (2,)``)::

        (log|g| / p, sign(g))   if |g| >= exp(-p)
        (-1,         exp(p) g)  otherwise

    The first number is the order of magnitude, the second the direction; tiny values go
    linearly into the second. The log is taken of ``max(|g|, exp(-p))``, so there is no
    ``log(0)``, and no NaN in the gradient of this function, even where that branch is unused.
    """
    from keras import ops

    grad = ops.convert_to_tensor(grad, dtype="float32")
    big = ops.abs(grad) >= math.exp(-p)
    safe = ops.maximum(ops.abs(grad), math.exp(-p))
    first = ops.where(big, ops.log(safe) / p, -1.0)
    second = ops.where(big, ops.sign(grad), math.exp(p) * grad)
    return ops.stack([first, second], axis=-1)
