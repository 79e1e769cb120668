"""Chapter 5.1: the memory operations, the copy task, the NTM cell and its stability."""

import numpy as np
import pytest

from mlbook_utils import memory as mem
from mlbook_utils import ntm, registry
from mlbook_utils.exercises import ch05_1


def _np(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _t(x):
    from keras import ops

    return ops.convert_to_tensor(np.asarray(x, np.float32))


def test_content_addressing_worked_example():
    # Rows: along the key, opposite to it, orthogonal. With beta = ln 2 the weights are
    # softmax(ln2 * (1, -1, 0)) = (2, 1/2, 1) / 3.5.
    memory = _t([[[1, 0], [-2, 0], [0, 3]]])
    w = _np(mem.content_weights(memory, _t([[5, 0]]), _t([[np.log(2)]])))
    np.testing.assert_allclose(w[0], np.array([2, 0.5, 1]) / 3.5, rtol=1e-4)
    uniform = _np(mem.content_weights(memory, _t([[5, 0]]), _t([[0.0]])))
    np.testing.assert_allclose(uniform[0], np.full(3, 1 / 3), rtol=1e-5)


def test_interpolate_shift_sharpen():
    w_c, w_prev = _t([[1, 0, 0, 0]]), _t([[0, 0, 0, 1]])
    np.testing.assert_allclose(_np(mem.interpolate(w_c, w_prev, _t([[0.25]]))),
                               [[0.25, 0, 0, 0.75]])
    # s = (0, 0, 1): the focus moves forward one slot and wraps from the last to the first.
    np.testing.assert_allclose(_np(mem.shift(w_prev, _t([[0, 0, 1]]))), [[1, 0, 0, 0]])
    np.testing.assert_allclose(_np(mem.shift(w_c, _t([[1, 0, 0]]))), [[0, 0, 0, 1]])
    blurred = _np(mem.shift(w_c, _t([[0.25, 0.5, 0.25]])))
    np.testing.assert_allclose(blurred, [[0.5, 0.25, 0, 0.25]])
    sharp = _np(mem.sharpen(_t(blurred), _t([[2.0]])))
    np.testing.assert_allclose(sharp, [[4 / 6, 1 / 6, 0, 1 / 6]], atol=1e-5)


def test_sharpening_does_not_underflow_where_the_power_form_does():
    w = np.full((1, 128), 1e-30, np.float32)
    w[0, 7] = 1.0
    with np.errstate(all="ignore"):
        naive = w.astype(np.float32) ** 50
        naive = naive / naive.sum()
    assert np.isfinite(naive).all()  # 1 ** 50 survives here; the tiny ones underflow to 0
    tiny = np.full((1, 4), 1e-20, np.float32)
    with np.errstate(all="ignore"):
        zero_over_zero = tiny**50 / (tiny**50).sum()
    assert not np.isfinite(zero_over_zero).all()  # the failure that the log form avoids
    out = _np(mem.sharpen(_t(tiny), _t([[50.0]])))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-5)


def test_read_and_write():
    memory = _t([[[1, 1], [2, 2], [3, 3]]])
    w = _t([[0, 1, 0]])
    np.testing.assert_allclose(_np(mem.read(memory, w)), [[2, 2]])
    written = _np(mem.write(memory, w, _t([[1, 0]]), _t([[5, 7]])))
    # Slot 1: erase the first column (2 -> 0) then add (5, 7); the other slots are untouched.
    np.testing.assert_allclose(written, [[[1, 1], [5, 9], [3, 3]]])


def test_copy_batch_layout():
    rng = np.random.default_rng(0)
    x, y, mask = ntm.copy_batch(rng, 16, 1, 6)
    assert x.shape == (16, 13, 9) and y.shape == (16, 13, 8) and mask.shape == (16, 13)
    for b in range(16):
        n = int(x[b, :, 8].argmax())  # the end-of-input flag sits right after the n vectors
        assert x[b, :, 8].sum() == 1 and 1 <= n <= 6
        assert mask[b].sum() == n and mask[b, n + 1:2 * n + 1].all()
        np.testing.assert_array_equal(y[b, n + 1:2 * n + 1], x[b, :n, :8])
        assert not x[b, n + 1:].any()  # nothing to see while answering
    x, _, _ = ntm.copy_batch(rng, 2, length=30)
    assert x.shape[1] == 61
    with pytest.raises(ValueError, match="cannot hold"):
        ntm.copy_batch(rng, 2, length=30, steps=40)


