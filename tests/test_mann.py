"""Chapter 5.2's memory-augmented neural network: LRUA writes where sigmoid(alpha) says, usage
decays and accumulates, episodes carry the previous label and reshuffle labels every time,
accuracy is grouped by instance, the cell trains with a finite loss, and every scale is set."""

import numpy as np
import pytest

from mlbook_utils import mann, registry
from mlbook_utils.data import FewShotDataset


def _tiny_dataset(n_classes=8, per_class=12, size=4, seed=0):
    """Each class's images are its index, so an image says its class: (N, size, size, 1)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = (y[:, None, None, None] + 0.01 * rng.random((len(y), size, size, 1))).astype(np.float32)
    return FewShotDataset(x, y, [f"c{i}" for i in range(n_classes)], "tiny")


def _np(t):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(t))


# --- episodes ---------------------------------------------------------------------------------


def test_episode_input_is_the_image_and_the_previous_label():
    ds = _tiny_dataset()
    x, y, inst = mann.make_episodes(ds, 3, np.random.default_rng(1), n_way=5, instances=10)
    assert x.shape == (3, 50, 16 + 5) and y.shape == (3, 50) and inst.shape == (3, 50)
    np.testing.assert_array_equal(x[:, 0, 16:], 0.0)  # no label before the first step
    np.testing.assert_array_equal(x[:, 1:, 16:], np.eye(5)[y[:, :-1]])
    assert set(np.unique(y)) == set(range(5))
    for b in range(3):
        for label in range(5):
            # ten instances of each label, numbered 1..10 in order of appearance
            np.testing.assert_array_equal(inst[b][y[b] == label], np.arange(1, 11))
        # one class per label within the episode (the images say their class)
        cls = np.round(x[b, :, :16].mean(1)).astype(int)
        assert all(len(set(cls[y[b] == label])) == 1 for label in range(5))


def test_labels_are_reassigned_to_classes_in_every_episode():
    ds = _tiny_dataset(n_classes=5, per_class=10)  # the same five classes every time
    x, y, _ = mann.make_episodes(ds, 40, np.random.default_rng(2), n_way=5, instances=10)
    cls = np.round(x[:, :, :16].mean(2)).astype(int)
    assignments = {tuple(int(y[b][cls[b] == c][0]) for c in range(5)) for b in range(40)}
    assert len(assignments) > 20  # 120 possible permutations; a fixed one would give 1
    # the order of steps is shuffled too: the first step's class varies
    assert len(set(cls[:, 0])) > 1


# --- LRUA memory ------------------------------------------------------------------------------


def test_least_used_marks_the_n_smallest_usages():
    usage = np.array([[0.5, 0.1, 0.9, 0.05, 0.3]], np.float32)
    w_lu, slot = (_np(t) for t in mann.least_used(usage, 2))
    np.testing.assert_array_equal(w_lu, [[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(slot, [[0, 0, 0, 1, 0]])


@pytest.mark.parametrize("alpha, target", [(20.0, 1), (-20.0, 3)])
def test_lrua_writes_to_the_last_read_slot_or_the_least_used_one(alpha, target):
    n, m = 5, 3
    memory = np.full((1, n, m), 0.5, np.float32)
    usage = np.array([[0.9, 0.8, 0.7, 0.0, 0.6]], np.float32)  # slot 3 is least used
    w_prev = np.eye(n, dtype=np.float32)[None, 1:2]  # (B, H=1, N): the head last read slot 1
    key = np.array([[[1.0, -1.0, 0.5]]], np.float32)
    new, _, _, _ = mann.lrua_step(memory, usage, w_prev, key, np.array([[alpha]], np.float32),
                                  np.ones((1, 1), np.float32), gamma=0.95)
    new = _np(new)
    want = memory.copy()
    want[0, 3] = 0.0  # the least-used slot is zeroed before writing
    want[0, target] += key[0, 0]
    np.testing.assert_allclose(new, want, atol=1e-6)


def test_lrua_write_weights_interpolate_by_sigmoid_alpha():
    w_r = np.array([[1.0, 0.0, 0.0]], np.float32)
    w_lu = np.array([[0.0, 0.0, 1.0]], np.float32)
    alpha = np.full((1, 1), np.log(3.0), np.float32)  # sigmoid(alpha) = 0.75
    w = _np(mann.lrua_write_weights(alpha, w_r, w_lu))
    np.testing.assert_allclose(w, [[0.75, 0.0, 0.25]], atol=1e-6)


def test_usage_decays_and_adds_the_read_and_write_weights():
    usage = np.array([[1.0, 0.0, 2.0]], np.float32)
    w_read = np.array([[[0.2, 0.8, 0.0], [0.0, 0.0, 1.0]]], np.float32)  # two heads
    w_write = np.array([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]], np.float32)
    got = _np(mann.update_usage(usage, w_read, w_write, 0.9))
    np.testing.assert_allclose(got, [[0.9 + 0.2 + 1.0, 0.8 + 0.5, 1.8 + 1.0 + 0.5]], atol=1e-6)


def test_the_read_returns_the_row_that_matches_the_key():
    n = 4
    rows = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)[None]
    key = rows[:, None, 2]  # (B, H=1, M): the key of slot 2
    usage = np.array([[1, 1, 1, 0]], np.float32)
    # the key itself is written to the least-used slot 3; a sharp beta reads slot 2 or its copy
    new, _, w_read, reads = mann.lrua_step(rows, usage, np.ones((1, 1, n), np.float32) / n, key,
                                           np.full((1, 1), -20.0, np.float32),
                                           np.full((1, 1), 50.0, np.float32), gamma=0.95)
    np.testing.assert_allclose(_np(new)[0, 3], [0.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(_np(reads)[0, 0], [0.0, 0.0, 1.0], atol=1e-3)
    assert _np(w_read)[0, 0, [0, 1]].max() < 1e-3


# --- accuracy by instance ---------------------------------------------------------------------


def test_accuracy_is_grouped_by_instance():
    labels = np.array([[0, 1, 0, 1, 0], [1, 1, 0, 0, 1]])
    instance = np.array([[1, 1, 2, 2, 3], [1, 2, 1, 2, 3]])
    pred = np.array([[1, 1, 0, 0, 0], [1, 0, 0, 0, 1]])
    acc = mann.instance_accuracy(pred, labels, instance, instances=4)
    np.testing.assert_allclose(acc[:, :3], [[0.5, 0.5, 1.0], [1.0, 0.5, 1.0]])
    assert np.isnan(acc[:, 3]).all()  # no 4th presentation
    scores = np.eye(2)[pred] * 3.0  # scores give the same answer through their arg-max
    np.testing.assert_allclose(mann.instance_accuracy(scores, labels, instance, 4)[:, :3],
                               acc[:, :3])


# --- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["mann", "lstm"])
def test_models_train_with_a_finite_loss_and_score_every_instance(which):
    ds = _tiny_dataset()
    if which == "mann":
        model = mann.build_mann(16, units=16, slots=8, width=6, heads=2)
    else:
        model = mann.build_lstm(16, units=16)
    hist = mann.train(model, ds, episodes=8, batch_size=4, val=ds, val_episodes=4,
                      log_every=1, progress=False)
    assert hist["steps"] == 2 and hist["episodes"] == 8
    assert np.isfinite(hist["loss"]).all() and hist["loss"].shape == (2,)
    assert hist["log_accuracy"].shape == (2, 10)
    res = mann.accuracy_by_instance(model, ds, episodes=6, seed=0, batch=4)
    assert res["accuracy"].shape == (10,) and res["per_episode"].shape == (6, 10)
    assert np.all((res["accuracy"] >= 0) & (res["accuracy"] <= 100))
    again = mann.accuracy_by_instance(model, ds, episodes=6, seed=0, batch=4)
    np.testing.assert_allclose(again["accuracy"], res["accuracy"])  # same seed, same episodes


def test_the_trace_replays_the_model_step_by_step():
    ds = _tiny_dataset()
    model = mann.build_mann(16, units=8, slots=6, width=4, heads=1)
    x, _, _ = mann.make_episodes(ds, 2, np.random.default_rng(0))
    tr = mann.trace_episode(model, x)
    assert tr["usage"].shape == (2, 50, 6) and tr["memory"].shape == (2, 50, 6, 4)
    assert tr["w_read"].shape == (2, 50, 1, 6) and tr["change"].shape == (2, 50, 6)
    np.testing.assert_allclose(tr["logits"], mann.predict_logits(model, x), atol=1e-4)
    np.testing.assert_allclose(tr["w_read"].sum(-1), 1.0, atol=1e-5)


def test_the_learning_rate_drops_once_when_the_budget_is_partly_spent():
    ds = _tiny_dataset()
    model = mann.build_lstm(16, units=8, learning_rate=1e-2)
    hist = mann.train(model, ds, episodes=16, batch_size=4, lr_drop_at=0.5, lr_drop=0.1,
                      progress=False)
    assert hist["lr_dropped_at_episode"] == 8
    assert abs(float(np.asarray(model.optimizer.learning_rate)) - 1e-3) < 1e-8


def test_a_learned_or_fixed_key_strength_changes_the_interface():
    learned = mann.MANNCell(units=8, slots=4, width=3, heads=2, beta=None)
    fixed = mann.MANNCell(units=8, slots=4, width=3, heads=2, beta=1.0)
    assert learned.per_head == fixed.per_head + 1


def test_train_needs_a_budget():
    with pytest.raises(ValueError, match="budget"):
        mann.train(None, _tiny_dataset())


# --- settings ---------------------------------------------------------------------------------


def test_settings_have_every_scale_and_the_method_is_registered():
    assert set(mann.SETTINGS) == set(registry.SCALES)
    keys = set(mann.SETTINGS["quick"])
    assert all(set(s) == keys for s in mann.SETTINGS.values())
    assert mann.SETTINGS["full"]["train_episodes"] >= 100_000
    assert registry._METHODS["mann"].chapter == mann.CHAPTER


# --- exercise checker -------------------------------------------------------------------------


def test_the_lrua_exercise_passes_the_reference_and_names_each_mistake():
    import warnings

    from mlbook_utils.exercises import ch05_2

    assert ch05_2.check_lrua_write(ch05_2.reference_lrua_write).passed
    problems = set()
    for wrong, problem, _ in ch05_2._MISTAKES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow in a wrong sigmoid
            fb = ch05_2.check_lrua_write(wrong)
        assert not fb.passed and fb.problem == problem, (wrong.__name__, str(fb))
        problems.add(fb.problem)
    assert len(problems) == len(ch05_2._MISTAKES)
    fb = ch05_2.check_lrua_write(lambda a, r, lu: None)
    assert not fb.passed and "None" in fb.problem


def test_the_exercise_reference_agrees_with_the_library():
    from mlbook_utils.exercises import ch05_2

    rng = np.random.default_rng(4)
    w_r, w_lu = rng.dirichlet(np.ones(7)), np.eye(7)[3]
    lib = _np(mann.lrua_write_weights(np.full((1, 1), 0.7, np.float32),
                                      w_r[None].astype(np.float32),
                                      w_lu[None].astype(np.float32)))[0]
    np.testing.assert_allclose(ch05_2.reference_lrua_write(0.7, w_r, w_lu), lib, atol=1e-6)
