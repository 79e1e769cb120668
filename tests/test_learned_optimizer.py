"""The learned optimizer: preprocessing, LSTM shapes, baselines, a short meta-training run."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from mlbook_utils import learned_optimizer as lo  # noqa: E402
from mlbook_utils.exercises.ch01_3 import check_preprocess, reference_preprocess  # noqa: E402


def test_preprocess_matches_the_paper():
    g = np.array([1.0, -np.e, 1e-6, -1e-6, 0.0], dtype="float32")
    out = np.asarray(lo.preprocess_gradient(g, p=10.0))
    assert out.shape == (5, 2)
    np.testing.assert_allclose(out[:2], [[0.0, 1.0], [0.1, -1.0]], atol=1e-5)
    np.testing.assert_allclose(out[2:, 0], -1.0)
    np.testing.assert_allclose(out[2:, 1], np.exp(10.0) * g[2:], rtol=1e-4)
    np.testing.assert_allclose(out, reference_preprocess(g), atol=1e-4)


def test_lstm_update_shape_and_state():
    params = lo.init_lstm_optimizer(hidden=8)
    grad = np.random.default_rng(0).normal(size=(3, 7)).astype("float32")
    state = lo.init_lstm_state(21, hidden=8)
    update, new_state = lo.lstm_optimizer(params, grad, state)
    assert tuple(np.asarray(update).shape) == (3, 7)
    assert len(new_state) == 4 and tuple(np.asarray(new_state[0]).shape) == (21, 8)
    # coordinate-wise: permuting coordinates permutes the updates
    perm = np.random.default_rng(1).permutation(21)
    up2, _ = lo.lstm_optimizer(params, grad.reshape(-1)[perm], lo.init_lstm_state(21, 8))
    np.testing.assert_allclose(np.asarray(up2), np.asarray(update).reshape(-1)[perm], atol=1e-6)


def test_quadratic_gradient_and_baselines_descend():
    prob = lo.Quadratic()
    theta, data, _ = prob.sample(np.random.default_rng(0), 8, 30)
    w, y = data
    # gradient through value_and_grad equals 2 W^T (W theta - y)
    from mlbook_utils.autodiff import value_and_grad
    _, (g,) = value_and_grad(lambda p: keras.ops.sum(prob.loss(p[0], data)),
                             [keras.ops.convert_to_tensor(theta)])
    want = 2 * np.einsum("bji,bj->bi", w, np.einsum("bij,bj->bi", w, theta) - y)
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-4, atol=1e-4)
    for name in lo.BASELINES:
        curves = lo.run_baseline(prob, name, [0.005], theta, data, None, 30)
        assert curves.shape == (1, 31, 8)
        assert curves[0, -1].mean() < curves[0, 0].mean(), name


def test_meta_training_lowers_the_meta_loss():
    prob = lo.Quadratic(dim=4)
    params = lo.init_lstm_optimizer(hidden=8)
    params, hist = lo.meta_train(prob, params, iterations=12, batch=32, steps=10,
                                 unroll_steps=5, meta_lr=0.01, progress=False)
    loss = hist["meta_loss"]
    assert loss[-3:].mean() < loss[:3].mean()


def test_checker_passes_reference_and_catches_mistakes():
    assert check_preprocess(reference_preprocess).passed

    def no_division(g, p=10.0):
        out = reference_preprocess(g, p)
        big = np.abs(g) >= np.exp(-p)
        out[..., 0] = np.where(big, np.log(np.maximum(np.abs(g), np.exp(-p))), -1.0)
        return out

    def sign_everywhere(g, p=10.0):
        out = reference_preprocess(g, p)
        out[..., 1] = np.sign(g)
        return out

    def flat(g, p=10.0):
        return reference_preprocess(g, p).reshape(-1)

    fb = check_preprocess(no_division)
    assert not fb.passed and "dividing by p" in fb.problem
    fb = check_preprocess(sign_everywhere)
    assert not fb.passed and "exp(p) * g" in fb.problem
    fb = check_preprocess(flat)
    assert not fb.passed and "shape" in fb.problem

    def stub(g, p=10.0):
        raise NotImplementedError

    fb = check_preprocess(stub)
    assert not fb.passed and "NotImplementedError" in fb.problem