def test_bits_per_sequence_counts_wrong_bits_and_cost():
    rng = np.random.default_rng(1)
    _, y, mask = ntm.copy_batch(rng, 4, length=5)
    perfect = np.where(y > 0.5, 30.0, -30.0)
    got = ntm.bits_per_sequence(perfect, y, mask)
    assert got["bit_errors"] == 0 and got["cost_bits"] < 1e-6
    chance = ntm.bits_per_sequence(np.zeros_like(y), y, mask)
    assert chance["cost_bits"] == pytest.approx(40.0)  # 5 vectors x 8 bits x 1 bit each
    flipped = perfect.copy()
    flipped[:, 6, :3] *= -1  # 3 wrong bits in every sequence's first answer step
    assert ntm.bits_per_sequence(flipped, y, mask)["bit_errors"] == 3


SMALL = dict(ntm.SETTINGS["quick"], slots=16, width=8, controller=32, lstm_units=32,
             batch_size=8, min_len=1, max_len=6, eval_every=40, eval_sequences=16)


@pytest.mark.parametrize("kind", ["feedforward", "lstm"])
def test_the_cell_runs_and_returns_weightings(kind):
    model, inspect = ntm.build_ntm(dict(SMALL, controller_kind=kind))
    x, _, _ = ntm.copy_batch(np.random.default_rng(0), 3, 1, 6)
    logits, w_read, w_write = ntm.predict(inspect, x)
    assert logits.shape == (3, 13, 8) and w_read.shape == w_write.shape == (3, 13, 16)
    np.testing.assert_allclose(w_read.sum(-1), 1, rtol=1e-4)
    np.testing.assert_allclose(w_write.sum(-1), 1, rtol=1e-4)
    np.testing.assert_allclose(ntm.predict(model, x), logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(x)), logits, rtol=1e-4,
                               atol=1e-5)
    longer, _, _ = ntm.copy_batch(np.random.default_rng(1), 2, length=9)  # any length
    assert ntm.predict(model, longer).shape == (2, 19, 8)


def test_a_long_run_at_a_high_learning_rate_stays_finite_learns_and_keeps_the_best():
    # 120 updates at 10x the book's learning rate: the loss must stay finite throughout
    # (train raises FloatingPointError otherwise), the cost must fall below chance, and the
    # model must end with the weights that scored best on the fixed sequences.
    settings = dict(SMALL, learning_rate=1e-2, train_steps=120, time_budget_s=None)
    model, _ = ntm.build_ntm(settings)
    hist = ntm.train(model, settings, progress=False)
    assert hist["steps_done"] == 120 and np.isfinite(hist["loss"]).all()
    assert np.isfinite(hist["cost_bits"]).all()
    chance = 8 * (1 + 6) / 2  # one bit per answer bit, mean length 3.5
    best = int(np.argmin(hist["cost_bits"]))
    assert hist["cost_bits"][best] < 0.9 * chance, hist["cost_bits"]
    assert hist["best_step"] == hist["steps"][best]
    fixed = ntm.copy_batch(np.random.default_rng(settings["seed"] + 1),
                           settings["eval_sequences"], 1, 6)
    now = ntm.bits_per_sequence(ntm.predict(model, fixed[0]), fixed[1], fixed[2])
    assert now["cost_bits"] == pytest.approx(hist["cost_bits"][best], rel=1e-4)


def test_an_unknown_controller_is_refused():
    with pytest.raises(ValueError, match="controller must be"):
        ntm.NTMCell(controller="gru")


def test_settings_and_registry():
    method = registry.get("ntm")
    assert method.chapter == ntm.CHAPTER and set(method.settings) == set(registry.SCALES)
    for scale in registry.SCALES:
        s = method.settings_for(scale)
        assert s["max_len"] <= s["slots"] and 20 in s["test_lengths"]
    assert method.key("train_episodes") == "train_steps"


def test_shift_sharpen_checker_accepts_the_reference_and_explains_mistakes():
    assert ch05_1.check_shift_sharpen(ch05_1.reference_shift_sharpen).passed
    for wrong, problem, _ in ch05_1._MISTAKES:
        fb = ch05_1.check_shift_sharpen(wrong)
        assert not fb.passed and fb.problem == problem, (wrong.__name__, str(fb))


def test_reference_exercise_agrees_with_the_library():
    rng = np.random.default_rng(3)
    w, s = rng.dirichlet(np.ones(10)), rng.dirichlet(np.ones(3))
    lib = _np(mem.sharpen(mem.shift(_t(w[None]), _t(s[None])), _t([[3.0]])))[0]
    np.testing.assert_allclose(ch05_1.reference_shift_sharpen(w, s, 3.0), lib, atol=1e-5)
