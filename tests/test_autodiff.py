"""Second-order gradients through value_and_grad, on the active Keras backend."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")
from keras import ops  # noqa: E402

from mlbook_utils.autodiff import stop_gradient, value_and_grad  # noqa: E402


def test_gradient_of_a_gradient():
    # f(x) = x^3: f'(x) = 3x^2, f''(x) = 6x.
    x = ops.convert_to_tensor(np.array(2.0, dtype="float32"))

    def first(params):
        _, (g,) = value_and_grad(lambda p: p[0] ** 3, params)
        return g

    g1, (g2,) = value_and_grad(first, [x])
    assert float(g1) == pytest.approx(12.0)
    assert float(g2) == pytest.approx(12.0)


def test_through_one_inner_step_matches_the_analytic_meta_gradient():
    # Inner: theta' = theta - a * d/dtheta (theta - s)^2 = theta - 2a (theta - s)
    # Outer: L(theta) = (theta' - q)^2, dL/dtheta = 2 (theta' - q) (1 - 2a).
    a, s, q, theta0 = 0.1, 1.0, 3.0, 0.5
    theta = ops.convert_to_tensor(np.array(theta0, dtype="float32"))

    def outer(params):
        _, (g,) = value_and_grad(lambda p: (p[0] - s) ** 2, params)
        adapted = params[0] - a * g
        return (adapted - q) ** 2

    def outer_first_order(params):
        _, (g,) = value_and_grad(lambda p: (p[0] - s) ** 2, params)
        adapted = params[0] - a * stop_gradient(g)
        return (adapted - q) ** 2

    adapted = theta0 - 2 * a * (theta0 - s)
    _, (meta_grad,) = value_and_grad(outer, [theta])
    assert float(meta_grad) == pytest.approx(2 * (adapted - q) * (1 - 2 * a), rel=1e-5)
    _, (fo_grad,) = value_and_grad(outer_first_order, [theta])
    assert float(fo_grad) == pytest.approx(2 * (adapted - q), rel=1e-5)


def test_has_aux_and_unconnected_parameters():
    x = ops.convert_to_tensor(np.array([1.0, 2.0], dtype="float32"))
    unused = ops.convert_to_tensor(np.array(5.0, dtype="float32"))
    (loss, aux), (gx, gu) = value_and_grad(
        lambda p: (ops.sum(p[0] ** 2), ops.sum(p[0])), [x, unused], has_aux=True
    )
    assert float(aux) == pytest.approx(3.0)
    assert float(loss) == pytest.approx(5.0)
    np.testing.assert_allclose(ops.convert_to_numpy(gx), [2.0, 4.0])
    assert float(gu) == 0.0
